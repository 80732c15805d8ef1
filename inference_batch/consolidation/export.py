"""The consolidation window's results as IGN would deliver them, ingested through the ordinary path.

* **Errors layer** of the previous millésime (IGN's *patch correctif*, ``PATCH_CORR_M{n}_{year}``): every
  accepted contribution becomes the parts of the previous millésime's polygons it covers (a point: the
  whole polygon under it), with IGN's columns (``id_ocs, code_cs, code_us, millesime, source, ossature,
  id_origine, code_or, cs_corr, us_corr, os_corr, decoup_geo``), ``cs_corr``/``us_corr`` the proposed codes
  (``RAS`` where one of them is unchanged). Contributions overlapping each other: the one reviewed last
  wins. A patch already delivered for the pair keeps its own corrections where no contribution lies. It is
  written alone as an IGN-named GeoPackage (``ocsge corrections --corrections FILE`` reads it) and inside
  the delivery below (a plain ``ocsge corrections`` then finds it ingested).
* **Corrected millésime**: the new millésime's automatic layer with the interpreters' edits (reclassified
  polygons, split polygons replaced by their parts) and the accepted contributions carried forward where
  the automatic layer repeats the previous millésime's error (a polygon no interpreter touched, whose codes
  are the previous millésime's codes at the contribution), each polygon with its ``provenance`` (``auto``,
  ``pi``, ``contribution``).
* Both, with the zone construite of the new millésime, are written as an IGN-style delivery
  (``OCS-GE_2-0__GPKG_{CRS}_{Dddd}_{year}-01-01.7z``: ``OCCUPATION_SOL``, ``ZONE_CONSTRUITE``, the patch)
  under ``consolidation/{Dddd}/{year}/`` and ingested with ``ocsge ingest``'s code, so that the corrected
  millésime is published like an ingested one: ``ocsge products`` derives artificialisation, differences,
  corrections and statistics from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely

from inference_batch.products.artifacts import StepError, key, read_vector
from inference_batch.scratch import scratch
from ocsge import schema
from ocsge.consolidation.model import Contribution, ContributionStatus, Polygon, Provenance
from ocsge.consolidation.store import ConsolidationStore, window_id
from ocsge.millesimes import label
from ocsge.progress import done, step
from ocsge.storage import Storage
from ocsge.territory import Departement, departement

PROVENANCE = "provenance"
PATCH_COLUMNS = [
    "id_ocs",
    "code_cs",
    "code_us",
    "millesime",
    "source",
    "ossature",
    "id_origine",
    "code_or",
    "cs_corr",
    "us_corr",
    "os_corr",
    "decoup_geo",
]
CRS_TOKENS = {2154: "LAMB93", 5490: "RGAF09UTM20", 2972: "RGFG95UTM22", 2975: "RGR92UTM40S", 4471: "RGM04UTM38S"}
MIN_PART_M2 = 0.01  # pieces thinner than this are slivers of the overlay, not parts of a polygon


@dataclass(frozen=True)
class ExportResult:
    errors_key: str  # the IGN-named PATCH_CORR GeoPackage
    delivery_key: str | None  # the .7z delivery of the corrected millésime (None with errors_only)
    corrections: int  # polygons (parts) corrected in the errors layer
    provenance: dict[str, int]  # polygons of the corrected millésime per provenance
    ingested: dict[str, str]  # keys written by the ingestion


def delivery_name(dep: Departement, year: int) -> str:
    return f"OCS-GE_2-0__GPKG_{CRS_TOKENS.get(dep.epsg, 'LAMB93')}_{dep.token}_{year}-01-01"


def patch_name(dep: Departement, previous: int) -> str:
    return f"PATCH_CORR_{label(dep.code, previous)}_{previous}"


def export_prefix(dep: Departement, year: int) -> str:
    return f"consolidation/{dep.token}/{year}"


# --- the errors layer ---------------------------------------------------------------------------------


def _polygonal(geom: shapely.Geometry) -> shapely.Geometry | None:
    if geom is None or geom.is_empty:
        return None
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom if geom.area > MIN_PART_M2 else None
    parts = [g for g in getattr(geom, "geoms", []) if g.geom_type in ("Polygon", "MultiPolygon")]
    merged = shapely.union_all(parts) if parts else None
    return merged if merged is not None and merged.area > MIN_PART_M2 else None


def contribution_areas(
    previous: gpd.GeoDataFrame, contributions: list[Contribution]
) -> list[tuple[Contribution, shapely.Geometry]]:
    """What each contribution covers on the previous millésime: its polygon, or for a point the polygon of
    the previous millésime under it (a point on no polygon covers nothing)."""
    tree = shapely.STRtree(previous.geometry.to_numpy())
    out = []
    for c in contributions:
        geom = shapely.from_wkb(c.wkb)
        if geom.geom_type == "Point":
            hits = tree.query(geom, predicate="intersects")
            if len(hits) == 0:
                continue
            geom = previous.geometry.iloc[int(sorted(hits)[0])]
        out.append((c, geom))
    return out


def errors_layer(
    previous: gpd.GeoDataFrame,
    contributions: list[Contribution],
    previous_year: int,
    delivered: gpd.GeoDataFrame | None = None,
) -> gpd.GeoDataFrame:
    """The PATCH_CORR layer of the previous millésime from accepted contributions (reviewed last wins), on
    top of a delivered patch's corrections where there is one."""
    accepted = sorted(
        (c for c in contributions if c.status is ContributionStatus.ACCEPTED), key=lambda c: (c.reviewed_at or "", c.id)
    )
    areas = contribution_areas(previous, accepted)
    tree = shapely.STRtree(previous.geometry.to_numpy())
    rows: list[dict[str, Any]] = []
    covered: shapely.Geometry | None = None
    for c, area in reversed(areas):  # the last reviewed first; earlier ones only where it does not lie
        todo = area if covered is None else shapely.difference(area, covered)
        covered = area if covered is None else shapely.union(covered, area)
        for i in tree.query(todo, predicate="intersects"):
            prev = previous.iloc[int(i)]
            part = _polygonal(shapely.intersection(prev.geometry, todo))
            if part is None:
                continue
            whole = part.area >= prev.geometry.area - MIN_PART_M2
            rows.append(
                {
                    "id_ocs": str(prev[schema.ID]),
                    "code_cs": prev[schema.CODE_CS],
                    "code_us": prev[schema.CODE_US],
                    "millesime": str(previous_year),
                    "source": f"contribution:{c.id}",
                    "ossature": 0,
                    "id_origine": "",
                    "code_or": "CONTRIB",
                    "cs_corr": "RAS" if c.code_cs == prev[schema.CODE_CS] else c.code_cs,
                    "us_corr": "RAS" if c.code_us == prev[schema.CODE_US] else c.code_us,
                    "os_corr": "RAS",
                    "decoup_geo": "RAS" if whole else "OUI",
                    "geometry": part,
                }
            )
    if delivered is not None and len(delivered):
        kept = delivered[
            (delivered[schema.CS_CORR].fillna("RAS") != "RAS") | (delivered[schema.US_CORR].fillna("RAS") != "RAS")
        ]
        for _, d in kept.iterrows():
            part = _polygonal(d.geometry if covered is None else shapely.difference(d.geometry, covered))
            if part is None:
                continue
            rows.append(
                {
                    "id_ocs": str(d[schema.ID]),
                    "code_cs": d[schema.CODE_CS],
                    "code_us": d[schema.CODE_US],
                    "millesime": str(previous_year),
                    "source": "ign",
                    "ossature": 0,
                    "id_origine": "",
                    "code_or": "",
                    "cs_corr": d[schema.CS_CORR] or "RAS",
                    "us_corr": d[schema.US_CORR] or "RAS",
                    "os_corr": "RAS",
                    "decoup_geo": "RAS" if part.equals(d.geometry) else "OUI",
                    "geometry": part,
                }
            )
    frame = pd.DataFrame(rows, columns=[*PATCH_COLUMNS, "geometry"])
    return gpd.GeoDataFrame(frame, geometry="geometry", crs=previous.crs)


