"""An empty layer (no reservoir on a small territory, no change between millésimes…) is still a GeoParquet
that the ecosystem's validator accepts in every class we claim, and that reads back with its CRS."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import shapely

from inference_batch.products.artifacts import read_vector, write_vector
from ocsge.storage import LocalStorage


def test_an_empty_layer_is_a_valid_geoparquet(tmp_path: Path) -> None:
    import geoparquet_validator

    storage = LocalStorage(tmp_path)
    empty = gpd.GeoDataFrame({"kind": []}, geometry=gpd.GeoSeries([], crs=2154), crs=2154)
    key = write_vector(storage, "tvb/DS01/2021/tvb_DS01_2021.parquet", empty)
    assert geoparquet_validator.failed(geoparquet_validator.check(str(tmp_path / key))) == []
    back = read_vector(storage, key)
    assert back.empty and back.crs.to_epsg() == 2154 and list(back.columns) == ["kind", "geometry"]
    # and a non-empty one still carries its rows and passes
    one = gpd.GeoDataFrame({"kind": ["a"]}, geometry=[shapely.box(0, 0, 10, 10)], crs=2154)
    key = write_vector(storage, "tvb/DS01/2024/tvb_DS01_2024.parquet", one)
    assert geoparquet_validator.failed(geoparquet_validator.check(str(tmp_path / key))) == []
    assert len(read_vector(storage, key)) == 1
