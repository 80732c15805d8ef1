"""Input adapters: the 5-channel stack (R, G, B, NIR, elevation) from the files IGN distributes.

IGN ships BD ORTHO as separate RGB and IRC ortho-images (IRC = NIR, R, G: NIR is IRC's first band),
elevation as DSM/DTM rasters (other resolutions than the imagery) or as classified LiDAR HD tiles (LAZ).
:class:`ImagerySources` names those files; :meth:`ImagerySources.check` validates them against each
other once, up front, and returns the imagery :class:`Grid` every output is written on;
:class:`StackReader` reads windows of that grid as uint8 ``(C, h, w)`` arrays, opening its own raster
handles in each process (DataLoader workers call :meth:`StackReader.open` in ``worker_init_fn``;
handles are never shared across a fork).

Rules (each violation is an :class:`~ocsge.errors.OcsgeError` naming the file):
- RGB and IRC: uint8, same CRS, resolution and extent. No resampling of imagery: a mismatch is an error.
- DSM/DTM or a height raster: any resolution (resampled bilinearly onto the imagery grid — the documented
  fallback, as FLAIR-HUB does), same CRS, must cover the imagery; NaN or nodata under the imagery is an
  error (a void would silently read as "flat ground").
- LAZ: rasterised by :func:`rasterise_laz` to height above ground at the imagery resolution.
- A model that needs elevation with no elevation source: error, unless ``zero_elevation=True`` (the
  documented fallback: the channel is 0 everywhere, which degrades buildings vs. roads).
- Imagery pixels equal to the nodata value in all of R, G, B are "no data": the class there is 0.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window, from_bounds

from inference_batch.production.normalisation import DEFAULT_ELEVATION_SCALE, encode_elevation
from ocsge.errors import OcsgeError

RES_TOLERANCE = 1e-6  # relative; IGN files carry resolutions like 0.19999999999963042


class InputError(OcsgeError):
    """Imagery or elevation that cannot be used as given."""


def normalise_crs(crs: CRS | None, path: str = "") -> CRS:
    """The CRS of a file, recovering ``EPSG:nnnn`` from WKTs whose datum GDAL could not resolve.

    Some IGN GeoTIFFs declare ``PROJCS["EPSG:2154", GEOGCS["unknown", …"unretrievable - using WGS84"…]]``:
    the name says Lambert-93, the datum does not. Comparing such a CRS with a clean EPSG:2154 fails,
    so the EPSG code in the name wins when the projection parameters agree.
    """
    if crs is None:
        raise InputError(f"{path}: no CRS")
    epsg = crs.to_epsg()
    if epsg is not None:
        return CRS.from_epsg(epsg)
    match = re.search(r'PROJCS\["EPSG:(\d+)"', crs.to_wkt())
    if match:
        candidate = CRS.from_epsg(int(match.group(1)))
        ours, theirs = crs.to_dict(), candidate.to_dict()
        keys = ("proj", "lat_0", "lon_0", "lat_1", "lat_2", "x_0", "y_0", "k_0", "zone")
        if all(ours.get(k) == theirs.get(k) for k in keys):
            return candidate
    return crs


@dataclass(frozen=True)
class Grid:
    """A raster grid: where outputs are written (the imagery's)."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    @property
    def res(self) -> float:
        return abs(self.transform.a)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        left, top = self.transform.c, self.transform.f
        return left, top - self.height * self.res, left + self.width * self.res, top

    def window_transform(self, window: Window) -> Affine:
        return rasterio.windows.transform(window, self.transform)

    def km2(self, n_pixels: float) -> float:
        return n_pixels * self.res * self.res / 1e6

    def same_as(self, other: Grid) -> bool:
        return (self.width, self.height) == (other.width, other.height) and self.crs == other.crs and all(
            abs(a - b) <= RES_TOLERANCE * max(1.0, abs(a)) for a, b in zip(self.transform, other.transform, strict=True)
        )


def grid_of(path: str) -> Grid:
    try:
        with rasterio.open(path) as src:
            return _grid(src, path)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"cannot open raster {path}: {exc}") from None


