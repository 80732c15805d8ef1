"""Imagery of the generated territory: COGs aligned with the truth, with signatures a model can learn,
reproducible for a seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.features import rasterize
from rio_cogeo.cogeo import cog_validate

from inference_batch.synth import build_scene, generate
from ocsge import schema
from ocsge.products import product_key
from ocsge.storage import LocalStorage

KW = {"width_m": 200.0, "height_m": 200.0, "seed": 42}
PRODUCTS = ("imagery_rgb", "imagery_irc", "imagery_dsm", "imagery_dtm")


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synth-img")
    return root, generate(LocalStorage(root), "S01", **KW)


def _read(root: Path, product: str, year: int):
    with rasterio.open(root / product_key(product, "S01", year)) as ds:
        return ds.read(), ds.profile, ds.bounds, ds.tags(), ds.res


def _mask(frame, codes, shape, transform) -> np.ndarray:
    geoms = frame.geometry[frame[schema.CODE_CS].isin(codes)]
    if len(geoms) == 0:
        return np.zeros(shape, bool)
    return rasterize(((g, 1) for g in geoms), out_shape=shape, transform=transform, dtype="uint8").astype(bool)


def test_cogs_are_valid_aligned_and_labelled(written) -> None:
    root, manifest = written
    scene_bounds = tuple(manifest["bounds"])
    for year in (2021, 2024):
        for product in PRODUCTS:
            key = product_key(product, "S01", year)
            assert manifest["keys"][str(year)][product] == key
            path = root / key
            valid, errors, _ = cog_validate(str(path))
            assert valid, (key, errors)
            with rasterio.open(path) as ds:
                assert ds.crs.to_epsg() == 2154
                assert np.allclose(tuple(ds.bounds), scene_bounds)
                assert ds.tags()["SYNTHETIC"] == "YES" and "SYNTHETIC" in ds.tags()["TIFFTAG_IMAGEDESCRIPTION"]
                if max(ds.shape) > 512:
                    assert ds.overviews(1), key
                    assert ds.block_shapes[0] == (512, 512)
                if product in ("imagery_rgb", "imagery_irc"):
                    assert ds.count == 3 and ds.dtypes[0] == "uint8" and ds.res == (0.2, 0.2)
                else:
                    assert ds.count == 1 and ds.dtypes[0] == "float32"
                    assert ds.res == ((0.5, 0.5) if product == "imagery_dsm" else (1.0, 1.0))
        with rasterio.open(root / product_key("imagery_irc", "S01", year)) as ds:
            assert ds.descriptions == ("nir", "red", "green")


def test_spectral_signatures_and_heights_follow_the_truth(written) -> None:
    root, _ = written
    scene = build_scene("S01", **KW)
    for k, year in enumerate(scene.millesimes):
        truth = scene.truth[year]
        if k == 0:  # the first truth carries deliberate errors; the images show the true state
            truth = scene.truth[scene.millesimes[1]]
            truth = truth[truth[schema.CODE_CS].isin(["CS1.2.2", "CS2.1.1.1", "CS2.1.1.2", "CS2.1.1.3"])]
        irc, prof, *_ = _read(root, "imagery_irc", year)
        rgb, *_ = _read(root, "imagery_rgb", year)
        shape, transform = irc.shape[1:], prof["transform"]
        water = _mask(truth, ["CS1.2.2"], shape, transform)
        forest = _mask(truth, ["CS2.1.1.1", "CS2.1.1.2", "CS2.1.1.3"], shape, transform)
        assert water.sum() > 1000 and forest.sum() > 1000
        nir = irc[0].astype(float)
        assert nir[water].mean() + 60 < nir[forest].mean()
        assert np.array_equal(irc[1], rgb[0]) and np.array_equal(irc[2], rgb[1])  # IRC = NIR, R, G
        # heights: DSM − DTM high on buildings and trees, low on roads
        dsm, dprof, *_ = _read(root, "imagery_dsm", year)
        dtm, *_ = _read(root, "imagery_dtm", year)
        dsm = dsm[0]
        dtm_up = np.repeat(np.repeat(dtm[0], 2, axis=0), 2, axis=1)[: dsm.shape[0], : dsm.shape[1]]
        ndsm = dsm - dtm_up
        t_all = scene.truth[scene.millesimes[1]] if k == 0 else scene.truth[year]
        built = _mask(t_all, ["CS1.1.1.1"], dsm.shape, dprof["transform"])
        roads = _mask(t_all, ["CS1.1.1.2"], dsm.shape, dprof["transform"])
        trees = _mask(t_all, ["CS2.1.1.1", "CS2.1.1.2", "CS2.1.1.3"], dsm.shape, dprof["transform"])
        assert np.median(ndsm[built]) > 4.0
        assert np.median(ndsm[trees]) > 8.0
        assert np.median(np.abs(ndsm[roads])) < 1.0


def test_seasons_differ_between_millesimes(written) -> None:
    root, _ = written
    a, *_ = _read(root, "imagery_rgb", 2021)
    b, *_ = _read(root, "imagery_rgb", 2024)
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 5
    with rasterio.open(root / product_key("imagery_rgb", "S01", 2024)) as ds:
        assert ds.tags()["SEASON"] != rasterio.open(root / product_key("imagery_rgb", "S01", 2021)).tags()["SEASON"]


def test_imagery_is_reproducible_for_a_seed(tmp_path) -> None:
    small = {"width_m": 160.0, "height_m": 160.0, "resolution": 0.4}
    runs = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        root = tmp_path / name
        generate(LocalStorage(root), "S01", seed=seed, **small)
        runs.append([_read(root, p, y)[0] for y in (2021, 2024) for p in PRODUCTS])
    assert all(np.array_equal(x, y) for x, y in zip(runs[0], runs[1], strict=True))
    assert not np.array_equal(runs[0][0], runs[2][0])


def test_blocks_are_seamless(written, tmp_path, monkeypatch) -> None:
    """Painting by small blocks (many in flight on two threads) gives the same pixels as one block."""
    import inference_batch.synth.imagery as imagery

    root, _ = written
    monkeypatch.setattr(imagery, "BLOCK", 192)
    other = tmp_path / "blocks"
    generate(LocalStorage(other), "S01", **KW)
    for year in (2021, 2024):
        for product in PRODUCTS:
            assert np.array_equal(_read(root, product, year)[0], _read(other, product, year)[0]), (product, year)
