"""Differences between two millésimes of a département, by spatial chunks in bounded memory.

Outputs: the evolution layer (the parts whose couverture or usage changed, with ``cs_avant, us_avant,
cs_apres, us_apres``; ``US235`` against ``US2``/``US3``/``US5`` is the same usage, ``ocsge.usage``),
the artificialisation difference (``artificialisation`` = +1 newly artificial, −1 désartificialisé;
with IGN's ``cs_{y1}``, ``us_{y1}``, ``cs_{y2}``, ``us_{y2}``, ``artif_{y1}``, ``artif_{y2}`` too),
the flows matrices CS × CS and US × US in hectares (diagonal = stable area), and a JSON report (areas
compared, changed, not covered by the other millésime). The flows matrices keep the codes as
delivered, so that their rows and columns are the stocks of each millésime: their ``US235`` ×
``US2``/``US3``/``US5`` cells are a change of nomenclature generation, reported apart
(``usage_generation_only_ha``), not a change of usage.

The overlay is :func:`~inference_batch.products.spatial.overlay_identical_first`: the polygons that
are identical in both millésimes (the vast majority) are paired by a fingerprint of their WKB, read
straight from the GeoParquet buffers, and never parsed nor intersected; they only add their area to the
flows, and those whose codes changed are written as they are. The few others are overlaid chunk by
chunk (:func:`~inference_batch.products.spatial.overlay_chunks`), pieces streamed to GeoParquet as
they come. Memory holds a fingerprint, an area and the codes per polygon, one block of WKB and the
polygons that changed — not the layers. Two layers with little in common (not two millésimes) go
through the chunked overlay alone.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from inference_batch.freshness import fingerprint, is_up_to_date, refreshing
from inference_batch.products.artif import matrix_artif
from inference_batch.products.artifacts import (
    GeoParquetAppender,
    key,
    step_outputs,
    write_json,
    write_table,
)
from inference_batch.products.inputs import layer_key, open_source
from inference_batch.products.spatial import SpatialSource, overlay_chunks, overlay_identical_first
from ocsge import schema
from ocsge.nomenclature import CS_LEAVES, US_LEAVES
from ocsge.progress import done, progress, step
from ocsge.storage import Storage
from ocsge.usage import generation_only, same_usage

EMPTY = "(vide)"  # row/column of the flows matrices for pieces without a code
DIFF_COLUMNS = [schema.ID, schema.CS_AVANT, schema.US_AVANT, schema.CS_APRES, schema.US_APRES, schema.GEOMETRY]
ARTIF_DIFF_COLUMNS = [schema.ID, schema.CS_AVANT, schema.US_AVANT, schema.CS_APRES, schema.US_APRES,
                      "artificialisation", schema.GEOMETRY]


def ign_artif_columns(years: tuple[int, int]) -> list[str]:
    """The columns of IGN's artificialisation différentiel (lower-case GPKG form, as sparte's loader reads
    them, ``ocsge_artif_diff_normalization_sql``): codes and class by millésime. Carried beside ours so
    that tools reading IGN's layer read this one too."""
    y1, y2 = years
    return [f"cs_{y1}", f"us_{y1}", f"cs_{y2}", f"us_{y2}", f"artif_{y1}", f"artif_{y2}"]


@dataclass
class FlowAccumulator:
    """Areas (m²) by (before, after) code, summed over chunks."""

    cs: Counter[tuple[str, str]] = field(default_factory=Counter)
    us: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, pieces: pd.DataFrame) -> None:
        for acc, (b, a) in ((self.cs, ("code_cs_a", "code_cs_b")), (self.us, ("code_us_a", "code_us_b"))):
            grouped = pieces.groupby([pieces[b].fillna(EMPTY), pieces[a].fillna(EMPTY)], sort=False)["area"].sum()
            for (before, after), area in grouped.items():
                acc[(before, after)] += float(area)

    @staticmethod
    def matrix(acc: Counter[tuple[str, str]], leaves: tuple[str, ...], name: str) -> pd.DataFrame:
        """Flows in hectares, rows = before, columns = after; every leaf code listed, extras appended."""
        codes = list(leaves) + sorted({c for pair in acc for c in pair} - set(leaves) - {EMPTY})
        if any(EMPTY in pair for pair in acc):
            codes.append(EMPTY)
        table = pd.DataFrame(0.0, index=pd.Index(codes, name=f"{name}_avant"), columns=codes)
        for (before, after), area in acc.items():
            table.loc[before, after] += area / 1e4
        return table.reset_index()


