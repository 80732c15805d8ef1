"""Recette (QA): a produced layer or prediction compared with a reference.

Both sides are put on one grid (the prediction's own grid for raster blocks; ``res`` for two vector
layers), streamed by blocks, and counted into a confusion matrix (rows: reference, columns: produced;
in hectares). From it: overall accuracy (the area-weighted agreement on that grid), per-class precision,
recall, F1 and IoU, their means over the classes present in the reference, and Cohen's kappa. For two
vector layers the area-weighted agreement is also computed exactly, by overlaying the polygons.
Pixels where either side has no code are left out (and counted). Couverture always; usage too when both
sides carry ``code_us``.

Outputs: a JSON report (``product_key("qa_report", dep, year)``) and one PNG per confusion matrix
(row-normalised, with the class codes), next to it.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely
from affine import Affine
from rasterio.features import rasterize

from ocsge import schema
from ocsge.errors import OcsgeError
from ocsge.nomenclature import CS_LEAVES, US_LEAVES, Kind, parse_code

LEAVES = {Kind.COUVERTURE: CS_LEAVES, Kind.USAGE: US_LEAVES}
COLUMNS = {Kind.COUVERTURE: schema.CODE_CS, Kind.USAGE: schema.CODE_US}


def _values(frame: gpd.GeoDataFrame, kind: Kind) -> np.ndarray:
    """Raster value (1…n, 0 = none) of each polygon's code; US235 parts are kept as delivered."""
    column = COLUMNS[kind]
    if column not in frame.columns:
        return np.zeros(len(frame), dtype=np.uint8)
    lookup = {c: i + 1 for i, c in enumerate(LEAVES[kind])}
    out = np.zeros(len(frame), dtype=np.uint8)
    for i, raw in enumerate(frame[column]):
        parsed = parse_code(raw, kind)
        out[i] = lookup.get(parsed.code, 0) if parsed.code else 0
    return out


@dataclass
class Side:
    """One side of the comparison: polygons, or raster blocks (a class raster of couverture values)."""

    name: str
    frame: gpd.GeoDataFrame | None = None
    mosaic: object | None = None  # vectorize.Mosaic

    def kinds(self) -> set[Kind]:
        if self.frame is None:
            return {Kind.COUVERTURE}
        has_us = schema.CODE_US in self.frame.columns and self.frame[schema.CODE_US].notna().any()
        return {Kind.COUVERTURE, Kind.USAGE} if has_us else {Kind.COUVERTURE}


class _Rasteriser:
    def __init__(self, frame: gpd.GeoDataFrame, kinds: set[Kind]) -> None:
        self.geoms = frame.geometry.to_numpy()
        self.tree = shapely.STRtree(self.geoms)
        self.values = {k: _values(frame, k) for k in kinds}

    def __call__(self, kind: Kind, transform: Affine, shape: tuple[int, int]) -> np.ndarray:
        h, w = shape
        bounds = (transform.c, transform.f + h * transform.e, transform.c + w * transform.a, transform.f)
        hits = self.tree.query(shapely.box(*bounds))
        vals = self.values[kind]
        hits = hits[vals[hits] > 0]
        if not len(hits):
            return np.zeros(shape, dtype=np.uint8)
        return rasterize(((self.geoms[i], int(vals[i])) for i in hits), out_shape=shape, transform=transform,
                         dtype="uint8")


def _windows(bounds: tuple[float, float, float, float], res: float,
             block: int) -> Iterator[tuple[Affine, tuple[int, int]]]:
    x0, y0, x1, y1 = bounds
    width, height = math.ceil((x1 - x0) / res - 1e-9), math.ceil((y1 - y0) / res - 1e-9)
    for r in range(0, height, block):
        for c in range(0, width, block):
            yield (Affine(res, 0, x0 + c * res, 0, -res, y1 - r * res), (min(block, height - r), min(block, width - c)))


