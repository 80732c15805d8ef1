"""Nomenclature against the reference tables (../shared/reference/ocsge-domain.md §1.2–1.3)."""

from __future__ import annotations

import pytest

from ocsge import nomenclature as nom
from ocsge.errors import MissingAttributeError, UnknownCodeError

# code: (label fragment, colour, parent) — written from the reference, not from the code
CS_REFERENCE = {
    "CS1.1.1.1": ("Zones bâties", "#FF377A", "CS1.1.1"),
    "CS1.1.1.2": ("Zones non bâties", "#FF9191", "CS1.1.1"),
    "CS1.1.2.1": ("matériaux minéraux", "#FFFF99", "CS1.1.2"),
    "CS1.1.2.2": ("autres matériaux composites", "#A64D00", "CS1.1.2"),
    "CS1.2.1": ("Sols nus", "#CCCCCC", "CS1.2"),
    "CS1.2.2": ("Surfaces d'eau", "#00CCF2", "CS1.2"),
    "CS1.2.3": ("Névés et glaciers", "#A6E6CC", "CS1.2"),
    "CS2.1.1.1": ("feuillus", "#80FF00", "CS2.1.1"),
    "CS2.1.1.2": ("conifères", "#00A600", "CS2.1.1"),
    "CS2.1.1.3": ("mixte", "#80BE00", "CS2.1.1"),
    "CS2.1.2": ("arbustives", "#A6FF80", "CS2.1"),
    "CS2.1.3": ("Autres formations ligneuses", "#E68000", "CS2.1"),
    "CS2.2.1": ("herbacées", "#CCF24D", "CS2.2"),
    "CS2.2.2": ("Autres formations non ligneuses", "#CCFFCC", "CS2.2"),
}
US_REFERENCE = {
    "US1.1": ("Agriculture", "#FFFFA8", "US1"),
    "US1.2": ("Sylviculture", "#008000", "US1"),
    "US1.3": ("extraction", "#A600CC", "US1"),
    "US1.4": ("Pêche", "#000099", "US1"),
    "US1.5": ("Autres", "#996633", "US1"),
    "US2": ("Production secondaire", "#E6004D", None),
    "US3": ("Production tertiaire", "#FF8C00", None),
    "US5": ("résidentiel", "#BE0961", None),
    "US235": ("secondaire, tertiaire et usage résidentiel", "#E6004D", None),
    "US4.1.1": ("routiers", "#CC0000", "US4.1"),
    "US4.1.2": ("ferrés", "#5A5A5A", "US4.1"),
    "US4.1.3": ("aériens", "#E6CCE6", "US4.1"),
    "US4.1.4": ("fluvial et maritime", "#0066FF", "US4.1"),
    "US4.1.5": ("Autres réseaux de transport", "#660033", "US4.1"),
    "US4.2": ("logistiques et de stockage", "#FF0000", "US4"),
    "US4.3": ("utilité publique", "#FF4B00", "US4"),
    "US6.1": ("transition", "#FF4DFF", "US6"),
    "US6.2": ("abandonnées", "#404040", "US6"),
    "US6.3": ("Sans usage", "#F0F028", "US6"),
    "US6.6": ("inconnu", "#FFCC00", "US6"),
}


def test_leaf_counts_match_the_nomenclature() -> None:
    assert nom.CS_LEAVES == tuple(CS_REFERENCE)
    assert set(nom.US_LEAVES) == set(US_REFERENCE)
    assert len(nom.CS_LEAVES) == 14 and len(nom.US_LEAVES) == 20


@pytest.mark.parametrize(("kind", "reference"), [("couverture", CS_REFERENCE), ("usage", US_REFERENCE)])
def test_every_code_label_colour_and_parent(kind: str, reference: dict) -> None:
    for code, (label, colour, parent) in reference.items():
        entry = nom.lookup(kind, code)
        assert label.lower() in entry.label.lower(), code
        assert entry.colour == colour, code
        assert entry.parent == parent, code
        assert entry.is_leaf


def test_hierarchy_chains_to_the_roots() -> None:
    assert nom.parents("couverture", "CS1.1.1.1") == ["CS1.1.1", "CS1.1", "CS1"]
    assert nom.parents("couverture", "CS2.2.2") == ["CS2.2", "CS2"]
    assert nom.parents("usage", "US4.1.3") == ["US4.1", "US4"]
    assert nom.parents("usage", "US235") == []
    assert nom.leaves_under("couverture", "CS2.1.1") == ["CS2.1.1.1", "CS2.1.1.2", "CS2.1.1.3"]
    assert len(nom.leaves_under("couverture", "CS1")) == 7
    assert len(nom.leaves_under("usage", "US4")) == 7


