"""National vector tiles: one PMTiles per product and millésime for all of France, joined from the
per-département PMTiles (``ocsge.national`` names the keys).

Two ranges of zooms, two ways:

* **z ≥ 10** (``SPLIT_ZOOM``): the départements' own tiles, byte for byte. A tile that two départements
  share (along a border) is merged at the protobuf level (:mod:`inference_batch.products.mvt`): same-named
  layers become one, geometries are copied, nothing is re-tiled.
* **z 6–9**: a tile spans up to ~30 départements at z6, and each département's own z6 tile may weigh up to
  tippecanoe's 500 kB, so the joined tile would not be light enough for a browser. Each département gets a
  *part*: its z9 tiles decoded and re-tiled by tippecanoe at z6, 7, 8 and 9 with a byte budget per zoom
  that shrinks with the zoom as the number of départements per tile grows (``LOW_ZOOM_BYTES``), coalescing
  then dropping the densest features to fit. Parts are kept (``…/FR/{millésime}/parts/``) with a
  freshness stamp, so republishing one département re-tiles that département's part only.

The national file is then rewritten from the départements' files and the parts (a join: tiles copied, the
shared ones merged), in a transaction (``writers.transaction``): readers see the old file or the new one,
never a half-written one, and a failed run leaves the old one. ``benchmarks/bench_pmtiles.py --national``
measures the join for N départements.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import click
import shapely
from pmtiles.tile import Compression, TileType, deserialize_directory, deserialize_header, tileid_to_zxy, zxy_to_tileid
from pmtiles.writer import Writer

from inference_batch.freshness import fingerprint, is_up_to_date, refreshing
from inference_batch.products.artifacts import StepError
from inference_batch.products.mvt import merge_tiles
from inference_batch.products.tiles import tippecanoe_binary
from inference_batch.scratch import scratch
from inference_batch.writers.transaction import transaction
from ocsge.national import NATIONAL_PRODUCTS, national_key, national_part_key
from ocsge.products import PRODUCTS, millesime_token, parse_key, spec
from ocsge.progress import done, step
from ocsge.storage import Storage
from ocsge.territory import departement

MIN_ZOOM = 6
SPLIT_ZOOM = 10  # from here up, the départements' own tiles
# bytes per département and tile (gzip) at the low zooms: up to ~30 départements share a z6 tile, ~8 a z7,
# 3–4 a z8, 2–3 a z9 (a département is ~100 km across), so that a joined tile stays near tippecanoe's 500 kB
LOW_ZOOM_BYTES = {6: 12_000, 7: 40_000, 8: 100_000, 9: 160_000}
LOW_ZOOM_FLAGS = ("--coalesce-densest-as-needed", "--drop-densest-as-needed", "--force", "--quiet")


@dataclass
class NationalTilesResult:
    key: str
    departements: list[str]
    parts_rebuilt: list[str] = field(default_factory=list)
    parts_removed: list[str] = field(default_factory=list)
    rewritten: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


def departement_tilesets(storage: Storage, product: str, millesime: int | tuple[int, int]) -> dict[str, str]:
    """Département code → key of its tileset of this product and millésime, as stored now."""
    token = millesime_token(millesime)
    found = {}
    for info in storage.list(PRODUCTS[product].folder + "/"):
        parsed = parse_key(info.key)
        if parsed is not None and parsed.product == product and millesime_token(parsed.millesime) == token:
            found[parsed.departement] = info.key
    return dict(sorted(found.items()))


# --- reading PMTiles entries without reading tiles ---------------------------------------------------


@dataclass(frozen=True)
class _Archive:
    path: Path
    header: dict[str, Any]
    metadata: dict[str, Any]


def _open_archive(path: Path) -> _Archive:
    with path.open("rb") as f:
        header = deserialize_header(f.read(127))
        if header["tile_type"] != TileType.MVT:
            raise StepError(f"{path.name}: not a vector tileset (tile type {header['tile_type']})")
        f.seek(header["metadata_offset"])
        raw = f.read(header["metadata_length"])
    if header["internal_compression"] == Compression.GZIP:
        raw = gzip.decompress(raw)
    return _Archive(path, header, json.loads(raw) if raw else {})


def _entries(archive: _Archive, f: BinaryIO, zooms: range) -> Iterable[tuple[int, int, int]]:
    """(tile id, absolute offset, length) of every addressed tile whose zoom is in ``zooms``."""
    h = archive.header
    first, stop = zxy_to_tileid(zooms.start, 0, 0), zxy_to_tileid(zooms.stop, 0, 0)

    def walk(offset: int, length: int) -> Iterable[tuple[int, int, int]]:
        f.seek(offset)
        for entry in deserialize_directory(f.read(length)):
            if entry.run_length == 0:
                yield from walk(h["leaf_directory_offset"] + entry.offset, entry.length)
                continue
            for i in range(entry.run_length):
                if first <= entry.tile_id + i < stop:
                    yield entry.tile_id + i, h["tile_data_offset"] + entry.offset, entry.length

    return list(walk(h["root_offset"], h["root_length"]))


def _plain(data: bytes, compression: Compression) -> bytes:
    if compression == Compression.GZIP:
        return gzip.decompress(data)
    if compression in (Compression.NONE, Compression.UNKNOWN):
        return data
    raise StepError(f"tile compression {compression!r} is not supported by the national join")


def _vector_layers(archives: Iterable[_Archive]) -> list[dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for archive in archives:
        for layer in archive.metadata.get("vector_layers", []):
            into = merged.setdefault(
                layer["id"],
                {
                    "id": layer["id"],
                    "description": layer.get("description", ""),
                    "minzoom": layer.get("minzoom", 0),
                    "maxzoom": layer.get("maxzoom", 0),
                    "fields": {},
                },
            )
            into["minzoom"] = min(into["minzoom"], layer.get("minzoom", into["minzoom"]))
            into["maxzoom"] = max(into["maxzoom"], layer.get("maxzoom", into["maxzoom"]))
            into["fields"].update(layer.get("fields", {}))
    return list(merged.values())


@dataclass
class Reuse:
    """What a rejoin may take from the previous national file: a tile that several sources share is copied
    from it when none of them changed (``unchanged``: their indices) and the tile lies outside the previous
    extent of every département that changed or left (``stale``: lon/lat boxes), where it may have held
    features that are gone."""

    previous: Path
    unchanged: set[int]
    stale: list[tuple[float, float, float, float]]

    def touches_stale(self, z: int, x: int, y: int) -> bool:
        n = 1 << z
        for west, south, east, north in self.stale:
            x0, x1 = math.floor((west + 180) / 360 * n) - 1, math.floor((east + 180) / 360 * n) + 1  # ±1: buffers
            y0 = math.floor((1 - math.asinh(math.tan(math.radians(north))) / math.pi) / 2 * n) - 1
            y1 = math.floor((1 - math.asinh(math.tan(math.radians(south))) / math.pi) / 2 * n) + 1
            if x0 <= x <= x1 and y0 <= y <= y1:
                return True
        return False


def join_tilesets(
    sources: list[tuple[Path, range]], out: Path, metadata: dict[str, Any], reuse: Reuse | None = None
) -> dict[str, Any]:
    """Write one PMTiles at ``out`` with the tiles of every (file, zooms taken from it): a tile found in one
    source is copied as stored, a tile found in several is merged (:func:`mvt.merge_tiles`), or copied from
    the previous national file when ``reuse`` says its merge would give the same bytes. Tiles are written in
    tile-id order (a clustered archive), gzip-compressed like tippecanoe's."""
    archives = [_open_archive(path) for path, _zooms in sources]
    stats: dict[str, Any] = {
        "tiles": 0,
        "merged": 0,
        "reused": 0,
        "bytes": 0,
        "max_tile_bytes": 0,
        "max_bytes_by_zoom": {},
    }
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(path.open("rb")) for path, _zooms in sources]
        previous: dict[int, tuple[int, int, int]] = {}
        if reuse is not None:
            files.append(stack.enter_context(reuse.previous.open("rb")))
            before = _open_archive(reuse.previous)
            previous = {t: (len(files) - 1, o, n) for t, o, n in _entries(before, files[-1], range(0, 27))}
        by_tile: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
        for i, ((_path, zooms), archive) in enumerate(zip(sources, archives, strict=True)):
            for tile_id, offset, length in _entries(archive, files[i], zooms):
                by_tile[tile_id].append((i, offset, length))
        if not by_tile:
            raise StepError(f"no tiles to join into {out.name}")

        def read(i: int, offset: int, length: int) -> bytes:
            files[i].seek(offset)
            return files[i].read(length)

        with out.open("wb") as f:
            writer = Writer(f)
            z, first_of_zoom = 0, [zxy_to_tileid(k, 0, 0) for k in range(28)]
            for tile_id in sorted(by_tile):
                found = by_tile[tile_id]
                while tile_id >= first_of_zoom[z + 1]:  # tile ids run zoom by zoom, in order here
                    z += 1
                if len(found) == 1 and archives[found[0][0]].header["tile_compression"] == Compression.GZIP:
                    data = read(*found[0])
                elif (
                    reuse is not None
                    and tile_id in previous
                    and all(i in reuse.unchanged for i, _o, _n in found)
                    and not reuse.touches_stale(*tileid_to_zxy(tile_id))
                ):
                    data = read(*previous[tile_id])
                    stats["reused"] += 1
                else:
                    plain = [_plain(read(*where), archives[where[0]].header["tile_compression"]) for where in found]
                    data = gzip.compress(merge_tiles(plain) if len(plain) > 1 else plain[0], mtime=0)
                    stats["merged"] += len(found) > 1
                writer.write_tile(tile_id, data)
                stats["tiles"] += 1
                stats["bytes"] += len(data)
                stats["max_tile_bytes"] = max(stats["max_tile_bytes"], len(data))
                stats["max_bytes_by_zoom"][z] = max(stats["max_bytes_by_zoom"].get(z, 0), len(data))
            west = min(a.header["min_lon_e7"] for a in archives)
            south = min(a.header["min_lat_e7"] for a in archives)
            east = max(a.header["max_lon_e7"] for a in archives)
            north = max(a.header["max_lat_e7"] for a in archives)
            zooms = [tileid_to_zxy(t)[0] for t in (min(by_tile), max(by_tile))]
            header = {
                "tile_type": TileType.MVT,
                "tile_compression": Compression.GZIP,
                "min_lon_e7": west,
                "min_lat_e7": south,
                "max_lon_e7": east,
                "max_lat_e7": north,
                "center_zoom": zooms[0],
                "center_lon_e7": (west + east) // 2,
                "center_lat_e7": (south + north) // 2,
            }
            writer.finalize(header, {**metadata, "vector_layers": _vector_layers(archives)})
    return stats


