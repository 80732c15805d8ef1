"""The GeoJSONSeq handed to tippecanoe: one feature per line, properties encoded as ``json.dumps`` encodes a
dict (missing values as null, numpy scalars as plain numbers, non-ASCII text kept), geometry in WGS 84."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from inference_batch.products.spatial import SpatialSource
from inference_batch.products.tiles import write_geojsonseq


def test_each_line_is_the_feature_json_dumps_would_write(tmp_path: Path) -> None:
    boxes = [shapely.box(700_000 + 10 * i, 6_600_000, 700_005 + 10 * i, 6_600_007) for i in range(6)]
    frame = gpd.GeoDataFrame(
        {
            "code": ["CS1.1", "CS2.2", None, "CS1.1", "é", "CS2.2"],
            "flag": [True, False, True, True, False, True],
            "count": np.array([1, -1, 0, 1, 2, 0], dtype=np.int64),
            "share": [0.5, np.nan, 1.0, 0.5, 0.25, np.nan],
        },
        geometry=gpd.GeoSeries([*boxes[:5], shapely.Polygon()], crs=2154),
        crs=2154,
    )
    out = tmp_path / "layer.geojsons"
    n = write_geojsonseq(SpatialSource(frame), out, ["code", "flag", "count", "share", "absent"], rows=4)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert n == len(lines) == 5  # the empty geometry is left out
    wgs84 = frame.to_crs(4326)
    for i, line in enumerate(lines):
        code, share = frame["code"].iloc[i], frame["share"].iloc[i]
        props = {"code": None if pd.isna(code) else code, "flag": bool(frame["flag"].iloc[i]),
                 "count": int(frame["count"].iloc[i]), "share": None if np.isnan(share) else float(share)}
        expected = (f'{{"type":"Feature","properties":{json.dumps(props, ensure_ascii=False)},'
                    f'"geometry":{shapely.to_geojson(wgs84.geometry.iloc[i])}}}')
        assert line == expected
    assert '"code": null' in lines[2] and '"code": "é"' in lines[4] and '"share": null' in lines[1]


def test_a_layer_without_properties_writes_an_empty_object(tmp_path: Path) -> None:
    frame = gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 1, 1)], crs=4326)
    out = tmp_path / "zc.geojsons"
    assert write_geojsonseq(SpatialSource(frame), out, []) == 1
    assert json.loads(out.read_text())["properties"] == {}
