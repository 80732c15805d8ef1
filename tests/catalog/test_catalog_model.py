"""The STAC model: every collection and item validates offline, and says what the files say."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pystac
import pytest

from catalog import stac
from catalog.collections import BY_PRODUCT, COLLECTIONS
from catalog.discover import parse_key
from catalog.validate import CatalogValidationError, errors, validate


def _docs(root: str) -> dict[str, dict]:
    base = Path(root) / "stac"
    return {
        p.relative_to(base).as_posix(): json.loads(p.read_text())
        for p in base.rglob("*.json")
        if "snapshot" not in p.parts and p.name != "publish-state.json"
    }


def _item(root: str, collection: str, item_id: str) -> dict:
    return json.loads((Path(root) / "stac" / collection / "items" / f"{item_id}.json").read_text())


def test_every_collection_and_item_validates_offline(sample_root: str) -> None:
    docs = _docs(sample_root)
    kinds = {d["type"] for d in docs.values()}
    assert kinds == {"Catalog", "Collection", "Feature"}
    for name, doc in docs.items():
        assert errors(doc) == [], name
    items = [d for d in docs.values() if d["type"] == "Feature"]
    assert len(items) == 34
    # every extension the items declare is exercised by at least one item
    used = {ext for d in items for ext in d["stac_extensions"]}
    assert used == set(stac.EXTENSIONS)


def test_pystac_reads_the_static_catalogue(sample_root: str) -> None:
    catalog = pystac.Catalog.from_file(str(Path(sample_root) / "stac" / "catalog.json"))
    items = list(catalog.get_items(recursive=True))
    assert len(items) == 34
    item = next(i for i in items if i.id == "couverture_D077_2021")
    href = Path(item.assets["data"].get_absolute_href())
    assert href == Path(sample_root) / "couverture/D077/2021/couverture_D077_2021.tif"


def test_raster_item_describes_its_cog(sample_root: str) -> None:
    item = _item(sample_root, "ocsge-couverture", "couverture_D077_2021")
    props, data = item["properties"], item["assets"]["data"]
    path = Path(sample_root) / "couverture/D077/2021/couverture_D077_2021.tif"
    assert data["file:size"] == path.stat().st_size
    assert data["file:checksum"] == "1220" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert data["type"] == "image/tiff; application=geotiff; profile=cloud-optimized"
    assert data["roles"] == ["data", "visual"]
    assert props["proj:code"] == "EPSG:2154"
    assert props["proj:shape"] == [100, 100]
    assert props["proj:transform"] == [100.0, 0.0, 660000.0, 0.0, -100.0, 6830000.0]
    assert data["raster:bands"] == [{"data_type": "uint8", "nodata": 0, "sampling": "area",
                                     "spatial_resolution": 100.0}]
    classes = {c["name"]: c for c in data["classification:classes"]}
    assert classes["nodata"]["nodata"] is True
    assert classes["CS1_1_1_1"]["value"] == 1
    assert classes["CS1_1_1_1"]["color_hint"] == "FF377A"
    assert classes["CS1_1_1_1"]["title"] == "Zones bâties"
    assert props["ocsge:departement"] == "77"
    assert props["ocsge:millesime"] == 2021
    assert props["ocsge:millesime_index"] == 2  # D077: 2017 (M1), 2021 (M2)
    assert props["ocsge:campaign"] == "2021-2023"
    assert props["ocsge:source"] == "official"
    assert props["datetime"] == "2021-01-01T00:00:00Z"
    assert (props["start_datetime"], props["end_datetime"]) == ("2021-01-01T00:00:00Z", "2021-12-31T23:59:59Z")
    w, s, e, n = item["bbox"]
    assert 2.4 < w < e < 2.7 and 48.4 < s < n < 48.6  # near Melun
    assert props["version"] == data["file:checksum"][4:16]


def test_vector_item_borrows_nothing_and_carries_companions(sample_root: str) -> None:
    item = _item(sample_root, "ocsge-occupation", "occupation_D032_2019")
    assert item["properties"]["proj:code"] == "EPSG:2154"
    assert item["properties"]["proj:bbox"] == [490000.0, 6280000.0, 500000.0, 6290000.0]
    assert set(item["assets"]) == {"data", "tiles", "archive", "report"}
    assert item["assets"]["tiles"]["type"] == "application/vnd.pmtiles"
    assert item["assets"]["tiles"]["roles"] == ["visual", "overview"]
    assert item["assets"]["archive"]["roles"] == ["archive"]
    assert item["assets"]["report"]["roles"] == ["metadata"]
    assert item["assets"]["data"]["type"] == "application/vnd.apache.parquet"


def test_difference_item_spans_both_millesimes(sample_root: str) -> None:
    item = _item(sample_root, "ocsge-difference", "difference_D077_2017-2021")
    props = item["properties"]
    assert props["datetime"] is None
    assert (props["start_datetime"], props["end_datetime"]) == ("2017-01-01T00:00:00Z", "2021-12-31T23:59:59Z")
    assert (props["ocsge:millesime_avant"], props["ocsge:millesime"]) == (2017, 2021)
    # a CSV has no geometry: the flows item is placed where the département's layers are
    flows = _item(sample_root, "ocsge-flows-couverture", "flows_cs_D077_2017-2021")
    assert flows["geometry"] is not None and flows["bbox"] == item["bbox"]


def test_prediction_block_item_names_model_and_checkpoint(sample_root: str) -> None:
    item = _item(sample_root, "ocsge-prediction", "prediction_D077_2024_r000c001")
    props = item["properties"]
    assert props["ocsge:source"] == "auto"
    assert props["ocsge:block"] == "r000c001"
    assert props["processing:software"]["flair-unet-rgbi"] == "sha256:0f3a9c2e"
    assert "ocsge-cloud" in props["processing:software"]
    assert "flair-unet-rgbi" in props["processing:lineage"]


def test_collections_carry_licence_providers_item_assets_summaries(sample_root: str) -> None:
    coll = json.loads((Path(sample_root) / "stac/ocsge-couverture/collection.json").read_text())
    assert coll["license"] == "etalab-2.0"
    assert any(link["rel"] == "license" for link in coll["links"])
    assert {p["name"].split(" ")[0] for p in coll["providers"]} == {"IGN", "OCS"}
    assert coll["item_assets"]["data"]["classification:classes"][1]["name"] == "CS1_1_1_1"
    assert coll["summaries"]["ocsge:departement"] == ["32", "77"]
    assert coll["summaries"]["ocsge:millesime"] == [2017, 2019, 2021, 2022]
    assert coll["extent"]["temporal"]["interval"] == [["2017-01-01T00:00:00Z", "2022-12-31T23:59:59Z"]]


def test_validator_catches_bad_extension_values(sample_root: str) -> None:
    item = _item(sample_root, "ocsge-couverture", "couverture_D077_2021")
    bad = json.loads(json.dumps(item))
    bad["assets"]["data"]["file:checksum"] = "not-hex"
    bad["assets"]["data"]["classification:classes"][1]["name"] = "CS1.1.1.1"
    bad["properties"]["proj:shape"] = [100]
    found = "\n".join(errors(bad))
    assert "file:checksum" in found and "classification" in found and "proj:shape" in found
    unknown = dict(item, stac_extensions=[*item["stac_extensions"], "https://example.org/ext/v1.0.0/schema.json"])
    with pytest.raises(CatalogValidationError, match="no vendored schema"):
        validate(unknown)
    with pytest.raises(CatalogValidationError, match="geometry"):
        validate({**item, "geometry": {"type": "Polygon", "coordinates": "nope"}})


def test_keys_parse_back_to_their_product_only() -> None:
    art = parse_key("prediction", "prediction/D077/2024/blocks/prediction_D077_2024_r003c007.tif")
    assert art is not None and (art.departement.code, art.millesime, art.block) == ("77", 2024, "r003c007")
    pair = parse_key("difference", "difference/D02A/2019-2021/difference_D02A_2019-2021.parquet")
    assert pair is not None and pair.departement.code == "2A" and pair.millesime == (2019, 2021)
    assert parse_key("occupation", "occupation/D077/2021/occupation_D078_2021.parquet") is None
    assert parse_key("occupation", "occupation/D077/2021/.occupation_D077_2021.parquet.tmp-1a2b.parquet") is None
    assert parse_key("occupation", "occupation/D999/2021/occupation_D999_2021.parquet") is None
    assert parse_key("difference", "difference/D077/2021-2017/difference_D077_2021-2017.parquet") is None


def test_every_collection_is_a_registered_product() -> None:
    assert len({c.id for c in COLLECTIONS}) == len(COLLECTIONS)
    assert BY_PRODUCT["couverture_cog"].id == "ocsge-couverture"