# --- the corrected millésime ---------------------------------------------------------------------------


def corrected_millesime(
    auto: gpd.GeoDataFrame,
    window_polygons: list[Polygon],
    previous: gpd.GeoDataFrame,
    contributions: list[Contribution],
) -> gpd.GeoDataFrame:
    """Auto layer + interpreters' edits + accepted contributions carried forward, with ``provenance``."""
    snapshot = {p.id for p in window_polygons}
    base = auto.loc[
        ~auto[schema.ID].astype(str).isin(snapshot), [schema.ID, schema.CODE_CS, schema.CODE_US, auto.geometry.name]
    ]
    live = [p for p in window_polygons if not p.retired]
    edited = gpd.GeoDataFrame(
        {
            schema.ID: [p.id for p in live],
            schema.CODE_CS: [p.code_cs for p in live],
            schema.CODE_US: [p.code_us for p in live],
            PROVENANCE: [str(p.provenance) for p in live],
        },
        geometry=shapely.from_wkb(np.array([p.wkb for p in live], dtype=object)) if live else [],
        crs=auto.crs,
    )
    base = gpd.GeoDataFrame(
        {
            schema.ID: base[schema.ID].astype(str).to_numpy(),
            schema.CODE_CS: base[schema.CODE_CS].to_numpy(),
            schema.CODE_US: base[schema.CODE_US].to_numpy(),
            PROVENANCE: str(Provenance.AUTO),
        },
        geometry=base.geometry.to_numpy(),
        crs=auto.crs,
    )
    layer = gpd.GeoDataFrame(pd.concat([base, edited], ignore_index=True), geometry="geometry", crs=auto.crs)
    accepted = sorted(
        (c for c in contributions if c.status is ContributionStatus.ACCEPTED), key=lambda c: (c.reviewed_at or "", c.id)
    )
    for c, area in contribution_areas(previous, accepted):
        layer = carry_forward(layer, previous, c, area)
    return layer.reset_index(drop=True)


