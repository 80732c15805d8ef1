"""National vector tiles joined from three synthetic départements side by side (tests/support/national_scene.py):
features of two départements in one tile at low and high zooms, tiles of one département copied as they are,
and an incremental rebuild that re-tiles only the département that changed."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
from morecantile import tms as morecantile_tms
from pmtiles.reader import MmapSource, Reader

from inference_batch.products.mvt import MVTError, feature_properties, merge_tiles
from inference_batch.products.national_tiles import SPLIT_ZOOM, run_national_tiles
from ocsge.national import national_key, national_part_key
from support.national_scene import CODES, border_lon, bounds_of, build_scene, write_departement

WMQ = morecantile_tms.get("WebMercatorQuad")
NATIONAL = national_key("occupation_pmtiles", 2021)


def tile_at(path: Path, lon: float, lat: float, z: int) -> bytes | None:
    t = WMQ.tile(lon, lat, z)
    with path.open("rb") as f:
        data = Reader(MmapSource(f)).get(t.z, t.x, t.y)
    return data


def codes(data: bytes | None) -> set[str]:
    assert data is not None
    props = feature_properties(gzip.decompress(data))
    assert list(props) == ["occupation"]  # one layer, however many départements the tile holds
    return {f["code_cs"] for f in props["occupation"]}


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("national") / "root"
    storage = build_scene(root)
    result = run_national_tiles(storage, "occupation_pmtiles", 2021)
    assert result.rewritten and result.parts_rebuilt == ["S01", "S02", "S03"]
    return root


@pytest.mark.parametrize("z", [6, 7, 8, 9])
def test_low_zoom_tile_holds_two_departements(scene, z):
    lat = bounds_of("S01")[1] + 0.15
    found = codes(tile_at(scene / NATIONAL, border_lon("S01"), lat, z))
    assert {CODES["S01"], CODES["S02"]} <= found


@pytest.mark.parametrize("z", [SPLIT_ZOOM, 12, 14])
def test_border_tile_merges_both_departements(scene, z):
    lat = bounds_of("S01")[1] + 0.15
    # a point just west of the border: its tile straddles the border at these zooms (a grid line of 0.1°)
    west_of_border = border_lon("S01") - 1e-4
    assert codes(tile_at(scene / NATIONAL, west_of_border, lat, z)) == {CODES["S01"], CODES["S02"]}


def test_tiles_of_one_departement_are_copied(scene):
    own = scene / "pmtiles/occupation/DS03/2021/pmtiles_occupation_DS03_2021.pmtiles"
    west, south, east, north = bounds_of("S03")
    lon, lat = (west + east) / 2, (south + north) / 2
    for z in (12, 14):
        assert tile_at(scene / NATIONAL, lon, lat, z) == tile_at(own, lon, lat, z)
    with (scene / NATIONAL).open("rb") as f:
        reader = Reader(MmapSource(f))
        header, metadata = reader.header(), reader.metadata()
    assert (header["min_zoom"], header["max_zoom"]) == (6, 14)
    assert sorted(metadata["ocsge:departements"]) == ["S01", "S02", "S03"]
    assert header["min_lon_e7"] / 1e7 == pytest.approx(bounds_of("S01")[0], abs=1e-3)
    assert header["max_lon_e7"] / 1e7 == pytest.approx(bounds_of("S03")[2], abs=1e-3)
    assert [layer["id"] for layer in metadata["vector_layers"]] == ["occupation"]


def test_rerun_without_change_rewrites_nothing(scene):
    before = (scene / NATIONAL).stat().st_mtime_ns
    from ocsge.storage import LocalStorage

    result = run_national_tiles(LocalStorage(scene), "occupation_pmtiles", 2021)
    assert not result.rewritten and result.parts_rebuilt == []
    assert (scene / NATIONAL).stat().st_mtime_ns == before


def test_incremental_rebuild_retiles_one_departement(scene, tmp_path):
    from ocsge.storage import LocalStorage

    root = tmp_path / "root"
    shutil.copytree(scene, root)
    old = root.parent / "old.pmtiles"
    shutil.copy(root / NATIONAL, old)
    parts = {dep: root / national_part_key("occupation_pmtiles", dep, 2021) for dep in CODES}
    part_bytes = {dep: p.read_bytes() for dep, p in parts.items()}

    write_departement(root, "S02", code="CS2.1.1.1")  # S02 republished: its forest replaces the grass
    result = run_national_tiles(LocalStorage(root), "occupation_pmtiles", 2021)

    assert result.parts_rebuilt == ["S02"] and result.rewritten
    assert parts["S01"].read_bytes() == part_bytes["S01"] and parts["S03"].read_bytes() == part_bytes["S03"]
    assert parts["S02"].read_bytes() != part_bytes["S02"]
    new = root / NATIONAL
    mid = bounds_of("S01")[1] + 0.15
    for z in (6, 9, 12):
        assert codes(tile_at(new, border_lon("S01"), mid, z)) >= {CODES["S01"], "CS2.1.1.1"}
        assert CODES["S02"] not in codes(tile_at(new, border_lon("S01"), mid, z))
    for dep in ("S01", "S03"):  # tiles that S02 does not touch: the same bytes as before
        west, _south, east, _north = bounds_of(dep)
        for z in (12, 14):
            assert tile_at(new, (west + east) / 2, mid, z) == tile_at(old, (west + east) / 2, mid, z)


def test_a_departement_removed_leaves_the_national_file(scene, tmp_path):
    from ocsge.storage import LocalStorage

    root = tmp_path / "root"
    shutil.copytree(scene, root)
    (root / "pmtiles/occupation/DS03/2021/pmtiles_occupation_DS03_2021.pmtiles").unlink()
    result = run_national_tiles(LocalStorage(root), "occupation_pmtiles", 2021)
    assert result.departements == ["S01", "S02"] and len(result.parts_removed) == 1
    assert not (root / national_part_key("occupation_pmtiles", "S03", 2021)).exists()
    west, south, east, north = bounds_of("S03")
    assert tile_at(root / NATIONAL, (west + east) / 2, (south + north) / 2, 14) is None


def _layer(name: str, keys: list[str], values: list[str], tags: list[int]) -> bytes:
    """A one-feature MVT layer (protobuf by hand: small varints only)."""

    def field(n: int, data: bytes) -> bytes:
        return bytes([n << 3 | 2, len(data)]) + data

    feature = field(2, bytes(tags)) + bytes([3 << 3, 3]) + field(4, bytes([9, 2, 2]))
    body = bytes([15 << 3, 2]) + field(1, name.encode()) + field(2, feature)
    body += b"".join(field(3, k.encode()) for k in keys)
    body += b"".join(field(4, field(1, v.encode())) for v in values)
    return field(3, body + bytes([5 << 3]) + bytes([0x80, 0x20]))  # extent 4096


def test_merge_remaps_keys_and_values():
    a = _layer("occupation", ["code_cs", "code_us"], ["CS1.1.1.1", "US1.1"], [0, 0, 1, 1])
    b = _layer("occupation", ["code_us", "code_cs"], ["US5", "CS2.2.1"], [0, 0, 1, 1])
    other = _layer("zone_construite", [], [], [])
    merged = feature_properties(merge_tiles([a + other, b]))
    assert merged == {
        "occupation": [{"code_cs": "CS1.1.1.1", "code_us": "US1.1"}, {"code_us": "US5", "code_cs": "CS2.2.1"}],
        "zone_construite": [{}],
    }
    with pytest.raises(MVTError):
        merge_tiles([b"\x1a\x05\x0a"])  # a layer cut short


def test_decoded_features_are_clipped_to_their_tile(tmp_path):
    """A decoded tile's features reach into the neighbours by the buffer: the low-zoom parts keep only what
    lies in the tile itself, so that no polygon is drawn twice once re-tiled."""
    import json

    from inference_batch.products.national_tiles import _clip_to_tiles, _tile_bounds

    west, south, east, north = _tile_bounds(9, 258, 176)
    square = [
        [west - 0.01, south - 0.01],
        [east + 0.01, south - 0.01],
        [east + 0.01, north + 0.01],
        [west - 0.01, north + 0.01],
        [west - 0.01, south - 0.01],
    ]
    decoded = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "FeatureCollection",
                "properties": {"zoom": 9, "x": 258, "y": 176},
                "features": [
                    {
                        "type": "FeatureCollection",
                        "properties": {"layer": "occupation"},
                        "features": [
                            {
                                "type": "Feature",
                                "properties": {"code_cs": "CS2.2.1"},
                                "geometry": {"type": "Polygon", "coordinates": [square]},
                            }
                        ],
                    }
                ],
            }
        ],
    }
    (tmp_path / "in.json").write_text(json.dumps(decoded))
    assert _clip_to_tiles(tmp_path / "in.json", tmp_path / "out.geojsons") == 1
    feature = json.loads((tmp_path / "out.geojsons").read_text())
    lons = [p[0] for p in feature["geometry"]["coordinates"][0]]
    lats = [p[1] for p in feature["geometry"]["coordinates"][0]]
    assert (min(lons), max(lons)) == pytest.approx((west, east)) and (min(lats), max(lats)) == pytest.approx(
        (south, north)
    )
    assert feature["properties"] == {"code_cs": "CS2.2.1"}


def test_verb_joins_every_millesime_with_tilesets(scene, tmp_path):
    from click.testing import CliRunner

    from inference_batch.products.national_tiles import national_tiles

    root = tmp_path / "root"
    shutil.copytree(scene, root)
    (root / NATIONAL).unlink()
    result = CliRunner().invoke(national_tiles, ["--root", str(root)])
    assert result.exit_code == 0, result.output
    assert f"occupation_pmtiles\t{NATIONAL}" in result.output and "difference_pmtiles" not in result.output
    assert codes(tile_at(root / NATIONAL, border_lon("S01"), bounds_of("S01")[1] + 0.15, 6)) >= set(CODES.values())


def all_tiles_of(path: Path) -> dict[tuple[int, int, int], bytes]:
    from pmtiles.reader import all_tiles

    with path.open("rb") as f:
        return dict(all_tiles(MmapSource(f)))


@pytest.mark.parametrize("change", ["republish S03", "remove S03"])
def test_rejoin_reusing_the_previous_file_equals_a_full_rebuild(scene, tmp_path, change):
    """The rejoin copies from the previous national file the shared tiles whose départements did not change:
    what it writes is what a build from scratch writes, tile for tile."""
    from ocsge.storage import LocalStorage

    roots = []
    for name in ("incremental", "scratch"):
        root = tmp_path / name / "root"
        shutil.copytree(scene, root)
        if change == "remove S03":
            (root / "pmtiles/occupation/DS03/2021/pmtiles_occupation_DS03_2021.pmtiles").unlink()
        else:
            write_departement(root, "S03", code="CS2.1.1.1")
        roots.append(root)
    incremental = run_national_tiles(LocalStorage(roots[0]), "occupation_pmtiles", 2021)
    scratch = run_national_tiles(LocalStorage(roots[1]), "occupation_pmtiles", 2021, force=True)
    assert incremental.stats["reused"] > 0  # the S01|S02 border tiles at z12–14, away from S03
    assert (
        scratch.stats["reused"] == 0
        and scratch.stats["merged"] == incremental.stats["merged"] + incremental.stats["reused"]
    )
    assert all_tiles_of(roots[0] / NATIONAL) == all_tiles_of(roots[1] / NATIONAL)
