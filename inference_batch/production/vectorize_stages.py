"""Vectorisation split into map and reduce jobs, so that the cost of a job is bounded whatever the size of
the département: the map jobs (an AWS Batch array) each handle some blocks, the reduce jobs handle the
small per-block summaries.

1. ``map_components`` (array): per block, pass 1 of :mod:`inference_batch.production.vectorize` —
   components, their local sieve, the zone construite of the block from its own pixels and a margin of
   its neighbours (:func:`~inference_batch.production.vectorize.zone_construite_window`) — written as
   ``components/{block}.npz`` (runs, groups, their graph, the groups along the block's edges);
2. ``reduce_sieve`` (one job): the graph of the groups of all blocks, joined across the seams and sieved
   (a few hundred nodes per block) → ``sieve.npz`` (each block's group → region, the regions' classes);
3. ``map_polygons`` (array): per block, the runs painted with the final regions and polygonised →
   ``pieces/{block}.npz`` (region ids and WKB);
4. ``reduce_assemble`` (one job): pieces united across seams, the small buildings no polygons job could
   enlarge alone enlarged, the coverage simplified and written as ``prediction_vector``; the work keys
   are removed.

The work keys live under ``vectorize-work/D{dep}/{millésime}/{digest}/`` of the storage (kept between the
jobs, removed by the last one; the digest is that of the inputs and options); every write is a whole
object (``put_bytes``), and a job that finds its output already there skips it, so an array job that is
retried redoes only what is missing. The one-process
:func:`~inference_batch.production.vectorize.vectorize_mosaic` runs the same functions in turn and gives
the same polygons.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import shapely

from inference_batch.production.components import BlockRuns
from inference_batch.production.vectorize import (
    UMI,
    BlockGraph,
    Graph,
    Mosaic,
    RasterBlock,
    Sieved,
    VectorizeReport,
    assemble,
    block_polygons,
    map_block,
    reduce_blocks,
    zc_from_vectors_window,
    zone_construite_window,
)
from ocsge.errors import OcsgeError
from ocsge.territory import departement as get_departement

STAGES = ("map", "reduce", "polygons", "assemble")


def work_root(departement: str, millesime: int) -> str:
    """Where the jobs of a département and millésime keep their work (all runs)."""
    return f"vectorize-work/{get_departement(departement).token}/{millesime}/"


def work_prefix(departement: str, millesime: int, digest: str = "") -> str:
    """The work keys of one run: under the digest of its inputs and options, so that a map job never
    takes the output of a run on other predictions or units for its own."""
    return work_root(departement, millesime) + (f"{digest[:16]}/" if digest else "")


def parse_part(text: str) -> tuple[int, int]:
    """``"I/N"`` (job I of N, from 0) → (I, N)."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise OcsgeError(f"a part is I/N (job I of N, counted from 0), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise OcsgeError(f"part {text!r}: need 0 ≤ I < N")
    return i, n


def blocks_of_part(mosaic: Mosaic, part: tuple[int, int]) -> list[int]:
    """The blocks (indices in the mosaic's raster order) of job I of N: every N-th one from I."""
    i, n = part
    return list(range(i, len(mosaic.blocks), n))


# --- (de)serialisation ------------------------------------------------------------------------------------


