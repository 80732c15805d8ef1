"""Batch inference: a département's imagery → per-block class and confidence COGs.

Work is split into blocks (:mod:`inference_batch.production.tiling`); ``AWS_BATCH_JOB_ARRAY_INDEX``
selects one block (an AWS Batch array child), otherwise every block runs in turn. Per block:

- tiles are read by a DataLoader whose workers each open their own raster handles (``worker_init_fn``
  → :meth:`StackReader.open`), batched, normalised on the device;
- the model runs with its batch norms folded into the convolutions, under bf16 autocast with
  channels_last where the device supports it (fp32 otherwise), optionally ``torch.compile``-d;
  softmax outputs are summed per couverture class (a FLAIR model's herbaceous + agricultural + plowed
  all vote for CS2.2.1) and reduced on the device to a class and a confidence (centre mode) or
  weighted probabilities (blend mode);
- a writer thread assembles tiles and encodes the COGs of block *k* while the model computes block
  *k + 1* (IGN's flair-detect writes in its main loop, idling the GPU);
- outputs are written atomically (temporary key, then rename/copy) — confidence first, the class COG
  last; a block counts as done when its class COG exists, opens, has the block's size and grid and
  the tags of this model and tiling. A re-run skips done blocks, so a killed job resumes where it
  stopped, and a block computed with another model or tiling is recomputed.

Outputs: ``product_key("prediction"|"confidence", dep, year, block=id)``: uint8 COGs on the imagery
grid, class values are couverture raster values (``ocsge.nomenclature``, 0 = nodata) with the official
palette; confidence is the winning class's probability × 255 (0 = nodata).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.io import MemoryFile
from rasterio.windows import Window

from inference_batch.production.checkpoint import ModelCard, load_model
from inference_batch.production.inputs import Grid, ImagerySources, InputError, StackReader, with_rasterised_laz
from inference_batch.production.model import fuse_for_inference
from inference_batch.production.tiling import Block, Tile, Tiling, layout_blocks
from inference_batch.writers.cog import copy_to_cog
from ocsge.errors import OcsgeError
from ocsge.nomenclature import CS_LEAVES, Kind, palette
from ocsge.products import product_key
from ocsge.progress import console, progress
from ocsge.storage import Storage

N_VALUES = len(CS_LEAVES) + 1  # couverture raster values 0 (nodata) … 14
ARRAY_INDEX_ENV = "AWS_BATCH_JOB_ARRAY_INDEX"


@dataclass
class PredictOptions:
    tile: int = 512
    margin: int = 64
    mode: str = "centre"  # "centre" (IGN's centre crop) or "blend" (Hann-weighted average)
    batch_size: int = 8
    num_workers: int | None = None  # None: one per spare core, at most 8
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1"…
    precision: str = "auto"  # "auto" (bf16 where supported), "fp32", "bf16"
    channels_last: bool | None = None  # None: on with bf16
    compile: bool = False
    block_size: int = 8192
    force: bool = False  # recompute done blocks
    queue_size: int = 16  # batches waiting for the writer (bounds memory)
    compress: str = "LZW"


@dataclass
class PredictReport:
    departement: str
    millesime: int
    model: str
    device: str
    precision: str
    mode: str
    blocks_total: int
    blocks_run: list[str] = field(default_factory=list)
    blocks_skipped: list[str] = field(default_factory=list)
    tiles: int = 0
    tile_pixels: int = 0
    km2: float = 0.0
    seconds: float = 0.0

    @property
    def km2_per_hour(self) -> float:
        return self.km2 / self.seconds * 3600 if self.seconds else 0.0

    @property
    def patches512_per_s(self) -> float:
        """Model input throughput in 512 × 512 patch equivalents."""
        return self.tile_pixels / (512 * 512) / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out.update(km2_per_hour=self.km2_per_hour, patches512_per_s=self.patches512_per_s)
        return out


# --- device and precision ------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OcsgeError(f"device {name!r} requested but CUDA is not available")
    return device


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def resolve_precision(name: str, device: torch.device) -> str:
    if name == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    if name not in ("fp32", "bf16"):
        raise OcsgeError(f"unknown precision {name!r}: expected auto, fp32 or bf16")
    if name == "bf16" and not bf16_supported(device):
        raise OcsgeError(f"bf16 is not supported on {device}")
    return name


# --- model runner --------------------------------------------------------------------------------


class Runner:
    """Normalise, run, and reduce a batch on the device."""

    def __init__(self, model: torch.nn.Module, card: ModelCard, device: torch.device, precision: str,
                 channels_last: bool, compile_model: bool) -> None:
        self.card, self.device, self.precision, self.channels_last = card, device, precision, channels_last
        model = fuse_for_inference(model).to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = torch.compile(model) if compile_model else model
        values = card.class_scheme.lookup_table()  # model output index → couverture raster value
        self.lut = torch.tensor(values, dtype=torch.uint8, device=device)
        self.group = torch.tensor(values, dtype=torch.long, device=device)
        # one model class per couverture value (our couverture models): no need to sum probabilities
        self.one_to_one = len(set(values)) == len(values)
        self.norm = card.normalisation

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        x = self.norm.apply(x)  # type: ignore[union-attr]
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            return self.model(x)

    @torch.inference_mode()
    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, h, w)`` uint8 → ``(N, 15, h, w)`` float32 probabilities per couverture value."""
        probs = torch.softmax(self._logits(x).float(), dim=1)
        out = torch.zeros((probs.shape[0], N_VALUES, *probs.shape[2:]), dtype=probs.dtype, device=probs.device)
        return out.index_add_(1, self.group, probs)

    @torch.inference_mode()
    def classes(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Class value and confidence (uint8), reduced on the device so that little crosses the bus."""
        if self.one_to_one:  # max softmax probability = 1 / Σ exp(l − l_max), without normalising every class
            logits = self._logits(x).float()
            top, idx = logits.max(dim=1)
            conf = 1.0 / torch.exp(logits - top[:, None]).sum(dim=1)
            cls = self.lut[idx]
        else:
            conf, cls = self.probabilities(x).max(dim=1)
            cls = cls.to(torch.uint8)
        conf = torch.round(conf * 255).to(torch.uint8)
        return cls.cpu().numpy(), conf.cpu().numpy()


# --- data loading --------------------------------------------------------------------------------


class TileDataset(torch.utils.data.Dataset):
    """Tiles of all pending blocks in order; errors are returned, not raised, so the message stays clean."""

    def __init__(self, reader: StackReader, tiles: Sequence[Tile]) -> None:
        self.reader, self.tiles = reader, list(tiles)
        self.shape = (len(reader.channels), tiles[0].height, tiles[0].width) if tiles else (0, 0, 0)

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, i: int) -> dict[str, object]:
        try:
            x, valid = self.reader.read(self.tiles[i].window)
            return {"i": i, "x": torch.from_numpy(x), "valid": torch.from_numpy(valid), "error": ""}
        except InputError as exc:
            error = str(exc)
        except rasterio.errors.RasterioError as exc:  # a truncated or corrupt COG: GDAL fails on its tiles
            error = read_error(self.reader.sources, self.tiles[i].window, exc)
        return {"i": i, "x": torch.zeros(self.shape, dtype=torch.uint8),
                "valid": torch.zeros(self.shape[1:], dtype=torch.bool), "error": error}


def read_error(sources: ImagerySources, window: Window, exc: BaseException) -> str:
    """The message of a failed read, naming the input file (GDAL's own message names it by base name, deep in
    the exception's causes) and the window, without a traceback."""
    details: list[str] = []
    cause: BaseException | None = exc
    while cause is not None and len(details) < 8:
        text = str(cause).strip()
        if text and "See previous exception" not in text and text not in details:
            details.append(text)
        cause = cause.__cause__ or cause.__context__
    detail = "; ".join(dict.fromkeys([details[0], details[-1]])) if details else type(exc).__name__
    paths = [p for p in (sources.stack, sources.rgb, sources.irc, sources.dsm, sources.dtm, sources.height) if p]
    named = [p for p in paths if any(Path(p).name in d for d in details)] or paths
    return (f"cannot read {' or '.join(named)} at column {int(window.col_off)}, row {int(window.row_off)} "
            f"({int(window.width)}×{int(window.height)} px): the file is truncated or corrupt ({detail})")


def _init_worker(_: int) -> None:
    info = torch.utils.data.get_worker_info()
    torch.set_num_threads(1)
    info.dataset.reader.open()  # type: ignore[union-attr]  # own handles in this process


def default_workers() -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, cpus - 1)) if cpus > 2 else 1


