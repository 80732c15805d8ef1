"""National overviews of the raster layers: the fast path for the zooms where one tile spans several
départements (issue 15; the measurement behind the choice is in benchmarks/RESULTS_national.md).

**What.** Per raster layer (a product and a campaign, or a pair of campaigns for differences) a set of
*slabs* on two levels (:data:`LEVELS`): COGs in Web Mercator, each covering exactly one PM tile of its
slab zoom at the pixel size of its native zoom, 4096 × 4096 pixels in 256-pixel blocks with nearest
overviews. Level 1: a slab per PM z6 tile at z10 pixels (overviews z9 … z6) — mainland France and
Corsica are 9 slabs (columns 31–33, rows 21–23), as on the Géoplateforme (geoplateforme-rok4.md §3:
ROK4 also groups tiles in slabs); level 2: a slab per PM z8 tile at z12 pixels, for zooms 11–12. Every
block is one PM tile, pixel for pixel: a GetTile at zooms 6–12 reads a block or a few of one slab,
without resampling, where the per-département mosaic opens and warps every COG under the tile (a dozen
or more at zoom 6).

**Content.** A slab pixel is what the per-département mosaic shows at the slab's native zoom: the class of the first
per-département COG with data there, in the mosaic's order (newest millésime first, then département
code, descending: :func:`services.assets.filter_assets`), read at the overview GDAL would pick for a
tile of that zoom and resampled nearest. Lower zooms are the slab's overviews (nearest decimation), so they
equal the per-département mosaic up to resampling.

**Incremental.** ``ocsge overviews -d 77`` rebuilds only the slabs under département 77's COGs (old and
new footprints), each from every COG that touches it: a département republished costs its 1–4 slabs,
seconds to a minute, not France. A rebuilt slab gets a new key (its name carries a digest of its inputs) and the
layer's manifest, written last, names the slabs to read: a reader sees the old set or the new one.

**Consistency with the catalogue.** The manifest records the storage key, size and etag of every COG a slab
was built from; the tile service uses the national path only while that set equals the set the
catalogue lists for the layer (``services.tiles.overviews``), and falls back to the per-département
mosaic otherwise (a département published after the last ``ocsge overviews``): stale national pixels are
never served.

Keys: ``overviews/{product}/{campaign}[_{previous}]/manifest.json`` and
``overviews/{product}/{campaign}[_{previous}]/slabs/{slab zoom}_{col}_{row}_{digest}.tif``.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ocsge.errors import StorageError
from ocsge.millesimes import campaign_of
from ocsge.products import PRODUCTS, Kind, parse_key
from ocsge.progress import done, progress, step
from ocsge.storage import ObjectInfo, Storage
from ocsge.territory import departement as get_departement

FOLDER = "overviews"
MANIFEST_VERSION = 2
# (slab zoom, native zoom) of each level: a slab is one PM tile of its slab zoom at the pixel size of its native
# zoom, 4096 px a side. Zooms 6–10 read the first level (9 slabs for mainland France and Corsica), zooms 11–12
# the second (a slab per z8 tile, ≈ 60 with data): each a few blocks of one COG.
LEVELS: tuple[tuple[int, int], ...] = ((6, 10), (8, 12))
SLAB_ZOOM, NATIVE_ZOOM = LEVELS[0]
MAX_NATIVE_ZOOM = max(native for _, native in LEVELS)  # the national path serves PM zooms up to this one
TILE = 256
SLAB_SIDE = TILE * 2 ** (NATIVE_ZOOM - SLAB_ZOOM)  # 4096 pixels
WORLD = 20037508.342789244  # half the PM extent (EPSG:3857 metres)
# The raster products served as layers (services/tiles/layers.py KINDS): one national overview each.
RASTER_PRODUCTS = (
    "couverture_cog",
    "usage_cog",
    "artif_cog",
    "construction_cog",
    "prediction",
    "confidence",
    "difference_cog",
    "tache_urbaine_cog",
    "renaturation_cog",
)

BBox = tuple[float, float, float, float]


def cell_size(zoom: int) -> float:
    """PM pixel size (EPSG:3857 metres) at ``zoom``."""
    return 2 * WORLD / (TILE * 2**zoom)


def native_of(slab_zoom: int) -> int:
    return dict(LEVELS)[slab_zoom]


def slab_bounds(col: int, row: int, slab_zoom: int = SLAB_ZOOM) -> BBox:
    """EPSG:3857 bounds of the slab that is PM tile (col, row) of zoom ``slab_zoom``."""
    side = 2 * WORLD / 2**slab_zoom
    return (-WORLD + col * side, WORLD - (row + 1) * side, -WORLD + (col + 1) * side, WORLD - row * side)


def slabs_under(bounds: BBox, slab_zoom: int = SLAB_ZOOM) -> list[tuple[int, int]]:
    """The slabs (col, row) of level ``slab_zoom`` that EPSG:3857 ``bounds`` touch."""
    side = 2 * WORLD / 2**slab_zoom
    n = 2**slab_zoom
    c0 = max(0, math.floor((bounds[0] + WORLD) / side))
    c1 = min(n - 1, math.floor((bounds[2] + WORLD) / side - 1e-9))
    r0 = max(0, math.floor((WORLD - bounds[3]) / side))
    r1 = min(n - 1, math.floor((WORLD - bounds[1]) / side - 1e-9))
    return [(c, r) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)]


def layer_token(campaign: str, previous: str | None = None) -> str:
    """The layer's folder name: its campaign, or ``{previous}_{campaign}`` as in the layer id of a difference."""
    return f"{previous}_{campaign}" if previous else campaign