def _save(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _load(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def dump_block(b: BlockGraph) -> bytes:
    g = b.graph
    assert g.wide is not None and g.frozen is not None
    meta = np.array([b.row_off, b.col_off, b.runs.width, b.components, b.interior], dtype=np.int64)
    return _save(
        meta=meta,
        row_start=b.runs.row_start,
        col=b.runs.col,
        label=b.runs.label,
        cls=g.cls,
        area=g.area,
        zc=g.zc,
        wide=g.wide,
        frozen=g.frozen,
        eu=g.eu,
        ev=g.ev,
        elen=g.elen,
        top=b.top,
        bottom=b.bottom,
        left=b.left,
        right=b.right,
    )


def load_block(data: bytes, with_runs: bool = True) -> BlockGraph:
    a = _load(data)
    row_off, col_off, width, components, interior = (int(v) for v in a["meta"])
    empty = np.zeros(0, np.int32)  # the reduce needs the block's size, not its runs
    runs = BlockRuns(width, a["row_start"], a["col"] if with_runs else empty, a["label"] if with_runs else empty)
    graph = Graph(a["cls"], a["area"], a["zc"], a["wide"], a["eu"], a["ev"], a["elen"], a["frozen"])
    return BlockGraph(row_off, col_off, runs, graph, a["top"], a["bottom"], a["left"], a["right"], components, interior)


# --- the four stages ------------------------------------------------------------------------------------


def zc_for_block(
    mosaic: Mosaic, block: RasterBlock, umi: UMI, zone_construite: Sequence[shapely.Geometry] | None
) -> tuple[np.ndarray, int]:
    if zone_construite is None:
        return zone_construite_window(mosaic, block, umi)
    return zc_from_vectors_window(mosaic, block, zone_construite, umi)


def map_components(
    storage,
    mosaic: Mosaic,
    prefix: str,
    part: tuple[int, int],
    umi: UMI,  # type: ignore[no-untyped-def]
    zone_construite: Sequence[shapely.Geometry] | None = None,
) -> list[int]:
    """Stage 1 for the blocks of ``part``; the blocks computed (those already there are skipped)."""
    done = []
    for j in blocks_of_part(mosaic, part):
        key = f"{prefix}components/{j:06d}.npz"
        if storage.exists(key):
            continue
        b = mosaic.blocks[j]
        zc, k = zc_for_block(mosaic, b, umi, zone_construite)
        storage.put_bytes(key, dump_block(map_block(mosaic, b, zc, k, umi)))
        done.append(j)
    return done


def _block_keys(storage, prefix: str, folder: str, count: int) -> list[str]:  # type: ignore[no-untyped-def]
    keys = [f"{prefix}{folder}/{j:06d}.npz" for j in range(count)]
    missing = [k for k in keys if not storage.exists(k)]
    if missing:
        raise OcsgeError(
            f"{len(missing)} of {count} blocks have no {folder} yet (first: {missing[0]}): run every map job first"
        )
    return keys


def reduce_sieve(storage, mosaic: Mosaic, prefix: str, umi: UMI) -> Sieved:  # type: ignore[no-untyped-def]
    """Stage 2: the seams joined and the whole graph sieved, from the blocks' summaries (not their runs)."""
    keys = _block_keys(storage, prefix, "components", len(mosaic.blocks))
    blocks = [load_block(storage.get_bytes(key), with_runs=False) for key in keys]
    sieved = reduce_blocks(blocks, umi, mosaic.res**2)
    sizes = np.array([len(r) for r in sieved.block_region], dtype=np.int64)
    storage.put_bytes(
        f"{prefix}sieve.npz",
        _save(
            block_region=np.concatenate(sieved.block_region) if sizes.size else np.zeros(0, np.int32),
            sizes=sizes,
            region_cls=sieved.region_cls,
            region_area=sieved.region_area,
            components=np.array([sieved.components], dtype=np.int64),
        ),
    )
    return sieved


def load_sieved(storage, prefix: str) -> Sieved:  # type: ignore[no-untyped-def]
    key = f"{prefix}sieve.npz"
    if not storage.exists(key):
        raise OcsgeError(f"no {key}: run the reduce (--reduce) after every map job")
    a = _load(storage.get_bytes(key))
    bounds = np.concatenate([[0], np.cumsum(a["sizes"])])
    parts = [a["block_region"][bounds[i] : bounds[i + 1]] for i in range(len(a["sizes"]))]
    return Sieved(parts, a["region_cls"], a["region_area"], int(a["components"][0]))


def map_polygons(  # type: ignore[no-untyped-def]
    storage, mosaic: Mosaic, prefix: str, part: tuple[int, int], umi: UMI | None = None
) -> list[int]:
    """Stage 3 for the blocks of ``part``: their polygon pieces (region id, WKB in pixel coordinates), the
    small buildings they hold whole enlarged (their ids kept for the assembly)."""
    umi = umi or UMI()
    sieved = load_sieved(storage, prefix)
    done = []
    for j in blocks_of_part(mosaic, part):
        key = f"{prefix}pieces/{j:06d}.npz"
        if storage.exists(key):
            continue
        b = load_block(storage.get_bytes(f"{prefix}components/{j:06d}.npz"))
        found, enlarged = block_polygons(
            b.runs,
            b.row_off,
            b.col_off,
            sieved.block_region[j],
            sieved.region_cls,
            sieved.region_area,
            umi,
            mosaic.res**2,
            (mosaic.height, mosaic.width),
        )
        wkb = [shapely.to_wkb(g) for _, g in found]
        # one byte buffer and the end of each geometry (fixed-width bytes would drop trailing zero bytes)
        storage.put_bytes(
            key,
            _save(
                region=np.array([r for r, _ in found], dtype=np.int64),
                ends=np.cumsum([len(w) for w in wkb], dtype=np.int64),
                wkb=np.frombuffer(b"".join(wkb), dtype=np.uint8),
                enlarged=np.array(enlarged, dtype=np.int64),
            ),
        )
        done.append(j)
    return done


def reduce_assemble(
    storage,
    mosaic: Mosaic,
    prefix: str,
    umi: UMI,
    simplify: float,  # type: ignore[no-untyped-def]
) -> tuple[list[shapely.Geometry], np.ndarray, VectorizeReport]:
    """Stage 4: the pieces of all blocks joined across seams, enlarged buildings, simplified coverage."""
    sieved = load_sieved(storage, prefix)
    report = VectorizeReport(
        pixels=mosaic.width * mosaic.height, components=sieved.components, after_sieve=len(sieved.region_cls)
    )
    pieces: dict[int, list[shapely.Geometry]] = {}
    enlarged = []
    with report.stage("read_pieces"):
        for key in _block_keys(storage, prefix, "pieces", len(mosaic.blocks)):
            a = _load(storage.get_bytes(key))
            enlarged.append(a["enlarged"])
            buf, starts = a["wkb"].tobytes(), np.concatenate([[0], a["ends"]])
            geoms = shapely.from_wkb([buf[starts[i] : starts[i + 1]] for i in range(len(a["region"]))])
            for rid, geom in zip(a["region"].tolist(), geoms, strict=True):
                pieces.setdefault(rid, []).append(geom)
    done = np.concatenate(enlarged) if enlarged else np.zeros(0, np.int64)
    geoms, values = assemble(pieces, sieved.region_cls, sieved.region_area, umi, mosaic, simplify, report, done)
    return geoms, values, report


def clear_work(storage, prefix: str) -> None:  # type: ignore[no-untyped-def]
    for item in list(storage.list(prefix)):
        storage.delete(item.key)