def confusion_matrices(produced: Side, reference: Side, *, res: float = 0.5, block: int = 4096
                       ) -> tuple[dict[Kind, np.ndarray], float, dict[str, float]]:
    """Pixel counts per (reference, produced) value pair, the pixel area, and pixels left out."""
    if reference.frame is None:
        raise OcsgeError(f"the reference {reference.name} must be a vector layer")
    kinds = produced.kinds() & reference.kinds()
    ref = _Rasteriser(reference.frame, kinds)
    counts = {k: np.zeros((len(LEAVES[k]) + 1) ** 2, dtype=np.int64) for k in kinds}
    left_out = {"reference_only": 0.0, "produced_only": 0.0}

    def add(kind: Kind, r: np.ndarray, p: np.ndarray) -> None:
        n = len(LEAVES[kind]) + 1
        counts[kind] += np.bincount((r.astype(np.int64) * n + p).ravel(), minlength=n * n)

    if produced.frame is None:  # prediction blocks, on their own grid
        mosaic = produced.mosaic
        px = abs(mosaic.transform.a) ** 2  # type: ignore[union-attr]
        for b in mosaic.blocks:  # type: ignore[union-attr]
            p = b.read()
            t = mosaic.transform @ Affine.translation(b.col_off, b.row_off)  # type: ignore[union-attr]
            add(Kind.COUVERTURE, ref(Kind.COUVERTURE, t, p.shape), p)
    else:
        prod = _Rasteriser(produced.frame, kinds)
        px = res * res
        b1, b2 = produced.frame.total_bounds, reference.frame.total_bounds
        bounds = (min(b1[0], b2[0]), min(b1[1], b2[1]), max(b1[2], b2[2]), max(b1[3], b2[3]))
        for t, shape in _windows(bounds, res, block):
            for kind in kinds:
                add(kind, ref(kind, t, shape), prod(kind, t, shape))
    matrices = {}
    for kind, flat in counts.items():
        n = len(LEAVES[kind]) + 1
        full = flat.reshape(n, n)
        if kind is Kind.COUVERTURE:
            left_out["reference_only"] = float(full[1:, 0].sum() * px / 1e4)
            left_out["produced_only"] = float(full[0, 1:].sum() * px / 1e4)
        matrices[kind] = full[1:, 1:]
    return matrices, px, left_out


def metrics(matrix: np.ndarray, codes: tuple[str, ...], px_area: float) -> dict[str, object]:
    m = matrix.astype(np.float64)
    total = m.sum()
    if total == 0:
        raise OcsgeError("the produced layer and the reference do not overlap")
    tp = np.diag(m)
    ref, prod = m.sum(axis=1), m.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(prod > 0, tp / prod, np.nan)
        recall = np.where(ref > 0, tp / ref, np.nan)
        f1 = np.where(ref + prod > 0, 2 * tp / (ref + prod), np.nan)
        iou = np.where(ref + prod - tp > 0, tp / (ref + prod - tp), np.nan)
    oa = float(tp.sum() / total)
    pe = float((ref * prod).sum() / total**2)
    present = ref > 0
    per_class = {
        code: {"precision": _f(precision[i]), "recall": _f(recall[i]), "f1": _f(f1[i]), "iou": _f(iou[i]),
               "reference_ha": round(ref[i] * px_area / 1e4, 4), "produced_ha": round(prod[i] * px_area / 1e4, 4)}
        for i, code in enumerate(codes) if ref[i] > 0 or prod[i] > 0
    }
    return {
        "overall_accuracy": round(oa, 5),
        "kappa": round((oa - pe) / (1 - pe), 5) if pe < 1 else None,
        "mean_f1": round(float(np.nanmean(f1[present])), 5),
        "mean_iou": round(float(np.nanmean(iou[present])), 5),
        "classes": list(codes),
        "matrix_ha": (m * px_area / 1e4).round(4).tolist(),
        "per_class": per_class,
    }


def _f(x: float) -> float | None:
    return None if np.isnan(x) else round(float(x), 5)


def exact_agreement(produced: gpd.GeoDataFrame, reference: gpd.GeoDataFrame, kind: Kind) -> float:
    """Share of the common area where both layers give the same code (polygon overlay, no grid)."""
    column = COLUMNS[kind]
    a = produced[[column, "geometry"]].rename(columns={column: "produced"})
    b = reference[[column, "geometry"]].rename(columns={column: "reference"})
    both = gpd.overlay(a, b, how="intersection", keep_geom_type=True)
    both = both[both["produced"].notna() & both["reference"].notna()]
    area = both.area
    if area.sum() == 0:
        return float("nan")
    return round(float(area[both["produced"] == both["reference"]].sum() / area.sum()), 5)


