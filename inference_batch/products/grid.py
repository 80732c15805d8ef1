"""65 m change grid: the work packages of photo-interpretation.

A grid of square cells aligned on multiples of the cell size in the département's CRS; for each cell
the area where two layers differ (two millésimes, or a prediction and the previous millésime) is
summed from the pieces of a chunked overlay (``US235`` and ``US2``/``US3``/``US5`` are the same usage,
``ocsge.usage``), and cells at or above the threshold are flagged. Only
cells with some change are written (every other cell of the département has none); the report gives
the grid origin, size and counts.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from inference_batch.freshness import fingerprint, is_up_to_date, refreshing
from inference_batch.products.artifacts import (
    StepError,
    key,
    step_outputs,
    write_json,
    write_vector,
)
from inference_batch.products.inputs import layer_key
from inference_batch.products.spatial import SpatialSource, cells_of_bounds, overlay_chunks
from ocsge import schema
from ocsge.progress import done, step
from ocsge.storage import Storage
from ocsge.usage import same_usage

CELL_M = 65.0
THRESHOLD_M2 = 50.0


def cell_areas(geoms: np.ndarray, cell: float, origin: tuple[float, float]) -> pd.Series:
    """Area of ``geoms`` in each grid cell, indexed by (col, row)."""
    if len(geoms) == 0:
        return pd.Series(dtype=float)
    x0, y0 = origin
    gi, col, row = cells_of_bounds(shapely.bounds(geoms), x0, y0, cell)
    count = np.bincount(gi, minlength=len(geoms))
    boxes = shapely.box(x0 + col * cell, y0 + row * cell, x0 + (col + 1) * cell, y0 + (row + 1) * cell)
    single = count[gi] == 1
    area = np.where(single, shapely.area(geoms[gi]), 0.0)
    multi = ~single
    area[multi] = shapely.area(shapely.intersection(geoms[gi[multi]], boxes[multi]))
    s = pd.Series(area, index=pd.MultiIndex.from_arrays([col, row], names=["col", "row"]))
    return s[s > 0].groupby(level=[0, 1]).sum()


def change_grid(before: SpatialSource, after: SpatialSource, *, cell: float = CELL_M,
                threshold: float = THRESHOLD_M2, compare: list[str] | None = None, target: int = 20_000
                ) -> tuple[gpd.GeoDataFrame, dict[str, Any]]:
    """Cells where the layers differ on ``compare`` columns (default: code_cs and code_us)."""
    compare = compare or [schema.CODE_CS, schema.CODE_US]
    xmin, ymin, xmax, ymax = before.total_bounds
    origin = (np.floor(xmin / cell) * cell, np.floor(ymin / cell) * cell)
    changed: dict[tuple[int, int], float] = defaultdict(float)
    artif_changed: dict[tuple[int, int], float] = defaultdict(float)
    has_artif = schema.ARTIF in (before.columns or []) and schema.ARTIF in (after.columns or [])
    cols = compare + ([schema.ARTIF] if has_artif else [])
    for chunk in overlay_chunks(before, after, target=target):
        p = chunk.frame(cols, cols)
        if p.empty:
            continue
        diff = np.zeros(len(p), dtype=bool)
        for c in compare:
            if c == schema.CODE_US:  # US235 ≡ US2/US3/US5 where one side uses it (ocsge.usage)
                diff |= ~same_usage(p[f"{c}_a"], p[f"{c}_b"])
            else:
                diff |= (p[f"{c}_a"].fillna("").to_numpy(dtype=object) != p[f"{c}_b"].fillna("").to_numpy(dtype=object))
        for col_row, area in cell_areas(p.geometry.to_numpy()[diff], cell, origin).items():
            changed[col_row] += area
        if has_artif:
            flip = (p[f"{schema.ARTIF}_a"].to_numpy() != p[f"{schema.ARTIF}_b"].to_numpy())
            for col_row, area in cell_areas(p.geometry.to_numpy()[flip], cell, origin).items():
                artif_changed[col_row] += area
    cells = sorted(changed)
    col = np.array([c for c, _ in cells], dtype=np.int64)
    row = np.array([r for _, r in cells], dtype=np.int64)
    area = np.array([changed[c] for c in cells])
    grid = gpd.GeoDataFrame({
        "cell_id": [f"{c}_{r}" for c, r in cells],
        "col": col, "row": row,
        "changed_area_m2": np.round(area, 3),
        "changed_share": np.round(area / (cell * cell), 5),
        "artif_changed_area_m2": np.round([artif_changed.get(c, 0.0) for c in cells], 3),
        "flagged": area >= threshold,
    }, geometry=shapely.box(origin[0] + col * cell, origin[1] + row * cell, origin[0] + (col + 1) * cell,
                            origin[1] + (row + 1) * cell), crs=before.crs)
    ncols = int(np.ceil((xmax - origin[0]) / cell))
    nrows = int(np.ceil((ymax - origin[1]) / cell))
    report = {"cell_m": cell, "threshold_m2": threshold, "origin": list(origin), "columns": ncols, "rows": nrows,
              "cells_in_extent": ncols * nrows, "cells_changed": len(grid), "cells_flagged": int(grid.flagged.sum()),
              "changed_ha": round(float(area.sum()) / 1e4, 4), "compared": compare}
    return grid, report


def run_grid(storage: Storage, dep: object, before: int, after: int, *, after_source: str = "occupation",
             cell: float = CELL_M, threshold: float = THRESHOLD_M2, force: bool = False) -> dict[str, str]:
    """Step: change grid between two millésimes, or between the previous millésime and a prediction
    (``after_source`` = ``occupation_auto`` or ``prediction_vector``)."""
    pair = (before, after)
    product = "change_grid" if after_source == "occupation" else "change_grid_auto"
    keys = {product: key(product, dep, pair), f"{product}_report": key(f"{product}_report", dep, pair)}
    kb = layer_key(storage, dep, before)
    ka = layer_key(storage, dep, after, source=after_source)
    # A grid of a prediction is redone when the prediction changes (a new model, new rules): the report
    # records the fingerprint of both inputs and of the parameters.
    digest = fingerprint(storage, [kb, ka], params={"cell": cell, "threshold": threshold})
    if not force and is_up_to_date(storage, keys.values(), digest):
        done(f"grid {dep} {before}-{after}: already done")
        return keys
    step(f"grid {dep} {before}→{after} ({after_source}): {cell:g} m cells")
    import pyarrow.parquet as pq

    with contextlib.ExitStack() as stack:
        pb = stack.enter_context(storage.local_copy(kb))
        pa_ = stack.enter_context(storage.local_copy(ka))
        names_b, names_a = set(pq.read_schema(pb).names), set(pq.read_schema(pa_).names)
        compare = [c for c in (schema.CODE_CS, schema.CODE_US) if c in names_b and c in names_a]
        if not compare:
            raise StepError(f"{kb} and {ka} share no code column to compare")
        extra = [schema.ARTIF] if schema.ARTIF in names_b and schema.ARTIF in names_a else []
        grid, report = change_grid(SpatialSource(path=pb, columns=compare + extra),
                                   SpatialSource(path=pa_, columns=compare + extra),
                                   cell=cell, threshold=threshold, compare=compare)
    report.update({"before": kb, "after": ka})
    with refreshing(storage, keys.values(), digest), step_outputs(storage) as outputs:
        outputs.add(write_vector(storage, keys[product], grid))
        outputs.add(write_json(storage, keys[f"{product}_report"], report))
    done(f"grid {dep} {before}→{after}: {report['cells_flagged']} cells flagged of {report['cells_changed']} changed")
    return keys