def carry_forward(
    layer: gpd.GeoDataFrame, previous: gpd.GeoDataFrame, c: Contribution, area: shapely.Geometry
) -> gpd.GeoDataFrame:
    """The part of ``area`` in untouched polygons that repeat the previous millésime's codes gets the
    contribution's codes (split off when the polygon is only partly covered)."""
    prev_tree = shapely.STRtree(previous.geometry.to_numpy())
    hits = shapely.STRtree(layer.geometry.to_numpy()).query(area, predicate="intersects")
    add: list[dict[str, Any]] = []
    drop: list[int] = []
    for i in sorted(int(h) for h in hits):
        row = layer.iloc[i]
        if row[PROVENANCE] != Provenance.AUTO:
            continue  # an interpreter decided here: their codes stand
        inside = _polygonal(shapely.intersection(row.geometry, area))
        if inside is None:
            continue
        under = prev_tree.query(inside.representative_point(), predicate="intersects")
        if len(under) == 0:
            continue
        prev = previous.iloc[int(sorted(under)[0])]
        if (row[schema.CODE_CS], row[schema.CODE_US]) != (prev[schema.CODE_CS], prev[schema.CODE_US]):
            continue  # the new millésime differs from the erroneous one here: nothing carried
        if (row[schema.CODE_CS], row[schema.CODE_US]) == (c.code_cs, c.code_us):
            continue
        drop.append(i)
        rest = _polygonal(shapely.difference(row.geometry, area))
        add.append(
            {
                schema.ID: f"{row[schema.ID]}.c" if rest is not None else row[schema.ID],
                schema.CODE_CS: c.code_cs,
                schema.CODE_US: c.code_us,
                PROVENANCE: str(Provenance.CONTRIBUTION),
                "geometry": inside,
            }
        )
        if rest is not None:
            add.append(
                {
                    schema.ID: row[schema.ID],
                    schema.CODE_CS: row[schema.CODE_CS],
                    schema.CODE_US: row[schema.CODE_US],
                    PROVENANCE: row[PROVENANCE],
                    "geometry": rest,
                }
            )
    if not drop:
        return layer
    kept = layer.drop(index=layer.index[drop])
    return gpd.GeoDataFrame(
        pd.concat([kept, gpd.GeoDataFrame(add, geometry="geometry", crs=layer.crs)], ignore_index=True),
        geometry="geometry",
        crs=layer.crs,
    )


# --- writing and ingesting ------------------------------------------------------------------------------


def _as_multi(geoms: np.ndarray) -> np.ndarray:
    return np.array([g if g.geom_type == "MultiPolygon" else shapely.MultiPolygon([g]) for g in geoms], dtype=object)


def write_gpkg(frame: gpd.GeoDataFrame, path: Path, layer: str, description: str) -> None:
    out = gpd.GeoDataFrame(
        frame.drop(columns=frame.geometry.name),
        crs=frame.crs,
        geometry=gpd.GeoSeries(_as_multi(frame.geometry.to_numpy()), crs=frame.crs),
    )
    out = out.rename_geometry("the_geom")
    pyogrio.write_dataframe(
        out,
        path,
        layer=layer,
        driver="GPKG",
        geometry_type="MultiPolygon",
        layer_options={
            "GEOMETRY_NAME": "the_geom",
            "DESCRIPTION": description,
            "IDENTIFIER": layer,
            "SPATIAL_INDEX": "YES",
        },
    )


def ign_occupation(layer: gpd.GeoDataFrame, year: int) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "id": layer[schema.ID].astype(str).to_numpy(),
            "code_cs": layer[schema.CODE_CS].to_numpy(),
            "code_us": layer[schema.CODE_US].to_numpy(),
            "millesime": str(year),
            "source": "consolidation",
            "ossature": 0,
            "id_origine": "",
            "code_or": "",
            PROVENANCE: layer[PROVENANCE].to_numpy(),
        },
        geometry=layer.geometry.to_numpy(),
        crs=layer.crs,
    )


