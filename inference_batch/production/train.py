"""``ocsge train``: supervised training of the U-Net on FLAIR-format patches or on the generated territory.

Data:
- **FLAIR format**: ``IMG_<id>.tif`` (5 bands uint8: R, G, B, NIR, E) with ``MSK_<id>.tif`` (FLAIR #1 label
  values 1…19) anywhere under one folder; labels are mapped to the chosen class scheme with
  :func:`ocsge.flair.flair_mask_to_scheme_index` (values the scheme lacks are ignored); a seeded 10 % of the
  patches is held out for validation;
- **a territory** (``--departement/--millesime``, e.g. the generated one): imagery read through the same
  input adapters as ``predict`` (RGB + IRC + DSM/DTM), the truth polygons rasterised to couverture raster
  values (scheme ``couverture``); patches are windows of a regular grid, every ``val_every``-th grid column
  is held out for validation (spatial split).

Training: class weights from the training labels (inverse square root of frequency, mean 1, absent
classes 0), flips and 90° rotations, AdamW with a one-cycle schedule, cross-entropy ignoring unmapped
pixels, bf16 autocast where supported. After each epoch: validation overall accuracy and mIoU (over the
classes present in the validation labels), a resumable checkpoint (``last.pt``: weights, optimiser,
schedule, history) and, when the mIoU improves, the model file (our format, with the training command
and metrics in its card).

Determinism: every random draw derives from ``(seed, epoch, index)`` — the sample order of an epoch, each
patch's augmentation, the weight initialisation — so two runs with the same seed give the same weights,
and a run resumed after its epoch *k* continues exactly as if it had not stopped.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import torch

from inference_batch.production.checkpoint import ModelCard, load_model, save_model
from inference_batch.production.inputs import ImagerySources, StackReader
from inference_batch.production.model import build_model, preset
from inference_batch.production.normalisation import Normalisation
from ocsge.errors import OcsgeError
from ocsge.flair import FLAIR19, flair_mask_to_scheme_index, scheme
from ocsge.progress import console, progress

IGNORE = 255


@dataclass
class TrainConfig:
    out_dir: str
    scheme: str = "couverture"
    preset: str = "unet-small"
    flair_dir: str | None = None
    storage_root: str | None = None
    departement: str | None = None
    millesimes: tuple[int, ...] = ()
    patch: int = 256
    batch_size: int = 8
    epochs: int = 10
    samples_per_epoch: int = 512
    val_samples: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 42
    val_every: int = 5
    precision: str = "auto"
    workers: int = 0
    init: str | None = None  # a model file to fine-tune (same classes and channels)
    name: str = "model"
    command: str = field(default_factory=lambda: " ".join(["ocsge", *sys.argv[1:]]) if sys.argv else "")


# --- patch sources -----------------------------------------------------------------------------------


class FlairPatches:
    """FLAIR-format image/mask pairs; labels mapped to ``scheme`` indices (IGNORE where unmapped)."""

    channels = ("R", "G", "B", "NIR", "E")

    def __init__(self, folder: str | Path, scheme_name: str) -> None:
        folder = Path(folder)
        images = {m.group(1): p for p in folder.rglob("IMG_*.tif") if (m := re.match(r"IMG_(.+)\.tif$", p.name))}
        masks = {m.group(1): p for p in folder.rglob("MSK_*.tif") if (m := re.match(r"MSK_(.+)\.tif$", p.name))}
        if not images:
            raise OcsgeError(f"no FLAIR patches (IMG_*.tif) under {folder}")
        unpaired = sorted(set(images) - set(masks))
        if unpaired:
            raise OcsgeError(
                f"{len(unpaired)} FLAIR image(s) without a mask under {folder}, e.g. IMG_{unpaired[0]}.tif"
            )
        self.ids = sorted(images)
        self.images, self.masks = images, masks
        lut = np.full(256, IGNORE, dtype=np.uint8)
        for value in FLAIR19:
            index = flair_mask_to_scheme_index(value, scheme_name)
            if index is not None:
                lut[value] = index
        self.lut = lut

    def __len__(self) -> int:
        return len(self.ids)

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        pid = self.ids[i]
        with rasterio.open(self.images[pid]) as src:
            if src.count < 5 or src.dtypes[0] != "uint8":
                raise OcsgeError(
                    f"{self.images[pid]}: FLAIR images are 5 bands uint8, got {src.count} × {src.dtypes[0]}"
                )
            x = src.read([1, 2, 3, 4, 5])
        with rasterio.open(self.masks[pid]) as src:
            y = self.lut[src.read(1)]
        if y.shape != x.shape[1:]:
            raise OcsgeError(f"{self.masks[pid]} is {y.shape} but its image is {x.shape[1:]}")
        return x, y

    def split(self, seed: int, val_share: float = 0.1) -> tuple[list[int], list[int]]:
        order = np.random.default_rng([seed, 0xF1A1]).permutation(len(self))
        n_val = max(1, round(len(self) * val_share)) if len(self) > 1 else 0
        return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


class TerritoryPatches:
    """Windows of a territory's imagery with its truth rasterised to couverture values (−1 → indices)."""

    channels = ("R", "G", "B", "NIR", "E")

    def __init__(self, sources: ImagerySources, truth, patch: int, val_every: int) -> None:  # type: ignore[no-untyped-def]
        import shapely

        self.grid = sources.check(self.channels)
        self.reader = StackReader(sources, self.channels, self.grid)
        self.patch, self.val_every = patch, val_every
        from ocsge.nomenclature import raster_value

        values = np.array([raster_value("couverture", c) if c else 0 for c in truth["code_cs"]], dtype=np.uint8)
        self.geoms = truth.geometry.to_numpy()
        self.values = values
        self.tree = shapely.STRtree(self.geoms)
        rows, cols = self.grid.height // patch, self.grid.width // patch
        if rows == 0 or cols == 0:
            raise OcsgeError(f"the territory ({self.grid.width} × {self.grid.height} px) is smaller than one patch")
        self.windows = [(r * patch, c * patch, c) for r in range(rows) for c in range(cols)]

    def __len__(self) -> int:
        return len(self.windows)

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["tree"] = None  # rebuilt in the worker
        return state

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        import shapely
        from rasterio.features import rasterize
        from rasterio.windows import Window

        if self.tree is None:
            self.tree = shapely.STRtree(self.geoms)
        r, c, _ = self.windows[i]
        win = Window(c, r, self.patch, self.patch)
        x, valid = self.reader.read(win)
        t = self.grid.window_transform(win)
        size = self.patch * self.grid.res
        hits = self.tree.query(shapely.box(t.c, t.f - size, t.c + size, t.f))
        y = np.zeros((self.patch, self.patch), dtype=np.uint8)
        if len(hits):
            y = rasterize(((self.geoms[j], int(self.values[j])) for j in hits), out_shape=y.shape, transform=t,
                          dtype="uint8")
        y = np.where((y > 0) & valid, y - 1, IGNORE).astype(np.uint8)
        return x, y

    def split(self, seed: int) -> tuple[list[int], list[int]]:
        val = [i for i, (_, _, c) in enumerate(self.windows) if c % self.val_every == self.val_every // 2]
        val_set = set(val)
        return [i for i in range(len(self)) if i not in val_set], val


class ConcatPatches:
    def __init__(self, parts: Sequence[object]) -> None:
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])  # type: ignore[arg-type]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        k = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return self.parts[k].read(i - int(self.offsets[k]))  # type: ignore[attr-defined]


