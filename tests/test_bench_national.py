"""The national rehearsal times the national path step by step: the slabs' step must not be swallowed by
``ocsge publish`` (which brings the slabs up to date by default), or the republication figure times a no-op."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks import bench_national


def _names(steps: list[tuple[str, list[str]]]) -> list[str]:
    return [name for name, _ in steps]


@pytest.mark.parametrize("vector", [False, True])
def test_steps_time_the_catalogue_and_the_slabs_apart(tmp_path: Path, vector: bool) -> None:
    steps = bench_national.national_path_steps("ocsge", tmp_path, vector)
    commands = dict(steps)
    assert "--no-overviews" in commands["publish"]  # else publish redraws the slabs and `overviews` finds none
    assert commands["overviews"][1] == "overviews" and "-d" not in commands["overviews"]  # what publish runs
    assert _names(steps).index("publish") < _names(steps).index("overviews")  # slabs follow the catalogue
    assert all(str(tmp_path) in args for _, args in steps)
    if vector:  # the national files exist before the catalogue that lists them
        assert _names(steps).index("national_tiles") < _names(steps).index("publish")
        assert commands["national_tiles"][1] == "national-tiles"
    else:
        assert "national_tiles" not in commands


def test_national_path_reports_each_step_and_the_slabs_written(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ran: list[list[str]] = []
    seconds = {"national-tiles": 3.0, "publish": 2.0, "overviews": 5.0}
    slabs = tmp_path / "overviews" / "couverture_cog" / "2021-2023" / "slabs"
    slabs.mkdir(parents=True)
    (slabs / "6_32_22_old.tif").write_bytes(b"kept")
    os.utime(slabs / "6_32_22_old.tif", (1_000_000, 1_000_000))  # written long before this run

    def fake_run(args: list[str], env: dict[str, str]) -> tuple[float, str]:
        ran.append(args)
        if args[1] == "overviews":  # redraws two slabs, says it looked at 87 of them
            for name in ("6_32_21_new.tif", "8_130_88_new.tif"):
                (slabs / name).write_bytes(b"slab")
            return seconds["overviews"], "couverture_cog\t2021-2023\t87 rebuilt\t87 slabs\n"
        return seconds[args[1]], ""

    monkeypatch.setattr(bench_national, "run_output", fake_run)
    timings = bench_national.national_path("ocsge", tmp_path, True, {})
    assert [a[1] for a in ran] == ["national-tiles", "publish", "overviews"]
    assert timings["national_tiles_s"] == 3.0 and timings["publish_s"] == 2.0 and timings["overviews_s"] == 5.0
    assert timings["total_s"] == 10.0
    assert timings["slabs_written"] == 2  # the files written, not the verb's count of slabs looked at


def test_storage_mb_per_top_folder(tmp_path: Path) -> None:
    (tmp_path / "cog" / "D001").mkdir(parents=True)
    (tmp_path / "cog" / "D001" / "a.tif").write_bytes(b"x" * 1_500_000)
    (tmp_path / "stac").mkdir()
    (tmp_path / "stac" / "c.json").write_bytes(b"x" * 500_000)
    assert bench_national.storage_mb(tmp_path) == {"cog": 1.5, "stac": 0.5, "total": 2.0}
