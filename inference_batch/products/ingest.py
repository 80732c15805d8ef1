"""Ingest official IGN OCS GE deliveries (.7z of GeoPackage or Shapefile) into canonical GeoParquet.

Tolerates what real deliveries do (../shared/reference/ocsge-domain.md §3): irregular archive names
(``D0971``, delivery dates like ``2025-11_04``, ``diif``), inner folders that say ``D13`` for ``D013``,
attribute names of every generation (``code_cs``/``CODE_CS``/``couverture``, ``CS_2018``…), geometry
columns of any name, invalid geometries, shapefiles in UTF-8 without a ``.cpg``, a missing CRS.
Everything repaired is counted in the ingest report; what cannot be repaired (corrupt archive, missing
layer, CRS of another territory, millésimes that contradict each other) is a clear error, and nothing
is written then.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from inference_batch.freshness import DELIVERY, forget, is_up_to_date, mark_done, read_stamp
from inference_batch.products import artifacts
from inference_batch.products.artifacts import StepError, key, step_outputs, write_json
from inference_batch.products.spatial import polygonal
from inference_batch.writers.transaction import transaction
from ocsge import schema
from ocsge.errors import MissingAttributeError, OcsgeError
from ocsge.millesimes import COVERAGE, check_year
from ocsge.nomenclature import Kind, find_code_column, parse_codes
from ocsge.progress import done, step
from ocsge.storage import Storage
from ocsge.territory import Departement, departement

ROLES = ("occupation", "zone_construite", "artificialisation", "difference", "artif_difference", "patch_corr")
VECTOR_SUFFIXES = (".gpkg", ".shp")




def report_key(dep: object, product: str, millesime: int | None, pair: tuple[int, int] | None) -> str:
    if product in ("difference", "artif_difference") and pair is not None:
        return key("ingest_report_diff", dep, pair)
    if product == "artificialisation":
        return key("ingest_report_artif", dep, millesime)  # type: ignore[arg-type]
    return key("ingest_report", dep, millesime if millesime is not None else pair[1])  # type: ignore[index]


class IngestError(OcsgeError):
    """A delivery that cannot be ingested as it is."""


# --- names -------------------------------------------------------------------------------------

_DEP = re.compile(r"(?:^|[_/\-\s])D(S\d{2}|0?\d{3}|0?2[AB]|\d{2})(?=[_\-/.\s]|$)", re.IGNORECASE)
_MILLESIME = re.compile(r"(?<!\d)((?:19|20)\d{2})-01-01(?!\d)")
_DIFFISH = re.compile(r"DIFF|DIIF|EVOL", re.IGNORECASE)
_PAIR = re.compile(r"(?<!\d)((?:19|20)\d{2})[-_]((?:19|20)\d{2})(?!\d)")
_INNER_YEAR = re.compile(r"_D(?:S\d{2}|0?\d{2,3}|0?2[AB])-((?:19|20)\d{2})(?!\d)", re.IGNORECASE)


@dataclass(frozen=True)
class DeliveryName:
    """What an archive or folder name says about its content."""

    departement: str | None = None
    millesime: int | None = None
    pair: tuple[int, int] | None = None
    product: str = "ocsge"  # "ocsge" | "artificialisation" | "difference" | "artif_difference"


def parse_delivery_name(name: str) -> DeliveryName:
    """Département, millésime(s) and product of an IGN delivery name, tolerating the known irregularities
    (``OCS-GE_2-0__GPKG_LAMB93_D013_2023-01-01``, ``…_DIFF-2020-2023_GPKG_LAMB93_D007_2025-06-30``,
    ``…_SHP_LAMB93_D075_DIFF_2018-2021``, ``…_D0971_…``, ``2025-11_04``, ``diif``)."""
    dep = None
    m = _DEP.search(name)
    if m:
        dep = departement(m.group(1)).code
    pair = None
    pm = _PAIR.search(name) if _DIFFISH.search(name) else None
    if pm and int(pm.group(1)) < int(pm.group(2)):
        pair = (int(pm.group(1)), int(pm.group(2)))
    millesime = None
    mm = _MILLESIME.search(name)
    if mm and pair is None:
        millesime = int(mm.group(1))
    elif pair is None:
        im = _INNER_YEAR.search(name)
        if im:
            millesime = int(im.group(1))
    lowered = name.lower()
    is_artif = "artif" in lowered or "zan_evol" in lowered
    if pair is not None:
        product = "artif_difference" if is_artif else "difference"
    else:
        product = "artificialisation" if is_artif else "ocsge"
    return DeliveryName(dep, millesime, pair, product)


def layer_role(name: str) -> str | None:
    """Role of a delivered layer from its file and layer name (sparte's substring rules, §3.2)."""
    n = name.lower()
    diffish = "diff" in n or "diif" in n or "evol" in n
    if "patch_corr" in n or "patchcorr" in n:
        return "patch_corr"
    if "zan_evol" in n or ("artif" in n and diffish):
        return "artif_difference"
    if "artif" in n:
        return "artificialisation"
    if diffish:
        return "difference"
    if "occupation" in n:
        return "occupation"
    if "construite" in n:
        return "zone_construite"
    return None


# --- opening deliveries ------------------------------------------------------------------------

@contextlib.contextmanager
def open_delivery(source: str | Path) -> Iterator[Path]:
    """A folder holding the delivery's files: the folder itself, the folder of a single file, or a
    temporary extraction of a .7z archive (corrupt or truncated archives are errors)."""
    path = Path(source)
    if not path.exists():
        raise IngestError(f"delivery {source} does not exist")
    if path.is_dir():
        yield path
        return
    if path.suffix.lower() == ".7z":
        import py7zr

        with tempfile.TemporaryDirectory(prefix="ocsge-ingest-") as tmp:
            try:
                with py7zr.SevenZipFile(path, mode="r") as archive:
                    archive.extractall(path=tmp)
            except Exception as exc:  # py7zr raises many types for damaged input
                raise IngestError(
                    f"corrupt or truncated archive {path.name}: {type(exc).__name__}: {exc}"
                ) from exc
            yield Path(tmp)
        return
    if path.suffix.lower() in VECTOR_SUFFIXES:
        yield path
        return
    raise IngestError(f"{path.name} is not a .7z archive, a folder, a .gpkg or a .shp")


@dataclass(frozen=True)
class LayerRef:
    path: Path
    layer: str | None  # None for a shapefile
    name: str  # what the role was read from (relative path + layer)

    def __str__(self) -> str:
        return self.name


def find_layers(root: Path) -> dict[str, LayerRef]:
    """Delivered layers by role; two candidates for one role is an error (ambiguous delivery)."""
    import pyogrio

    files = [root] if root.is_file() else sorted(
        p for p in root.rglob("*") if p.suffix.lower() in VECTOR_SUFFIXES and not p.name.startswith(".")
    )
    found: dict[str, LayerRef] = {}
    for f in files:
        rel = f.name if root.is_file() else f.relative_to(root).as_posix()
        if f.suffix.lower() == ".gpkg":
            try:
                layers = [str(row[0]) for row in pyogrio.list_layers(f) if row[1] is not None]
            except Exception as exc:
                raise IngestError(f"cannot read GeoPackage {rel}: {exc}") from exc
            refs = [LayerRef(f, layer, f"{rel}:{layer}") for layer in layers]
        else:
            refs = [LayerRef(f, None, rel)]
        for ref in refs:
            role = layer_role(f"{f.stem} {ref.layer or ''}") or layer_role(ref.name)
            if role is None:
                continue
            if role in found:
                raise IngestError(f"two {role} layers in the delivery: {found[role]} and {ref}")
            found[role] = ref
    return found


# --- report ------------------------------------------------------------------------------------

@dataclass
class IngestReport:
    source: str
    departement: str | None = None
    millesime: int | None = None
    pair: tuple[int, int] | None = None
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)
    anomalies: list[dict[str, Any]] = field(default_factory=list)

    def add(self, layer: str, issue: str, count: int, **detail: Any) -> None:
        if count:
            self.anomalies.append({"layer": layer, "issue": issue, "count": int(count), **detail})

    def counts(self) -> dict[str, int]:
        c: Counter[str] = Counter()
        for a in self.anomalies:
            c[a["issue"]] += a["count"]
        return dict(sorted(c.items()))

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "departement": self.departement, "millesime": self.millesime,
                "pair": list(self.pair) if self.pair else None, "layers": self.layers,
                "anomaly_counts": self.counts(), "anomalies": self.anomalies}