# --- block assembly and writing ------------------------------------------------------------------


@dataclass
class BlockTarget:
    block: Block
    tiles: list[Tile]
    pred_key: str
    conf_key: str
    tags: dict[str, str]


class Assembler:
    """Collects tile results of one block into its class and confidence arrays.

    Blend mode keeps float accumulators for one strip of ``tile`` rows only (tiles arrive row by row,
    and rows above the newest tile row are final), so memory is ``15 × tile × block_width × 4`` bytes
    rather than per block pixel.
    """

    def __init__(self, target: BlockTarget, tiling: Tiling) -> None:
        self.t, self.tiling = target, tiling
        b = target.block
        self.cls = np.zeros((b.height, b.width), dtype=np.uint8)
        self.conf = np.zeros((b.height, b.width), dtype=np.uint8)
        if tiling.mode == "blend":
            rows = tiling.y.span
            self.base = b.row_off  # global row of the strip's first row
            self.acc = np.zeros((N_VALUES, rows, b.width), dtype=np.float32)
            self.wsum = np.zeros((rows, b.width), dtype=np.float32)
            self.valid = np.zeros((rows, b.width), dtype=bool)

    def _overlap(self, tile: Tile, keep: bool) -> tuple[slice, slice, slice, slice] | None:
        """Block-relative and tile-relative slices of what ``tile`` decides (keep) or touches in the block."""
        b = self.t.block
        if keep:
            ky, kx = self.tiling.y.keep[tile.iy], self.tiling.x.keep[tile.ix]
        else:
            ky, kx = (tile.row, tile.row + tile.height), (tile.col, tile.col + tile.width)
        r0, r1 = max(ky[0], b.row_off), min(ky[1], b.row_off + b.height)
        c0, c1 = max(kx[0], b.col_off), min(kx[1], b.col_off + b.width)
        if r0 >= r1 or c0 >= c1:
            return None
        return (slice(r0 - b.row_off, r1 - b.row_off), slice(c0 - b.col_off, c1 - b.col_off),
                slice(r0 - tile.row, r1 - tile.row), slice(c0 - tile.col, c1 - tile.col))

    def add_classes(self, tile: Tile, cls: np.ndarray, conf: np.ndarray) -> None:
        ov = self._overlap(tile, keep=True)
        if ov is not None:
            by, bx, ty, tx = ov
            self.cls[by, bx] = cls[ty, tx]
            self.conf[by, bx] = conf[ty, tx]

    def add_probabilities(self, tile: Tile, probs: np.ndarray, valid: np.ndarray) -> None:
        b = self.t.block
        first_row = max(tile.row, b.row_off)
        if first_row > self.base:
            self._flush(first_row)
        ov = self._overlap(tile, keep=False)
        if ov is None:
            return
        by, bx, ty, tx = ov
        shift = self.base - b.row_off
        sy = slice(by.start - shift, by.stop - shift)
        w = self.tiling.weights(tile)[ty, tx]
        self.acc[:, sy, bx] += probs[:, ty, tx] * w
        self.wsum[sy, bx] += w
        self.valid[sy, bx] |= valid[ty, tx]

    def _flush(self, upto: int) -> None:
        """Finalise global rows ``base … upto`` and slide the strip down."""
        b = self.t.block
        upto = min(upto, b.row_off + b.height)
        n = min(upto - self.base, self.acc.shape[1])
        if n <= 0:
            return
        probs = self.acc[:, :n] / np.maximum(self.wsum[:n], 1e-12)
        r0 = self.base - b.row_off
        cls = np.argmax(probs, axis=0).astype(np.uint8)
        conf = np.rint(np.max(probs, axis=0) * 255).astype(np.uint8)
        valid = self.valid[:n]
        cls[~valid] = 0
        conf[~valid] = 0
        self.cls[r0 : r0 + n], self.conf[r0 : r0 + n] = cls, conf
        rows = self.acc.shape[1]
        # numpy copies overlapping slices safely
        self.acc[:, : rows - n] = self.acc[:, n:]
        self.acc[:, rows - n :] = 0
        for arr in (self.wsum, self.valid):
            arr[: rows - n] = arr[n:]
            arr[rows - n :] = 0
        self.base = upto

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        if self.tiling.mode == "blend":
            b = self.t.block
            while self.base < b.row_off + b.height:
                self._flush(b.row_off + b.height)
            del self.acc, self.wsum, self.valid
        return self.cls, self.conf


