"""Training: FLAIR-format patches and a territory in storage, determinism, resume, metrics, bad set-ups."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from inference_batch.production.checkpoint import load_model
from inference_batch.production.train import FlairPatches, TrainConfig, augment, train
from ocsge.errors import OcsgeError
from ocsge.nomenclature import raster_value
from support.tiny_scene import write_tiny_scene

# FLAIR #1 label values of the tiny scene's couverture
CS_TO_FLAIR = {"CS1.1.1.1": 1, "CS1.1.1.2": 3, "CS2.1.1.1": 7, "CS2.2.1": 10, "CS1.2.2": 5}
FAST = dict(preset="unet-tiny", batch_size=2, samples_per_epoch=4, val_samples=2, precision="fp32", lr=5e-3)


@pytest.fixture(scope="module")
def flair_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten 64 × 64 FLAIR-format patches (IMG 5 bands, MSK values 1…19) cut from the tiny scene."""
    root = tmp_path_factory.mktemp("flair")
    scene = write_tiny_scene(root / "scene", height=128, width=320, seed=1)
    with rasterio.open(scene.sources.rgb) as a, rasterio.open(scene.sources.irc) as b:
        rgb, nir = a.read(), b.read(1)
    with rasterio.open(scene.sources.dsm) as d:
        height = d.read(1) - 100  # the DTM is ~100 m; good enough for a test
    elev = np.clip(np.rint(height * 5), 0, 255).astype(np.uint8)
    img = np.concatenate([rgb, nir[None], elev[None]])
    lut = np.zeros(256, dtype=np.uint8)
    for code, value in CS_TO_FLAIR.items():
        lut[raster_value("couverture", code)] = value
    msk = lut[scene.truth]
    (root / "img").mkdir()
    (root / "msk").mkdir()
    n = 0
    for r in range(0, 128, 64):
        for c in range(0, 320, 64):
            profile = {"driver": "GTiff", "width": 64, "height": 64, "dtype": "uint8"}
            with rasterio.open(root / "img" / f"IMG_{n:06d}.tif", "w", count=5, **profile) as dst:
                dst.write(img[:, r : r + 64, c : c + 64])
            with rasterio.open(root / "msk" / f"MSK_{n:06d}.tif", "w", count=1, **profile) as dst:
                dst.write(msk[r : r + 64, c : c + 64], 1)
            n += 1
    return root


def test_flair_patches_are_paired_and_mapped(flair_dir: Path) -> None:
    patches = FlairPatches(flair_dir, "flair13")
    assert len(patches) == 10
    x, y = patches.read(0)
    assert x.shape == (5, 64, 64) and x.dtype == np.uint8
    assert set(np.unique(y)) <= {0, 2, 4, 6, 9}  # building, impervious, water, deciduous, herbaceous (0-based)
    train_idx, val_idx = patches.split(seed=1)
    assert len(val_idx) == 1 and not set(train_idx) & set(val_idx)
    patches15 = FlairPatches(flair_dir, "flair15")
    assert patches15.lut[15] == 255 and patches15.lut[18] == 14  # clear cut unmapped; greenhouse → index 14


def test_augmentation_keeps_image_and_labels_aligned() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (5, 8, 8), dtype=np.uint8)
    y = x[0].copy()
    for seed in range(8):
        ax, ay = augment(x, y, np.random.default_rng(seed))
        assert np.array_equal(ax[0], ay)