def _grid(src: rasterio.DatasetReader, path: str) -> Grid:
    t = src.transform
    if t.b != 0 or t.d != 0:
        raise InputError(f"{path}: rotated rasters are not supported")
    if abs(abs(t.a) - abs(t.e)) > RES_TOLERANCE * abs(t.a):
        raise InputError(f"{path}: non-square pixels ({abs(t.a)} × {abs(t.e)})")
    return Grid(normalise_crs(src.crs, path), t, src.width, src.height)


@dataclass(frozen=True)
class ImagerySources:
    """The files of one area (a département, a tile). Paths are anything GDAL opens (files, /vsis3/, VRT)."""

    rgb: str | None = None
    irc: str | None = None  # NIR = band 1
    dsm: str | None = None
    dtm: str | None = None
    height: str | None = None  # height above ground in metres (DSM − DTM already computed)
    laz: tuple[str, ...] = ()
    stack: str | None = None  # one uint8 raster with bands R, G, B, NIR[, E] (FLAIR IMG_*.tif layout)
    zero_elevation: bool = False
    elevation_scale: float = DEFAULT_ELEVATION_SCALE

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in self.__dict__.items() if v and k not in ("elevation_scale",)]
        return ", ".join(parts)

    @property
    def imagery_path(self) -> str:
        path = self.stack or self.rgb
        if path is None:
            raise InputError("no imagery given: an RGB ortho-image (with IRC) or a stacked raster is required")
        return path

    def available_channels(self) -> tuple[str, ...]:
        if self.stack:
            with rasterio.open(self.stack) as src:
                return ("R", "G", "B", "NIR", "E")[: min(src.count, 5)]
        chans = ["R", "G", "B"]
        if self.irc:
            chans.append("NIR")
        if self.dsm or self.height or self.laz or self.zero_elevation:
            chans.append("E")
        return tuple(chans)

    def check(self, channels: Sequence[str]) -> Grid:
        """Validate the files for a model taking ``channels``; returns the imagery grid."""
        if self.rgb and self.stack:
            raise InputError("give either an RGB ortho-image or a stacked raster, not both")
        if self.laz and (self.dsm or self.height):
            raise InputError("give elevation once: LAZ tiles, DSM + DTM, or a height raster")
        if bool(self.dsm) != bool(self.dtm):
            missing = "DTM" if self.dsm else "DSM"
            raise InputError(f"elevation needs both DSM and DTM: no {missing} given ({self.describe()})")
        path = self.imagery_path
        grid = self._check_imagery(path, min_bands=3)
        if self.stack:
            with rasterio.open(self.stack) as src:
                count = src.count
            need = max(("R", "G", "B", "NIR", "E").index(c) for c in channels) + 1
            if count < need and not (need == 5 and count == 4 and self._has_elevation_files()):
                raise InputError(
                    f"{self.stack} has {count} bands; the model needs {', '.join(channels)} "
                    f"(bands R, G, B, NIR, E in this order)"
                )
        if "NIR" in channels and not self.stack:
            if not self.irc:
                raise InputError(f"the model needs the NIR channel: give the IRC ortho-image next to {path}")
            irc = self._check_imagery(self.irc, min_bands=1)
            if not irc.same_as(grid):
                raise InputError(_mismatch(self.irc, irc, path, grid))
        if "E" in channels and not (self.stack and self._stack_count() >= 5):
            if not self._has_elevation_files() and not self.zero_elevation:
                raise InputError(
                    f"the model needs elevation (DSM − DTM) and none was given for {path}: give DSM + DTM, "
                    "a height raster or LiDAR HD LAZ tiles (or zero_elevation=True to feed 0, which degrades "
                    "built vs. sealed surfaces)"
                )
            for elev in (self.dsm, self.dtm, self.height):
                if elev:
                    self._check_elevation(elev, grid)
        return grid

    def _stack_count(self) -> int:
        with rasterio.open(self.stack) as src:  # type: ignore[arg-type]
            return src.count

    def _has_elevation_files(self) -> bool:
        return bool(self.dsm or self.height or self.laz)

    @staticmethod
    def _check_imagery(path: str, min_bands: int) -> Grid:
        try:
            with rasterio.open(path) as src:
                if src.count < min_bands:
                    raise InputError(f"{path}: {src.count} band(s), at least {min_bands} expected")
                if any(dt != "uint8" for dt in src.dtypes):
                    raise InputError(f"{path}: imagery must be uint8 (0–255) like BD ORTHO, got {src.dtypes[0]}")
                return _grid(src, path)
        except rasterio.errors.RasterioIOError as exc:
            raise InputError(f"cannot open imagery {path}: {exc}") from None

    @staticmethod
    def _check_elevation(path: str, grid: Grid) -> None:
        other = grid_of(path)
        if other.crs != grid.crs:
            raise InputError(f"{path} is in {other.crs.to_string()} but the imagery is in {grid.crs.to_string()}")
        left, bottom, right, top = grid.bounds
        o_left, o_bottom, o_right, o_top = other.bounds
        tol = other.res / 2 + grid.res
        if o_left > left + tol or o_bottom > bottom + tol or o_right < right - tol or o_top < top - tol:
            raise InputError(
                f"{path} covers {other.bounds} but the imagery covers {grid.bounds}: elevation must cover the imagery"
            )