def layer_prefix(product: str, campaign: str, previous: str | None = None) -> str:
    return f"{FOLDER}/{product}/{layer_token(campaign, previous)}"


def manifest_key(product: str, campaign: str, previous: str | None = None) -> str:
    return f"{layer_prefix(product, campaign, previous)}/manifest.json"


# --- the per-département COGs of a layer ------------------------------------------------------------


@dataclass(frozen=True)
class SourceCog:
    """One per-département COG of a layer, as listed in storage."""

    key: str
    size: int
    departement: str
    years: tuple[int, ...]
    block: str | None
    etag: str | None = None  # changes when the COG is rewritten, even to the same size

    @property
    def stamp(self) -> str:
        return f"{self.key}:{self.size}:{self.etag or ''}"

    @property
    def order(self) -> tuple[Any, ...]:
        """The mosaic's order (services.assets.filter_assets, reversed there): highest first."""
        return (self.years, self.departement, self.block or "")


def layer_of(product: str, years: tuple[int, ...]) -> tuple[str, str | None]:
    """(campaign, previous campaign or None) of the layer an asset belongs to."""
    later = campaign_of(years[-1]).name
    return later, (campaign_of(years[0]).name if len(years) == 2 else None)


def list_sources(
    storage: Storage, products: Iterable[str] = RASTER_PRODUCTS
) -> dict[tuple[str, str, str | None], list[SourceCog]]:
    """Every per-département COG under its canonical key, grouped by layer (product, campaign, previous)."""
    layers: dict[tuple[str, str, str | None], list[SourceCog]] = {}
    for product in products:
        ps = PRODUCTS.get(product)
        if ps is None or ps.kind is not Kind.RASTER:
            continue
        for info in storage.list(ps.folder + "/"):
            parsed = parse_key(info.key)
            if parsed is None or parsed.product != product:
                continue
            years = parsed.millesime if isinstance(parsed.millesime, tuple) else (parsed.millesime,)
            cog = SourceCog(info.key, info.size, parsed.departement, tuple(years), parsed.block, info.etag)
            layers.setdefault((product, *layer_of(product, cog.years)), []).append(cog)
    for cogs in layers.values():
        cogs.sort(key=lambda c: c.order, reverse=True)
    return layers


# --- reading a département COG into a slab ------------------------------------------------------------


def mercator_bounds(storage: Storage, key: str) -> BBox:
    import rasterio
    from rasterio.warp import transform_bounds

    with rasterio.open(storage.gdal_path(key)) as src:
        return tuple(transform_bounds(src.crs, "EPSG:3857", *src.bounds, densify_pts=21))  # type: ignore[return-value]


def _overview_level(src: Any, target_res: float) -> int | None:
    """The overview GDAL would read for an output of ``target_res`` (source units): the coarsest one
    still at least as fine as the target; None for the full resolution."""
    factors = src.overviews(1)
    level = None
    for i, f in enumerate(factors):
        if src.res[0] * f <= target_res * 1.0001:
            level = i
    return level


