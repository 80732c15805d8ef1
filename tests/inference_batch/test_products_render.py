"""Rendering at scale: pixel size from the served zoom, COGs that validate, and scratch files that never
outlive their run (an exception, a SIGTERM, or a SIGKILL followed by the next run)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import rasterio

from inference_batch.products.artifacts import write_vector
from inference_batch.products.render import DEFAULT_RESOLUTION, resolution_for_zoom, run_render
from inference_batch.products.samples import partition
from inference_batch.scratch import scratch, sweep
from ocsge.nomenclature import Kind, palette
from ocsge.storage import LocalStorage


def test_default_pixel_size_is_that_of_the_native_zoom() -> None:
    assert resolution_for_zoom(16) == pytest.approx(1.644, abs=1e-3)
    assert resolution_for_zoom(17) == pytest.approx(resolution_for_zoom(16) / 2)
    assert DEFAULT_RESOLUTION == 1.5


def test_cog_validates_keeps_palette_and_leaves_no_scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rio_cogeo.cogeo import cog_validate

    scratch_base = tmp_path / "tmp"
    scratch_base.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch_base))
    store = LocalStorage(tmp_path / "root")
    occ = partition(200, (700_000, 6_600_000, 701_200, 6_600_900), millesime=2021, seed=4)
    write_vector(store, "occupation/D077/2021/occupation_D077_2021.parquet", occ)
    keys = run_render(store, "77", 2021, resolution=1.0, layers=("couverture", "artif"), window=512)
    for k in keys.values():
        valid, errors, _ = cog_validate(store.url(k), quiet=True)
        assert valid, errors
    with rasterio.open(store.url(keys["couverture"])) as src:
        assert src.nodata == 0 and src.overviews(1)
        assert all(src.colormap(1)[v] == rgba for v, rgba in palette(Kind.COUVERTURE).items())
    assert not list(scratch_base.iterdir())  # scratch folders removed
    stray = [p for p in (tmp_path / "root").rglob("*") if p.is_file() and (p.name.startswith(".") or ".tmp" in p.name)]
    assert not stray


_CHILD = """
import sys, time
from inference_batch.scratch import scratch
with scratch("render", sys.argv[1]) as folder:
    (folder / "raw.tif").write_bytes(b"x" * 1000)
    print(folder, flush=True)
    time.sleep(60)
"""


def _child(base: Path) -> tuple[subprocess.Popen[str], Path]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(base)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    folder = Path(proc.stdout.readline().strip())
    assert folder.is_dir()
    return proc, folder


def test_sigterm_removes_the_scratch_folder(tmp_path: Path) -> None:
    proc, folder = _child(tmp_path)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert not folder.exists()


def test_a_killed_runs_folder_is_swept_by_the_next_run(tmp_path: Path) -> None:
    proc, folder = _child(tmp_path)
    proc.kill()  # SIGKILL: no cleanup possible
    proc.wait(timeout=30)
    assert folder.exists()
    with scratch("render", tmp_path) as mine:
        assert not folder.exists() and mine.exists()
        assert sweep("render", tmp_path) == []  # a live run's folder is never swept
        assert mine.exists()
    assert not list(tmp_path.iterdir())