@dataclass
class DifferenceResult:
    report: dict[str, Any]
    flows_cs: pd.DataFrame
    flows_us: pd.DataFrame


def _changes(pieces: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Which pieces changed couverture or usage (``US235`` ≡ its parts), and which changed artificialisation."""
    changed = ((pieces.code_cs_a.fillna(EMPTY) != pieces.code_cs_b.fillna(EMPTY)).to_numpy()
               | ~same_usage(pieces.code_us_a, pieces.code_us_b))
    flip = (pieces.artif_a == "artif").to_numpy() != (pieces.artif_b == "artif").to_numpy()
    return changed, flip


def compute_difference(before: SpatialSource, after: SpatialSource, difference_path: Path | None,
                       artif_path: Path | None, *, target: int = 20_000, id_prefix: str = "DIFF",
                       quiet: bool = False, years: tuple[int, int] | None = None) -> DifferenceResult:
    """Overlay two millésimes chunk by chunk; stream the evolution and artif ±1 layers to GeoParquet.
    With ``years``, the artif ±1 layer also carries IGN's columns (:func:`ign_artif_columns`)."""
    t0 = time.perf_counter()
    cols = [schema.CODE_CS, schema.CODE_US, schema.ARTIF]
    flows = FlowAccumulator()
    crs = before.crs
    diff_out = art_out = None
    template = gpd.GeoDataFrame({c: pd.Series(dtype=object) for c in DIFF_COLUMNS[:-1]},
                                geometry=gpd.GeoSeries([], crs=crs), crs=crs)
    ign = ign_artif_columns(years) if years is not None else []
    art_columns = [*ARTIF_DIFF_COLUMNS[:-1], *ign, schema.GEOMETRY]
    art_template = template.assign(artificialisation=pd.Series(dtype="int8"),
                                   **{c: pd.Series(dtype=object) for c in ign})[art_columns]
    if difference_path is not None:
        diff_out = GeoParquetAppender(difference_path, template)
    if artif_path is not None:
        art_out = GeoParquetAppender(artif_path, art_template)
    totals = Counter()
    n_diff = n_art = 0

    def written(pieces: pd.DataFrame) -> np.ndarray:
        """The pieces that go to an output layer: only they need a geometry."""
        changed, flip = _changes(pieces)
        return (changed & (diff_out is not None)) | (flip & (art_out is not None))

    matched = overlay_identical_first(before, after, target=target, needs_geometry=written)
    if matched is not None:
        frames, chunks = matched.frames, matched.blocks
    else:  # mostly different layers: the plain chunked overlay, measuring A as it goes
        area_a = np.zeros(before.n)

        def overlaid() -> Iterator[pd.DataFrame]:
            for chunk in overlay_chunks(before, after, target=target):
                area_a[chunk.a.index.to_numpy()] = chunk.a.geometry.area.to_numpy()
                yield chunk.frame(cols, cols)

        frames, chunks = overlaid(), 0
    ctx = progress("difference by chunks", None, unit="") if not quiet else contextlib.nullcontext(lambda *a, **k: None)
    with ctx as advance:
        for pieces in frames:
            if matched is None:
                chunks += 1
            flows.add(pieces)
            area = pieces["area"].to_numpy()
            totals["compared"] += float(area.sum())
            changed, flip = _changes(pieces)
            totals["generation"] += float(area[generation_only(pieces.code_us_a, pieces.code_us_b)].sum())
            artif_a = (pieces.artif_a == "artif").to_numpy()
            artif_b = (pieces.artif_b == "artif").to_numpy()
            totals["changed"] += float(area[changed].sum())
            totals["artif_plus"] += float(area[~artif_a & artif_b].sum())
            totals["artif_minus"] += float(area[artif_a & ~artif_b].sum())
            totals["artif_before"] += float(area[artif_a].sum())
            totals["artif_after"] += float(area[artif_b].sum())
            if not (changed.any() or flip.any()):
                advance(1, info=f"{n_diff} changed pieces")
                continue
            renamed = pieces.rename(columns={"code_cs_a": schema.CS_AVANT, "code_us_a": schema.US_AVANT,
                                             "code_cs_b": schema.CS_APRES, "code_us_b": schema.US_APRES})
            if diff_out is not None and changed.any():
                part = renamed.loc[changed].copy()
                part[schema.ID] = [f"{id_prefix}_{n_diff + i:08d}" for i in range(len(part))]
                n_diff += len(part)
                diff_out.append(part[DIFF_COLUMNS])
            if art_out is not None and flip.any():
                part = renamed.loc[flip].copy()
                part["artificialisation"] = np.where(artif_b[flip], 1, -1).astype("int8")
                part[schema.ID] = [f"{id_prefix}_A{n_art + i:08d}" for i in range(len(part))]
                if ign:
                    for column, source in zip(ign, (schema.CS_AVANT, schema.US_AVANT, schema.CS_APRES,
                                                    schema.US_APRES), strict=False):
                        part[column] = part[source]
                    part[ign[4]] = np.where(artif_a[flip], "artif", "non artif")
                    part[ign[5]] = np.where(artif_b[flip], "artif", "non artif")
                n_art += len(part)
                art_out.append(part[art_columns])
            advance(1, info=f"{n_diff} changed pieces")
    for out in (diff_out, art_out):
        if out is not None:
            out.close()
    total_a = matched.area_a if matched is not None else float(area_a.sum())
    total_b = matched.area_b if matched is not None else after.total_area()
    report = {
        "polygons_before": before.n,
        "polygons_after": after.n,
        "chunks": chunks,
        "surface_before_ha": round(total_a / 1e4, 4),
        "surface_after_ha": round(total_b / 1e4, 4),
        "surface_compared_ha": round(totals["compared"] / 1e4, 4),
        "before_not_covered_after_ha": round((total_a - totals["compared"]) / 1e4, 4),
        "after_not_covered_before_ha": round((total_b - totals["compared"]) / 1e4, 4),
        "changed_ha": round(totals["changed"] / 1e4, 4),
        "changed_pieces": n_diff,
        # US235 against US2/US3/US5: the same usage in two generations of the nomenclature, not a change
        "usage_generation_only_ha": round(totals["generation"] / 1e4, 4),
        "artificialisation_ha": round(totals["artif_plus"] / 1e4, 4),
        "desartificialisation_ha": round(totals["artif_minus"] / 1e4, 4),
        "artif_net_ha": round((totals["artif_plus"] - totals["artif_minus"]) / 1e4, 4),
        "artif_before_ha": round(totals["artif_before"] / 1e4, 4),
        "artif_after_ha": round(totals["artif_after"] / 1e4, 4),
        "artif_pieces": n_art,
        # polygons paired with an identical one of the other millésime, never intersected (None: the
        # layers differ too much for that, the plain chunked overlay ran)
        "identical_pairs": matched.identical if matched is not None else None,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return DifferenceResult(report, FlowAccumulator.matrix(flows.cs, CS_LEAVES, "cs"),
                            FlowAccumulator.matrix(flows.us, US_LEAVES, "us"))


def matrix_flows(difference: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Artificialisation ±1 of a différentiel (``cs_avant``… ``us_apres``) through the décret's matrix
    alone: the pieces whose class changes, with ``artificialisation`` = +1 / −1 (no thresholds: they need
    the whole millésimes). Codes the matrix cannot class (missing, unknown) count as non-artificialised,
    as in ``artif.matrix_artif``; intermediate codes whose leaves agree (``CS2.1.1``) are classed."""
    before, _ = matrix_artif(difference[schema.CS_AVANT].to_numpy(dtype=object),
                             difference[schema.US_AVANT].to_numpy(dtype=object))
    after, _ = matrix_artif(difference[schema.CS_APRES].to_numpy(dtype=object),
                            difference[schema.US_APRES].to_numpy(dtype=object))
    sign = after.astype(np.int8) - before.astype(np.int8)
    out = difference.loc[sign != 0].copy()
    out["artificialisation"] = sign[sign != 0]
    return out


def previous_key(storage: Storage, dep: object, before: int, after: int) -> str:
    """The layer that stands for the earlier millésime of a pair: the corrected previous millésime when
    corrections of it exist (IGN's patch correctif or a given layer, ``corrections.run_corrections``), so
    that errors of M(n) fixed in M(n+1) make no flow; else its artificialisation or occupation layer."""
    corrected = key("corrected_previous", dep, (before, after))
    return corrected if storage.exists(corrected) else layer_key(storage, dep, before)


def run_difference(storage: Storage, dep: object, before: int, after: int, *, force: bool = False,
                   target: int = 20_000) -> dict[str, str]:
    """Step: evolution layer, artif ±1 layer, flows CS×CS and US×US, report for a pair of millésimes.
    The earlier millésime is the corrected one when there is one (:func:`previous_key`); the naive
    flows, from the millésime as delivered, are then in ``difference_nature`` (``artificialisation_brute``)."""
    pair = (before, after)
    keys = {p: key(p, dep, pair) for p in ("difference", "artif_difference", "flows_cs", "flows_us",
                                          "difference_report")}
    cols = [schema.CODE_CS, schema.CODE_US, schema.ARTIF]
    ka, kb = previous_key(storage, dep, before, after), layer_key(storage, dep, after)
    corrected = ka == key("corrected_previous", dep, pair)
    digest = fingerprint(storage, [ka, kb])
    if not force and is_up_to_date(storage, keys.values(), digest):
        done(f"diff {dep} {before}-{after}: already done")
        return keys
    step(f"diff {dep} {before}→{after}: {ka} × {kb}")
    with (refreshing(storage, keys.values(), digest), step_outputs(storage) as outputs,
          open_source(storage, ka, cols) as sa, open_source(storage, kb, cols) as sb):
        with storage.writer(keys["difference"]) as dpath, storage.writer(keys["artif_difference"]) as apath:
            outputs.add(keys["difference"])
            outputs.add(keys["artif_difference"])
            result = compute_difference(sa, sb, dpath, apath, target=target,
                                        id_prefix=f"{before}_{after}", years=pair)
        outputs.add(write_table(storage, keys["flows_cs"], result.flows_cs))
        outputs.add(write_table(storage, keys["flows_us"], result.flows_us))
        thresholds = kb.startswith("artificialisation/") and (
            corrected or ka.startswith("artificialisation/"))
        report = {**result.report, "before": ka, "after": kb, "thresholds_applied": thresholds,
                  "previous_corrected": corrected}
        if corrected:
            report["naive_flows"] = {"layer": key("difference_nature", dep, pair), "column": "artificialisation_brute",
                                     "report": key("corrections_report", dep, pair)}
        outputs.add(write_json(storage, keys["difference_report"], report))
    done(f"diff {dep} {before}→{after}: {report['changed_ha']:.2f} ha changed, "
         f"+{report['artificialisation_ha']:.2f} / −{report['desartificialisation_ha']:.2f} ha artif"
         + (" (corrected previous millésime)" if corrected else ""))
    return keys