def read_into(storage: Storage, key: str, bounds: BBox, width: int, height: int, nodata: int) -> Any:
    """The COG ``key`` resampled (nearest) on the EPSG:3857 grid ``bounds`` × (width, height)."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_bounds
    from rasterio.warp import Resampling, reproject, transform_bounds

    out = np.full((height, width), nodata, dtype="uint8")
    path = storage.gdal_path(key)
    with rasterio.open(path) as full:
        crs = full.crs
        # the target pixel in the source's units, at the window's centre
        cx, cy = (bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2
        px = (bounds[2] - bounds[0]) / width
        b = transform_bounds("EPSG:3857", crs, cx, cy, cx + px, cy + px)
        level = _overview_level(full, min(b[2] - b[0], b[3] - b[1]))
        src_nodata = full.nodata
    opened = rasterio.open(path, overview_level=level) if level is not None else rasterio.open(path)
    with opened as src:
        reproject(
            source=rasterio.band(src, 1),
            destination=out,
            src_nodata=src_nodata if src_nodata is not None else nodata,
            dst_transform=from_bounds(*bounds, width, height),
            dst_crs="EPSG:3857",
            dst_nodata=nodata,
            resampling=Resampling.nearest,
        )
    return out


def _window(outer: BBox, inner: BBox, cell: float) -> tuple[int, int, int, int] | None:
    """Pixel window (col0, row0, col1, row1) of ``outer`` (a grid of ``cell``) covering ``inner``."""
    col0 = max(0, math.floor((inner[0] - outer[0]) / cell))
    col1 = min(round((outer[2] - outer[0]) / cell), math.ceil((inner[2] - outer[0]) / cell))
    row0 = max(0, math.floor((outer[3] - inner[3]) / cell))
    row1 = min(round((outer[3] - outer[1]) / cell), math.ceil((outer[3] - inner[1]) / cell))
    if col0 >= col1 or row0 >= row1:
        return None
    return col0, row0, col1, row1


def render_slab(
    storage: Storage, col: int, row: int, sources: list[tuple[SourceCog, BBox]], nodata: int, slab_zoom: int = SLAB_ZOOM
) -> Any | None:
    """The slab's pixels at its native zoom: the first COG with data wins, in the mosaic's order; None if empty."""
    import numpy as np

    sb = slab_bounds(col, row, slab_zoom)
    cell = cell_size(native_of(slab_zoom))
    slab = np.full((SLAB_SIDE, SLAB_SIDE), nodata, dtype="uint8")
    empty = np.ones((SLAB_SIDE, SLAB_SIDE), dtype=bool)
    for cog, bounds in sources:  # highest priority first
        win = _window(sb, bounds, cell)
        if win is None:
            continue
        c0, r0, c1, r1 = win
        part_bounds = (sb[0] + c0 * cell, sb[3] - r1 * cell, sb[0] + c1 * cell, sb[3] - r0 * cell)
        part = read_into(storage, cog.key, part_bounds, c1 - c0, r1 - r0, nodata)
        hole = empty[r0:r1, c0:c1]
        fill = hole & (part != nodata)
        slab[r0:r1, c0:c1][fill] = part[fill]
        hole[fill] = False
    return None if empty.all() else slab


def write_slab(
    storage: Storage,
    key: str,
    slab: Any,
    col: int,
    row: int,
    nodata: int,
    colormap: dict[int, tuple[int, ...]] | None,
    slab_zoom: int = SLAB_ZOOM,
) -> None:
    """The slab as a COG (256-pixel blocks, nearest overviews down to one block: its zooms down to the slab's)."""
    import rasterio
    from rasterio.transform import from_bounds

    profile = {
        "driver": "GTiff",
        "dtype": "uint8",
        "count": 1,
        "width": SLAB_SIDE,
        "height": SLAB_SIDE,
        "crs": "EPSG:3857",
        "transform": from_bounds(*slab_bounds(col, row, slab_zoom), SLAB_SIDE, SLAB_SIDE),
        "nodata": nodata,
    }
    with tempfile.TemporaryDirectory(prefix="ocsge-national-") as tmp:
        mem = Path(tmp) / "slab.tif"
        with rasterio.open(mem, "w", **profile) as dst:
            dst.write(slab, 1)
            if colormap:
                dst.write_colormap(1, colormap)
        with storage.writer(key) as out, rasterio.open(mem) as src:
            cog = {
                **src.profile,
                "driver": "COG",
                "blocksize": TILE,
                "compress": "DEFLATE",
                "overview_resampling": "NEAREST",
                "overviews": "AUTO",
                "BIGTIFF": "NO",
            }
            for k in ("blockxsize", "blockysize", "tiled", "interleave"):
                cog.pop(k, None)
            with rasterio.open(out, "w", **cog) as dst:
                dst.write(src.read(1), 1)
                if colormap:
                    dst.write_colormap(1, colormap)


# --- the build --------------------------------------------------------------------------------------


def _digest(parts: Iterable[str]) -> str:
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:12]


