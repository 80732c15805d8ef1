"""The matrix of décret 2023-1096 over every CS × US pair, against a table written from the reference."""

from __future__ import annotations

import pytest

from ocsge.artificialisation import is_artificial, is_impermeable, matrix
from ocsge.errors import UnknownCodeError
from ocsge.nomenclature import CS_LEAVES, US_LEAVES

ALL_US = set(US_LEAVES)
URBAN_US = {"US2", "US3", "US5", "US235", "US4.1.1", "US4.1.2", "US4.1.3", "US4.1.4", "US4.1.5", "US4.2",
            "US4.3", "US6.1", "US6.2"}
# For each CS leaf, the usages under which it is artificialisé (ocsge-domain.md §2.2, matrix image).
ARTIFICIAL_USAGES = {
    "CS1.1.1.1": ALL_US,
    "CS1.1.1.2": ALL_US,
    "CS1.1.2.1": ALL_US - {"US1.3"},
    "CS1.1.2.2": ALL_US,
    "CS1.2.1": set(),
    "CS1.2.2": set(),
    "CS1.2.3": set(),
    "CS2.1.1.1": set(),
    "CS2.1.1.2": set(),
    "CS2.1.1.3": set(),
    "CS2.1.2": set(),
    "CS2.1.3": set(),
    "CS2.2.1": URBAN_US,
    "CS2.2.2": URBAN_US,
}


@pytest.mark.parametrize("cs", CS_LEAVES)
def test_every_pair(cs: str) -> None:
    for us in US_LEAVES:
        assert is_artificial(cs, us) == (us in ARTIFICIAL_USAGES[cs]), (cs, us)


def test_matrix_covers_all_280_pairs() -> None:
    table = matrix()
    assert len(table) == 14 * 20
    assert sum(table.values()) == sum(len(v) for v in ARTIFICIAL_USAGES.values())


def test_known_traps() -> None:
    assert is_artificial("CS2.2.1", "US6.1") and is_artificial("CS2.2.2", "US6.2")  # sparte frontend omits these
    assert not is_artificial("CS1.1.2.1", "US1.3")  # quarries
    assert is_artificial("CS1.1.1.1", "US1.3")  # the US1.3 exception is on mineral surfaces only
    assert not is_artificial("CS2.2.1", "US1.5")
    assert not is_artificial("CS2.2.1", "US6.3") and not is_artificial("CS2.2.1", "US6.6")


def test_impermeabilisation() -> None:
    assert [cs for cs in CS_LEAVES if is_impermeable(cs)] == ["CS1.1.1.1", "CS1.1.1.2"]


def test_unknown_codes_are_errors_not_non_artificial() -> None:
    with pytest.raises(UnknownCodeError, match="CS1.1.1.9"):
        is_artificial("CS1.1.1.9", "US1.1")
    with pytest.raises(UnknownCodeError, match="US7"):
        is_artificial("CS2.2.1", "US7")
    with pytest.raises(UnknownCodeError):
        is_impermeable("CS9")


def test_intermediate_codes_when_their_leaves_agree() -> None:
    assert is_impermeable("CS1.1.1") and not is_impermeable("CS2.1")
    assert not is_artificial("CS2.1.1", "US1.2")  # old data: "formations arborées" without species
    assert is_artificial("CS1.1.1", "US4")
    with pytest.raises(UnknownCodeError, match="ambiguous"):
        is_artificial("CS1.1.2", "US1.3")  # mineral (quarry: no) vs composite (yes)
    with pytest.raises(UnknownCodeError, match="ambiguous"):
        is_impermeable("CS1.1")


def test_couverture_alone_when_the_usage_is_unknown() -> None:
    from ocsge.artificialisation import artificial_whatever_usage

    assert artificial_whatever_usage("CS1.1.1.1") is True  # a building, whatever its usage
    assert artificial_whatever_usage("CS1.1.2.2") is True
    assert artificial_whatever_usage("CS2.1.1.1") is False and artificial_whatever_usage("CS2.1.1") is False
    assert artificial_whatever_usage("CS1.2.2") is False
    assert artificial_whatever_usage("CS1.1.2.1") is None  # quarries are not
    assert artificial_whatever_usage("CS2.2.1") is None and artificial_whatever_usage("CS9") is None