def write_cog(path: str | Path, array: np.ndarray, grid: Grid, window_transform, *, tags: dict[str, str],  # type: ignore[no-untyped-def]
              colormap: dict[int, tuple[int, int, int, int]] | None, resampling: str, compress: str) -> None:
    """A single-band uint8 COG (512 blocks, overviews, nodata 0) through an in-memory GeoTIFF."""
    profile = {"driver": "GTiff", "dtype": "uint8", "count": 1, "height": array.shape[0], "width": array.shape[1],
               "crs": grid.crs, "transform": window_transform, "nodata": 0}
    with MemoryFile() as mem:
        with mem.open(**profile) as tmp:
            tmp.write(array, 1)
            if colormap is not None:
                tmp.write_colormap(1, colormap)
            tmp.update_tags(**tags)
        with mem.open() as src:
            copy_to_cog(src, path, resampling=resampling, compress=compress)


class Writer(threading.Thread):
    """Consumes tile results, assembles blocks and writes their COGs while the model keeps computing."""

    def __init__(self, storage: Storage, grid: Grid, tiling: Tiling, options: PredictOptions,
                 on_block_done: Callable[[BlockTarget], None]) -> None:
        super().__init__(name="ocsge-predict-writer", daemon=True)
        self.storage, self.grid, self.tiling, self.options = storage, grid, tiling, options
        self.on_block_done = on_block_done
        self.queue: queue.Queue[tuple | None] = queue.Queue(maxsize=options.queue_size)
        self.error: BaseException | None = None
        self._current: dict[int, Assembler] = {}

    def run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.error is not None:
                continue  # drain after a failure so the producer never blocks
            try:
                self._handle(item)
            except BaseException as exc:  # reported to the main thread
                self.error = exc

    def _handle(self, item: tuple) -> None:
        kind, target = item[0], item[1]
        asm = self._current.get(target.block.index)
        if asm is None:
            asm = self._current[target.block.index] = Assembler(target, self.tiling)
        if kind == "classes":
            for tile, cls, conf in item[2]:
                asm.add_classes(tile, cls, conf)
        elif kind == "probs":
            for tile, probs, valid in item[2]:
                asm.add_probabilities(tile, probs, valid)
        elif kind == "end":
            cls, conf = asm.finish()
            del self._current[target.block.index]
            self._write(target, cls, conf)
            self.on_block_done(target)

    def _write(self, target: BlockTarget, cls: np.ndarray, conf: np.ndarray) -> None:
        transform = self.grid.window_transform(target.block.window)
        compress = self.options.compress
        with self.storage.writer(target.conf_key) as tmp:
            write_cog(tmp, conf, self.grid, transform, tags=target.tags, colormap=None, resampling="AVERAGE",
                      compress=compress)
        with self.storage.writer(target.pred_key) as tmp:  # last: its presence marks the block done
            write_cog(tmp, cls, self.grid, transform, tags=target.tags, colormap=palette(Kind.COUVERTURE),
                      resampling="MODE", compress=compress)

    def put(self, item: tuple) -> None:
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue


