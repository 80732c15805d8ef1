"""The dataset pool: one handle per concurrent read, idle handles bounded, whatever the number of threads."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from services.tiles.datasets import DatasetPool


def _cogs(tmp_path: Path, n: int) -> list[str]:
    paths = []
    for i in range(n):
        path = tmp_path / f"r{i}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8", crs="EPSG:2154",
                           transform=from_origin(700000, 6600000, 1, 1)) as ds:
            ds.write(np.full((1, 8, 8), i, dtype="uint8"))
        paths.append(str(path))
    return paths


def test_a_returned_handle_is_reused_and_never_lent_twice(tmp_path: Path) -> None:
    pool = DatasetPool(max_idle=4)
    (path,) = _cogs(tmp_path, 1)
    first = pool.checkout(path)
    second = pool.checkout(path)  # the first is in use: a second handle
    assert first is not second
    pool.checkin(path, first)
    assert pool.checkout(path) is first
    pool.checkin(path, first)
    pool.checkin(path, second)
    assert pool.idle_count() == 2


def test_idle_handles_are_bounded_and_the_oldest_closed(tmp_path: Path) -> None:
    pool = DatasetPool(max_idle=3)
    paths = _cogs(tmp_path, 5)
    handles = [pool.checkout(p) for p in paths]
    for p, ds in zip(paths, handles, strict=True):
        pool.checkin(p, ds)
    assert pool.idle_count() == 3
    assert [ds.closed for ds in handles] == [True, True, False, False, False]


def test_many_threads_open_no_more_handles_than_concurrent_reads(tmp_path: Path) -> None:
    """24 threads reading 6 files one after another: a per-thread cache would open 24 × 6 handles."""
    pool = DatasetPool(max_idle=64)
    paths = _cogs(tmp_path, 6)
    opened: list[int] = []
    real_checkout = pool.checkout
    lock = threading.Lock()
    now = dict.fromkeys(paths, 0)
    peak = dict.fromkeys(paths, 0)  # most simultaneous readers of each file

    def counting_checkout(path: str) -> rasterio.io.DatasetReader:
        with lock:  # checkout and count together: the count is exact
            ds = real_checkout(path)
            opened.append(id(ds))
            now[path] += 1
            peak[path] = max(peak[path], now[path])
        return ds

    gate = threading.Barrier(24)

    def reader(k: int) -> None:
        gate.wait()
        for round_ in range(20):
            path = paths[(k + round_) % len(paths)]
            ds = counting_checkout(path)
            assert ds.read(1)[0, 0] == paths.index(path)
            with lock:
                pool.checkin(path, ds)
                now[path] -= 1

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    distinct = len({h for h in opened})
    assert distinct <= sum(peak.values()), (distinct, peak)  # a handle per simultaneous reader, no more
    assert distinct < 24 * len(paths)


def test_clear_closes_idle_handles_and_those_in_use_when_they_come_back(tmp_path: Path) -> None:
    pool = DatasetPool()
    a, b = _cogs(tmp_path, 2)
    idle, busy = pool.checkout(a), pool.checkout(b)
    pool.checkin(a, idle)
    pool.clear()
    assert idle.closed and not busy.closed
    pool.checkin(b, busy)  # checked out before the clear: the file may have been rewritten
    assert busy.closed and pool.idle_count() == 0
    with pool.dataset(b) as fresh:
        assert fresh is not busy and not fresh.closed


@pytest.mark.parametrize("bad", ["/nonexistent/x.tif"])
def test_a_missing_file_raises_and_leaves_the_pool_unchanged(bad: str) -> None:
    pool = DatasetPool()
    with pytest.raises(rasterio.RasterioIOError):
        pool.checkout(bad)
    assert pool.idle_count() == 0
