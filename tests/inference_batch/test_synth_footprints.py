"""Synthetic pairs laid on the footprint of a real département (``ocsge synth --vector-only --footprint``)."""

from __future__ import annotations

import pytest
import shapely
from click.testing import CliRunner
from pyproj import Transformer

from inference_batch.synth.footprints import footprint, metropolitan_codes
from inference_batch.synth.vector_scale import build_vector_pair
from ocsge.errors import OcsgeError


def test_the_96_metropolitan_footprints_are_where_france_is() -> None:
    codes = metropolitan_codes()
    assert len(codes) == 96 and {"2A", "2B", "75", "95"} <= set(codes) and "20" not in codes
    to_ll = Transformer.from_crs(2154, 4326, always_xy=True)
    for code in codes:
        x0, y0, x1, y1 = footprint(code)
        assert 5_000 <= x1 - x0 <= 250_000 and 5_000 <= y1 - y0 <= 250_000, code
        lon, lat = to_ll.transform((x0 + x1) / 2, (y0 + y1) / 2)
        assert -5.2 < lon < 9.6 and 41.3 < lat < 51.1, code
    # Paris inside Île-de-France's départements, Brest in Finistère, Ajaccio in Corse-du-Sud
    to_l93 = Transformer.from_crs(4326, 2154, always_xy=True)
    for code, (lon, lat) in {"75": (2.35, 48.86), "29": (-4.49, 48.39), "2A": (8.74, 41.93)}.items():
        x, y = to_l93.transform(lon, lat)
        x0, y0, x1, y1 = footprint(code)
        assert x0 <= x <= x1 and y0 <= y <= y1, code
    assert footprint("D077") == footprint("77")
    with pytest.raises(OcsgeError, match="metropolitan"):
        footprint("971")


def test_a_pair_fills_the_box_it_is_laid_on() -> None:
    box = footprint("77")
    pair = build_vector_pair(1_000, seed=5, departement="S07", bounds=box)
    for frame in pair["truth"].values():
        assert tuple(round(v) for v in frame.total_bounds) == tuple(round(v) for v in box)
        union = shapely.union_all(frame.geometry.to_numpy())
        assert abs(union.area - (box[2] - box[0]) * (box[3] - box[1])) < 1e-6 * union.area  # a partition
    assert len(pair["truth"][2021]) == 1_000
    with pytest.raises(OcsgeError, match="bounds"):
        build_vector_pair(1_000, bounds=(10.0, 10.0, 5.0, 20.0), departement="S07")


def test_synth_cli_places_the_pair(tmp_path) -> None:
    import geopandas as gpd

    from inference_batch.synth.cli import synth

    root = tmp_path / "root"
    result = CliRunner().invoke(
        synth,
        [
            "--root",
            str(root),
            "--vector-only",
            "--departement",
            "S09",
            "--footprint",
            "2B",
            "--polygons",
            "1000",
        ],
    )
    assert result.exit_code == 0, result.output
    truth = gpd.read_parquet(root / "truth/DS09/2021/truth_DS09_2021.parquet")
    assert tuple(round(v) for v in truth.total_bounds) == tuple(round(v) for v in footprint("2B"))
    both = CliRunner().invoke(
        synth,
        [
            "--root",
            str(root),
            "--vector-only",
            "--departement",
            "S09",
            "--footprint",
            "2B",
            "--bounds",
            "0,0,1,1",
        ],
    )
    assert both.exit_code != 0 and "one of them" in str(both.exception)
