"""The layer handed to tippecanoe: FlatGeobuf in WGS 84, features in layer order, missing values null, and
tiles identical to those tippecanoe makes from the same features as GeoJSON (integers included)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import shapely

from inference_batch.products.spatial import SpatialSource
from inference_batch.products.tiles import TIPPECANOE_FLAGS, build_pmtiles, tippecanoe_binary, write_flatgeobuf


def _layer(n: int = 40) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(3)
    cells = [shapely.box(700_000 + 37.3 * (i % 8), 6_600_000 + 41.1 * (i // 8), 700_000 + 37.3 * (i % 8 + 1),
                         6_600_000 + 41.1 * (i // 8 + 1)) for i in range(n)]
    return gpd.GeoDataFrame(
        {
            "code": rng.choice(["CS1.1", "CS2.2", "é"], n).astype(object),
            "flag": rng.random(n) < 0.5,
            "count": rng.integers(-1, 2, n).astype(np.int8),
            "share": rng.random(n),
        },
        geometry=gpd.GeoSeries(cells, crs=2154),
        crs=2154,
    )


def test_features_keep_their_order_values_and_nulls_in_wgs84(tmp_path: Path) -> None:
    frame = _layer(6)
    frame.loc[2, "code"] = None
    frame.loc[1, "share"] = np.nan
    frame.loc[5, "geometry"] = shapely.Polygon()
    out = tmp_path / "layer.fgb"
    n = write_flatgeobuf(SpatialSource(frame), out, ["code", "flag", "count", "share", "absent"], rows=4)
    back = pyogrio.read_dataframe(out)
    assert n == len(back) == 5  # the empty geometry is left out
    assert list(back.columns) == ["code", "flag", "count", "share", "geometry"]
    assert back["code"].isna().tolist() == [False, False, True, False, False]  # null, read back as missing
    assert back["share"].isna().tolist() == [False, True, False, False, False]
    assert back["code"].tolist()[:2] == frame["code"].tolist()[:2]
    assert back["flag"].tolist() == frame["flag"].tolist()[:5]
    assert back["count"].tolist() == frame["count"].astype(float).tolist()[:5]  # integers travel as doubles
    wgs84 = frame.iloc[:5].to_crs(4326).geometry.to_numpy()
    assert shapely.equals_exact(back.geometry.to_numpy(), wgs84, tolerance=0).all()


def test_tiles_equal_those_of_the_same_features_as_geojson(tmp_path: Path) -> None:
    from pmtiles.reader import MmapSource, Reader, all_tiles

    frame = _layer()
    props = ["code", "flag", "count", "share"]
    ours = tmp_path / "ours.pmtiles"
    build_pmtiles({"layer": (SpatialSource(frame), props)}, ours, min_zoom=10, max_zoom=14)
    wgs84 = frame.to_crs(4326)
    lines = [json.dumps({"type": "Feature", "properties": {c: wgs84[c].iloc[i].item() if c != "code" else
                                                           wgs84[c].iloc[i] for c in props},
                         "geometry": json.loads(shapely.to_geojson(wgs84.geometry.iloc[i]))}, ensure_ascii=False)
             for i in range(len(wgs84))]
    (tmp_path / "layer.geojsons").write_text("\n".join(lines) + "\n", encoding="utf-8")
    subprocess.run([tippecanoe_binary(), "-o", "ref.pmtiles", "-Z", "10", "-z", "14", *TIPPECANOE_FLAGS,
                    "-L", "layer:layer.geojsons"], cwd=tmp_path, check=True, capture_output=True)

    def tiles(path: Path) -> tuple[dict, dict]:
        with path.open("rb") as f:
            reader = Reader(MmapSource(f))
            meta = reader.metadata()
            return dict(all_tiles(reader.get_bytes)), {k: meta[k] for k in ("vector_layers", "tilestats")}

    got, want = tiles(ours), tiles(tmp_path / "ref.pmtiles")
    assert len(got[0]) >= 5 and got == want  # a tile per zoom at least