def read_manifest(storage: Storage, key: str) -> dict[str, Any] | None:
    if not storage.exists(key):
        return None
    try:
        manifest = json.loads(storage.get_bytes(key))
    except (ValueError, StorageError):
        return None
    return manifest if manifest.get("version") == MANIFEST_VERSION else None


@dataclass
class LayerBuild:
    product: str
    campaign: str
    previous: str | None
    slabs_rebuilt: int  # slabs drawn and written (those found up to date or empty are not counted)
    slabs_total: int


def build_layer(
    storage: Storage,
    product: str,
    campaign: str,
    previous: str | None,
    cogs: list[SourceCog],
    departements: set[str] | None = None,
) -> LayerBuild:
    """(Re)build the national overview of one layer: every slab, or with ``departements`` only the slabs
    under their COGs (old footprints from the manifest, new ones from the COGs)."""
    import rasterio

    key = manifest_key(product, campaign, previous)
    old = read_manifest(storage, key) or {"slabs": {}, "sources": {}}
    old_sources: dict[str, dict[str, Any]] = old.get("sources", {})
    bounds: dict[str, BBox] = {}
    for cog in cogs:
        known = old_sources.get(cog.key)
        reuse = (
            known is not None
            and known.get("size") == cog.size
            and known.get("etag") == cog.etag
            and departements is not None
            and cog.departement not in departements
        )
        bounds[cog.key] = tuple(known["bounds"]) if reuse else mercator_bounds(storage, cog.key)  # type: ignore[index]
    with rasterio.open(storage.gdal_path(cogs[0].key)) as first:
        nodata = int(first.nodata) if first.nodata is not None else 0
        try:
            colormap = first.colormap(1)
        except ValueError:
            colormap = None

    def under(box: Any) -> set[tuple[int, int, int]]:
        """The slabs of every level under EPSG:3857 ``box``, as (slab zoom, col, row)."""
        return {(zoom, c, r) for zoom, _ in LEVELS for c, r in slabs_under(tuple(box), zoom)}  # type: ignore[arg-type]

    def parse(name: str) -> tuple[int, int, int]:
        zoom, col, row = map(int, name.split("_"))
        return zoom, col, row

    if departements is None:
        todo = {s for box in bounds.values() for s in under(box)} | {parse(name) for name in old["slabs"]}
    else:
        touched = [c.key for c in cogs if c.departement in departements]
        touched += [k for k, v in old_sources.items() if v.get("departement") in departements]
        todo = set()
        for k in touched:
            box = bounds.get(k) or tuple(old_sources.get(k, {}).get("bounds", ()))
            if len(box) == 4:
                todo |= under(box)
        # a COG that changed or vanished without being named still forces its slabs (never stale)
        now = {c.key: (c.size, c.etag) for c in cogs}
        for k, v in old_sources.items():
            if now.get(k) != (v.get("size"), v.get("etag")):
                todo |= under(v["bounds"])
        for c in cogs:
            if c.key not in old_sources:
                todo |= under(bounds[c.key])
    slabs: dict[str, dict[str, Any]] = {k: v for k, v in old["slabs"].items() if parse(k) not in todo}
    replaced: list[str] = []
    written = 0
    prefix = layer_prefix(product, campaign, previous)
    label = f"{product} {layer_token(campaign, previous)}"
    with progress(f"national {label}", total=len(todo)) as advance:
        for zoom, col, row in sorted(todo):
            name = f"{zoom}_{col}_{row}"
            sb = slab_bounds(col, row, zoom)
            cell = cell_size(native_of(zoom))
            inputs = [(c, bounds[c.key]) for c in cogs if _window(sb, bounds[c.key], cell) is not None]
            previous_slab = old["slabs"].get(name)
            if previous_slab is not None:
                replaced.append(previous_slab["key"])
            if not inputs:
                advance(info=f"{name}: empty")
                continue
            digest = _digest([c.stamp for c, _ in inputs] + [str(MANIFEST_VERSION)])
            slab_key = f"{prefix}/slabs/{name}_{digest}.tif"
            if previous_slab is not None and previous_slab["key"] == slab_key and storage.exists(slab_key):
                slabs[name] = previous_slab  # same inputs: nothing to redo
                replaced.remove(slab_key)
                advance(info=f"{name}: up to date")
                continue
            data = render_slab(storage, col, row, inputs, nodata, zoom)
            if data is None:
                advance(info=f"{name}: no data")
                continue
            write_slab(storage, slab_key, data, col, row, nodata, colormap, zoom)
            written += 1
            slabs[name] = {
                "key": slab_key,
                "bounds": list(sb),
                "native_zoom": native_of(zoom),
                "sources": [c.key for c, _ in inputs],
            }
            advance(info=slab_key)
    manifest = {
        "version": MANIFEST_VERSION,
        "product": product,
        "campaign": campaign,
        "previous": previous,
        "grid": {"crs": "EPSG:3857", "levels": [list(level) for level in LEVELS], "tile": TILE},
        "nodata": nodata,
        "slabs": dict(sorted(slabs.items())),
        "sources": {
            c.key: {"size": c.size, "etag": c.etag, "departement": c.departement, "bounds": list(bounds[c.key])}
            for c in cogs
        },
    }
    body = json.dumps(manifest, indent=1).encode()
    unchanged = storage.exists(key) and storage.get_bytes(key) == body
    if not unchanged:  # a rerun with nothing new leaves the manifest (and its etag, which readers key on) alone
        storage.put_bytes(key, body, content_type="application/json")
    for stale in replaced:  # after the manifest: readers of the old one had their slabs until now
        if stale not in {s["key"] for s in slabs.values()}:
            storage.delete(stale)
    return LayerBuild(product, campaign, previous, written, len(slabs))