# --- reading and normalising -------------------------------------------------------------------

_MOJIBAKE = re.compile("[ÃÂ][\x80-\xbf]")


def read_layer(ref: LayerRef, report: IngestReport, role: str) -> gpd.GeoDataFrame:
    """Read a delivered layer; a UTF-8 shapefile without .cpg is re-read as UTF-8 (and reported)."""
    import pyogrio

    kwargs: dict[str, Any] = {"layer": ref.layer} if ref.layer else {}
    try:
        with np.errstate(invalid="ignore"):  # NaN coordinates: counted by clean_geometries, not warned about
            gdf = pyogrio.read_dataframe(ref.path, use_arrow=False, **kwargs)
    except Exception as exc:
        raise IngestError(f"cannot read layer {ref}: {exc}") from exc
    if ref.layer is None and not ref.path.with_suffix(".cpg").exists():
        text = [c for c in gdf.columns if c != gdf.geometry.name and pd.api.types.is_string_dtype(gdf[c])]
        if any(gdf[c].astype(str).str.contains(_MOJIBAKE).any() for c in text):
            gdf = pyogrio.read_dataframe(ref.path, encoding="UTF-8", use_arrow=False)
            report.add(role, "utf8_without_cpg", 1, detail="text read as UTF-8")
    return gdf