# --- the per-département low zooms ------------------------------------------------------------------


def _tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """A Web Mercator tile as (west, south, east, north) in degrees: a rectangle in longitude and latitude."""
    n = 1 << z

    def lat(row: int) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * row / n))))

    return x / n * 360 - 180, lat(y + 1), (x + 1) / n * 360 - 180, lat(y)


def _clip_to_tiles(decoded: Path, out: Path) -> int:
    """The features of ``tippecanoe-decode``'s output (one collection per tile) clipped to their own tile, as
    GeoJSONSeq: a tile's features reach into its neighbours' by tippecanoe's buffer, and the overlaps would
    be drawn twice (darker seams under a translucent fill) once re-tiled."""
    doc = json.loads(decoded.read_bytes() or b"{}")
    n = 0
    with out.open("w", encoding="utf-8") as f:
        for tile in doc.get("features", []):
            where = tile.get("properties", {})
            box = _tile_bounds(where["zoom"], where["x"], where["y"])
            features = [feat for layer in tile.get("features", []) for feat in layer.get("features", [])]
            if not features:
                continue
            geoms = shapely.from_geojson([json.dumps(feat["geometry"]) for feat in features])
            clipped = shapely.clip_by_rect(geoms, *box)
            for feat, geom in zip(features, clipped, strict=True):
                if geom is None or geom.is_empty:
                    continue
                props = json.dumps(feat.get("properties", {}), ensure_ascii=False)
                f.write(f'{{"type":"Feature","properties":{props},"geometry":{shapely.to_geojson(geom)}}}\n')
                n += 1
    return n


