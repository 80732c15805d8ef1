"""The cheaper per-département tile render (services/tiles/reprojection.py, render.py): the dataset's default
warp transform remembered, ``tile_exists`` answered without a PROJ transformation where the tile's centre is
inside the dataset, the legend applied through one table lookup, PNGs encoded by Pillow — each compared
with what rio-tiler and GDAL give on the same input: same pixels, same answers."""

from __future__ import annotations

import io
from pathlib import Path

import morecantile
import numpy as np
import pytest
import rasterio
import rio_tiler.utils
from PIL import Image
from pyproj import Transformer
from rasterio.transform import from_origin
from rasterio.warp import calculate_default_transform
from rio_tiler.colormap import apply_cmap
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader
from rio_tiler.utils import render

from ocsge.nomenclature import Kind, palette
from services.tiles import reprojection
from services.tiles import tms as tms_registry
from services.tiles.mosaic import CachedReader, forget_datasets
from services.tiles.render import _rgba, colour_lut, encode_png, encode_rgba

WMQ = morecantile.tms.get("WebMercatorQuad")
X0, Y0, PIXEL, SIDE = 640_000.0, 6_880_000.0, 10.0, 1200  # a 12 km square in Lambert-93, near Paris


@pytest.fixture(scope="module")
def cog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Class values in blocks with a nodata frame and noise, so that warping moves edges."""
    path = tmp_path_factory.mktemp("fast") / "classes.tif"
    rng = np.random.default_rng(7)
    values = np.array(sorted(palette(Kind.COUVERTURE)), dtype="uint8")
    data = np.repeat(np.repeat(rng.choice(values, size=(SIDE // 40, SIDE // 40)), 40, 0), 40, 1)
    data[rng.random(data.shape) < 0.05] = values[0]
    data[:30], data[:, -30:] = 0, 0
    profile = {"driver": "COG", "dtype": "uint8", "count": 1, "width": SIDE, "height": SIDE, "crs": "EPSG:2154",
               "transform": from_origin(X0, Y0, PIXEL, PIXEL), "nodata": 0, "blocksize": 256,
               "overview_resampling": "NEAREST", "compress": "DEFLATE"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    yield path
    forget_datasets()


def tiles_around(z: int, stride: int = 1, tms: morecantile.TileMatrixSet = WMQ) -> list[morecantile.Tile]:
    """Tiles of zoom ``z`` over the dataset and a ring of tiles beyond its edges (every ``stride``-th column
    and row, and the ring's own columns and rows)."""
    to_ll = Transformer.from_crs(2154, 4326, always_xy=True)
    west, south = to_ll.transform(X0, Y0 - SIDE * PIXEL)
    east, north = to_ll.transform(X0 + SIDE * PIXEL, Y0)
    first, last = tms.tile(west, north, z), tms.tile(east, south, z)
    xs = sorted({*range(first.x - 1, last.x + 2, stride), first.x - 1, first.x, last.x, last.x + 1})
    ys = sorted({*range(first.y - 1, last.y + 2, stride), first.y - 1, first.y, last.y, last.y + 1})
    return [morecantile.Tile(x, y, z) for x in xs for y in ys]


def test_remembered_default_transform_is_rasterios_and_is_computed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, ...]] = []

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(args)
        return calculate_default_transform(*args, **kwargs)

    monkeypatch.setattr(reprojection, "calculate_default_transform", counting)
    monkeypatch.setattr(reprojection, "_default_transforms", {})
    bounds = (X0, Y0 - 777 * PIXEL, X0 + 555 * PIXEL, Y0)
    expected = calculate_default_transform("EPSG:2154", "EPSG:3857", 555, 777, *bounds)
    assert reprojection.cached_default_transform("EPSG:2154", "EPSG:3857", 555, 777, *bounds) == expected
    assert reprojection.cached_default_transform("EPSG:2154", "EPSG:3857", 555, 777, *bounds) == expected
    assert len(calls) == 1
    other = reprojection.cached_default_transform("EPSG:2154", "EPSG:4326", 555, 777, *bounds)
    assert other == calculate_default_transform("EPSG:2154", "EPSG:4326", 555, 777, *bounds) != expected
    assert len(calls) == 2
    # a call with options is passed through, never answered from the plain call's entry
    res = reprojection.cached_default_transform("EPSG:2154", "EPSG:3857", 555, 777, *bounds, resolution=100.0)
    assert res[0].a == pytest.approx(100.0) and len(calls) == 3
    assert rio_tiler.utils.calculate_default_transform is reprojection.cached_default_transform  # installed