def zone_construite_of(storage: Storage, dep: str, year: int) -> gpd.GeoDataFrame:
    for product in ("zone_construite_auto", "zone_construite"):
        k = key(product, dep, year)
        if storage.exists(k):
            zc = read_vector(storage, k)
            return gpd.GeoDataFrame(
                {"id": zc[schema.ID].astype(str).to_numpy(), "millesime": str(year)},
                geometry=zc.geometry.to_numpy(),
                crs=zc.crs,
            )
    raise StepError(
        f"no zone construite for {dep} {year} (zone_construite_auto or zone_construite): run `ocsge rules` first"
    )


def export_window(
    storage: Storage,
    store: ConsolidationStore,
    dep_code: object,
    year: int,
    *,
    errors_only: bool = False,
    force: bool = False,
) -> ExportResult:
    """Write the errors layer, and unless ``errors_only`` the corrected millésime as a delivery, ingested."""
    from inference_batch.products.ingest import ingest

    dep = departement(dep_code)
    window = store.get_window(window_id(dep.code, year))
    contributions = store.list_contributions(window.id, ContributionStatus.ACCEPTED)
    step(f"consolidation export {window.id}: {len(contributions)} accepted contributions")
    previous = read_vector(storage, window.previous_key)
    delivered_key = key("patch_corr", dep.code, (window.previous_millesime, year))
    delivered = read_vector(storage, delivered_key) if storage.exists(delivered_key) else None
    errors = errors_layer(previous, contributions, window.previous_millesime, delivered)
    prefix = export_prefix(dep, year)
    name = patch_name(dep, window.previous_millesime)
    errors_key = f"{prefix}/{name}.gpkg"
    with scratch("consolidation") as tmp:
        path = Path(tmp) / f"{name}.gpkg"
        write_gpkg(
            errors,
            path,
            name,
            f"{name} — corrections of millésime {window.previous_millesime} from the consolidation window {window.id}",
        )
        storage.put_file(errors_key, path)
    counts: dict[str, int] = {}
    if errors_only:
        done(f"consolidation export {window.id}: errors layer {errors_key} ({len(errors)} parts)")
        return ExportResult(errors_key, None, len(errors), counts, {})

    auto = read_vector(storage, window.auto_key)
    layer = corrected_millesime(auto, store.all_polygons(window.id), previous, contributions)
    counts = {str(k): int(v) for k, v in layer[PROVENANCE].value_counts().sort_index().items()}
    zone = zone_construite_of(storage, dep.code, year)
    top = delivery_name(dep, year)
    delivery_key = f"{prefix}/{top}.7z"
    with scratch("consolidation") as tmp:
        data = (
            Path(tmp)
            / top
            / "OCS-GE"
            / f"1_DONNEES_LIVRAISON_CONSOLIDATION_{year}"
            / f"OCSGE_2-0_GPKG_{CRS_TOKENS.get(dep.epsg, 'LAMB93')}_D{dep.code.lstrip('0') or '0'}-{year}"
        )
        data.mkdir(parents=True)
        what = f"millésime {year} consolidated in window {window.id} (auto + photo-interpretation + contributions)"
        write_gpkg(
            ign_occupation(layer, year), data / "OCCUPATION_SOL.gpkg", "OCCUPATION_SOL", f"OCCUPATION_SOL — {what}"
        )
        write_gpkg(zone, data / "ZONE_CONSTRUITE.gpkg", "ZONE_CONSTRUITE", f"ZONE_CONSTRUITE — {what}")
        if len(errors):
            patch = errors.assign(source="consolidation")
            write_gpkg(
                patch,
                data / f"{name}.gpkg",
                name,
                f"{name} — corrections of millésime {window.previous_millesime} ({window.id})",
            )
        archive = Path(tmp) / f"{top}.7z"
        import py7zr

        with py7zr.SevenZipFile(archive, "w") as z:
            for p in sorted((Path(tmp) / top).rglob("*")):
                z.write(p, arcname=str(p.relative_to(tmp)))
        storage.put_file(delivery_key, archive)
        result = ingest(archive, storage, departement_code=dep.code, millesime=year, force=force)
    done(
        f"consolidation export {window.id}: {len(layer)} polygons ({counts}), {len(errors)} corrections; "
        f"ingested {', '.join(result.keys.values())}"
    )
    return ExportResult(errors_key, delivery_key, len(errors), counts, dict(result.keys))