def check_crs(gdf: gpd.GeoDataFrame, dep: Departement, report: IngestReport, role: str, where: str
              ) -> gpd.GeoDataFrame:
    """Assign the département's CRS when missing (reported); a CRS of another territory is an error."""
    if gdf.crs is None:
        report.add(role, "missing_crs", 1, assigned=dep.crs)
        return gdf.set_crs(dep.epsg)
    epsg = gdf.crs.to_epsg(min_confidence=25)
    if epsg == dep.epsg:
        return gdf
    from pyproj import CRS

    if CRS.from_epsg(dep.epsg).equals(gdf.crs, ignore_axis_order=True):
        return gdf
    raise IngestError(
        f"{where}: CRS {gdf.crs.name} (EPSG:{epsg}) does not match département {dep.code} ({dep.crs})"
    )


def finite_coordinates(geoms: np.ndarray, chunk: int = 200_000) -> np.ndarray:
    """Per geometry: every x and y is a finite number (missing geometries count as finite)."""
    ok = np.ones(len(geoms), dtype=bool)
    for start in range(0, len(geoms), chunk):  # the coordinates of one chunk at a time: bounded memory
        coords, index = shapely.get_coordinates(geoms[start:start + chunk], return_index=True)
        bad = ~np.isfinite(coords).all(axis=1)
        if bad.any():
            ok[start + np.unique(index[bad])] = False
    return ok


# A delivered polygon lies in its département: one whose bounding box leaves the département's extent (its
# communes, when the storage has them, widened by EXTENT_MARGIN_M for deliveries cut loosely along the
# border, §3.4; else the area of use of the département's CRS) is an anomaly, dropped and counted. A layer
# with more than OUTSIDE_REFUSE_FRACTION of its polygons outside is not a delivery of this département (or
# has its coordinates in another CRS): it is refused, naming the file and the layer, and nothing is written.
EXTENT_MARGIN_M = 10_000.0
OUTSIDE_REFUSE_FRACTION = 0.5


@dataclass(frozen=True)
class DepartementExtent:
    bounds: tuple[float, float, float, float]  # in the département's CRS
    basis: str  # what the bounds come from, for messages and the report


def departement_extent(storage: Storage, dep: Departement, millesime: int | None) -> DepartementExtent:
    """Where the polygons of a département's delivery can lie (see EXTENT_MARGIN_M)."""
    ckey = communes_key(storage, dep, millesime)
    if ckey is not None:
        communes = artifacts.read_vector(storage, ckey)
        communes = communes.to_crs(dep.epsg) if communes.crs is not None else communes.set_crs(dep.epsg)
        b = communes.total_bounds
        if np.isfinite(b).all():
            m = EXTENT_MARGIN_M
            return DepartementExtent((b[0] - m, b[1] - m, b[2] + m, b[3] + m),
                                     f"its communes ({ckey}) widened by {m / 1000:g} km")
    from pyproj import CRS
    from pyproj.transformer import Transformer

    crs = CRS.from_epsg(dep.epsg)
    area = crs.area_of_use
    if area is None:  # pragma: no cover - every CRS of ours has one
        return DepartementExtent((-np.inf, -np.inf, np.inf, np.inf), f"{dep.crs} (no area of use)")
    bounds = Transformer.from_crs(4326, crs, always_xy=True).transform_bounds(*area.bounds, densify_pts=21)
    return DepartementExtent(tuple(float(v) for v in bounds), f"the area of use of {dep.crs} ({area.name})")


def check_extent(gdf: gpd.GeoDataFrame, extent: DepartementExtent, report: IngestReport, role: str, where: str,
                 dep: Departement) -> gpd.GeoDataFrame:
    """Drop (and count) the polygons outside the département's extent; refuse a layer mostly outside."""
    if gdf.empty:
        return gdf
    b = shapely.bounds(gdf.geometry.to_numpy())
    xmin, ymin, xmax, ymax = extent.bounds
    outside = ~((b[:, 0] >= xmin) & (b[:, 1] >= ymin) & (b[:, 2] <= xmax) & (b[:, 3] <= ymax))
    n = int(outside.sum())
    if not n:
        return gdf
    if n > OUTSIDE_REFUSE_FRACTION * len(gdf):
        raise IngestError(
            f"{where}: {n} of {len(gdf)} polygons ({n / len(gdf):.0%}) lie outside département {dep.code} "
            f"({extent.basis}); more than {OUTSIDE_REFUSE_FRACTION:.0%} outside: refused (a delivery of "
            "another département, or coordinates in another CRS?)")
    far = b[outside]
    report.add(role, "outside_departement_extent_dropped", n, extent=extent.basis,
               bbox_of_dropped=[round(float(v), 1) for v in (far[:, 0].min(), far[:, 1].min(),
                                                              far[:, 2].max(), far[:, 3].max())])
    return gdf.loc[~outside].reset_index(drop=True)