def _mismatch(path: str, grid: Grid, ref_path: str, ref: Grid) -> str:
    what = []
    if grid.crs != ref.crs:
        what.append(f"CRS {grid.crs.to_string()} vs {ref.crs.to_string()}")
    if abs(grid.res - ref.res) > RES_TOLERANCE * ref.res:
        what.append(f"resolution {grid.res:g} m vs {ref.res:g} m")
    if (grid.width, grid.height) != (ref.width, ref.height):
        what.append(f"size {grid.width}×{grid.height} vs {ref.width}×{ref.height}")
    if not what:
        what.append(f"origin {grid.transform.c, grid.transform.f} vs {ref.transform.c, ref.transform.f}")
    return f"{path} does not match {ref_path}: " + "; ".join(what)


@dataclass
class StackReader:
    """Reads windows of the imagery grid as uint8 ``(C, h, w)`` plus a validity mask; one per process."""

    sources: ImagerySources
    channels: tuple[str, ...]
    grid: Grid
    _handles: dict[str, object] = field(default_factory=dict, repr=False)
    _pid: int = field(default=0, repr=False)

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["_handles"] = {}  # handles never cross a process boundary
        return state

    def open(self) -> StackReader:
        """Open this process's handles. Handles inherited through ``fork`` (a DataLoader worker started after
        the parent read something) share file offsets with the parent and are dropped, never used: that
        sharing is what corrupts reads in FLAIR-1's zone_detect with more than one worker."""
        if self._handles and self._pid == os.getpid():
            return self
        self._handles = {}
        self._pid = os.getpid()
        s = self.sources
        h: dict[str, object] = {"imagery": rasterio.open(s.imagery_path)}
        if s.irc and "NIR" in self.channels and not s.stack:
            h["irc"] = rasterio.open(s.irc)
        if "E" in self.channels and not (s.stack and h["imagery"].count >= 5):  # type: ignore[attr-defined]
            for name in ("dsm", "dtm", "height"):
                path = getattr(s, name)
                if path:
                    src = rasterio.open(path)
                    h[f"{name}_src"] = src
                    h[name] = WarpedVRT(src, crs=self.grid.crs, transform=self.grid.transform, width=self.grid.width,
                                        height=self.grid.height, resampling=Resampling.bilinear,
                                        src_crs=normalise_crs(src.crs, path), src_nodata=src.nodata, nodata=np.nan,
                                        dtype="float32")
        self._handles = h
        return self

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()  # type: ignore[attr-defined]
        self._handles = {}

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """``(C, h, w)`` uint8 in ``channels`` order and a ``(h, w)`` bool mask of valid imagery."""
        self.open()
        s, h = self.sources, self._handles
        img = h["imagery"]
        bands: dict[str, np.ndarray] = {}
        rgb = img.read([1, 2, 3], window=window)  # type: ignore[attr-defined]
        bands.update(R=rgb[0], G=rgb[1], B=rgb[2])
        nodata = img.nodata  # type: ignore[attr-defined]
        valid = np.ones(rgb.shape[1:], dtype=bool) if nodata is None else ~np.all(rgb == nodata, axis=0)
        if "NIR" in self.channels:
            bands["NIR"] = img.read(4, window=window) if s.stack else h["irc"].read(1, window=window)  # type: ignore[attr-defined]
        if "E" in self.channels:
            bands["E"] = self._elevation(window, rgb.shape[1:])
        return np.stack([bands[c] for c in self.channels]), valid

    def _elevation(self, window: Window, shape: tuple[int, int]) -> np.ndarray:
        s, h = self.sources, self._handles
        if s.stack and h["imagery"].count >= 5:  # type: ignore[attr-defined]
            return h["imagery"].read(5, window=window)  # type: ignore[attr-defined]
        if "height" in h:
            height = self._read_float("height", s.height, window)  # type: ignore[arg-type]
        elif "dsm" in h:
            height = self._read_float("dsm", s.dsm, window) - self._read_float("dtm", s.dtm, window)  # type: ignore[arg-type]
        elif s.zero_elevation:
            return np.zeros(shape, dtype=np.uint8)
        else:
            raise InputError("elevation requested but no elevation source is open (LAZ not rasterised?)")
        return encode_elevation(height, s.elevation_scale)

    def _read_float(self, name: str, path: str, window: Window) -> np.ndarray:
        data = self._handles[name].read(1, window=window)  # type: ignore[attr-defined]
        bad = ~np.isfinite(data)
        if bad.any():
            col, row = int(window.col_off), int(window.row_off)
            raise InputError(
                f"{path} has {int(bad.sum())} NaN/nodata pixel(s) under the imagery window at column {col}, row {row} "
                f"({int(window.width)}×{int(window.height)} px): fill the voids or give another elevation source"
            )
        return data