def _low_zoom_part(src: Path, out: Path, tmp: Path) -> None:
    """Re-tile a département's z9 tiles at z6–9 under the per-zoom byte budgets, into one PMTiles."""
    archive = _open_archive(src)
    layers = [layer["id"] for layer in archive.metadata.get("vector_layers", [])]
    source_zoom = min(max(SPLIT_ZOOM - 1, archive.header["min_zoom"]), archive.header["max_zoom"])
    decode = str(Path(tippecanoe_binary()).with_name("tippecanoe-decode"))
    inputs = []
    for layer in layers:
        decoded, seq = tmp / f"{layer}.json", tmp / f"{layer}.geojsons"
        with decoded.open("wb") as f:
            proc = subprocess.run(
                [decode, "-Z", str(source_zoom), "-z", str(source_zoom), "-l", layer, str(src)],
                stdout=f,
                stderr=subprocess.PIPE,
                check=False,
            )
        if proc.returncode != 0:
            raise StepError(f"tippecanoe-decode failed on {src.name}: {proc.stderr.decode()[-1000:]}")
        _clip_to_tiles(decoded, seq)
        inputs += ["-L", f"{layer}:{seq.name}"]
    zoom_files = []
    for z, budget in LOW_ZOOM_BYTES.items():
        name = f"z{z}.pmtiles"
        proc = subprocess.run(
            ["tippecanoe", "-o", name, "-Z", str(z), "-z", str(z), "-M", str(budget), *LOW_ZOOM_FLAGS, *inputs],
            executable=tippecanoe_binary(),
            cwd=tmp,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise StepError(f"tippecanoe failed on the low zooms of {src.name}: {proc.stderr.strip()[-1000:]}")
        if (tmp / name).exists():
            zoom_files.append((tmp / name, range(z, z + 1)))
    join_tilesets(zoom_files, out, {"name": f"low zooms of {src.name}"})


def _refresh_part(
    storage: Storage, product: str, dep: str, millesime: int | tuple[int, int], src_key: str, force: bool
) -> bool:
    """Rebuild a département's part when its tileset changed; True when rebuilt."""
    part = national_part_key(product, dep, millesime)
    digest = fingerprint(storage, [src_key], params={"low_zoom_bytes": LOW_ZOOM_BYTES, "split": SPLIT_ZOOM})
    if not force and is_up_to_date(storage, part, digest):
        return False
    with (
        storage.local_copy(src_key) as src,
        scratch("national-tiles") as tmp,
        refreshing(storage, part, digest),
        storage.writer(part) as out,
    ):
        _low_zoom_part(src, out, Path(tmp))
    return True


def _stale_parts(storage: Storage, product: str, millesime: int | tuple[int, int], keep: set[str]) -> list[str]:
    prefix = national_part_key(product, "01", millesime).rsplit("/", 1)[0] + "/"
    return [o.key for o in storage.list(prefix) if o.key not in keep and not o.key.endswith(".inputs.json")]


def _reuse(
    storage: Storage, out: str, deps: list[str], inputs: dict[str, dict[str, Any]], stack: contextlib.ExitStack
) -> Reuse | None:
    """What the rejoin may copy from the national file as it stands (None: nothing, build afresh)."""
    if not storage.exists(out):
        return None
    previous = stack.enter_context(storage.local_copy(out))
    meta = _open_archive(previous).metadata
    before = meta.get("ocsge:inputs")
    if not isinstance(before, dict) or meta.get("ocsge:split_zoom") != SPLIT_ZOOM:
        return None
    same = {
        dep
        for dep in deps
        if dep in before
        and {k: before[dep].get(k) for k in ("tiles", "part")} == {k: inputs[dep][k] for k in ("tiles", "part")}
    }
    stale = [tuple(before[dep]["bounds"]) for dep in before if dep not in same]
    # sources are the parts (0…n-1) then the départements' tilesets (n…2n-1), in ``deps`` order
    unchanged = {i for i, dep in enumerate(deps) if dep in same} | {
        len(deps) + i for i, dep in enumerate(deps) if dep in same
    }
    return Reuse(previous, unchanged, stale)  # type: ignore[arg-type]


def run_national_tiles(
    storage: Storage, product: str, millesime: int | tuple[int, int], *, force: bool = False
) -> NationalTilesResult:
    """Step: bring the national tileset of ``product`` × ``millésime`` up to date with the départements'
    tilesets as stored now (a transaction). Only the parts of départements whose tileset changed are
    re-tiled; the national file is rejoined when any input changed, and left alone otherwise."""
    if product not in NATIONAL_PRODUCTS:
        raise StepError(f"no national tiles for {product!r}: expected one of {', '.join(NATIONAL_PRODUCTS)}")
    label = f"national tiles {product} {millesime_token(millesime)}"
    with transaction(storage, label) as staged:
        return _national_tiles(staged, product, millesime, force=force)


def _national_tiles(
    storage: Storage, product: str, millesime: int | tuple[int, int], *, force: bool
) -> NationalTilesResult:
    mill = millesime_token(millesime)
    tilesets = departement_tilesets(storage, product, millesime)
    out = national_key(product, millesime)
    if not tilesets:
        raise StepError(f"no {product} tilesets for millésime {mill}: run the tiles step of a département first")
    result = NationalTilesResult(out, list(tilesets))
    t0 = time.perf_counter()
    step(f"national tiles {product} {mill}: {len(tilesets)} départements")
    for dep, key in tilesets.items():
        if _refresh_part(storage, product, dep, millesime, key, force):
            result.parts_rebuilt.append(dep)
    parts = {dep: national_part_key(product, dep, millesime) for dep in tilesets}
    for stale in _stale_parts(storage, product, millesime, set(parts.values())):
        storage.delete(stale)
        with contextlib.suppress(Exception):
            storage.delete(stale + ".inputs.json")
        result.parts_removed.append(stale)
    t1 = time.perf_counter()
    inputs = [*tilesets.values(), *parts.values()]
    digest = fingerprint(storage, inputs, params={"split": SPLIT_ZOOM, "min_zoom": MIN_ZOOM})
    if force or not is_up_to_date(storage, out, digest):
        names = {dep: departement(dep).name for dep in tilesets}
        metadata = {
            "name": f"OCS GE France {mill}",
            "description": f"{spec(product).title}, France, {mill}",
            "attribution": "OCS GE — IGN / OCS GE cloud",
            "ocsge:departements": names,
            "ocsge:split_zoom": SPLIT_ZOOM,
        }
        with contextlib.ExitStack() as stack:
            sources = [
                (stack.enter_context(storage.local_copy(parts[dep])), range(MIN_ZOOM, SPLIT_ZOOM)) for dep in tilesets
            ]
            sources += [
                (stack.enter_context(storage.local_copy(key)), range(SPLIT_ZOOM, 27)) for key in tilesets.values()
            ]
            inputs = {}
            for dep, (path, _zooms) in zip(tilesets, sources[len(tilesets) :], strict=True):
                h = _open_archive(path).header
                inputs[dep] = {
                    "tiles": storage.stat(tilesets[dep]).etag,
                    "part": storage.stat(parts[dep]).etag,
                    "bounds": [h[k] / 1e7 for k in ("min_lon_e7", "min_lat_e7", "max_lon_e7", "max_lat_e7")],
                }
            metadata["ocsge:inputs"] = inputs
            reuse = None if force else _reuse(storage, out, list(tilesets), inputs, stack)
            with refreshing(storage, out, digest), storage.writer(out) as tmp:
                result.stats = join_tilesets(sources, tmp, metadata, reuse)
        result.rewritten = True
    result.timings = {"parts_s": t1 - t0, "join_s": time.perf_counter() - t1}
    done(
        f"national tiles {product} {mill}: {len(result.parts_rebuilt)} part(s) re-tiled, "
        f"{'rejoined' if result.rewritten else 'already up to date'} in {sum(result.timings.values()):.1f} s"
    )
    return result


# --- ocsge national-tiles ----------------------------------------------------------------------------


def published_millesimes(storage: Storage, product: str) -> list[int | tuple[int, int]]:
    """The millésimes (pairs for differences) of which at least one département has a tileset."""
    found = {
        parsed.millesime
        for info in storage.list(PRODUCTS[product].folder + "/")
        if (parsed := parse_key(info.key)) is not None and parsed.product == product
    }
    return sorted(found, key=lambda m: m if isinstance(m, tuple) else (m,))


@click.command("national-tiles")
@click.option(
    "--kind", type=click.Choice(["occupation", "difference"]), multiple=True, help="Tilesets to join (default: both)."
)
@click.option(
    "-m",
    "--millesime",
    "millesimes",
    multiple=True,
    help="Millésime (YYYY, or YYYY-YYYY for differences); default: every one with a tileset.",
)
@click.option("--root", default=None, help="Storage root (folder or s3://bucket/prefix); default OCSGE_STORAGE_ROOT.")
@click.option("--force", is_flag=True, help="Re-tile every département's low zooms and rejoin.")
def national_tiles(kind: tuple[str, ...], millesimes: tuple[str, ...], root: str | None, force: bool) -> None:
    """National vector tiles: the départements' PMTiles joined into one per millésime (z6–9 generalised),
    re-tiling only the départements republished since the last run; then `ocsge publish` catalogues them."""
    from inference_batch.writers.transaction import batch_run
    from ocsge.storage import open_storage

    storage = open_storage(root)
    with batch_run():
        for name in kind or ("occupation", "difference"):
            product = f"{name}_pmtiles"
            wanted = [tuple(int(y) for y in m.split("-")) if "-" in m else int(m) for m in millesimes]
            for millesime in wanted or published_millesimes(storage, product):
                if not departement_tilesets(storage, product, millesime):
                    continue
                result = run_national_tiles(storage, product, millesime, force=force)
                click.echo(f"{product}\t{result.key}")
