"""Départements, CRS, millésimes, campaigns, product keys and FLAIR schemes."""

from __future__ import annotations

import pytest

from ocsge import flair
from ocsge.errors import OcsgeError, UnknownDepartementError, UnknownMillesimeError, UnknownProductError
from ocsge.millesimes import campaign_named, campaign_of, millesime_index
from ocsge.products import PRODUCTS, block_prefix, product_key
from ocsge.territory import all_departements, departement

DROM = {"971": 5490, "972": 5490, "973": 2972, "974": 2975, "976": 4471}


def test_all_departements_with_their_crs() -> None:
    deps = all_departements()
    codes = [d.code for d in deps]
    assert len(deps) == 101
    assert "2A" in codes and "2B" in codes and "20" not in codes
    assert set(codes) == {f"{i:02d}" for i in range(1, 96) if i != 20} | {"2A", "2B"} | set(DROM)
    for dep in deps:
        assert dep.epsg == DROM.get(dep.code, 2154), dep.code
    assert departement("2A").epsg == 2154  # Corse is in Lambert-93


@pytest.mark.parametrize(
    ("raw", "code", "token"),
    [("77", "77", "D077"), (7, "07", "D007"), ("D001", "01", "D001"), ("d02a", "2A", "D02A"),
     ("2b", "2B", "D02B"), ("D0971", "971", "D971"), ("974", "974", "D974"), ("S01", "S01", "DS01")],
)
def test_codes_in_every_spelling(raw: object, code: str, token: str) -> None:
    dep = departement(raw)
    assert (dep.code, dep.token) == (code, token)


@pytest.mark.parametrize("raw", ["20", "96", "975", "00", "2C", "abc", "", "S1"])
def test_unknown_departements_are_named(raw: str) -> None:
    with pytest.raises(UnknownDepartementError, match=repr(raw).replace("(", r"\(")):
        departement(raw)


def test_synthetic_departements_are_labelled() -> None:
    dep = departement("S01")
    assert dep.synthetic and "synthétique" in dep.name.lower() and dep.epsg == 2154


def test_campaigns_and_indices() -> None:
    assert campaign_of(2018).name == "2017-2020"
    assert campaign_of(2021).name == "2021-2023" and campaign_of(2023).name == "2021-2023"
    assert campaign_of(2024).name == "2024-2026"
    assert campaign_of(2016).name == "2016-2017"
    assert campaign_named("2024-2026").index == 3
    # per-département series: D032 was surveyed in 2016, 2019 and 2022
    assert [millesime_index("32", y) for y in (2016, 2019, 2022)] == [1, 2, 3]
    assert [millesime_index("77", y) for y in (2017, 2021)] == [1, 2]
    assert millesime_index("22", 2025) == 3
    assert millesime_index("S01", 2021) == 2 and millesime_index("S01", 2024) == 3  # campaign fallback
    with pytest.raises(UnknownMillesimeError, match="2031"):
        campaign_of(2031)
    with pytest.raises(UnknownMillesimeError):
        campaign_named("2030-2032")


def test_product_keys() -> None:
    assert product_key("occupation", "77", 2021) == "occupation/D077/2021/occupation_D077_2021.parquet"
    assert product_key("difference", "2A", (2019, 2021)) == (
        "difference/D02A/2019-2021/difference_D02A_2019-2021.parquet"
    )
    key = product_key("prediction", "S01", 2024, block="r001c002")
    assert key.startswith(block_prefix("prediction", "S01", 2024)) and key.endswith("_r001c002.tif")
    keys = {product_key(p, "01", (2018, 2021) if s.pair else 2021, block="b" if s.per_block else None)
            for p, s in PRODUCTS.items()}
    assert len(keys) == len(PRODUCTS)  # one key per product, no collision


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("nope", "77", 2021), {}, "unknown product"),
        (("difference", "77", 2021), {}, "pair of millésimes"),
        (("occupation", "77", (2018, 2021)), {}, "one millésime"),
        (("difference", "77", (2021, 2018)), {}, "not in order"),
        (("prediction", "77", 2021), {}, "needs block"),
        (("prediction", "77", 2021), {"block": "../x"}, "invalid block"),
    ],
)
def test_bad_product_keys(args: tuple, kwargs: dict, message: str) -> None:
    with pytest.raises(UnknownProductError, match=message):
        product_key(*args, **kwargs)
    with pytest.raises(OcsgeError):
        product_key("occupation", "99", 2021)


def test_flair_schemes_map_onto_couverture() -> None:
    assert flair.scheme("flair19").n_classes == 19
    assert flair.scheme("flair15").n_classes == 15
    assert flair.scheme("flair13").n_classes == 13
    assert flair.scheme("cosia").classes[1] == "greenhouse"  # 0-based CoSIA order differs from FLAIR #1
    assert flair.scheme("flair19").to_couverture()[0] == "CS1.1.1.1"
    lut = flair.scheme("flair13").lookup_table()
    assert lut[12] == 0  # "other" → nodata
    assert lut[4] == 6  # water → CS1.2.2 (raster value 6)
    assert flair.scheme("couverture").lookup_table() == list(range(1, 15))
    assert flair.flair_mask_to_scheme_index(18, "flair13") == 12
    assert flair.flair_mask_to_scheme_index(16, "flair15") is None  # mixed has weight 0 in FLAIR-INC
    assert flair.flair_mask_to_scheme_index(16, "couverture") == 9  # mixed → CS2.1.1.3
    with pytest.raises(OcsgeError, match="unknown class scheme"):
        flair.scheme("flair21")