def block_is_done(storage: Storage, target: BlockTarget, grid: Grid) -> bool:
    """A finished, valid block: both COGs exist, the class COG opens with the block's grid and our tags."""
    if not (storage.exists(target.pred_key) and storage.exists(target.conf_key)):
        return False
    try:
        with rasterio.open(storage.gdal_path(target.pred_key)) as src:
            tags = src.tags()
            expected = grid.window_transform(target.block.window)
            same_grid = (src.width, src.height) == (target.block.width, target.block.height) and all(
                abs(a - b) < 1e-6 for a, b in zip(src.transform, expected, strict=True)
            )
            return same_grid and all(tags.get(k) == v for k, v in target.tags.items())
    except (rasterio.errors.RasterioIOError, OSError):
        return False


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


# --- the job -------------------------------------------------------------------------------------


def select_blocks(blocks: Sequence[Block], block_ids: Sequence[str] | None, array_index: int | None) -> list[Block]:
    if array_index is not None:
        if not 0 <= array_index < len(blocks):
            raise OcsgeError(
                f"{ARRAY_INDEX_ENV}={array_index} but the imagery has {len(blocks)} block(s) "
                f"(indices 0…{len(blocks) - 1})"
            )
        return [blocks[array_index]]
    if block_ids:
        by_id = {b.id: b for b in blocks}
        unknown = [i for i in block_ids if i not in by_id]
        if unknown:
            raise OcsgeError(f"unknown block id(s) {', '.join(unknown)}: the imagery has {', '.join(by_id)}")
        return [by_id[i] for i in block_ids]
    return list(blocks)