def clean_geometries(gdf: gpd.GeoDataFrame, report: IngestReport, role: str) -> gpd.GeoDataFrame:
    """Repair invalid geometries (make_valid, polygonal parts kept); drop null, empty and
    non-polygonal ones. Every action is counted."""
    gdf = gdf.rename_geometry(schema.GEOMETRY) if gdf.geometry.name != schema.GEOMETRY else gdf
    geoms = gdf.geometry.to_numpy()
    missing = shapely.is_missing(geoms)
    report.add(role, "null_geometry_dropped", int(missing.sum()))
    # NaN/inf coordinates: GEOS cannot even tell whether such a polygon is valid (it raises), and no
    # repair can place it. Dropped and counted before anything else looks at the geometries.
    not_finite = ~missing & ~finite_coordinates(geoms)
    report.add(role, "non_finite_coordinates_dropped", int(not_finite.sum()))
    if not_finite.any():
        geoms = geoms.copy()
        geoms[not_finite] = None
        missing = missing | not_finite
    types = shapely.get_type_id(geoms)
    odd = ~missing & ~np.isin(types, (3, 6, 7))
    report.add(role, "non_polygonal_geometry_dropped", int(odd.sum()))
    invalid = ~missing & ~odd & ~shapely.is_valid(geoms)
    if invalid.any():
        geoms = geoms.copy()
        geoms[invalid] = polygonal(shapely.make_valid(geoms[invalid]))
        report.add(role, "invalid_geometry_repaired", int(invalid.sum()))
    collections = ~missing & ~odd & (types == 7)
    if collections.any():
        geoms[collections] = polygonal(geoms[collections])
    empty = ~missing & ~odd & shapely.is_empty(geoms)
    report.add(role, "empty_geometry_dropped", int(empty.sum()))
    keep = ~missing & ~odd & ~empty
    out = gdf.set_geometry(gpd.GeoSeries(geoms, crs=gdf.crs, index=gdf.index)).loc[keep]
    return out.reset_index(drop=True)


def _codes(gdf: gpd.GeoDataFrame, column: str, kind: Kind, report: IngestReport, role: str,
           field_name: str, keep_token: str | None = None) -> list[str | None]:
    values = gdf[column].tolist()
    if keep_token is not None:
        tokens = [isinstance(v, str) and v.strip().upper() == keep_token for v in values]
        # "RAS" (rien à signaler) is the normal "no correction" value: counted, not an anomaly
        report.layers.setdefault(role, {})[f"{field_name}_{keep_token.lower()}"] = sum(tokens)
        values = [None if t else v for v, t in zip(values, tokens, strict=True)]
    codes, code_report = parse_codes(values, kind)
    for row in code_report.as_rows():
        if keep_token is not None and row["issue"] == "empty":
            continue
        report.add(role, f"{row['issue']}_code", int(row["count"]), field=field_name, raw=row["raw"])
    return codes


def _column(gdf: gpd.GeoDataFrame, *names: str) -> str | None:
    lowered = {c.lower(): c for c in gdf.columns}
    for n in names:
        if n.lower() in lowered:
            return lowered[n.lower()]
    return None


def _ids(gdf: gpd.GeoDataFrame, dep: Departement, tag: str) -> list[str]:
    col = _column(gdf, "id", "id_ocs", "id_ocsge", "cleabs")
    if col is not None and gdf[col].notna().all() and gdf[col].is_unique:
        return gdf[col].astype(str).tolist()
    return [f"{dep.token}_{tag}_{i:07d}" for i in range(len(gdf))]


def layer_millesime(gdf: gpd.GeoDataFrame, where: str) -> int | None:
    """The single millésime a layer's ``millesime`` attribute states, if it has one."""
    col = _column(gdf, "millesime", "millésime", "annee")
    if col is None:
        return None
    years = set()
    for v in gdf[col].dropna().unique():
        try:
            years.add(check_year(v))
        except OcsgeError:
            continue
    if len(years) > 1:
        raise IngestError(f"{where}: mixed-up millésimes in one layer ({sorted(years)})")
    return years.pop() if years else None


def normalise_occupation(gdf: gpd.GeoDataFrame, dep: Departement, millesime: int, report: IngestReport,
                         role: str = "occupation", source: str = "ign") -> gpd.GeoDataFrame:
    cs_col = find_code_column(gdf.columns, Kind.COUVERTURE)
    us_col = find_code_column(gdf.columns, Kind.USAGE)
    out = gpd.GeoDataFrame({
        schema.ID: _ids(gdf, dep, str(millesime)),
        schema.CODE_CS: _codes(gdf, cs_col, Kind.COUVERTURE, report, role, schema.CODE_CS),
        schema.CODE_US: _codes(gdf, us_col, Kind.USAGE, report, role, schema.CODE_US),
        schema.MILLESIME: np.int16(millesime),
        schema.SOURCE: source,
    }, geometry=gdf.geometry.to_numpy(), crs=gdf.crs)
    provenance = _column(gdf, "provenance")  # a consolidated millésime says where each polygon comes from
    if role == "occupation" and provenance is not None:
        out["provenance"] = gdf[provenance].astype(str).to_numpy()
    return out.rename_geometry(schema.GEOMETRY) if out.geometry.name != schema.GEOMETRY else out