def test_training_is_deterministic_and_resumes_exactly(tmp_path: Path, flair_dir: Path) -> None:
    def run(folder: str, epochs: int, resume: bool = False) -> dict:
        cfg = TrainConfig(out_dir=str(tmp_path / folder), scheme="flair13", flair_dir=str(flair_dir), epochs=epochs,
                          **FAST)
        return train(cfg, resume=resume)

    a = run("a", 2)
    b = run("b", 2)
    assert a["history"][-1]["loss"] == b["history"][-1]["loss"]
    wa = load_model(tmp_path / "a" / "model.safetensors")[0].state_dict()
    wb = load_model(tmp_path / "b" / "model.safetensors")[0].state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)

    # stop after the first epoch (as a kill would), then resume
    c_dir = tmp_path / "c"
    cfg = TrainConfig(out_dir=str(c_dir), scheme="flair13", flair_dir=str(flair_dir), epochs=2, **FAST)
    import inference_batch.production.train as train_module

    original = train_module.scores
    calls = {"n": 0}

    def stop_after_first(cm):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(cm)

    train_module.scores = stop_after_first
    try:
        with pytest.raises(KeyboardInterrupt):
            train(cfg)
    finally:
        train_module.scores = original
    assert torch.load(c_dir / "last.pt", weights_only=False)["epoch"] == 0
    c = train(cfg, resume=True)
    assert [h["loss"] for h in c["history"]] == [h["loss"] for h in a["history"]]
    last_a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)["model"]
    last_c = torch.load(c_dir / "last.pt", weights_only=False)["model"]
    assert all(torch.equal(last_a[k], last_c[k]) for k in last_a)
    history = json.loads((c_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and {"val_oa", "val_miou", "val_iou"} <= set(history[0])


def test_territory_training_learns_and_records_its_card(tmp_path: Path) -> None:
    import geopandas as gpd
    import shapely
    from rasterio.features import shapes

    from ocsge.cli import main
    from ocsge.products import product_key
    from ocsge.storage import LocalStorage

    storage = LocalStorage(tmp_path / "store")
    scene = write_tiny_scene(tmp_path / "scene", height=256, width=384, seed=2)
    for name, path in (("rgb", scene.sources.rgb), ("irc", scene.sources.irc), ("dsm", scene.sources.dsm),
                       ("dtm", scene.sources.dtm)):
        storage.put_file(product_key(f"imagery_{name}", "S01", 2024), path)
    polys = [(shapely.geometry.shape(g), int(v)) for g, v in shapes(scene.truth, transform=scene.transform)]
    truth = gpd.GeoDataFrame({"code_cs": [f"{_code(v)}" for _, v in polys]}, geometry=[g for g, _ in polys],
                             crs="EPSG:2154")
    with storage.writer(product_key("truth", "S01", 2024)) as tmp:
        truth.to_parquet(tmp)
    out = tmp_path / "shipped.safetensors"
    main(["train", "--run-dir", str(tmp_path / "run"), "-d", "S01", "-y", "2024", "--root", str(tmp_path / "store"),
          "--epochs", "3", "--patch", "64", "--batch-size", "4", "--samples-per-epoch", "16", "--val-samples", "6",
          "--lr", "0.01", "--precision", "fp32", "--preset", "unet-tiny", "--output", str(out)])
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history[-1]["loss"] < history[0]["loss"]
    _, card = load_model(out)
    assert card.scheme == "couverture" and card.training["data"] == "territory S01 2024"
    assert card.training["command"].startswith("ocsge") and card.training["val_miou"] > 0
    assert card.training["class_weights"][raster_value("couverture", "CS1.2.1") - 1] == 0  # absent class


def _code(value: int) -> str:
    from ocsge.nomenclature import code_for_value

    return code_for_value("couverture", value) or ""


def test_bad_training_setups(tmp_path: Path, flair_dir: Path) -> None:
    with pytest.raises(OcsgeError, match="give FLAIR patches"):
        train(TrainConfig(out_dir=str(tmp_path / "x")))
    with pytest.raises(OcsgeError, match="no FLAIR patches"):
        train(TrainConfig(out_dir=str(tmp_path / "x"), flair_dir=str(tmp_path)))
    with pytest.raises(OcsgeError, match="nothing to resume"):
        train(TrainConfig(out_dir=str(tmp_path / "y"), flair_dir=str(flair_dir)), resume=True)
    # a model for other classes cannot seed the training
    first = train(TrainConfig(out_dir=str(tmp_path / "f13"), scheme="flair13", flair_dir=str(flair_dir), epochs=1,
                              **FAST))
    with pytest.raises(OcsgeError, match="predicts class scheme 'flair13'.*'flair15'"):
        train(TrainConfig(out_dir=str(tmp_path / "f15"), scheme="flair15", flair_dir=str(flair_dir), epochs=1,
                          init=first["model"], **FAST))
    (flair_dir / "img" / "IMG_999999.tif").write_bytes((flair_dir / "img" / "IMG_000000.tif").read_bytes())
    try:
        with pytest.raises(OcsgeError, match="1 FLAIR image.* without a mask.*IMG_999999.tif"):
            FlairPatches(flair_dir, "flair13")
    finally:
        (flair_dir / "img" / "IMG_999999.tif").unlink()