def array_index_from_env() -> int | None:
    raw = os.environ.get(ARRAY_INDEX_ENV)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise OcsgeError(f"{ARRAY_INDEX_ENV}={raw!r} is not an integer") from None


def predict(
    sources: ImagerySources,
    model_path: str | Path,
    *,
    storage: Storage,
    departement: str,
    millesime: int,
    options: PredictOptions | None = None,
    block_ids: Sequence[str] | None = None,
    array_index: int | None = None,
    on_block_done: Callable[[str], None] | None = None,
) -> PredictReport:
    """Predict the selected blocks (all by default) and write their COGs; see the module docstring."""
    opts = options or PredictOptions()
    device = resolve_device(opts.device)
    precision = resolve_precision(opts.precision, device)
    channels_last = opts.channels_last if opts.channels_last is not None else precision == "bf16"
    model, card = load_model(model_path, device=device)
    channels = card.channels
    sources = ImagerySources(**{**sources.__dict__, "elevation_scale": card.elevation_scale})
    grid = sources.check(channels)
    tiling = Tiling(grid.width, grid.height, opts.tile, opts.margin, opts.mode)
    blocks = select_blocks(layout_blocks(grid.width, grid.height, opts.block_size), block_ids, array_index)
    model_id = file_digest(model_path)
    base_tags = {"OCSGE_MODEL": model_id, "OCSGE_SCHEME": card.scheme,
                 "OCSGE_TILING": f"{opts.mode}:{opts.tile}:{opts.margin}",
                 "OCSGE_DEPARTEMENT": str(departement), "OCSGE_MILLESIME": str(millesime)}
    targets = []
    for b in blocks:
        tags = {**base_tags, "OCSGE_BLOCK": b.id, "OCSGE_BLOCK_OFFSET": f"{b.row_off},{b.col_off}",
                "OCSGE_GRID": f"{grid.width},{grid.height}"}
        targets.append(BlockTarget(b, tiling.tiles(b), product_key("prediction", departement, millesime, block=b.id),
                                   product_key("confidence", departement, millesime, block=b.id), tags))
    report = PredictReport(str(departement), millesime, Path(model_path).name, str(device), precision, opts.mode,
                           len(blocks))
    pending = []
    for t in targets:
        if not opts.force and block_is_done(storage, t, grid):
            report.blocks_skipped.append(t.block.id)
        else:
            pending.append(t)
    if report.blocks_skipped:
        console.print(f"  {len(report.blocks_skipped)} block(s) already done, skipped")
    if not pending:
        return report

    runner = Runner(model, card, device, precision, channels_last, opts.compile)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ocsge-predict-") as workdir:
        job_sources = with_rasterised_laz(sources, grid, workdir)
        reader = StackReader(job_sources, channels, grid)
        _run(pending, reader, runner, storage, grid, tiling, opts, report, device, on_block_done)
    report.seconds = time.perf_counter() - start
    return report