# --- dataset with seeded augmentation ---------------------------------------------------------------------


def augment(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Flips and 90° rotations (the 8 symmetries of the square), applied to image and labels alike."""
    k = int(rng.integers(0, 4))
    flip = bool(rng.integers(0, 2))
    x, y = np.rot90(x, k, axes=(1, 2)), np.rot90(y, k, axes=(0, 1))
    if flip:
        x, y = x[:, :, ::-1], y[:, ::-1]
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


class EpochDataset(torch.utils.data.Dataset):
    def __init__(self, source, indices: Sequence[int], seed: int, epoch: int, train: bool) -> None:  # type: ignore[no-untyped-def]
        self.source, self.indices, self.seed, self.epoch, self.train = source, list(indices), seed, epoch, train

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.source.read(self.indices[j])
        if self.train:
            x, y = augment(x, y, np.random.default_rng([self.seed, self.epoch, j]))
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64))


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # raster handles are opened lazily, in each worker


def epoch_indices(train: Sequence[int], n: int, seed: int, epoch: int) -> list[int]:
    """``n`` training patches for this epoch: a seeded permutation, repeated if the set is small."""
    rng = np.random.default_rng([seed, epoch, 0x5A])
    reps = math.ceil(n / len(train))
    return [int(i) for i in np.concatenate([rng.permutation(train) for _ in range(reps)])[:n]]


def class_weights(source, indices: Sequence[int], n_classes: int, sample: int = 64, seed: int = 0) -> np.ndarray:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng([seed, 0xC1A5])
    picked = rng.choice(indices, size=min(sample, len(indices)), replace=False)
    counts = np.zeros(n_classes, dtype=np.float64)
    for i in picked:
        _, y = source.read(int(i))
        counts += np.bincount(y[y != IGNORE].ravel(), minlength=n_classes)[:n_classes]
    freq = counts / max(counts.sum(), 1)
    w = np.where(freq > 0, 1 / np.sqrt(np.maximum(freq, 1e-12)), 0.0)
    present = w > 0
    w[present] /= w[present].mean()
    return np.minimum(w, 10.0).astype(np.float32)


# --- metrics --------------------------------------------------------------------------------------------


def confusion(pred: torch.Tensor, target: torch.Tensor, n: int) -> np.ndarray:
    keep = target != IGNORE
    idx = target[keep] * n + pred[keep]
    return torch.bincount(idx, minlength=n * n).reshape(n, n).cpu().numpy()


def scores(cm: np.ndarray) -> dict[str, object]:
    tp = np.diag(cm).astype(np.float64)
    ref, pred = cm.sum(1), cm.sum(0)
    present = ref > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / (ref + pred - tp)
    return {"oa": float(tp.sum() / max(cm.sum(), 1)), "miou": float(np.nanmean(iou[present])) if present.any() else 0.0,
            "iou": [None if not p else round(float(v), 4) for v, p in zip(iou, present, strict=True)]}


# --- the loop --------------------------------------------------------------------------------------------


def _sources(cfg: TrainConfig):  # type: ignore[no-untyped-def]
    if cfg.flair_dir:
        src = FlairPatches(cfg.flair_dir, cfg.scheme)
        train, val = src.split(cfg.seed)
        return src, train, val, "FLAIR " + str(cfg.flair_dir)
    if not (cfg.departement and cfg.millesimes):
        raise OcsgeError("give FLAIR patches (--flair) or a territory (--departement and --millesime)")
    if cfg.scheme != "couverture":
        raise OcsgeError(
            f"a territory's truth is in couverture codes: train it with scheme 'couverture', not {cfg.scheme!r}"
        )
    import geopandas as gpd

    from inference_batch.production.predict import sources_from_storage
    from ocsge.products import product_key
    from ocsge.storage import open_storage

    storage = open_storage(cfg.storage_root)
    parts, train, val = [], [], []
    for year in cfg.millesimes:
        key = product_key("truth", cfg.departement, year)
        if not storage.exists(key):
            raise OcsgeError(f"no truth {key} under {storage.root}")
        with storage.local_copy(key) as path:
            truth = gpd.read_parquet(path)
        part = TerritoryPatches(sources_from_storage(storage, cfg.departement, year), truth, cfg.patch, cfg.val_every)
        t, v = part.split(cfg.seed)
        offset = sum(len(p) for p in parts)
        train += [i + offset for i in t]
        val += [i + offset for i in v]
        parts.append(part)
    return ConcatPatches(parts), train, val, f"territory {cfg.departement} {'+'.join(map(str, cfg.millesimes))}"


def train(cfg: TrainConfig, resume: bool = False) -> dict[str, object]:
    """Train (or resume) and return the history; the best model is written to ``out_dir/model.safetensors``."""
    from inference_batch.production.predict import resolve_precision

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    last = out / "last.pt"
    state = None
    if resume:
        if not last.exists():
            raise OcsgeError(f"nothing to resume: {last} does not exist")
        state = torch.load(last, map_location="cpu", weights_only=False)
        # the saved settings are authoritative; only the folder and the (same) number of epochs come from the call
        cfg = TrainConfig(**{**state["config"], "out_dir": cfg.out_dir, "epochs": cfg.epochs,
                             "millesimes": tuple(state["config"]["millesimes"])})
    cls = scheme(cfg.scheme)
    source, train_idx, val_idx, data_label = _sources(cfg)
    if not train_idx or not val_idx:
        raise OcsgeError(f"{data_label}: {len(train_idx)} training and {len(val_idx)} validation patches; need both")
    device = torch.device("cpu" if not torch.cuda.is_available() else "cuda")
    precision = resolve_precision(cfg.precision, device)
    torch.manual_seed(cfg.seed)
    channels = source.parts[0].channels if isinstance(source, ConcatPatches) else source.channels
    spec = preset(cfg.preset, cls.n_classes, len(channels))
    model = build_model(spec)
    if cfg.init:
        init_model, init_card = load_model(cfg.init)
        init_card.check_compatible(scheme_name=cfg.scheme, channels=channels, what=f"initial model {cfg.init}")
        if init_card.spec != spec:
            spec = init_card.spec
            model = init_model
        else:
            model.load_state_dict(init_model.state_dict())
    model = model.to(device)
    norm = Normalisation.flair(channels)
    steps_per_epoch = math.ceil(cfg.samples_per_epoch / cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
                                                pct_start=0.15)
    weights = class_weights(source, train_idx, cls.n_classes, seed=cfg.seed)
    history: list[dict[str, object]] = []
    best, start_epoch = -1.0, 0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if state["total_steps"] != cfg.epochs * steps_per_epoch:
            planned = state["config"]["epochs"]
            raise OcsgeError(f"{last} was planned for {planned} epochs: resume with the same --epochs")
        sched.load_state_dict(state["scheduler"])
        history, best, start_epoch = state["history"], state["best"], state["epoch"] + 1
        weights = np.array(state["class_weights"], dtype=np.float32)
        console.print(f"  resuming {last} after epoch {start_epoch}")
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.from_numpy(weights).to(device), ignore_index=IGNORE)
    val_order = sorted(np.random.default_rng([cfg.seed, 0xBA1]).permutation(val_idx)[: cfg.val_samples].tolist())
    card_base = {"data": data_label, "command": cfg.command, "seed": cfg.seed, "preset": cfg.preset,
                 "patch": cfg.patch, "batch_size": cfg.batch_size, "samples_per_epoch": cfg.samples_per_epoch,
                 "lr": cfg.lr, "class_weights": [round(float(w), 4) for w in weights],
                 "train_patches": len(train_idx), "val_patches": len(val_order)}

    def loader(indices: Sequence[int], epoch: int, is_train: bool) -> torch.utils.data.DataLoader:
        g = torch.Generator()
        g.manual_seed(cfg.seed * 1000 + epoch)
        return torch.utils.data.DataLoader(EpochDataset(source, indices, cfg.seed, epoch, is_train),
                                           batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.workers,
                                           worker_init_fn=_worker_init if cfg.workers else None, generator=g)

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        model.train()
        losses = []
        with progress(f"epoch {epoch + 1}/{cfg.epochs}", total=steps_per_epoch) as advance:
            for x, y in loader(epoch_indices(train_idx, cfg.samples_per_epoch, cfg.seed, epoch), epoch, True):
                x, y = norm.apply(x.to(device)), y.to(device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                    logits = model(x)
                loss = loss_fn(logits.float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                losses.append(float(loss.detach()))
                advance(info=f"loss {np.mean(losses[-20:]):.3f}")
        model.eval()
        cm = np.zeros((cls.n_classes, cls.n_classes), dtype=np.int64)
        with torch.inference_mode():
            for x, y in loader(val_order, epoch, False):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                    logits = model(norm.apply(x.to(device)))
                cm += confusion(logits.float().argmax(1), y.to(device), cls.n_classes)
        s = scores(cm)
        record = {"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 5), "val_oa": round(s["oa"], 5),
                  "val_miou": round(s["miou"], 5), "val_iou": s["iou"], "seconds": round(time.perf_counter() - t0, 1)}
        history.append(record)
        console.print(f"  epoch {epoch + 1}: loss {record['loss']:.4f}, val OA {100 * s['oa']:.2f} %, "
                      f"mIoU {100 * s['miou']:.2f} % ({record['seconds']} s)")
        if s["miou"] > best:
            best = s["miou"]
            card = ModelCard(spec=spec, scheme=cfg.scheme, channels=tuple(channels), normalisation=norm, name=cfg.name,
                             training={**card_base, "epochs": epoch + 1, "best_epoch": epoch + 1,
                                       "val_oa": record["val_oa"], "val_miou": record["val_miou"],
                                       "val_iou": dict(zip(cls.classes, s["iou"], strict=True))})
            save_model(out / "model.safetensors", model, card)
        tmp = out / ".last.pt.tmp"
        torch.save({"config": asdict(cfg), "model": model.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "total_steps": cfg.epochs * steps_per_epoch, "epoch": epoch,
                    "history": history, "best": best, "class_weights": weights.tolist()}, tmp)
        os.replace(tmp, last)
        (out / "history.json").write_text(json.dumps(history, indent=1))
    return {"history": history, "best_miou": best, "model": str(out / "model.safetensors")}
