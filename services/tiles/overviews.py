"""The national path of the raster layers: at the zooms where one tile spans several départements, tiles
and maps are read from the layer's national overview slabs (built by ``ocsge overviews``,
:mod:`catalog.raster_overviews`) instead of every per-département COG under them.

**When.** A read whose pixel is at least the pixel of a slab level (PM zoom 10, ≈ 153 m in Web Mercator
units, for zooms 5–10; PM zoom 12, ≈ 38 m, for zooms 11–12: :data:`catalog.raster_overviews.LEVELS`) in any
tile matrix set or WMS CRS — the coarsest such level is read — and a layer whose slabs were built
from exactly the COGs the catalogue lists for it now (keys and sizes, :meth:`Overviews.slabs_for`).
Anything else — finer zooms, a ``departement`` filter, a département published after the last
``ocsge overviews``, no slabs at all — reads the per-département mosaic, as before. ``OCSGE_NATIONAL=off``
turns the national path off (benchmarks compare both).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.models import ImageData

from catalog.raster_overviews import MAX_NATIVE_ZOOM, cell_size, manifest_key, read_manifest
from ocsge.errors import StorageError
from ocsge.storage import Storage
from services.tiles.mosaic import LayerInfo, projected_bounds

__all__ = ["MAX_NATIVE_ZOOM", "Overviews", "Slab", "merge_first"]

BBox = tuple[float, float, float, float]
# a manifest is looked at again after this long (a stat; the manifest is read only when it changed)
CHECK_EVERY_S = 5.0


@dataclass(frozen=True)
class Slab:
    key: str
    bounds: BBox  # EPSG:3857
    native_zoom: int  # its pixels are PM pixels of this zoom


@dataclass
class _Entry:
    checked: float
    etag: str | None
    manifest: dict[str, Any] | None


def national_enabled() -> bool:
    return os.environ.get("OCSGE_NATIONAL", "on").strip().lower() not in ("off", "0", "false", "no")


class Overviews:
    """The national slabs of each layer, from their manifests, checked against the catalogue's assets."""

    def __init__(self, storage: Storage, enabled: bool | None = None) -> None:
        self.storage = storage
        self.enabled = national_enabled() if enabled is None else enabled
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._valid: dict[tuple[str, str | None, int], tuple[Slab, ...] | None] = {}

    def _manifest(self, key: str) -> tuple[str | None, dict[str, Any] | None]:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and now - entry.checked < CHECK_EVERY_S:
            return entry.etag, entry.manifest
        try:
            etag = self.storage.stat(key).etag if self.storage.exists(key) else None
        except StorageError:
            etag = None
        if entry is not None and etag == entry.etag:
            manifest = entry.manifest
        else:
            try:
                manifest = read_manifest(self.storage, key) if etag is not None else None
            except (StorageError, json.JSONDecodeError):
                manifest = None
        with self._lock:
            self._entries[key] = _Entry(now, etag, manifest)
        return etag, manifest

    def slabs_for(self, info: LayerInfo) -> tuple[Slab, ...] | None:
        """The layer's slabs, or None where the national path must not be used (module doc)."""
        if not self.enabled or info.departement is not None or not info.assets:
            return None
        layer = info.layer
        key = manifest_key(layer.product, layer.campaign, layer.previous)
        etag, manifest = self._manifest(key)
        if manifest is None:
            return None
        listed = {a.key: a.size for a in info.assets}
        cache_key = (key, etag, hash(frozenset(listed.items())))
        with self._lock:
            if cache_key in self._valid:
                return self._valid[cache_key]
        sources = manifest.get("sources", {})
        same = set(sources) == set(listed) and all(
            size is None or sources[k].get("size") == size for k, size in listed.items()
        )
        slabs = (
            tuple(Slab(s["key"], tuple(s["bounds"]), int(s["native_zoom"])) for s in manifest.get("slabs", {}).values())  # type: ignore[arg-type]
            if same
            else None
        )
        with self._lock:
            if len(self._valid) > 256:
                self._valid.clear()
            self._valid[cache_key] = slabs
        return slabs

    def for_read(self, info: LayerInfo, bounds: BBox, crs: str, width: int) -> tuple[Slab, ...] | None:
        """The slabs under ``bounds`` (in ``crs``) when an image ``width`` pixels wide of them is at least as
        coarse as the slabs (else None: the per-département mosaic reads it)."""
        slabs = self.slabs_for(info)
        if slabs is None:
            return None
        merc = projected_bounds(tuple(bounds), crs, "EPSG:3857")
        if merc is None or width <= 0:
            return None
        res = (merc[2] - merc[0]) / width
        # the coarsest level whose pixels are still at least as fine as the read's
        levels = [z for z in {s.native_zoom for s in slabs} if cell_size(z) <= res * (1 + 1e-6)]
        if not levels:
            return None
        level = min(levels)
        return tuple(
            s
            for s in slabs
            if s.native_zoom == level
            and s.bounds[0] < merc[2]
            and merc[0] < s.bounds[2]
            and s.bounds[1] < merc[3]
            and merc[1] < s.bounds[3]
        )


def merge_first(reads: list[Callable[[], ImageData]]) -> ImageData | None:
    """The images of ``reads`` merged, the first valid pixel winning (slabs never overlap, so this only
    joins them); reads outside their slab are skipped. None where nothing was read."""
    merged: ImageData | None = None
    data = mask = None
    for read in reads:
        try:
            img = read()
        except TileOutsideBounds:
            continue
        if merged is None:
            merged = img
            data = img.array.data.copy()
            mask = np.ma.getmaskarray(img.array).copy()
            continue
        fill = mask & ~np.ma.getmaskarray(img.array)
        data[fill] = img.array.data[fill]
        mask &= ~fill
    if merged is None:
        return None
    return ImageData(
        np.ma.MaskedArray(data, mask=mask),
        assets=merged.assets,
        bounds=merged.bounds,
        crs=merged.crs,
        metadata=merged.metadata,
        nodata=merged.nodata,
        band_names=merged.band_names,
    )
