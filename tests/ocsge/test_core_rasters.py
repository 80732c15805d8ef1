"""Encodings of the non-nomenclature class rasters, shared by products and services."""

from __future__ import annotations

from ocsge import rasters
from ocsge.schema import ARTIF_VALUES


def test_artif_values_cover_the_ign_values() -> None:
    assert {rasters.value_of("artif", v) for v in ARTIF_VALUES} == {1, 2}
    assert rasters.value_of("artif", "inconnu") == 0


def test_palettes_keep_nodata_transparent_and_hide_outside_values() -> None:
    construction = rasters.palette("construction")
    assert construction[0][3] == 0 and construction[1][3] == 255
    assert construction[rasters.value_of("construction", "hors zone construite")][3] == 0
    for layer in rasters.ENCODINGS:
        values = [c.value for c in rasters.ENCODINGS[layer]]
        assert 0 not in values and len(set(values)) == len(values)


def test_services_legends_follow_the_encoding() -> None:
    from services.tiles.palettes import default_legend

    assert [(e.value, e.colour) for e in default_legend("artif")] == [(c.value, c.colour) for c in rasters.ARTIF]
    assert [e.value for e in default_legend("construction")] == [1]  # "outside" is not drawn