def normalise_zone_construite(gdf: gpd.GeoDataFrame, dep: Departement, millesime: int) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({
        schema.ID: _ids(gdf, dep, f"ZC{millesime}"), schema.MILLESIME: np.int16(millesime), schema.SOURCE: "ign",
    }, geometry=gdf.geometry.to_numpy(), crs=gdf.crs)


_ARTIF_TRUE = {"artif", "artificialise", "artificialisé", "1", "true", "oui", "o", "y", "yes"}


def normalise_artificialisation(gdf: gpd.GeoDataFrame, dep: Departement, millesime: int,
                                report: IngestReport) -> gpd.GeoDataFrame:
    base = normalise_occupation(gdf, dep, millesime, report, role="artificialisation")
    col = _column(gdf, "artif")
    if col is None:
        raise MissingAttributeError(f"artificialisation layer has no 'artif' attribute: {list(gdf.columns)}")
    raw = gdf[col].astype(str).str.strip().str.lower()
    artif = raw.isin(_ARTIF_TRUE)
    unknown = ~artif & ~raw.isin({"non artif", "non artificialise", "non artificialisé", "0", "false", "non", "n"})
    report.add("artificialisation", "unknown_artif_value", int(unknown.sum()))
    seuil_col = _column(gdf, "crit_seuil")
    seuil = (gdf[seuil_col].astype(str).str.strip().str.lower().isin({"1", "true", "t", "oui", "vrai"})
             if seuil_col else pd.Series(False, index=gdf.index))
    base[schema.ARTIF] = np.where(artif.to_numpy(), "artif", "non artif")
    base[schema.CRIT_SEUIL] = seuil.to_numpy(dtype=bool)
    return base[[schema.ID, schema.CODE_CS, schema.CODE_US, schema.MILLESIME, schema.ARTIF, schema.CRIT_SEUIL,
                 schema.GEOMETRY]]


def _pair_columns(gdf: gpd.GeoDataFrame, pair: tuple[int, int] | None, prefix: str) -> tuple[str, str] | None:
    """Columns of the before/after values: ``cs_avant``/``cs_apres`` or ``CS_{Y1}``/``CS_{Y2}``."""
    before = _column(gdf, f"{prefix}_avant")
    after = _column(gdf, f"{prefix}_apres", f"{prefix}_après")
    if before and after:
        return before, after
    years = sorted({int(m.group(1)) for c in gdf.columns if (m := re.fullmatch(
        rf"{prefix}_((?:19|20)\d{{2}})", c, re.IGNORECASE))})
    if pair is not None and all(_column(gdf, f"{prefix}_{y}") for y in pair):
        return _column(gdf, f"{prefix}_{pair[0]}"), _column(gdf, f"{prefix}_{pair[1]}")  # type: ignore[return-value]
    if len(years) == 2:
        return _column(gdf, f"{prefix}_{years[0]}"), _column(gdf, f"{prefix}_{years[1]}")  # type: ignore[return-value]
    return None


def difference_years(gdf: gpd.GeoDataFrame) -> tuple[int, int] | None:
    years = sorted({int(m.group(1)) for c in gdf.columns if (m := re.fullmatch(
        r"cs_((?:19|20)\d{2})", c, re.IGNORECASE))})
    return (years[0], years[1]) if len(years) == 2 else None


def normalise_difference(gdf: gpd.GeoDataFrame, dep: Departement, pair: tuple[int, int] | None,
                         report: IngestReport, role: str = "difference") -> gpd.GeoDataFrame:
    """Différentiel in the canonical schema (cs_avant, us_avant, cs_apres, us_apres), from the new GPKG
    names or the old ``CS_{Y1}``… ones; an artif différentiel keeps ``artificialisation`` (+1/−1)."""
    cs = _pair_columns(gdf, pair, "cs")
    us = _pair_columns(gdf, pair, "us")
    if cs is None or us is None:
        raise MissingAttributeError(
            f"{role} layer: no before/after codes (cs_avant… or CS_{{year}}…) in {list(gdf.columns)}")
    out = gpd.GeoDataFrame({
        schema.ID: _ids(gdf, dep, "DIFF"),
        schema.CS_AVANT: _codes(gdf, cs[0], Kind.COUVERTURE, report, role, schema.CS_AVANT),
        schema.US_AVANT: _codes(gdf, us[0], Kind.USAGE, report, role, schema.US_AVANT),
        schema.CS_APRES: _codes(gdf, cs[1], Kind.COUVERTURE, report, role, schema.CS_APRES),
        schema.US_APRES: _codes(gdf, us[1], Kind.USAGE, report, role, schema.US_APRES),
    }, geometry=gdf.geometry.to_numpy(), crs=gdf.crs)
    if role == "artif_difference":
        col = _column(gdf, "artificialisation", "artif")
        if col is None:
            raise MissingAttributeError(f"artif différentiel has no 'artificialisation' attribute: {list(gdf.columns)}")
        out["artificialisation"] = pd.to_numeric(gdf[col], errors="coerce").fillna(0).astype("int8").to_numpy()
    return out


