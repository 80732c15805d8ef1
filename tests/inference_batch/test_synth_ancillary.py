"""Ancillary layers of the generated territory: the names and fields consumers rely on, aligned with the
truth, imperfect as documented in the manifest."""

from __future__ import annotations

import pytest
import shapely

from inference_batch.synth import build_scene
from ocsge import schema

FIELDS = {
    "bdtopo_batiment": {"usage_1", "hauteur"},
    "bdtopo_route": {"largeur_de_chaussee", "nature", "importance"},
    "bdtopo_voie_ferree": {"nature"},
    "bdtopo_hydro": {"nature"},
    "rpg": {"code_cultu", "code_group"},
    "bdforet": {"code_tfv", "tfv", "essence"},
    "fichiers_fonciers": {"idpar", "idcom", "nlogh", "nlocact"},
}


@pytest.fixture(scope="module")
def scene():
    return build_scene("S01", 1000.0, 800.0, seed=11)


def _union_of(frame, cs: str | tuple[str, ...]):
    codes = (cs,) if isinstance(cs, str) else cs
    return shapely.union_all(frame.geometry[frame[schema.CODE_CS].isin(codes)].to_numpy())


def test_layers_have_the_contract_fields(scene) -> None:
    for year in scene.millesimes:
        layers = scene.ancillary[year]
        assert set(layers) == set(FIELDS)
        for name, fields in FIELDS.items():
            frame = layers[name]
            assert fields <= set(frame.columns), name
            assert len(frame) > 0 and frame.crs.to_epsg() == 2154, name
        assert set(layers["bdtopo_route"].geom_type) == {"LineString"}
        assert set(layers["bdtopo_voie_ferree"].geom_type) == {"LineString"}
        assert layers["fichiers_fonciers"]["idpar"].str.len().eq(14).all()
        assert layers["fichiers_fonciers"]["idcom"].isin(scene.communes["insee_com"]).all()


def test_ancillary_is_aligned_with_the_truth(scene) -> None:
    rect = shapely.box(*scene.bounds)
    for year in scene.millesimes:
        truth, layers = scene.truth[year], scene.ancillary[year]
        roads = layers["bdtopo_route"]
        wide = roads[roads["largeur_de_chaussee"] >= 5]
        on_roads = _union_of(truth, "CS1.1.1.2")
        lines = shapely.union_all(wide.geometry.to_numpy())
        assert shapely.intersection(lines, on_roads).length / lines.length > 0.95
        bati = shapely.union_all(layers["bdtopo_batiment"].geometry.to_numpy())
        assert shapely.intersection(bati, _union_of(truth, "CS1.1.1.1")).area / bati.area > 0.8
        outdated = [fid.upper() for i in scene.manifest()["imperfections"] if i["layer"] == "rpg"
                    and i["type"] == "outdated" and i["millesime"] == year for fid in i["ids"]]
        rpg = layers["rpg"]
        rpg = rpg[~rpg["id_parcel"].str.endswith(tuple(outdated) or ("\0",))]
        rpg = shapely.union_all(rpg.geometry.to_numpy())
        farmed = shapely.union_all(truth.geometry[truth[schema.CODE_US] == "US1.1"].to_numpy())
        assert shapely.intersection(rpg, farmed).area / rpg.area > 0.9
        hydro = shapely.union_all(layers["bdtopo_hydro"].geometry.to_numpy())
        assert shapely.intersection(hydro, _union_of(truth, "CS1.2.2")).area / hydro.area > 0.9
        for frame in layers.values():
            assert rect.buffer(5).contains(shapely.union_all(frame.geometry.to_numpy()))


def test_imperfections_are_documented(scene) -> None:
    imperfections = scene.manifest()["imperfections"]
    layers = {i["layer"] for i in imperfections}
    assert {"bdtopo_batiment", "bdtopo_route", "rpg", "bdforet", "fichiers_fonciers"} <= layers
    _first, second = scene.millesimes
    # the demolished factory is still in BD TOPO of the second millésime (outdated data)
    outdated = next(i for i in imperfections if i["layer"] == "bdtopo_batiment" and i["type"] == "outdated")
    assert outdated["ids"]
    assert len(scene.ancillary[second]["bdtopo_batiment"]) > 0