def test_raster_values_are_unique_uint8_and_invertible() -> None:
    for kind, leaves in (("couverture", nom.CS_LEAVES), ("usage", nom.US_LEAVES)):
        values = [nom.raster_value(kind, c) for c in leaves]
        assert sorted(values) == list(range(1, len(leaves) + 1))  # 0 stays nodata
        assert all(nom.code_for_value(kind, nom.raster_value(kind, c)) == c for c in leaves)
        assert nom.code_for_value(kind, 0) is None
        assert nom.code_for_value(kind, 255) is None
    with pytest.raises(UnknownCodeError):
        nom.raster_value("couverture", "CS2.1.1")  # not a leaf: no raster value


def test_palette_has_official_colours_and_transparent_nodata() -> None:
    pal = nom.palette("couverture")
    assert pal[0] == (0, 0, 0, 0)
    assert pal[nom.raster_value("couverture", "CS1.1.1.1")] == (0xFF, 0x37, 0x7A, 255)
    assert pal[nom.raster_value("couverture", "CS2.2.2")] == (0xCC, 0xFF, 0xCC, 255)
    assert len(nom.palette("usage")) == 21


@pytest.mark.parametrize(
    ("raw", "code", "issue"),
    [
        ("CS1.1.1.1", "CS1.1.1.1", nom.Issue.OK),
        ("cs1.1.1.1", "CS1.1.1.1", nom.Issue.REFORMATTED),
        (" CS 2.2.1 ", "CS2.2.1", nom.Issue.REFORMATTED),
        ("1.2.2", "CS1.2.2", nom.Issue.REFORMATTED),
        ("CS1,1,2,1", "CS1.1.2.1", nom.Issue.REFORMATTED),
        ("CS2.1.1", "CS2.1.1", nom.Issue.NON_LEAF),
        ("", None, nom.Issue.EMPTY),
        (None, None, nom.Issue.EMPTY),
        (float("nan"), None, nom.Issue.EMPTY),
        ("CS9.9", None, nom.Issue.UNKNOWN),
        ("forêt", None, nom.Issue.UNKNOWN),
    ],
)
def test_parse_couverture_quirks(raw: object, code: str | None, issue: nom.Issue) -> None:
    parsed = nom.parse_code(raw, "couverture")
    assert (parsed.code, parsed.issue) == (code, issue)


def test_us235_and_split_usages_both_accepted() -> None:
    codes, report = nom.parse_codes(["US235", "US2", "US3", "US5", "US4.1.1", "us6.6"], "usage")
    assert codes == ["US235", "US2", "US3", "US5", "US4.1.1", "US6.6"]
    assert report.anomalies == 0
    assert {nom.usage_group(c) for c in codes[:4]} == {"US235"}


def test_parse_report_counts_every_anomaly_and_drops_nothing() -> None:
    raw = ["CS2.1.1", "CS2.1.1", "", None, "CS7", "CS2.2.1"]
    codes, report = nom.parse_codes(raw, "couverture")
    assert len(codes) == len(raw)
    rows = {(r["issue"], r["raw"]): r["count"] for r in report.as_rows()}
    assert rows == {("non_leaf", "'CS2.1.1'"): 2, ("empty", "''"): 1, ("empty", "None"): 1, ("unknown", "'CS7'"): 1}
    assert report.anomalies == 5


@pytest.mark.parametrize(
    ("columns", "cs", "us"),
    [
        (["id", "code_cs", "code_us", "geometry"], "code_cs", "code_us"),
        (["ID", "CODE_CS", "CODE_US"], "CODE_CS", "CODE_US"),
        (["couverture", "usage"], "couverture", "usage"),
        (["Code_Cs", "Code_Us"], "Code_Cs", "Code_Us"),
    ],
)
def test_attribute_names_of_every_delivery(columns: list[str], cs: str, us: str) -> None:
    assert nom.find_code_column(columns, "couverture") == cs
    assert nom.find_code_column(columns, "usage") == us


def test_missing_attribute_names_the_columns_found() -> None:
    with pytest.raises(MissingAttributeError, match=r"no couverture attribute.*'cs_2018'"):
        nom.find_code_column(["id", "cs_2018"], "couverture")


def test_unknown_codes_raise_with_the_value() -> None:
    with pytest.raises(UnknownCodeError, match="US9"):
        nom.lookup("usage", "US9")