def normalise_patch(gdf: gpd.GeoDataFrame, dep: Departement, millesime: int, report: IngestReport
                    ) -> gpd.GeoDataFrame:
    """Patch correctif of the previous millésime: its codes and ``cs_corr``/``us_corr`` (``RAS`` = none)."""
    base = normalise_occupation(gdf, dep, millesime, report, role="patch_corr")
    for field_name, kind in ((schema.CS_CORR, Kind.COUVERTURE), (schema.US_CORR, Kind.USAGE)):
        col = _column(gdf, field_name)
        if col is None:
            raise MissingAttributeError(f"patch layer has no {field_name!r} attribute: {list(gdf.columns)}")
        base[field_name] = _codes(gdf, col, kind, report, "patch_corr", field_name, keep_token="RAS")
    return base


# --- clipping ------------------------------------------------------------------------------------

def clip_to(gdf: gpd.GeoDataFrame, area: shapely.Geometry, report: IngestReport, role: str) -> gpd.GeoDataFrame:
    """Keep what lies inside ``area`` (deliveries are badly cut by département, §3.4)."""
    shapely.prepare(area)
    geoms = gdf.geometry.to_numpy()
    inside = shapely.contains_properly(area, geoms)
    touching = ~inside & shapely.intersects(area, geoms)
    before = float(shapely.area(geoms[~inside]).sum())
    cut = polygonal(shapely.intersection(geoms[touching], area))
    geoms = geoms.copy()
    geoms[touching] = cut
    keep = inside | (touching & (shapely.area(geoms) > 0))
    after = float(shapely.area(geoms[touching & keep]).sum())
    report.add(role, "clipped_outside_departement", int((~inside).sum()), area_removed_m2=round(before - after, 2))
    return gdf.set_geometry(gpd.GeoSeries(geoms, crs=gdf.crs, index=gdf.index)).loc[keep].reset_index(drop=True)


def clip_area_from(source: str | Path | gpd.GeoDataFrame | shapely.Geometry | None, storage: Storage,
                   dep: Departement, millesime: int | None) -> shapely.Geometry | None:
    """The clipping polygon: a geometry, a vector file, or (``"communes"``) the union of the département's
    communes in the storage."""
    if source is None:
        return None
    if isinstance(source, shapely.Geometry):
        return source
    if isinstance(source, gpd.GeoDataFrame):
        frame = source
    elif str(source) == "communes":
        ckey = communes_key(storage, dep, millesime)
        if ckey is None:
            raise StepError(f"no communes layer for département {dep.code} under {storage.root} to clip with")
        frame = artifacts.read_vector(storage, ckey)
    else:
        frame = gpd.read_file(source)
    frame = frame.to_crs(dep.epsg) if frame.crs is not None else frame.set_crs(dep.epsg)
    return shapely.make_valid(shapely.union_all(frame.geometry.to_numpy()))


def communes_key(storage: Storage, dep: Departement, millesime: int | None) -> str | None:
    """The communes layer for a département: the given millésime's, else the latest available."""
    prefix = f"ancillary/communes/{dep.token}/"
    keys = sorted(o.key for o in storage.list(prefix) if o.key.endswith(".parquet"))
    if not keys:
        return None
    if millesime is not None:
        exact = key("communes", dep.code, millesime)
        if exact in keys:
            return exact
    return keys[-1]


def required_communes_key(storage: Storage, dep: Departement, millesime: int | None, step: str) -> str:
    """:func:`communes_key`, for a step that cannot run without communes: the error names the step."""
    found = communes_key(storage, dep, millesime)
    if found is None:
        raise StepError(f"{step} {dep.code}: no communes layer under ancillary/communes/{dep.token}/")
    return found


# --- the step ------------------------------------------------------------------------------------

@dataclass
class IngestResult:
    departement: str
    millesime: int | None
    pair: tuple[int, int] | None
    keys: dict[str, str]
    report: dict[str, Any]
    skipped: bool = False


REQUIRED = {
    "ocsge": ("occupation", "zone_construite"),
    "artificialisation": ("artificialisation",),
    "difference": ("difference",),
    "artif_difference": ("artif_difference",),
}


