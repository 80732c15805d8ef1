"""Open raster datasets, shared by every render thread through a check-out pool.

A rasterio dataset must not be used by two threads at once, but it may be used by one thread after another.
Opening a COG per read costs a header read (a request on S3), so handles are kept open; the question is how
many. A cache per thread (what this replaced) holds ``threads × files`` handles, about 2 MB each here (the
GTiff handle, its overview datasets and tile indexes): under the soak at concurrency 16 the RSS kept rising
for ten minutes as every one of the 24 worker threads slowly opened every file. In this pool a reader checks
a handle out for the duration of one read and checks it back in, so the open handles are the ones in use
(at most one per concurrent read) plus at most :data:`MAX_IDLE` idle ones, whatever the number of threads.
16 idle handles (~32 MB) cover the files a map view touches at once; reopening a local COG costs about a
millisecond.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

import rasterio
from rasterio.io import DatasetReader

from services.assets import gdal_env

MAX_IDLE = 16  # idle handles kept open across all files (the least recently returned is closed first)


class DatasetPool:
    """Idle dataset handles by path; :meth:`checkout` takes one (or opens one), :meth:`checkin` returns it."""

    def __init__(self, max_idle: int = MAX_IDLE) -> None:
        self.max_idle = max_idle
        self._idle: OrderedDict[int, tuple[str, DatasetReader]] = OrderedDict()  # id(handle) → (path, handle)
        self._lock = threading.Lock()
        self._generation = 0  # bumped by clear(): handles checked out before it are closed on return

    def checkout(self, path: str) -> DatasetReader:
        with self._lock:
            for key, (idle_path, ds) in reversed(self._idle.items()):  # the most recently returned first
                if idle_path == path:
                    del self._idle[key]
                    if not ds.closed:
                        return ds
                    break
            generation = self._generation
        with rasterio.Env(**gdal_env(path)):
            ds = rasterio.open(path)
        ds._ocsge_pool_generation = generation  # type: ignore[attr-defined]
        return ds

    def checkin(self, path: str, ds: DatasetReader) -> None:
        if ds.closed:
            return
        evicted: list[DatasetReader] = []
        with self._lock:
            if getattr(ds, "_ocsge_pool_generation", self._generation) != self._generation:
                evicted.append(ds)  # opened before a clear(): the file may have been rewritten
            else:
                self._idle[id(ds)] = (path, ds)
                while len(self._idle) > self.max_idle:
                    evicted.append(self._idle.popitem(last=False)[1][1])
        for old in evicted:
            old.close()

    @contextmanager
    def dataset(self, path: str) -> Iterator[DatasetReader]:
        ds = self.checkout(path)
        try:
            yield ds
        finally:
            self.checkin(path, ds)

    def clear(self) -> None:
        """Close every idle handle; handles in use are closed when they come back."""
        with self._lock:
            self._generation += 1
            idle = [ds for _, ds in self._idle.values()]
            self._idle.clear()
        for ds in idle:
            ds.close()

    def idle_count(self) -> int:
        with self._lock:
            return len(self._idle)


POOL = DatasetPool()