def drop_layer(storage: Storage, product: str, campaign: str, previous: str | None) -> None:
    """A layer with no COG left: its manifest first, then its slabs."""
    prefix = layer_prefix(product, campaign, previous)
    objects: list[ObjectInfo] = list(storage.list(prefix + "/"))
    key = manifest_key(product, campaign, previous)
    if storage.exists(key):
        storage.delete(key)
    for info in objects:
        if info.key != key:
            storage.delete(info.key)


def build_national(
    storage: Storage, departements: Iterable[str] | None = None, products: Iterable[str] = RASTER_PRODUCTS
) -> list[LayerBuild]:
    """The national overviews of every raster layer; with ``departements``, only what their COGs touch."""
    codes = None if departements is None else {get_departement(d).code for d in departements}
    layers = list_sources(storage, products)
    existing = {
        (info.key.split("/")[1], info.key.split("/")[2])
        for info in storage.list(FOLDER + "/")
        if info.key.endswith("/manifest.json") and info.key.count("/") == 3
    }
    results = []
    step(f"national overviews: {len(layers)} layers" + (f", départements {', '.join(sorted(codes))}" if codes else ""))
    for (product, campaign, previous), cogs in sorted(
        layers.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or "")
    ):
        existing.discard((product, layer_token(campaign, previous)))
        if codes is not None and not any(c.departement in codes for c in cogs):
            old = read_manifest(storage, manifest_key(product, campaign, previous))
            if old is None or not any(v.get("departement") in codes for v in old.get("sources", {}).values()):
                continue
        results.append(build_layer(storage, product, campaign, previous, cogs, codes))
    for product, token in existing:  # layers whose COGs are all gone
        campaign, _, previous = token.partition("_")
        drop_layer(storage, product, campaign, previous or None)
    rebuilt = sum(r.slabs_rebuilt for r in results)
    done(f"national overviews: {len(results)} layers, {rebuilt} slabs rebuilt")
    return results


# --- the verb -----------------------------------------------------------------------------------------


@click.command("overviews")
@click.option("--root", default=None, help="Storage root (folder or s3://bucket/prefix); default OCSGE_STORAGE_ROOT.")
@click.option(
    "-d",
    "--departement",
    "departements",
    multiple=True,
    help="Only the slabs under these départements' COGs (after publishing them); default: all.",
)
def overviews(root: str | None, departements: tuple[str, ...]) -> None:
    """National overview slabs of every raster layer (fast zooms 6–10): run after `ocsge publish`."""
    from ocsge.storage import open_storage

    storage = open_storage(root)
    storage.check_writable()
    for r in build_national(storage, departements or None):
        click.echo(
            f"{r.product}\t{layer_token(r.campaign, r.previous)}\t{r.slabs_rebuilt} rebuilt\t{r.slabs_total} slabs"
        )
