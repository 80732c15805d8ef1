"""Rendering at scale: pixel size from the served zoom, COGs that validate, and scratch files that never
outlive their run (an exception, a SIGTERM, or a SIGKILL followed by the next run)."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import rasterio

from inference_batch.products.artifacts import write_vector
from inference_batch.products.render import DEFAULT_RESOLUTION, resolution_for_zoom, run_render
from inference_batch.scratch import scratch, sweep
from inference_batch.synth.partitions import partition
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


def test_one_pass_gives_every_layer_the_pixels_of_its_own_burn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The four class COGs come from one rasterisation of the polygons' positions per window; each must
    equal a direct burn of its own values over the whole layer (the zone construite burnt over the
    construction layer), across window seams, and the polygons are rasterised once per window, not once
    per layer."""
    import geopandas as gpd
    import numpy as np
    import shapely
    from rasterio.features import rasterize

    from inference_batch.products import render
    from inference_batch.products.inputs import with_artif
    from ocsge import rasters, schema

    store = LocalStorage(tmp_path / "root")
    bounds = (700_000, 6_600_000, 701_000, 6_600_700)
    occ = partition(300, bounds, millesime=2021, seed=9)
    write_vector(store, "occupation/D077/2021/occupation_D077_2021.parquet", occ)
    zc = gpd.GeoDataFrame(
        {schema.ID: ["zc1", "zc2"]},
        geometry=[
            shapely.box(700_100, 6_600_100, 700_420, 6_600_350),
            shapely.box(700_600, 6_600_400, 700_990, 6_600_690),
        ],
        crs=occ.crs,
    )
    write_vector(store, "zone_construite/D077/2021/zone_construite_D077_2021.parquet", zc)
    calls = []
    real = render.rasterize
    monkeypatch.setattr(render, "rasterize", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(render, "default_workers", lambda: 1)  # calls made in this process, to count them
    keys = run_render(store, "77", 2021, resolution=2.0, window=128)
    assert set(keys) == {"couverture", "usage", "artif", "construction"}
    with rasterio.open(store.url(keys["couverture"])) as src:
        transform, shape = src.transform, src.shape
    windows = -(-shape[0] // 128) * -(-shape[1] // 128)
    assert len(calls) <= 2 * windows  # one burn of the polygons + at most one of the zone construite

    framed = with_artif(occ)
    cs, us = render.code_values(Kind.COUVERTURE), render.code_values(Kind.USAGE)
    expected = {
        "couverture": [(g, cs(c)) for g, c in zip(framed.geometry, framed[schema.CODE_CS], strict=True)],
        "usage": [(g, us(c)) for g, c in zip(framed.geometry, framed[schema.CODE_US], strict=True)],
        "artif": [
            (g, rasters.value_of("artif", a)) for g, a in zip(framed.geometry, framed[schema.ARTIF], strict=True)
        ],
        "construction": [(g, render.OUTSIDE_ZC) for g in framed.geometry]
        + [(g, render.INSIDE_ZC) for g in zc.geometry],
    }
    for layer, shapes in expected.items():
        want = rasterize(shapes, out_shape=shape, transform=transform, dtype=np.uint8)
        with rasterio.open(store.url(keys[layer])) as src:
            got = src.read(1)
        assert np.unique(want).size > 1
        assert np.array_equal(got, want), f"{layer}: {int((got != want).sum())} pixels differ"


def test_pixel_size_comes_from_the_served_zooms() -> None:
    """The class COGs' pixel is the finest zoom the Géoplateforme publishes OCS GE at (PM 6–16), a zoom our
    tile layers serve, rounded down to a clean half-metre: no coarser than that zoom's ground pixel (so
    its tiles are never upsampled), and not as fine as the next zoom's (which would cost 4× the pixels)."""
    from inference_batch.products.render import NATIVE_ZOOM
    from services.tiles.layers import DEFAULT_MAXZOOM, DEFAULT_MINZOOM

    assert DEFAULT_MINZOOM <= NATIVE_ZOOM <= DEFAULT_MAXZOOM
    assert resolution_for_zoom(NATIVE_ZOOM + 1) < DEFAULT_RESOLUTION <= resolution_for_zoom(NATIVE_ZOOM)
    assert (DEFAULT_RESOLUTION * 2) == int(DEFAULT_RESOLUTION * 2)


@pytest.mark.parametrize(("width", "height"), [(5000, 300), (513, 513), (512, 100), (80_000, 60_000)])
def test_overview_factors_are_those_gdal_would_make(width: int, height: int) -> None:
    from inference_batch.products.render import overview_factors

    factors = overview_factors(width, height)
    assert factors == [2**k for k in range(1, len(factors) + 1)]
    last = factors[-1] if factors else 1
    assert max(-(-width // last), -(-height // last)) <= 512  # the smallest level fits one block
    if factors:
        assert max(-(-width // (last // 2)), -(-height // (last // 2))) > 512  # and no level more


def _render_small(
    tmp_path: Path, bounds: tuple[float, float, float, float], resolution: float, window: int, workers: int = 2
) -> Path:
    from inference_batch.products.render import Raster, code_values, rasterise
    from inference_batch.products.spatial import SpatialSource
    from ocsge import schema

    store = LocalStorage(tmp_path / "root")
    occ = partition(400, bounds, millesime=2021, seed=5)
    write_vector(store, "occupation/D077/2021/occupation_D077_2021.parquet", occ)
    cs = code_values(Kind.COUVERTURE)
    out = tmp_path / f"couverture-{workers}.tif"
    with store.local_copy("occupation/D077/2021/occupation_D077_2021.parquet") as path:
        source = SpatialSource(path=path, columns=[schema.CODE_CS])
        rasterise(
            source,
            [Raster(out, palette(Kind.COUVERTURE), lambda f: np.array([cs(c) for c in f[schema.CODE_CS]], np.uint8))],
            resolution=resolution,
            bounds=bounds,
            window=window,
            quiet=True,
            workers=workers,
        )
    return out


def test_overviews_from_the_stream_equal_gdals_nearest_and_the_cog_validates(tmp_path: Path) -> None:
    """Overview levels decimated from each window while it is in memory (window seams included) are, on a
    grid whose size is a multiple of the factors, exactly GDAL's NEAREST overviews of the full-resolution
    raster; the COG driver copies them as given, and the COG validates."""
    from rio_cogeo.cogeo import cog_validate

    out = _render_small(tmp_path, (700_000, 6_600_000, 702_048, 6_601_024), 1.0, window=256)
    assert cog_validate(str(out), quiet=True)[0]
    with rasterio.open(out) as src:
        assert src.shape == (1024, 2048) and src.overviews(1) == [2, 4]
        full = src.read(1)
        ours = [
            src.read(1, out_shape=(1024 // f, 2048 // f), resampling=rasterio.enums.Resampling.nearest) for f in (2, 4)
        ]
    reference = tmp_path / "reference.tif"
    with rasterio.open(reference, "w", driver="GTiff", width=2048, height=1024, count=1, dtype="uint8") as dst:
        dst.write(full, 1)
    with rasterio.open(reference, "r+") as dst:
        dst.build_overviews([2, 4], rasterio.enums.Resampling.nearest)
    for level, (f, got) in enumerate(zip((2, 4), ours, strict=True)):
        with rasterio.open(reference, overview_level=level) as ref:
            want = ref.read(1)
        assert np.unique(want).size > 3
        assert np.array_equal(got, want), f"level {f}: {int((got != want).sum())} pixels differ"


def test_class_cogs_are_deflate_tiles_every_desktop_gis_reads(tmp_path: Path) -> None:
    """The class COGs are downloads: DEFLATE (not ZSTD, which ArcGIS and GDAL < 2.3 do not read), overviews
    included, whatever level ``COG_DEFLATE_LEVEL`` chooses."""
    out = _render_small(tmp_path, (700_000, 6_600_000, 701_024, 6_600_512), 1.0, window=256)
    with rasterio.open(out) as src:
        assert src.compression == rasterio.enums.Compression.deflate and src.overviews(1)
    with rasterio.open(out, overview_level=0) as level:
        assert level.compression == rasterio.enums.Compression.deflate


def test_a_window_of_more_polygons_than_uint16_holds_keeps_every_polygon_apart(tmp_path: Path) -> None:
    """Positions are burnt in uint16 where a window's polygons fit (the common case, 2.5× cheaper than int32),
    in int32 beyond: a window of 72 000 one-pixel polygons gives each pixel its own polygon's value."""
    import geopandas as gpd
    import shapely

    from inference_batch.products.render import Raster, position_dtype, rasterise
    from inference_batch.products.spatial import SpatialSource

    assert position_dtype(3_000) == np.uint16 and position_dtype(70_000) == np.int32
    rows, cols = 240, 300
    values = (np.arange(rows * cols) * 7919 % 251 + 1).astype(np.uint8)  # wrapped positions would misplace them
    x0, y0 = 700_000.0, 6_600_000.0
    cells = [shapely.box(x0 + c, y0 + rows - r - 1, x0 + c + 1, y0 + rows - r)
             for r in range(rows) for c in range(cols)]
    frame = gpd.GeoDataFrame({"v": values}, geometry=cells, crs=2154)
    out = tmp_path / "cells.tif"
    rasterise(SpatialSource(frame, columns=["v"]), [Raster(out, {}, lambda f: f["v"].to_numpy(np.uint8))],
              resolution=1.0, bounds=(x0, y0, x0 + cols, y0 + rows), window=512, quiet=True, workers=1)
    with rasterio.open(out) as src:
        assert np.array_equal(src.read(1), values.reshape(rows, cols))


def test_overviews_of_a_ragged_grid_pick_a_pixel_of_their_own_footprint(tmp_path: Path) -> None:
    """Where the size is not a multiple of a factor, each overview pixel is still one pixel of the full
    raster inside its footprint (a class the map has there, never an invented one), the last partial
    row and column included."""
    out = _render_small(tmp_path, (700_000, 6_600_000, 701_037, 6_600_611), 1.0, window=256)
    with rasterio.open(out) as src:
        full = src.read(1)
        assert src.overviews(1) == [2, 4]
        levels = {f: src.read(1, out_shape=(-(-611 // f), -(-1037 // f))) for f in (2, 4)}
    for f, got in levels.items():
        assert np.array_equal(got, full[::f, ::f])


def test_strips_rendered_by_parallel_workers_equal_a_single_pass(tmp_path: Path) -> None:
    """Rows cut into strips, each rasterised by its own process and stacked back by a VRT, give the same
    pixels and the same overview levels as one process over all rows, whatever the number of strips."""
    bounds = (700_000, 6_600_000, 701_037, 6_601_411)
    single = _render_small(tmp_path, bounds, 1.0, window=256, workers=1)
    for workers in (2, 3):
        many = _render_small(tmp_path, bounds, 1.0, window=256, workers=workers)
        with rasterio.open(single) as a, rasterio.open(many) as b:
            assert b.overviews(1) == a.overviews(1) == [2, 4]
            assert b.transform == a.transform and b.colormap(1) == a.colormap(1) and b.tags() == a.tags()
            for level in (None, 0, 1):
                shape = (
                    a.shape if level is None else (-(-a.height // 2 ** (level + 1)), -(-a.width // 2 ** (level + 1)))
                )
                assert np.array_equal(a.read(1, out_shape=shape), b.read(1, out_shape=shape)), (workers, level)


def test_strips_cover_every_row_once_on_window_boundaries() -> None:
    from inference_batch.products.render import _Grid, _split_rows

    buckets = {(0, r): np.arange(n) for r, n in enumerate([500, 10, 10, 10, 10, 10, 480, 5])}
    grid = _Grid({"width": 1000, "height": 7 * 256 + 100}, [2, 4], 256, buckets, {})
    for workers in (1, 2, 3, 20):
        strips = _split_rows(grid, workers)
        assert strips[0][0] == 0 and strips[-1][1] == grid.height and len(strips) <= min(workers, 8)
        assert all(a[1] == b[0] for a, b in itertools.pairwise(strips))
        assert all(y0 % 256 == 0 and y1 > y0 for y0, y1 in strips)
    two = _split_rows(grid, 2)
    counts = [sum(len(buckets[(0, r)]) for r in range(y0 // 256, -(-y1 // 256))) for y0, y1 in two]
    assert len(two) == 2 and min(counts) > sum(counts) / 3  # balanced by polygons, not by rows


def test_a_failing_worker_fails_the_step_and_leaves_no_scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from inference_batch.products import render
    from inference_batch.products.artifacts import StepError

    scratch_base = tmp_path / "tmp"
    scratch_base.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch_base))
    real = render._render_strip

    def fail_second(*args: object, **kwargs: object) -> None:
        if args[3] == 1:
            raise RuntimeError("disk full")
        real(*args, **kwargs)

    monkeypatch.setattr(render, "_render_strip", fail_second)
    with pytest.raises(StepError, match=r"strips \[1\]"):
        _render_small(tmp_path, (700_000, 6_600_000, 701_000, 6_601_000), 1.0, window=256, workers=2)
    assert not list(scratch_base.iterdir())


_STRIPS_CHILD = """
import sys, time
import numpy as np
from inference_batch.products import render
from inference_batch.products.spatial import SpatialSource
from inference_batch.synth.partitions import partition

real = render.rasterize
render.rasterize = lambda *a, **k: (time.sleep(0.5), real(*a, **k))[1]  # slow burns: time to kill midway
occ = partition(200, (700_000, 6_600_000, 701_000, 6_602_000), millesime=2021, seed=3)
out = sys.argv[1] + "/never.tif"
print("start", flush=True)
render.rasterise(SpatialSource(occ, columns=[]), [render.Raster(out, {}, lambda f: np.ones(len(f), np.uint8))],
                 resolution=1.0, window=128, quiet=True, workers=2)
"""


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_workers_of_a_killed_run_stop_and_the_next_run_sweeps_their_folder(tmp_path: Path) -> None:
    """SIGKILL on the run (no handler runs): its strip workers notice their parent is gone and stop instead
    of rasterising for nobody, and the next run sweeps the scratch folder they wrote in."""
    import time

    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-c", _STRIPS_CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "start"
    children: list[int] = []
    deadline = time.monotonic() + 60
    while not (children and list(tmp_path.glob("ocsge-render-*/raw0-1.tif"))) and time.monotonic() < deadline:
        time.sleep(0.2)
        children = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
    assert len(children) == 2, children
    proc.kill()
    proc.wait(timeout=30)
    # a strip is 64 burns of 0.5 s; a worker checks its parent at each row of 8 windows
    deadline = time.monotonic() + 12
    while any(map(_running, children)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(map(_running, children)), "orphaned workers still rasterising"
    assert list(tmp_path.glob("ocsge-render-*"))
    with scratch("render", tmp_path):
        pass
    assert not list(tmp_path.glob("ocsge-render-*"))


def test_no_fork_where_other_threads_run() -> None:
    import threading

    from inference_batch.products.render import default_workers

    assert 1 <= default_workers() <= 2
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert default_workers() == 1
    finally:
        stop.set()
        thread.join()