def _run(pending: list[BlockTarget], reader: StackReader, runner: Runner, storage: Storage, grid: Grid,
         tiling: Tiling, opts: PredictOptions, report: PredictReport, device: torch.device,
         on_block_done: Callable[[str], None] | None) -> None:
    tiles = [t for target in pending for t in target.tiles]
    owner = [target for target in pending for _ in target.tiles]
    total_km2 = sum(grid.km2(t.block.pixels) for t in pending)
    done_blocks: list[str] = []

    def block_done(target: BlockTarget) -> None:
        done_blocks.append(target.block.id)
        if on_block_done is not None:
            on_block_done(target.block.id)

    workers = default_workers() if opts.num_workers is None else opts.num_workers
    loader = torch.utils.data.DataLoader(
        TileDataset(reader, tiles), batch_size=opts.batch_size, shuffle=False, num_workers=workers,
        worker_init_fn=_init_worker if workers else None, pin_memory=device.type == "cuda",
        persistent_workers=False, prefetch_factor=4 if workers else None,
    )
    writer = Writer(storage, grid, tiling, opts, block_done)
    writer.start()
    share = {id(t): grid.km2(t.block.pixels) / len(t.tiles) for t in pending}
    t0 = time.perf_counter()
    current: BlockTarget | None = None
    kind = "classes" if tiling.mode == "centre" else "probs"
    try:
        with progress(f"predict {len(pending)} block(s), {total_km2:.2f} km²", total=total_km2, unit="km²") as advance:
            for batch in loader:
                errors = [e for e in batch["error"] if e]
                if errors:
                    raise InputError(errors[0])
                idx = batch["i"].tolist()
                x, valid = batch["x"], batch["valid"].numpy()
                active = valid.reshape(len(idx), -1).any(axis=1)
                results = _infer(runner, tiling.mode, x, valid, active)
                items: list[tuple] = []
                for j, i in enumerate(idx):
                    target = owner[i]
                    if current is not None and target is not current:
                        if items:
                            writer.put((kind, current, items))
                            items = []
                        writer.put(("end", current))
                    current = target
                    items.append((tiles[i], *results[j]))
                if items:
                    writer.put((kind, current, items))
                km2 = sum(share[id(owner[i])] for i in idx)
                report.tiles += len(idx)
                report.tile_pixels += int(x.shape[0] * x.shape[2] * x.shape[3])
                report.km2 += km2
                dt = time.perf_counter() - t0
                advance(km2, info=f"{report.tiles / dt:.1f} tiles/s, {report.km2 / dt * 3600:.2f} km²/h")
            if current is not None:
                writer.put(("end", current))
    finally:
        with contextlib.suppress(Exception):
            writer.queue.put(None, timeout=600)
        writer.join()
        reader.close()
    if writer.error is not None:
        raise writer.error
    report.blocks_run.extend(done_blocks)


def _infer(runner: Runner, mode: str, x: torch.Tensor, valid: np.ndarray, active: np.ndarray) -> list[tuple]:
    """Per tile: (class, confidence) in centre mode, (probabilities, validity) in blend mode."""
    n, h, w = valid.shape
    out: list[tuple] = []
    if mode == "centre":
        cls = np.zeros((n, h, w), dtype=np.uint8)
        conf = np.zeros((n, h, w), dtype=np.uint8)
        if active.any():
            c, p = runner.classes(x[torch.from_numpy(active)])
            cls[active], conf[active] = c, p
        cls[~valid] = 0
        conf[~valid] = 0
        return [(cls[k], conf[k]) for k in range(n)]
    probs = np.zeros((n, N_VALUES, h, w), dtype=np.float32)
    if active.any():
        probs[active] = runner.probabilities(x[torch.from_numpy(active)]).cpu().numpy()
    out = [(probs[k], valid[k]) for k in range(n)]
    return out


def sources_from_storage(storage: Storage, departement: str, millesime: int) -> ImagerySources:
    """The imagery of a département and millésime as stored under the product keys (generated territory)."""
    keys = {name: product_key(f"imagery_{name}", departement, millesime) for name in ("rgb", "irc", "dsm", "dtm")}
    missing = [k for k in keys.values() if not storage.exists(k)]
    if keys["rgb"] in missing:
        raise OcsgeError(f"no imagery for {departement} {millesime}: {keys['rgb']} not found under {storage.root}")
    paths = {name: storage.gdal_path(key) for name, key in keys.items() if key not in missing}
    return ImagerySources(rgb=paths.get("rgb"), irc=paths.get("irc"), dsm=paths.get("dsm"), dtm=paths.get("dtm"))


def list_blocks(storage: Storage, departement: str, millesime: int, product: str = "prediction") -> Iterator[str]:
    from ocsge.products import block_prefix

    for info in storage.list(block_prefix(product, departement, millesime)):
        if info.key.endswith(".tif"):
            yield info.key
