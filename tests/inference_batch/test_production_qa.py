"""QA: confusion matrix and metrics against hand-computed values, vector and raster inputs, JSON + PNG report."""

from __future__ import annotations

import io
import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from affine import Affine
from PIL import Image
from shapely.geometry import box

from inference_batch.production.qa import Side, compare, matrix_png, metrics
from inference_batch.production.vectorize import Mosaic
from ocsge import schema
from ocsge.nomenclature import CS_LEAVES, raster_value

X0, Y0 = 700000.0, 6600000.0


def _layer(split: float, us_east: str = "US1.2") -> gpd.GeoDataFrame:
    """100 m × 100 m: grass west of ``split``, deciduous east of it."""
    return gpd.GeoDataFrame(
        {schema.ID: ["a", "b"], schema.CODE_CS: ["CS2.2.1", "CS2.1.1.1"], schema.CODE_US: ["US1.1", us_east],
         schema.MILLESIME: 2024, schema.SOURCE: "x"},
        geometry=[box(X0, Y0, X0 + split, Y0 + 100), box(X0 + split, Y0, X0 + 100, Y0 + 100)], crs="EPSG:2154")


def test_metrics_against_hand_computed_values() -> None:
    # reference rows, produced columns (pixels): class 0 → 8 right, 2 wrong; class 1 → 1 wrong, 9 right
    m = np.zeros((14, 14), dtype=np.int64)
    m[0, 0], m[0, 1], m[1, 0], m[1, 1] = 8, 2, 1, 9
    out = metrics(m, tuple(CS_LEAVES), px_area=1.0)
    assert out["overall_accuracy"] == pytest.approx(17 / 20)
    pe = (10 * 9 + 10 * 11) / 400
    assert out["kappa"] == pytest.approx((0.85 - pe) / (1 - pe), abs=1e-5)
    c0 = out["per_class"]["CS1.1.1.1"]
    assert c0["precision"] == pytest.approx(8 / 9, abs=1e-5) and c0["recall"] == pytest.approx(0.8)
    assert c0["f1"] == pytest.approx(2 * 8 / 19, abs=1e-5) and c0["iou"] == pytest.approx(8 / 11, abs=1e-5)
    assert out["mean_iou"] == pytest.approx((8 / 11 + 9 / 12) / 2, abs=1e-5)
    assert set(out["per_class"]) == {"CS1.1.1.1", "CS1.1.1.2"}


def test_vector_against_vector_with_exact_agreement() -> None:
    section = compare(Side("produced", frame=_layer(60, "US6.3")), Side("truth", frame=_layer(50)), res=0.5)
    cs = section["couverture"]
    assert cs["overall_accuracy"] == pytest.approx(0.9)  # a 10 m × 100 m strip disagrees
    assert cs["per_class"]["CS2.2.1"]["recall"] == pytest.approx(1.0)
    assert cs["per_class"]["CS2.1.1.1"]["iou"] == pytest.approx(0.8)
    assert np.array(cs["matrix_ha"]).sum() == pytest.approx(1.0)
    assert section["usage"]["overall_accuracy"] == pytest.approx(0.5)  # the east half has another usage
    assert section["area_weighted_agreement_exact"] == {"couverture": 0.9, "usage": 0.5}


def test_prediction_blocks_against_truth() -> None:
    a = np.full((500, 500), raster_value("couverture", "CS2.2.1"), dtype=np.uint8)
    a[:, 250:] = raster_value("couverture", "CS2.1.1.1")
    a[:, :10] = 0  # no prediction there: left out, not counted as an error
    mosaic = Mosaic.from_array(a, Affine(0.2, 0, X0, 0, -0.2, Y0 + 100), "EPSG:2154", 200)
    section = compare(Side("prediction", mosaic=mosaic), Side("truth", frame=_layer(50)))
    assert section["couverture"]["overall_accuracy"] == pytest.approx(1.0)
    assert section["left_out_ha"]["reference_only"] == pytest.approx(10 * 500 * 0.04 / 1e4)
    assert "usage" not in section


def test_png_is_a_readable_image() -> None:
    m = np.zeros((14, 14))
    m[12, 12], m[12, 7], m[7, 7] = 5, 1, 3
    png = matrix_png(m, tuple(CS_LEAVES), "test")
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.size[0] > 150


def test_qa_cli_writes_report_and_pngs(tmp_path: Path) -> None:
    from ocsge.cli import main
    from ocsge.products import product_key
    from ocsge.storage import LocalStorage

    storage = LocalStorage(tmp_path)
    for name, frame in (("truth", _layer(50)), ("occupation_auto", _layer(55))):
        with storage.writer(product_key(name, "S01", 2024)) as tmp:
            frame.to_parquet(tmp)
    main(["qa", "-d", "S01", "-y", "2024", "--root", str(tmp_path)])
    report = json.loads(storage.get_bytes(product_key("qa_report", "S01", 2024)))
    (section,) = report["comparisons"]
    assert section["produced"] == "occupation_auto"
    assert section["couverture"]["overall_accuracy"] == pytest.approx(0.95)
    png = section["couverture"]["matrix_png"]
    assert storage.exists(png) and storage.get_bytes(png)[:4] == b"\x89PNG"