def _write_layer(storage: Storage, key_: str, frame: gpd.GeoDataFrame, previous: str | None) -> str:
    """Write a canonical layer unless the stored one has the same content; its content digest."""
    with tempfile.TemporaryDirectory(prefix="ocsge-ingest-") as tmp:
        path = Path(tmp) / "layer.parquet"
        artifacts.to_geoparquet(frame, path)
        with path.open("rb") as f:
            content = hashlib.file_digest(f, "sha256").hexdigest()
        if content != previous or not storage.exists(key_):
            storage.put_file(key_, path)
    return content


def delivery_fingerprint(path: Path, clip: object) -> str:
    """Fingerprint of a delivery (name, size and modification time of each of its files) and of the
    clip asked, to tell a rerun on the same input from a re-delivery."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    state = [[p.relative_to(path).as_posix() if path.is_dir() else p.name, p.stat().st_size, p.stat().st_mtime_ns]
             for p in files]
    clip_id = None if clip is None else str(clip) if isinstance(clip, str | Path) else "given"
    return hashlib.sha256(json.dumps([path.name, state, clip_id]).encode()).hexdigest()


def _previous_millesime(dep: Departement, millesime: int) -> int | None:
    years = [y for y in COVERAGE.get(dep.code, ()) if y < millesime]
    return years[-1] if years else None


def ingest(source: str | Path, storage: Storage, *, departement_code: object = None, millesime: object = None,
           clip: str | Path | gpd.GeoDataFrame | shapely.Geometry | None = None, force: bool = False
           ) -> IngestResult:
    """Ingest one delivery (archive, folder or single layer file) into canonical GeoParquet + a report.

    One transaction (:mod:`inference_batch.writers.transaction`): the layers and the report land together
    once all are read and checked; any failure leaves the stored layers as they were, and its error names
    the delivery. The published report names the delivery by its file name, never by a local path."""
    source = Path(source)
    with transaction(storage, f"ingest {source.name}") as staged:
        return _ingest(source, staged, departement_code=departement_code, millesime=millesime, clip=clip,
                       force=force)


def _ingest(source: Path, storage: Storage, *, departement_code: object, millesime: object,
            clip: str | Path | gpd.GeoDataFrame | shapely.Geometry | None, force: bool) -> IngestResult:
    named = parse_delivery_name(source.name)
    given_dep = departement(departement_code).code if departement_code is not None else None
    given_year = check_year(millesime) if millesime is not None else None
    if given_dep and named.departement and given_dep != named.departement:
        raise IngestError(f"{source.name} is a delivery for département {named.departement}, not {given_dep}")
    if given_year and named.millesime and given_year != named.millesime:
        raise IngestError(f"mixed-up millésimes: {source.name} is millésime {named.millesime}, "
                          f"but {given_year} was asked")
    dep_code = given_dep or named.departement
    year = given_year or named.millesime
    digest = delivery_fingerprint(source, clip)
    if not force and dep_code and (year or named.pair):
        rkey = report_key(dep_code, named.product, year, named.pair)
        if is_up_to_date(storage, rkey, digest):
            previous = artifacts.read_json(storage, rkey)
            keys = previous.get("keys", {})
            if is_up_to_date(storage, keys.values(), digest):
                done(f"ingest {source.name}: already done ({rkey})")
                pair = tuple(previous["pair"]) if previous.get("pair") else None
                return IngestResult(dep_code, previous.get("millesime"), pair, {**keys, "ingest_report": rkey},
                                    previous, skipped=True)

    step(f"ingest {source.name}")
    with open_delivery(source) as root:
        inner = parse_delivery_name(" ".join(p.relative_to(root).as_posix() for p in root.rglob("*"))) \
            if root.is_dir() else DeliveryName()
        dep_code = dep_code or inner.departement
        if dep_code is None:
            raise IngestError(f"cannot tell the département of {source.name}: pass --departement")
        dep = departement(dep_code)
        if inner.departement and inner.departement != dep.code:
            raise IngestError(f"{source.name}: inner files are for département {inner.departement}, not {dep.code}")
        if year and inner.millesime and inner.millesime != year:
            raise IngestError(f"mixed-up millésimes: {source.name} says {year} but its files say {inner.millesime}")
        year = year or inner.millesime
        pair = named.pair or inner.pair
        product = named.product if named.product != "ocsge" else inner.product
        layers = find_layers(root)
        if not layers:
            raise IngestError(f"no OCS GE layer (OCCUPATION_SOL, ZONE_CONSTRUITE, …) in {source.name}")
        if product == "ocsge" and not ({"occupation", "zone_construite"} & layers.keys()):
            product = next((p for p in ("artificialisation", "difference", "artif_difference") if p in layers), product)
        missing = [r for r in REQUIRED[product] if r not in layers]
        if missing:
            raise IngestError(
                f"{source.name}: missing layer(s) {', '.join(m.upper() for m in missing)}; found "
                f"{', '.join(str(v) for v in layers.values()) or 'none'}")

        report = IngestReport(source=source.name, departement=dep.code)  # no local path in a published file
        frames: dict[str, gpd.GeoDataFrame] = {}
        raw: dict[str, gpd.GeoDataFrame] = {}
        for role, ref in layers.items():
            gdf = read_layer(ref, report, role)
            gdf = check_crs(gdf, dep, report, role, f"{source.name} ({ref})")
            raw[role] = clean_geometries(gdf, report, role)
            report.layers[role] = {"source": ref.name, "rows_read": len(gdf)}

        # millésimes: file name, inner folder and attributes must agree
        for role in ("occupation", "zone_construite", "artificialisation"):
            if role in raw:
                stated = layer_millesime(raw[role], f"{source.name} ({layers[role]})")
                if stated is not None and year is not None and stated != year:
                    raise IngestError(
                        f"mixed-up millésimes: {source.name} is millésime {year} but {layers[role]} says {stated}")
                year = year or stated
        if "difference" in raw or "artif_difference" in raw:
            frame = raw.get("difference", raw.get("artif_difference"))
            found = difference_years(frame)  # type: ignore[arg-type]
            if found and pair and found != pair:
                raise IngestError(f"mixed-up millésimes: {source.name} is {pair[0]}–{pair[1]} but its "
                                  f"attributes are for {found[0]}–{found[1]}")
            pair = pair or found
        if year is None and pair is None:
            raise IngestError(f"cannot tell the millésime of {source.name}: pass --millesime")
        if year is None and pair is not None:
            year = pair[1]
        report.millesime, report.pair = year, pair

        extent = departement_extent(storage, dep, year)
        for role in list(raw):
            raw[role] = check_extent(raw[role], extent, report, role, f"{source.name} ({layers[role]})", dep)
        clip_area = clip_area_from(clip, storage, dep, year)
        for role, gdf in raw.items():
            if clip_area is not None:
                gdf = clip_to(gdf, clip_area, report, role)
            if role == "occupation":
                frames[role] = normalise_occupation(gdf, dep, year, report)  # type: ignore[arg-type]
            elif role == "zone_construite":
                frames[role] = normalise_zone_construite(gdf, dep, year)  # type: ignore[arg-type]
            elif role == "artificialisation":
                frames[role] = normalise_artificialisation(gdf, dep, year, report)  # type: ignore[arg-type]
            elif role in ("difference", "artif_difference"):
                if pair is None:
                    raise IngestError(f"{source.name}: cannot tell the two millésimes of {layers[role]}")
                frames[role] = normalise_difference(gdf, dep, pair, report, role)
            elif role == "patch_corr":
                corrected = layer_millesime(gdf, str(layers[role])) or _previous_millesime(dep, year)  # type: ignore[arg-type]
                if corrected is None or corrected >= year:  # type: ignore[operator]
                    raise IngestError(f"{source.name}: cannot tell which millésime {layers[role]} corrects")
                report.layers[role]["corrects"] = corrected
                frames[role] = normalise_patch(gdf, dep, corrected, report)

        keys: dict[str, str] = {}
        for role in frames:
            if role in ("occupation", "zone_construite", "artificialisation"):
                keys[role] = key(role, dep.code, year)  # type: ignore[arg-type]
            elif role == "difference":
                keys[role] = key("delivered_difference", dep.code, pair)  # type: ignore[arg-type]
            elif role == "artif_difference":
                keys[role] = key("delivered_artif_difference", dep.code, pair)  # type: ignore[arg-type]
            elif role == "patch_corr":
                keys[role] = key("patch_corr", dep.code, (report.layers[role]["corrects"], year))  # type: ignore[arg-type]
        rkey = report_key(dep.code, product, year, pair)
        # A layer whose content is the same as the stored one is not rewritten (its ETag stays, so the
        # steps that read it stay up to date); the written layers are stamped as delivered: no computed
        # step ever replaces one of them.
        previous = {k: (read_stamp(storage, k) or {}).get("content") for k in keys.values()}
        forget(storage, [*keys.values(), rkey])
        contents: dict[str, str] = {}
        with step_outputs(storage) as outputs:
            for role, frame in frames.items():
                contents[keys[role]] = _write_layer(storage, keys[role], frame, previous[keys[role]])
                outputs.add(keys[role])
                report.layers[role]["rows_written"] = len(frame)
                report.layers[role]["key"] = keys[role]
            payload = {**report.as_dict(), "source_name": source.name, "keys": keys}
            outputs.add(write_json(storage, rkey, payload))
        for k, content in contents.items():
            mark_done(storage, k, digest, origin=DELIVERY, content=content)
        mark_done(storage, rkey, digest, origin=DELIVERY)
    done(f"ingest {source.name}: {', '.join(f'{r} {len(f)}' for r, f in frames.items())}; "
         f"anomalies {report.counts() or 'none'}")
    return IngestResult(dep.code, year, pair, {**keys, "ingest_report": rkey}, payload)