def matrix_png(matrix: np.ndarray, codes: tuple[str, ...], title: str) -> bytes:
    """The row-normalised confusion matrix as a PNG (rows: reference, columns: produced)."""
    from PIL import Image, ImageDraw, ImageFont

    keep = [i for i in range(len(codes)) if matrix[i].sum() > 0 or matrix[:, i].sum() > 0]
    m = matrix[np.ix_(keep, keep)].astype(np.float64)
    labels = [codes[i] for i in keep]
    rows = m.sum(axis=1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    cell, left, top = 44, 110, 130
    size = (left + cell * len(keep) + 20, top + cell * len(keep) + 40)
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    try:
        font = ImageFont.load_default(size=11)
        title_font = ImageFont.load_default(size=14)
    except TypeError:  # Pillow without FreeType
        font = title_font = ImageFont.load_default()
    draw.text((10, 8), title, fill="black", font=title_font)
    draw.text((10, 28), "rows: reference, columns: produced (share of the reference row)", fill="#444", font=font)
    for j, label in enumerate(labels):
        lab = Image.new("RGBA", (top - 50, 14), (255, 255, 255, 0))
        ImageDraw.Draw(lab).text((0, 0), label, fill="black", font=font)
        rot = lab.rotate(90, expand=True)
        img.paste(rot, (left + j * cell + cell // 2 - 7, 50), rot)
    for i, label in enumerate(labels):
        draw.text((8, top + i * cell + cell // 2 - 6), label, fill="black", font=font)
        for j in range(len(labels)):
            v = share[i, j]
            shade = int(255 - 215 * v)
            colour = (shade, shade, 255) if i != j else (shade, int(255 - 80 * v), shade)
            x, y = left + j * cell, top + i * cell
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=colour, outline="#ccc")
            if v >= 0.005:
                draw.text((x + 6, y + cell // 2 - 6), f"{100 * v:.0f}", fill="black", font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def compare(produced: Side, reference: Side, *, res: float = 0.5, exact: bool | None = None) -> dict[str, object]:
    """The report section for one produced layer (see the module docstring)."""
    matrices, px, left_out = confusion_matrices(produced, reference, res=res)
    section: dict[str, object] = {"produced": produced.name, "reference": reference.name,
                                  "grid_res_m": round(math.sqrt(px), 4), "left_out_ha": left_out}
    for kind, matrix in matrices.items():
        section[kind.value] = metrics(matrix, LEAVES[kind], px)
    both_vector = produced.frame is not None and reference.frame is not None
    if exact is None:
        exact = both_vector and len(produced.frame) + len(reference.frame) < 200_000  # type: ignore[arg-type]
    if exact and both_vector:
        section["area_weighted_agreement_exact"] = {
            kind.value: exact_agreement(produced.frame, reference.frame, kind) for kind in matrices  # type: ignore[arg-type]
        }
    return section


def qa(storage, departement: str, millesime: int, *, produced: list[str] | None = None,  # type: ignore[no-untyped-def]
       reference: str = "truth", res: float = 0.5) -> tuple[str, dict[str, object]]:
    """Compare the produced layers of a département (default: every one available) with the reference;
    write the JSON report and the PNGs."""
    from inference_batch.production.vectorize import Mosaic
    from ocsge.products import block_prefix, product_key

    def load(name: str) -> Side:
        if name == "prediction":
            keys = [i.key for i in storage.list(block_prefix("prediction", departement, millesime))
                    if i.key.endswith(".tif")]
            if not keys:
                raise OcsgeError(f"no prediction blocks for {departement} {millesime}")
            return Side(name, mosaic=Mosaic.from_block_files([storage.gdal_path(k) for k in keys]))
        if name.endswith((".parquet", ".gpkg", ".shp", ".geojson")):
            return Side(name, frame=gpd.read_file(name) if not name.endswith(".parquet") else gpd.read_parquet(name))
        key = product_key(name, departement, millesime)
        if not storage.exists(key):
            raise OcsgeError(f"no {name} layer {key} under {storage.root}")
        with storage.local_copy(key) as path:
            return Side(name, frame=gpd.read_parquet(path))

    def available(name: str) -> bool:
        if name == "prediction":
            return any(True for _ in storage.list(block_prefix("prediction", departement, millesime)))
        return storage.exists(product_key(name, departement, millesime))

    names = produced or [n for n in ("prediction", "prediction_vector", "occupation_auto") if available(n)]
    if not names:
        raise OcsgeError(f"nothing to assess for {departement} {millesime}: run predict / vectorize / rules first")
    ref = load(reference)
    report: dict[str, object] = {"departement": departement, "millesime": millesime, "reference": reference,
                                 "comparisons": []}
    key = product_key("qa_report", departement, millesime)
    for name in names:
        section = compare(load(name), ref, res=res)
        for kind in (Kind.COUVERTURE, Kind.USAGE):
            if kind.value in section:
                png_key = key.removesuffix(".json") + f"_{name.rsplit('/', 1)[-1].split('.')[0]}_{kind.value}.png"
                m = np.array(section[kind.value]["matrix_ha"])  # type: ignore[index]
                storage.put_bytes(png_key, matrix_png(m, LEAVES[kind], f"{name} vs {reference}: {kind.value}"),
                                  content_type="image/png")
                section[kind.value]["matrix_png"] = png_key  # type: ignore[index]
        report["comparisons"].append(section)  # type: ignore[union-attr]
    storage.put_bytes(key, json.dumps(report, indent=1, ensure_ascii=False).encode(), content_type="application/json")
    return key, report
