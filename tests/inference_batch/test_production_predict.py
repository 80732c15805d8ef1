"""Batch inference: block COGs end to end, seams, resume after a kill, array index, bad inputs, the real IGN sample."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from inference_batch.production import predict as predict_module
from inference_batch.production.checkpoint import ModelCard, save_model
from inference_batch.production.inputs import ImagerySources, InputError
from inference_batch.production.model import ModelSpec, build_model
from inference_batch.production.predict import PredictOptions, predict
from inference_batch.production.tiling import Axis, Tiling, layout_blocks
from ocsge.errors import OcsgeError
from ocsge.products import product_key
from ocsge.storage import LocalStorage
from support.tiny_scene import write_tiny_scene

TINY = dict(encoder="resnet10-w8", layers=(1, 1, 1, 1), widths=(8, 8, 8, 16, 16), decoder_channels=(16, 8, 8, 8, 8))
FP32 = dict(precision="fp32", num_workers=0, tile=96, margin=16)


def _model(path: Path, scheme: str = "couverture", n_classes: int = 14, channels=("R", "G", "B", "NIR", "E")) -> Path:
    torch.manual_seed(0)
    spec = ModelSpec(n_classes=n_classes, in_channels=len(channels), **TINY)
    return save_model(path, build_model(spec), ModelCard(spec=spec, scheme=scheme, channels=tuple(channels)))


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory):
    return write_tiny_scene(tmp_path_factory.mktemp("scene"), height=200, width=260)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _model(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def _mosaic(storage: LocalStorage, dep: str, year: int, shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros((2, *shape), dtype=np.uint8)
    for info in storage.list(f"prediction/D{dep.rjust(3, '0')}/{year}/blocks/"):
        with rasterio.open(storage.url(info.key)) as src:
            r, c = map(int, src.tags()["OCSGE_BLOCK_OFFSET"].split(","))
            out[0, r : r + src.height, c : c + src.width] = src.read(1)
        with rasterio.open(storage.url(info.key.replace("prediction", "confidence"))) as src:
            out[1, r : r + src.height, c : c + src.width] = src.read(1)
    return out


def test_tiling_partitions_and_covers() -> None:
    ax = Axis(1000, 256, 64)
    keep = ax.keep
    assert keep[0, 0] == 0 and keep[-1, 1] == 1000
    assert (keep[1:, 0] == keep[:-1, 1]).all()  # a partition: each pixel decided by one tile
    assert (ax.starts + ax.span <= 1000).all() and ax.starts[-1] == 1000 - 256
    assert 3.8 < Tiling(20000, 20000, 512, 128, "centre").overhead < 4.1  # IGN's 4× scheme
    small = Axis(50, 96, 16)
    assert small.starts.tolist() == [0] and small.span == 50
    blocks = layout_blocks(250, 130, 100)
    assert [b.id for b in blocks][:4] == ["r000c000", "r000c001", "r000c002", "r001c000"]
    assert sum(b.pixels for b in blocks) == 250 * 130


def test_tiny_model_end_to_end_writes_valid_block_cogs(tmp_path: Path, scene, model: Path) -> None:
    from rio_cogeo.cogeo import cog_validate

    storage = LocalStorage(tmp_path / "store")
    report = predict(scene.sources, model, storage=storage, departement="S01", millesime=2024,
                     options=PredictOptions(block_size=140, **FP32))
    assert report.blocks_total == 4 and len(report.blocks_run) == 4 and report.km2 == pytest.approx(260 * 200 * 0.04e-6)
    key = product_key("prediction", "S01", 2024, block="r001c001")
    valid, errors, _ = cog_validate(storage.url(key))
    assert valid, errors
    with rasterio.open(storage.url(key)) as src:
        assert src.dtypes[0] == "uint8" and src.nodata == 0 and src.crs.to_epsg() == 2154
        assert src.colormap(1)[1][:3] == (0xFF, 0x37, 0x7A)  # CS1.1.1.1 in the official colour
        assert (src.width, src.height) == (260 - 140, 200 - 140)
        assert src.transform.c == pytest.approx(700000 + 140 * 0.2)
    mosaic = _mosaic(storage, "S01", 2024, (200, 260))
    assert mosaic[0].min() >= 1 and mosaic[0].max() <= 14  # every pixel classified, CS raster values
    assert mosaic[1].min() >= 255 // 15  # confidence ≥ 1/15


@pytest.mark.parametrize("mode", ["centre", "blend"])
def test_blocks_join_without_seams(tmp_path: Path, scene, model: Path, mode: str) -> None:
    mosaics = []
    for block_size in (64, 100, 4096):
        storage = LocalStorage(tmp_path / f"{mode}{block_size}")
        predict(scene.sources, model, storage=storage, departement="S01", millesime=2024,
                options=PredictOptions(block_size=block_size, mode=mode, **FP32))
        mosaics.append(_mosaic(storage, "S01", 2024, (200, 260)))
    for m in mosaics[:-1]:
        assert np.array_equal(m, mosaics[-1])  # the block layout never changes a pixel


def test_resume_after_a_kill_skips_finished_blocks(tmp_path: Path, scene, model: Path, monkeypatch) -> None:
    storage = LocalStorage(tmp_path / "store")
    opts = PredictOptions(block_size=140, **FP32)

    class Killed(Exception):
        pass

    def kill_after_first(block_id: str) -> None:
        raise Killed(block_id)

    with pytest.raises(Killed):
        predict(scene.sources, model, storage=storage, departement="S01", millesime=2024, options=opts,
                on_block_done=kill_after_first)
    first = storage.url(product_key("prediction", "S01", 2024, block="r000c000"))
    assert os.path.exists(first)
    assert not storage.exists(product_key("prediction", "S01", 2024, block="r001c001"))
    mtime = os.path.getmtime(first)

    # a kill while a COG is being written leaves no visible object
    real = predict_module.write_cog
    calls = []

    def dying_write(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(path)
        if len(calls) == 2:  # the class COG of the second block
            Path(path).write_bytes(b"half a file")
            raise Killed("during write")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(predict_module, "write_cog", dying_write)
    with pytest.raises(Killed):
        predict(scene.sources, model, storage=storage, departement="S01", millesime=2024, options=opts)
    monkeypatch.setattr(predict_module, "write_cog", real)
    assert not storage.exists(product_key("prediction", "S01", 2024, block="r000c001"))
    assert not any(".tmp-" in p.name for p in (tmp_path / "store").rglob("*"))

    report = predict(scene.sources, model, storage=storage, departement="S01", millesime=2024, options=opts)
    assert report.blocks_skipped == ["r000c000"]
    assert sorted(report.blocks_run) == ["r000c001", "r001c000", "r001c001"]
    assert os.path.getmtime(first) == mtime
    again = predict(scene.sources, model, storage=storage, departement="S01", millesime=2024, options=opts)
    assert again.blocks_run == [] and len(again.blocks_skipped) == 4


def test_another_model_recomputes_done_blocks(tmp_path: Path, scene, model: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    opts = PredictOptions(block_size=4096, **FP32)
    predict(scene.sources, model, storage=storage, departement="S01", millesime=2024, options=opts)
    other = _model(tmp_path / "flair.safetensors", scheme="flair15", n_classes=15)
    report = predict(scene.sources, other, storage=storage, departement="S01", millesime=2024, options=opts)
    assert report.blocks_run == ["r000c000"]
    with rasterio.open(storage.url(product_key("prediction", "S01", 2024, block="r000c000"))) as src:
        assert src.tags()["OCSGE_SCHEME"] == "flair15"
        # no FLAIR-15 class maps to CS1.1.2.2, CS2.1.1.3 or CS2.2.2
        assert not set(np.unique(src.read(1))) & {0, 4, 10, 14}


def test_array_index_selects_one_block(tmp_path: Path, scene, model: Path, monkeypatch) -> None:
    from ocsge.cli import main

    monkeypatch.setenv("AWS_BATCH_JOB_ARRAY_INDEX", "2")
    root = tmp_path / "store"
    main(["predict", "-d", "S01", "-y", "2024", "--root", str(root), "--model", str(model),
              "--rgb", scene.sources.rgb, "--irc", scene.sources.irc, "--dsm", scene.sources.dsm,
              "--dtm", scene.sources.dtm, "--block-size", "140", "--tile", "96", "--margin", "16",
              "--precision", "fp32", "--workers", "0"])  # fmt: skip
    written = sorted(p.name for p in (root / "prediction").rglob("*.tif"))
    assert written == ["prediction_DS01_2024_r001c000.tif"]
    monkeypatch.setenv("AWS_BATCH_JOB_ARRAY_INDEX", "9")
    with pytest.raises(OcsgeError, match="AWS_BATCH_JOB_ARRAY_INDEX=9 but the imagery has 4 block"):
        predict(scene.sources, model, storage=LocalStorage(root), departement="S01", millesime=2024,
                options=PredictOptions(block_size=140, **FP32), array_index=9)


def test_workers_open_their_own_handles(tmp_path: Path, scene, model: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    one = predict(scene.sources, model, storage=storage, departement="S01", millesime=2024,
                  options=PredictOptions(block_size=140, **{**FP32, "num_workers": 2}))
    assert len(one.blocks_run) == 4
    reference = LocalStorage(tmp_path / "ref")
    predict(scene.sources, model, storage=reference, departement="S01", millesime=2024,
            options=PredictOptions(block_size=140, **FP32))
    assert np.array_equal(_mosaic(storage, "S01", 2024, (200, 260)), _mosaic(reference, "S01", 2024, (200, 260)))


def _write_like(src_path: str, dst: Path, **changes) -> str:  # type: ignore[no-untyped-def]
    with rasterio.open(src_path) as src:
        profile = src.profile
        data = src.read()
    data = changes.pop("data", data)
    profile.update(changes)
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
    return str(dst)


def test_bad_inputs_fail_clearly_naming_the_file(tmp_path: Path, scene, model: Path) -> None:
    s = scene.sources
    storage = LocalStorage(tmp_path / "store")

    def run(sources: ImagerySources) -> None:
        predict(sources, model, storage=storage, departement="S01", millesime=2024,
                options=PredictOptions(block_size=140, **FP32))

    with rasterio.open(s.irc) as src:
        cropped = src.read(window=((0, 150), (0, 260)))
    irc_small = _write_like(s.irc, tmp_path / "irc_small.tif", height=150, data=cropped)
    with pytest.raises(InputError, match=r"irc_small.tif does not match .*rgb.tif: size 260×150 vs 260×200"):
        run(ImagerySources(rgb=s.rgb, irc=irc_small, dsm=s.dsm, dtm=s.dtm))
    irc_l93 = _write_like(s.irc, tmp_path / "irc_crs.tif", crs="EPSG:32631")
    with pytest.raises(InputError, match="irc_crs.tif does not match .*CRS EPSG:32631 vs EPSG:2154"):
        run(ImagerySources(rgb=s.rgb, irc=irc_l93, dsm=s.dsm, dtm=s.dtm))
    dtm_crs = _write_like(s.dtm, tmp_path / "dtm_crs.tif", crs="EPSG:32631")
    with pytest.raises(InputError, match="dtm_crs.tif is in EPSG:32631 but the imagery is in EPSG:2154"):
        run(ImagerySources(rgb=s.rgb, irc=s.irc, dsm=s.dsm, dtm=dtm_crs))
    with pytest.raises(InputError, match="needs elevation .* none was given for .*rgb.tif"):
        run(ImagerySources(rgb=s.rgb, irc=s.irc))
    with pytest.raises(InputError, match="no DTM given"):
        run(ImagerySources(rgb=s.rgb, irc=s.irc, dsm=s.dsm))
    with pytest.raises(InputError, match="needs the NIR channel"):
        run(ImagerySources(rgb=s.rgb, dsm=s.dsm, dtm=s.dtm))
    with rasterio.open(s.dsm) as src:
        holes = src.read()
    holes[0, 50:60, 70:80] = np.nan
    dsm_nan = _write_like(s.dsm, tmp_path / "dsm_nan.tif", data=holes)
    with pytest.raises(InputError, match=r"dsm_nan.tif has 100 NaN/nodata pixel\(s\) under the imagery window"):
        run(ImagerySources(rgb=s.rgb, irc=s.irc, dsm=dsm_nan, dtm=s.dtm))
    with rasterio.open(s.rgb) as src:
        as_float = src.read().astype("float32")
    rgb_float = _write_like(s.rgb, tmp_path / "rgb_float.tif", dtype="float32", data=as_float)
    with pytest.raises(InputError, match="rgb_float.tif: imagery must be uint8"):
        run(ImagerySources(rgb=rgb_float, irc=s.irc, dsm=s.dsm, dtm=s.dtm))
    # documented fallback: zero elevation, on request only
    run(ImagerySources(rgb=s.rgb, irc=s.irc, zero_elevation=True))
    # a model for 4 channels (RGBI) runs without elevation
    rgbi = _model(tmp_path / "rgbi.safetensors", channels=("R", "G", "B", "NIR"))
    predict(ImagerySources(rgb=s.rgb, irc=s.irc), rgbi, storage=LocalStorage(tmp_path / "rgbi"), departement="S01",
            millesime=2024, options=PredictOptions(block_size=140, **FP32))


def test_empty_block_is_written_as_nodata(tmp_path: Path, scene, model: Path) -> None:
    with rasterio.open(scene.sources.rgb) as src:
        data = src.read()
    data[:, :140, :140] = 255  # no imagery in the first block
    rgb = _write_like(scene.sources.rgb, tmp_path / "rgb_hole.tif", data=data)
    storage = LocalStorage(tmp_path / "store")
    sources = ImagerySources(rgb=rgb, irc=scene.sources.irc, dsm=scene.sources.dsm, dtm=scene.sources.dtm)
    predict(sources, model, storage=storage, departement="S01", millesime=2024,
            options=PredictOptions(block_size=140, **FP32))
    with rasterio.open(storage.url(product_key("prediction", "S01", 2024, block="r000c000"))) as src:
        assert not src.read(1).any()


def test_real_ign_sample_runs_through_predict(tmp_path: Path, shared_data: Path, model: Path) -> None:
    """BD ORTHO RGB + IRC and a LiDAR HD tile (rasterised to DSM − DTM), 252 × 252 px, via the CLI."""
    sample = shared_data / "ign-ortho-lidar-770550_6277600"
    root = tmp_path / "store"
    result = CliRunner().invoke(
        predict_module_cli(),
        ["-d", "34", "-y", "2021", "--root", str(root), "--model", str(model),
         "--rgb", str(sample / "test_data_rgb.tif"), "--irc", str(sample / "test_data_irc.tif"),
         "--laz", str(sample / "test_data_77055_627760_LA93_IGN69.laz"), "--workers", "0"],
    )
    assert result.exit_code == 0, result.output
    key = product_key("prediction", "34", 2021, block="r000c000")
    with rasterio.open(root / key) as src:
        assert (src.width, src.height) == (252, 252)
        assert src.crs.to_epsg() == 2154  # recovered from the sample's odd WKT
        assert src.bounds.left == pytest.approx(770549.8)
        classes = src.read(1)
    assert (classes > 0).mean() > 0.99  # four white pixels are nodata in the RGB


def predict_module_cli():  # type: ignore[no-untyped-def]
    from inference_batch.production.cli import predict as command

    return command


def test_handles_inherited_through_fork_are_never_reused(scene) -> None:
    from inference_batch.production.inputs import StackReader

    grid = scene.sources.check(("R", "G", "B", "NIR", "E"))
    reader = StackReader(scene.sources, ("R", "G", "B", "NIR", "E"), grid).open()
    parent_handle = reader._handles["imagery"]
    assert reader.open()._handles["imagery"] is parent_handle  # same process: kept
    reader._pid = -1  # as seen from a forked DataLoader worker
    assert reader.open()._handles["imagery"] is not parent_handle
    reader.close()
    parent_handle.close()


def test_a_truncated_imagery_cog_fails_naming_the_file(tmp_path: Path, scene, model: Path) -> None:
    """A COG cut to half opens (its header is whole) and fails on its first missing tile: the error names the
    file and the window, not a traceback from inside GDAL."""
    s = scene.sources
    data = Path(s.rgb).read_bytes()
    rgb_half = tmp_path / "rgb_half.tif"
    rgb_half.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=rf"^cannot read {rgb_half} at column \d+, row \d+ \(\d+×\d+ px\): the file "
                                         r"is truncated or corrupt \(rgb_half\.tif, band 1: IReadBlock failed"):
        predict(ImagerySources(rgb=str(rgb_half), irc=s.irc, dsm=s.dsm, dtm=s.dtm), model,
                storage=LocalStorage(tmp_path / "store"), departement="S01", millesime=2024,
                options=PredictOptions(block_size=140, **FP32))