@pytest.mark.parametrize(("tms_name", "z", "stride"), [
    ("WebMercatorQuad", 12, 1), ("WebMercatorQuad", 14, 1), ("WebMercatorQuad", 17, 9),
    ("WorldCRS84Quad", 13, 1), ("LAMB93", 9, 1),  # a geographic set, and the dataset's own CRS
])
def test_tiles_are_the_same_as_with_rio_tilers_own_steps(cog: Path, tms_name: str, z: int, stride: int,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Every tile over the dataset and around it: the same existence answer and the same pixels as the same
    reader with rio-tiler's ``tile_exists`` and rasterio's transform computed at every call."""

    tms = tms_registry.get(tms_name)

    def tiles() -> dict[morecantile.Tile, np.ma.MaskedArray | None]:
        out: dict[morecantile.Tile, np.ma.MaskedArray | None] = {}
        with CachedReader(str(cog), tms=tms) as src:
            for t in tiles_around(z, stride, tms):
                try:
                    out[t] = src.tile(t.x, t.y, t.z, tilesize=256).array
                except TileOutsideBounds:
                    out[t] = None
        return out

    fast = tiles()
    monkeypatch.setattr(rio_tiler.utils, "calculate_default_transform", calculate_default_transform)
    monkeypatch.setattr(CachedReader, "tile_exists", Reader.tile_exists)
    reference = tiles()
    assert fast.keys() == reference.keys()
    inside = [t for t, arr in reference.items() if arr is not None]
    assert inside and len(inside) < len(reference)  # the ring around the dataset was tested too
    for t, expected in reference.items():
        got = fast[t]
        assert (got is None) == (expected is None), t
        if expected is not None:
            assert np.array_equal(got.data, expected.data), t
            assert np.array_equal(np.ma.getmaskarray(got), np.ma.getmaskarray(expected)), t


def test_tile_surely_inside_never_says_inside_for_an_outside_tile(cog: Path) -> None:
    with Reader(str(cog)) as ref:
        for t in tiles_around(14):
            b = WMQ.xy_bounds(t)
            if reprojection.tile_surely_inside((b.left, b.bottom, b.right, b.top), WMQ.rasterio_crs,
                                               tuple(ref.bounds), ref.crs):
                assert ref.tile_exists(t.x, t.y, t.z), t


def test_legend_lookup_colours_as_rio_tiler_does(cog: Path) -> None:
    cmap = {v: (0, 0, 0, 0) for v in range(256)} | {int(k): tuple(c) for k, c in palette(Kind.COUVERTURE).items()}
    corner = Transformer.from_crs(2154, 4326, always_xy=True).transform(X0 + SIDE * PIXEL - 200, Y0 - 200)
    t = WMQ.tile(*corner, 14)  # the north-east corner: nodata, outside and several classes in one tile
    with CachedReader(str(cog)) as src:
        img = src.tile(t.x, t.y, t.z, tilesize=256)
    mask = np.ma.getmaskarray(img.array)[0]
    assert mask.any() and not mask.all() and len(np.unique(img.array.data[0][~mask])) > 3
    info = type("Info", (), {"colormap": cmap, "layer": type("L", (), {"kind": "couverture"})()})()
    rgb, alpha = apply_cmap(img.array.data[0][np.newaxis, ...].astype("uint8"), cmap)
    alpha = np.where(~np.ma.getmaskarray(img.array)[0], alpha, 0)
    got = _rgba(img, info)  # type: ignore[arg-type]
    assert got.shape == (4, 256, 256) and got.dtype == np.uint8
    assert np.array_equal(got[:3], rgb) and np.array_equal(got[3], alpha)
    assert colour_lut(cmap) is colour_lut(cmap)  # one table per colour map


def test_png_decodes_to_the_pixels_gdal_encoded(cog: Path) -> None:
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, size=(4, 64, 48), dtype="uint8")
    rgba[3, :10] = 0
    ours, gdals = encode_png(rgba), render(rgba[:3], rgba[3], img_format="PNG")
    for body in (ours, gdals):
        with rasterio.MemoryFile(body) as mem, mem.open() as src:  # as GDAL clients read it: 4 bands
            assert src.count == 4 and src.dtypes[0] == "uint8"
            assert np.array_equal(src.read(), rgba)
    assert np.asarray(Image.open(io.BytesIO(ours))).shape == (64, 48, 4)
    # not transparent: RGB over the background, as before
    opaque = encode_rgba(rgba, "image/png", bgcolor=(10, 20, 30), transparent=False)
    with rasterio.MemoryFile(opaque) as mem, mem.open() as src:
        assert src.count == 3
        assert tuple(int(v) for v in src.read()[:, 0, 0]) == (10, 20, 30)


def test_crs_texts_are_the_crs_own_and_computed_once_per_object() -> None:
    class CountingCRS:
        def __init__(self, wkt: str, text: str) -> None:
            self.wkt, self.text, self.calls = wkt, text, 0

        def to_wkt(self) -> str:
            self.calls += 1
            return self.wkt

        def to_string(self) -> str:
            self.calls += 1
            return self.text

    a, b = CountingCRS("WKT-A", "EPSG:1"), CountingCRS("WKT-B", "EPSG:2")
    assert [reprojection.crs_text(a) for _ in range(3)] == ["WKT-A"] * 3 and a.calls == 1
    assert reprojection.crs_text(a, wkt=False) == "EPSG:1" and a.calls == 2
    assert reprojection.crs_text(b) == "WKT-B"  # another object, its own text
    assert reprojection.crs_text("EPSG:3857") == "EPSG:3857"
    crs = rasterio.crs.CRS.from_epsg(2154)
    assert reprojection.crs_text(crs) == crs.to_wkt() and reprojection.crs_text(crs, wkt=False) == "EPSG:2154"