# --- LiDAR HD → height above ground --------------------------------------------------------------

GROUND_CLASSES = (2, 9)  # ground, water
NOISE_CLASSES = (7, 18)  # low noise, high noise


def rasterise_laz(laz_paths: Sequence[str], grid: Grid, out_path: str | Path, *, dtm_res: float = 1.0,
                  margin_m: float = 2.0) -> Path:
    """Rasterise classified LiDAR HD tiles to height above ground (DSM − DTM, metres, float32) on ``grid``.

    DSM: highest non-noise return per imagery pixel; DTM: mean of ground/water returns on a ``dtm_res``
    grid, interpolated bilinearly to the imagery pixels. Pixels without returns (LiDAR HD has ~10–25
    pts/m², an imagery pixel 0.04 m²) take the value of the nearest pixel with returns, within the LAZ
    footprint plus ``margin_m`` (BD ORTHO tiles often extend a pixel beyond the LiDAR tile); farther
    pixels stay NaN and are reported as voids when read.
    """
    import laspy
    from scipy import ndimage

    xs, ys, zs, cls = [], [], [], []
    for path in laz_paths:
        try:
            las = laspy.read(path)
        except Exception as exc:  # laspy raises many types for broken files
            raise InputError(f"cannot read LiDAR tile {path}: {exc}") from None
        crs = las.header.parse_crs()
        if crs is not None and normalise_crs(CRS.from_wkt(crs.to_wkt()), path) != grid.crs:
            raise InputError(f"{path} is in {crs.name} but the imagery is in {grid.crs.to_string()}")
        if len(las.points) == 0:
            raise InputError(f"LiDAR tile {path} has no points")
        xs.append(np.asarray(las.x))
        ys.append(np.asarray(las.y))
        zs.append(np.asarray(las.z, dtype=np.float64))
        cls.append(np.asarray(las.classification))
    x, y, z, c = (np.concatenate(a) for a in (xs, ys, zs, cls))
    keep = ~np.isin(c, NOISE_CLASSES)
    x, y, z, c = x[keep], y[keep], z[keep], c[keep]
    ground = np.isin(c, GROUND_CLASSES)
    if ground.sum() < 3:
        raise InputError(f"LiDAR tiles {', '.join(laz_paths)} have no ground points (class 2): cannot make a DTM")

    # Window of the imagery grid covered by the points (+ margin)
    left, bottom, right, top = grid.bounds
    bx = (max(x.min() - margin_m, left), max(y.min() - margin_m, bottom),
          min(x.max() + margin_m, right), min(y.max() + margin_m, top))
    if bx[0] >= bx[2] or bx[1] >= bx[3]:
        raise InputError(f"LiDAR tiles {', '.join(laz_paths)} do not overlap the imagery {grid.bounds}")
    win = from_bounds(*bx, transform=grid.transform).round_offsets().round_lengths()
    win = win.intersection(Window(0, 0, grid.width, grid.height))
    wt = grid.window_transform(win)
    h, w, res = int(win.height), int(win.width), grid.res

    # DSM: max z per pixel
    col = np.floor((x - wt.c) / res).astype(np.int64)
    row = np.floor((wt.f - y) / res).astype(np.int64)
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    dsm = np.full(h * w, -np.inf)
    np.maximum.at(dsm, row[inside] * w + col[inside], z[inside])
    dsm = dsm.reshape(h, w)

    # DTM: mean ground z on a coarse grid, holes filled by nearest, bilinear to the fine pixels
    k = max(1, round(dtm_res / res))
    hc, wc = -(-h // k), -(-w // k)
    gcol = np.clip(np.floor((x[ground] - wt.c) / (res * k)).astype(np.int64), 0, wc - 1)
    grow = np.clip(np.floor((wt.f - y[ground]) / (res * k)).astype(np.int64), 0, hc - 1)
    idx = grow * wc + gcol
    sums = np.bincount(idx, weights=z[ground], minlength=hc * wc)
    counts = np.bincount(idx, minlength=hc * wc)
    coarse = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan).reshape(hc, wc)
    coarse = _fill_nearest(coarse, np.isfinite(coarse), ndimage)
    rr = (np.arange(h) + 0.5) / k - 0.5
    cc = (np.arange(w) + 0.5) / k - 0.5
    dtm = ndimage.map_coordinates(coarse, np.meshgrid(rr, cc, indexing="ij"), order=1, mode="nearest")

    has = np.isfinite(dsm)
    dsm = _fill_nearest(dsm, has, ndimage)
    height = np.maximum(dsm - dtm, 0.0).astype(np.float32)

    full = np.full((grid.height, grid.width), np.nan, dtype=np.float32)
    r0, c0 = int(win.row_off), int(win.col_off)
    full[r0 : r0 + h, c0 : c0 + w] = height
    voids = int(np.isnan(full).sum())
    if voids:
        raise InputError(
            f"LiDAR tiles {', '.join(laz_paths)} leave {voids} imagery pixel(s) without elevation "
            f"(they cover {bx}, the imagery {grid.bounds}): give the neighbouring tiles too"
        )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "dtype": "float32", "count": 1, "width": grid.width, "height": grid.height,
               "crs": grid.crs, "transform": grid.transform, "nodata": np.nan, "compress": "deflate",
               "tiled": True, "blockxsize": 256, "blockysize": 256}
    with rasterio.open(out_path, "w", **profile) as dst:
        dst.write(full, 1)
    return out_path


def _fill_nearest(values: np.ndarray, known: np.ndarray, ndimage) -> np.ndarray:  # type: ignore[no-untyped-def]
    if known.all():
        return values
    if not known.any():
        raise InputError("no LiDAR returns fall on the imagery")
    _, (ri, ci) = ndimage.distance_transform_edt(~known, return_indices=True)
    return values[ri, ci]


def with_rasterised_laz(sources: ImagerySources, grid: Grid, workdir: str | Path) -> ImagerySources:
    """Sources where LAZ tiles are replaced by their rasterised height (done once per job, before workers start)."""
    if not sources.laz:
        return sources
    out = rasterise_laz(sources.laz, grid, Path(workdir) / "height_from_laz.tif")
    return replace(sources, laz=(), height=str(out))
