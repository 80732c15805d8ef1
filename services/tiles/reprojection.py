"""Reprojection figures a tile read needs, computed once per dataset instead of once per tile.

A dynamic tile from a Lambert-93 COG (zooms 13–18, the per-département path) spent about a third of its CPU
time building PROJ transformations that give the same answer at every tile (profiled on the national
rehearsal, 2026-12-04; ``benchmarks/RESULTS_national.md``):

- rio-tiler's ``get_vrt_transform`` calls ``rasterio.warp.calculate_default_transform`` on the *whole
  dataset* for every read, to learn the dataset's resolution in the output CRS (≈ 4 ms a tile). It depends
  only on the dataset's CRS, size and bounds and on the output CRS: :func:`cached_default_transform`
  remembers it, and :func:`install` puts it in ``rio_tiler.utils`` (the one name rio-tiler calls; every
  other caller of rasterio's function is untouched). Same arguments, same answer: pixels do not change.
- rio-tiler's ``tile_exists`` projects the tile's bounds with ``rasterio.warp.transform_bounds`` (a new PROJ
  transformation each call, ≈ 3 ms). :func:`tile_surely_inside` answers the common case — the tile's centre
  lies inside the dataset — with a cached ``pyproj`` transformer; when it cannot say, the reader asks
  rio-tiler as before, so the answer is rio-tiler's own.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

import rio_tiler.utils
from affine import Affine
from pyproj import Transformer
from pyproj.exceptions import ProjError
from rasterio.warp import calculate_default_transform

BBox = tuple[float, float, float, float]

_lock = threading.Lock()
_default_transforms: dict[tuple[Any, ...], tuple[Affine, int, int]] = {}
MAX_DEFAULT_TRANSFORMS = 4096  # datasets × output CRSs; cleared when full (a few hundred bytes each)


_texts: dict[tuple[int, bool], tuple[Any, str]] = {}  # (id(crs), wkt?) → (the CRS, its text)


def crs_text(crs: Any, wkt: bool = True) -> str:
    """A CRS's WKT (or with ``wkt=False`` its ``to_string()``), remembered per CRS object: producing it costs
    ≈ 20 µs under the GIL, several times a tile, and the objects asked about are few and long-lived (the tile
    matrix sets' CRSs, the CRS an open dataset hands out every time). CRS objects are immutable; the entry
    keeps its object alive, so that its id is not reused."""
    if isinstance(crs, str):
        return crs
    key = (id(crs), wkt)
    hit = _texts.get(key)
    if hit is not None and hit[0] is crs:
        return hit[1]
    text = crs.to_wkt() if wkt else crs.to_string() if hasattr(crs, "to_string") else str(crs)
    with _lock:
        if len(_texts) >= 1024:
            _texts.clear()
        _texts[key] = (crs, text)
    return text


def _crs_key(crs: Any) -> str:
    return crs_text(crs) if hasattr(crs, "to_wkt") else str(crs)


def cached_default_transform(src_crs: Any, dst_crs: Any, width: int, height: int, left: float | None = None,
                             bottom: float | None = None, right: float | None = None, top: float | None = None,
                             **kwargs: Any) -> tuple[Affine, int, int]:
    """``rasterio.warp.calculate_default_transform``, remembered for the plain call rio-tiler makes (CRSs,
    size and bounds); any other call (GCPs, RPCs, a resolution, …) is passed through uncached."""
    if kwargs or None in (left, bottom, right, top):
        return calculate_default_transform(src_crs, dst_crs, width, height, left, bottom, right, top, **kwargs)
    key = (_crs_key(src_crs), _crs_key(dst_crs), int(width), int(height), float(left), float(bottom),  # type: ignore[arg-type]
           float(right), float(top))  # type: ignore[arg-type]
    with _lock:
        hit = _default_transforms.get(key)
    if hit is not None:
        return hit
    result = calculate_default_transform(src_crs, dst_crs, width, height, left, bottom, right, top)
    with _lock:
        if len(_default_transforms) >= MAX_DEFAULT_TRANSFORMS:
            _default_transforms.clear()
        _default_transforms[key] = result
    return result


def install() -> None:
    """Make rio-tiler's ``get_vrt_transform`` use :func:`cached_default_transform` (idempotent)."""
    rio_tiler.utils.calculate_default_transform = cached_default_transform


@lru_cache(maxsize=64)
def _transformer(src: str, dst: str) -> Transformer:
    # pyproj transformers are safe to share between threads (pyproj ≥ 3.1)
    return Transformer.from_crs(src, dst, always_xy=True)


def tile_surely_inside(tile_bounds: BBox, tile_crs: Any, dataset_bounds: BBox, dataset_crs: Any) -> bool:
    """True when the centre of ``tile_bounds`` (in ``tile_crs``) falls inside ``dataset_bounds`` (in
    ``dataset_crs``): the tile then certainly intersects the dataset, whatever the reprojection does to its
    edges. False means "cannot say cheaply" (ask rio-tiler's exact ``tile_exists``), not "outside"."""
    cx, cy = (tile_bounds[0] + tile_bounds[2]) / 2, (tile_bounds[1] + tile_bounds[3]) / 2
    src, dst = _crs_key(tile_crs), _crs_key(dataset_crs)
    if src != dst:
        try:
            cx, cy = _transformer(src, dst).transform(cx, cy, errcheck=True)
        except ProjError:  # outside the projection's domain: the exact check decides
            return False
    left, bottom, right, top = dataset_bounds
    return left < cx < right and bottom < cy < top
