"""Tiny but real artifacts under their canonical keys: COGs (rasterio), GeoParquet (pyarrow + shapely),
PMTiles, CSV, JSON reports and a zip, for two départements and a pair of millésimes.

Used by the catalogue's tests and by anyone trying ``ocsge publish`` / ``ocsge serve`` without running the
pipeline. Extents are real places (Seine-et-Marne around Melun, Gers around Auch) in Lambert-93.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass

from ocsge.nomenclature import CS_LEAVES, US_LEAVES, Kind, palette, raster_value
from ocsge.products import product_key
from ocsge.storage import Storage


@dataclass(frozen=True)
class Place:
    code: str
    origin: tuple[float, float]  # Lambert-93 lower-left corner
    millesimes: tuple[int, ...]


PLACES: tuple[Place, ...] = (
    Place("77", (660_000.0, 6_820_000.0), (2017, 2021)),
    Place("32", (490_000.0, 6_280_000.0), (2019, 2022)),
)
SIZE_M = 10_000.0  # each sample covers 10 km × 10 km
PIXELS = 100  # 100 m pixels
BLOCKS = ("r000c000", "r000c001")  # prediction blocks, millésime 2024 in the first place


def _write_cog(storage: Storage, key: str, place: Place, *, kind: Kind | None = None, seed: int = 0,
               x_offset: float = 0.0, tags: dict[str, str] | None = None) -> None:
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    x0, y0 = place.origin
    transform = from_origin(x0 + x_offset, y0 + SIZE_M, SIZE_M / PIXELS, SIZE_M / PIXELS)
    rng = np.random.default_rng(seed)
    leaves = CS_LEAVES if kind in (Kind.COUVERTURE, None) else US_LEAVES
    values = np.array([raster_value(kind or Kind.COUVERTURE, c) for c in leaves], dtype="uint8")
    data = rng.choice(values, size=(PIXELS, PIXELS)).astype("uint8")
    data[:5, :5] = 0
    profile = {"width": PIXELS, "height": PIXELS, "count": 1, "dtype": "uint8", "crs": "EPSG:2154",
               "transform": transform, "nodata": 0, "compress": "deflate"}
    with storage.writer(key) as tmp:
        # GDAL's COG driver cannot take a colour table through the profile: write a GTiff, then translate.
        gtiff = tmp.with_name(tmp.name + ".gtiff.tif")
        with rasterio.open(gtiff, "w", driver="GTiff", tiled=True, blockxsize=128, blockysize=128,
                           **profile) as dst:
            dst.write(data, 1)
            dst.write_colormap(1, palette(kind or Kind.COUVERTURE))
            if tags:
                dst.update_tags(**tags)
        from rasterio.shutil import copy as rio_copy

        rio_copy(gtiff, tmp, driver="COG", compress="deflate", overview_resampling="mode", blocksize=128)
        gtiff.unlink()


def _write_geoparquet(storage: Storage, key: str, place: Place, columns: dict[str, list], *, n: int = 4,
                      extra_meta: dict[str, str] | None = None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import shapely
    from rasterio.crs import CRS

    x0, y0 = place.origin
    step = SIZE_M / n
    geoms = [shapely.box(x0 + i * step, y0 + j * step, x0 + (i + 1) * step, y0 + (j + 1) * step)
             for j in range(n) for i in range(n)]
    rows = len(geoms)
    data = {name: (values * rows)[:rows] for name, values in columns.items()}
    data["geometry"] = shapely.to_wkb(geoms)
    table = pa.table(data)
    bounds = [float(v) for v in shapely.total_bounds(geoms)]
    geo = {"version": "1.1.0", "primary_column": "geometry",
           "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Polygon"],
                                    "crs": CRS.from_epsg(2154).to_dict(projjson=True), "bbox": bounds}}}
    meta = {b"geo": json.dumps(geo).encode()}
    for k, v in (extra_meta or {}).items():
        meta[k.encode()] = v.encode()
    table = table.replace_schema_metadata(meta)
    with storage.writer(key) as tmp:
        pq.write_table(table, tmp)


def _write_pmtiles(storage: Storage, key: str, place: Place) -> None:
    from pmtiles.tile import Compression, TileType, zxy_to_tileid
    from pmtiles.writer import Writer
    from rasterio.warp import transform_bounds

    x0, y0 = place.origin
    w, s, e, n = transform_bounds("EPSG:2154", "EPSG:4326", x0, y0, x0 + SIZE_M, y0 + SIZE_M)
    with storage.writer(key) as tmp, tmp.open("wb") as f:
        writer = Writer(f)
        writer.write_tile(zxy_to_tileid(0, 0, 0), b"\x1a\x00")  # an empty MVT layer
        writer.finalize(
            {"tile_type": TileType.MVT, "tile_compression": Compression.NONE,
             "min_lon_e7": int(w * 1e7), "min_lat_e7": int(s * 1e7), "max_lon_e7": int(e * 1e7),
             "max_lat_e7": int(n * 1e7), "center_zoom": 0, "center_lon_e7": int((w + e) / 2 * 1e7),
             "center_lat_e7": int((s + n) / 2 * 1e7)},
            {"vector_layers": [{"id": "occupation", "fields": {}}]},
        )


def build_samples(storage: Storage, *, with_predictions: bool = True) -> list[str]:
    """Write the sample artifacts; returns their keys."""
    keys: list[str] = []

    def key(product: str, code: str, mill: int | tuple[int, int], block: str | None = None) -> str:
        k = product_key(product, code, mill, block=block)
        keys.append(k)
        return k

    occupation = {"id": [f"o{i}" for i in range(16)], "code_cs": list(CS_LEAVES), "code_us": list(US_LEAVES),
                  "source": ["ign"]}
    for p_index, place in enumerate(PLACES):
        for year in place.millesimes:
            cols = {**occupation, "millesime": [year]}
            _write_geoparquet(storage, key("occupation", place.code, year), place, cols)
            _write_geoparquet(storage, key("artificialisation", place.code, year), place,
                              {**cols, "artif": ["artif", "non artif"], "crit_seuil": [False]})
            _write_cog(storage, key("couverture_cog", place.code, year), place, kind=Kind.COUVERTURE,
                       seed=year + p_index)
            _write_cog(storage, key("usage_cog", place.code, year), place, kind=Kind.USAGE, seed=year - p_index)
            _write_pmtiles(storage, key("occupation_pmtiles", place.code, year), place)
            storage.put_bytes(key("stats_commune_csv", place.code, year),
                              b"insee_com,code_cs,surface_ha\n77288,CS1.1.1.1,12.5\n")
            _write_geoparquet(storage, key("stats_commune", place.code, year), place,
                              {"insee_com": ["77288"], "surface_ha": [12.5]}, n=1)
            storage.put_bytes(key("ingest_report", place.code, year),
                              json.dumps({"departement": place.code, "millesime": year}).encode())
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as zf:
                zf.writestr("LISEZ-MOI.txt", f"OCS GE {place.code} {year}\n")
            storage.put_bytes(key("archive", place.code, year), buf.getvalue())
        pair = (place.millesimes[0], place.millesimes[1])
        _write_geoparquet(storage, key("difference", place.code, pair), place,
                          {"id": ["d0"], "cs_avant": ["CS2.2.1"], "us_avant": ["US1.1"],
                           "cs_apres": ["CS1.1.1.1"], "us_apres": ["US5"]}, n=2)
        storage.put_bytes(key("flows_cs", place.code, pair), b"cs_avant,cs_apres,ha\nCS2.2.1,CS1.1.1.1,3.2\n")
    if with_predictions:
        place = PLACES[0]
        tags = {"OCSGE_SOURCE": "auto", "OCSGE_MODEL": "flair-unet-rgbi", "OCSGE_CHECKPOINT": "sha256:0f3a9c2e"}
        for i, block in enumerate(BLOCKS):
            _write_cog(storage, key("prediction", place.code, 2024, block), place, seed=i,
                       x_offset=i * SIZE_M, tags=tags)
    return keys
