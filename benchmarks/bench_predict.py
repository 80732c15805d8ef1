"""Batch inference: our ``predict`` against a reference implementation of IGN's flair-detect scheme.

Both run on the same 5-band raster (R, G, B, NIR, E stacked in one uint8 GeoTIFF, as FLAIR-1's
``zone_detect`` expects) with the same model and weights, in the same process, interleaved
(reference, ours, ours, reference …) so that background load hits both alike.

The reference (:func:`flair_detect`) follows FLAIR-1 ``src/zone_detect`` (ml-anchors §2.1): a geographic
grid of 512 px tiles with a 128 px margin (stride 256) starting one margin outside the raster, the last
row/column shifted back inside; a Dataset that opens the raster once in ``__init__`` and reads windows
with ``boundless=True`` (zero fill); fp32; batch 4; softmax, centre crop ``[128:384]``, argmax; each
batch written to one tiled LZW GeoTIFF in the main loop.

Ours: :func:`inference_batch.production.predict.predict` — blocks, a global tile grid (512/64 by default),
workers with their own handles, bf16 autocast + channels_last where supported, a writer thread, COG
blocks (class + confidence). Also run with the reference's settings (fp32, 512/128, batch 4) to separate
what the tiling and precision bring from what the pipeline brings.

Reported: wall time, km²/h of imagery, 512² patches per second through the model, and the agreement of
the class maps with the reference's.

    python benchmarks/bench_predict.py --territory ROOT --departement S01 --millesime 2024 --size 2500
    python benchmarks/bench_predict.py --territory ROOT --departement S01 --millesime 2024 --size 1536 \
        --random-preset unet-resnet34 --label r34
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from inference_batch.production.checkpoint import load_model
from inference_batch.production.inputs import ImagerySources, StackReader
from inference_batch.production.predict import PredictOptions, predict
from ocsge.nomenclature import CS_LEAVES
from ocsge.storage import LocalStorage

OUT = Path(__file__).parent / "out"


# --- the reference: IGN's flair-detect scheme ------------------------------------------------------


def ign_slices(width: int, height: int, tile: int = 512, margin: int = 128) -> list[tuple[int, int]]:
    """Tile origins (col, row) in pixels, as FLAIR-1 slicing_job: start at −margin, step tile − 2·margin,
    last tile shifted back inside, duplicates removed."""
    step = tile - 2 * margin

    def axis(n: int) -> list[int]:
        starts = list(range(-margin, n - margin, step))
        out = [min(s, n - tile + margin) if s + tile - margin > n else s for s in starts]
        return sorted(set(out))

    return [(c, r) for r in axis(height) for c in axis(width)]


class IgnDataset(torch.utils.data.Dataset):
    """FLAIR-1 zone_detect style: one handle opened in __init__, boundless reads, normalised in the dataset."""

    def __init__(self, path: str, slices: list[tuple[int, int]], tile: int, means, stds) -> None:  # type: ignore[no-untyped-def]
        self.src = rasterio.open(path)
        self.slices, self.tile = slices, tile
        self.means = np.array(means, dtype=np.float32)[:, None, None]
        self.stds = np.array(stds, dtype=np.float32)[:, None, None]

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        c, r = self.slices[i]
        img = self.src.read([1, 2, 3, 4, 5], window=Window(c, r, self.tile, self.tile), boundless=True, fill_value=0)
        img = (img.astype(np.float32) - self.means) / self.stds
        return torch.from_numpy(img), i


def flair_detect(stack: str, model: torch.nn.Module, card, out_path: str, *, tile: int = 512, margin: int = 128,  # type: ignore[no-untyped-def]
                 batch_size: int = 4, num_workers: int = 0) -> dict[str, float]:
    with rasterio.open(stack) as src:
        profile, width, height = src.profile, src.width, src.height
    slices = ign_slices(width, height, tile, margin)
    norm = card.normalisation
    ds = IgnDataset(stack, slices, tile, norm.means, norm.stds)
    lut = torch.tensor(card.class_scheme.lookup_table(), dtype=torch.uint8)
    profile.update(count=1, dtype="uint8", compress="lzw", tiled=True, blockxsize=512, blockysize=512,
                   bigtiff="YES", nodata=0)
    t0 = time.perf_counter()
    model = model.float().eval()
    with rasterio.open(out_path, "w", **profile) as dst, torch.no_grad():
        loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=num_workers)
        for x, idx in loader:
            probs = torch.softmax(model(x), dim=1)
            crop = probs[:, :, margin : tile - margin, margin : tile - margin]
            cls = lut[crop.argmax(1)].numpy()
            for k, i in enumerate(idx.tolist()):
                c, r = slices[i]
                c0, r0 = c + margin, r + margin
                w = Window(c0, r0, tile - 2 * margin, tile - 2 * margin).intersection(Window(0, 0, width, height))
                dst.write(cls[k, int(w.row_off - r0) : int(w.row_off - r0 + w.height),
                              int(w.col_off - c0) : int(w.col_off - c0 + w.width)], 1, window=w)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "tiles": len(slices), "patches512_per_s": len(slices) * (tile / 512) ** 2 / seconds}


# --- data ------------------------------------------------------------------------------------------


def make_stack(sources: ImagerySources, window: Window, path: Path) -> None:
    """R, G, B, NIR, E of a window of the territory, in one tiled uint8 GeoTIFF."""
    channels = ("R", "G", "B", "NIR", "E")
    with rasterio.open(sources.rgb) as src:
        grid_t, crs = src.transform, src.crs
    from inference_batch.production.inputs import grid_of

    grid = grid_of(sources.rgb)  # type: ignore[arg-type]
    reader = StackReader(sources, channels, grid)
    data, _ = reader.read(window)
    reader.close()
    t = rasterio.windows.transform(window, grid_t)
    with rasterio.open(path, "w", driver="GTiff", width=int(window.width), height=int(window.height), count=5,
                       dtype="uint8", crs=crs, transform=t, tiled=True, blockxsize=512, blockysize=512,
                       compress="deflate") as dst:
        dst.write(data)


def mosaic_of(root: Path, shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape, dtype=np.uint8)
    for path in root.rglob("prediction_*.tif"):
        with rasterio.open(path) as src:
            r, c = map(int, src.tags()["OCSGE_BLOCK_OFFSET"].split(","))
            out[r : r + src.height, c : c + src.width] = src.read(1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--territory", required=True, help="storage root of a generated territory")
    ap.add_argument("--departement", default="S02")
    ap.add_argument("--millesime", type=int, default=2024)
    ap.add_argument("--model", default=None, help="model file (default: the shipped model)")
    ap.add_argument("--random-preset", default=None,
                    help="instead of --model: a randomly initialised preset, e.g. unet-resnet34 (the FLAIR baseline)")
    ap.add_argument("--size", type=int, default=2500, help="side of the square window, px (0.2 m)")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--label", default="")
    args = ap.parse_args()

    from inference_batch.production.predict import sources_from_storage

    sources = sources_from_storage(LocalStorage(args.territory), args.departement, args.millesime)
    work = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    if args.random_preset:
        from inference_batch.production.checkpoint import ModelCard, save_model
        from inference_batch.production.model import build_model, preset

        torch.manual_seed(0)
        spec = preset(args.random_preset, 14)
        args.model = str(save_model(work / f"{args.random_preset}.safetensors", build_model(spec),
                                    ModelCard(spec=spec, scheme="couverture", name=args.random_preset)))
    elif args.model is None:
        from inference_batch.production.cli import SHIPPED_MODEL

        args.model = str(SHIPPED_MODEL)
    model, card = load_model(args.model)
    stack = work / "stack.tif"
    make_stack(sources, Window(0, 0, args.size, args.size), stack)
    km2 = args.size * args.size * 0.04 / 1e6
    runs: dict[str, list[dict[str, float]]] = {}
    ours_variants = {
        "ours (bf16+CL auto, 512/64, batch 8)": PredictOptions(num_workers=args.workers),
        "ours, reference settings (fp32, 512/128, batch 4)": PredictOptions(precision="fp32", margin=128,
                                                                            batch_size=4, num_workers=args.workers),
    }
    maps: dict[str, np.ndarray] = {}
    order = ["ref", *ours_variants, *reversed(ours_variants), "ref"]
    order = order * max(1, args.reps // 2)
    for name in order:
        torch.manual_seed(0)
        if name == "ref":
            out = work / "ref.tif"
            r = flair_detect(str(stack), model, card, str(out), num_workers=0)
            with rasterio.open(out) as src:
                maps["ref"] = src.read(1)
            label = "reference: IGN flair-detect scheme (fp32, 512/128, batch 4, writes in the loop)"
        else:
            root = work / f"ours-{len(runs.get(name, []))}-{abs(hash(name)) % 997}"
            rep = predict(ImagerySources(stack=str(stack)), args.model, storage=LocalStorage(root), departement="S02",
                          millesime=args.millesime, options=ours_variants[name])
            r = {"seconds": rep.seconds, "tiles": rep.tiles, "patches512_per_s": rep.patches512_per_s}
            maps[name] = mosaic_of(root, (args.size, args.size))
            label = name
        r["km2_per_h"] = km2 / r["seconds"] * 3600
        runs.setdefault(label, []).append(r)
        print(f"{label}: {r['seconds']:.1f} s, {r['km2_per_h']:.2f} km²/h, {r['patches512_per_s']:.2f} patches/s",
              flush=True)
    agreement = {k: float((v == maps["ref"]).mean()) for k, v in maps.items() if k != "ref"}
    result = {
        "label": args.label, "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} vCPU",
        "torch": torch.__version__, "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
        "load_average": os.getloadavg(), "model": Path(args.model).name, "model_spec": card.spec.to_dict(),
        "raster_px": [args.size, args.size], "km2": km2, "runs": runs, "agreement_with_reference": agreement,
        "classes": list(CS_LEAVES),
    }
    OUT.mkdir(exist_ok=True)
    name = f"bench_predict{'_' + args.label if args.label else ''}.json"
    (OUT / name).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "classes"}, indent=1))


if __name__ == "__main__":
    main()
