"""Potential renaturation sectors on the INSEE 200 m grid (carroyage INSEE).

**Grid**: the INSPIRE grid INSEE publishes its carroyage on — EPSG:3035 (ETRS89-LAEA, equal-area, so
areas are true), square cells of 200 m aligned on multiples of 200 m, identified as
``CRS3035RES200mN{northing}E{easting}`` with the coordinates of the cell's lower-left corner
(``idcar_200m``). The occupation layer is reprojected to EPSG:3035 and cut by the cells.

**Per cell**, as shares (%) of the area the layer covers in the cell: artificialised (``artif``),
sealed (CS1.1.1.1, CS1.1.1.2), arboreal vegetation (CS2.1.1.*), shrubs and other woody (CS2.1.2,
CS2.1.3), herbaceous (CS2.2.*), all vegetation (CS2.*), water (CS1.2.2). The *neighbourhood* of a cell is
the 3 × 3 block of cells around it (600 m a side), its shares area-weighted over the cells that exist.

**Scores** (0–100), one per sub-theme of the 3 × 3 scheme of the Institut Paris Région ("Renaturer les
villes", 2022: biodiversity, climate adaptation, health and living environment); the weights and
proxies are our choice, simple and written here:

- ``score_biodiversite`` = mean of the neighbourhood's vegetation share (continuity with the green
  network) and 100 when water lies in the neighbourhood, else 0 (aquatic and wet areas);
- ``score_climat`` = the cell's sealed share (heat island and runoff proxy: renaturing sealed land
  cools and infiltrates most);
- ``score_sante`` = 100 − the neighbourhood's vegetation share (lack of green space within ~300 m),
  multiplied, when a population grid is given, by the cell's population over the largest one;
- ``potentiel`` = mean of the three.

**Priority sectors**: artificialised cells (``artificialise_pct`` ≥ ``min_artif_pct``, default 50)
whose potential is at least the ``quantile`` (default 0.8) of the potentials of those cells.

**Vegetation from the prediction** (CoSIA-like indicator): where the model's prediction rasters exist for
the millésime (``ocsge predict``), each cell also gets the shares of vegetation, arboreal and herbaceous
classes among its classified pixels (``*_prediction_pct``), read every ``sample_m`` metres (default 2 m,
nearest; our choice: 10 000 samples per cell are plenty for a share). They describe what the imagery
shows, independently of the usage-driven couverture of the vector layer.

Not done yet: the continuity with the trame verte et bleue computed from its reservoirs and corridors
(the neighbourhood's vegetation stands for it).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from inference_batch.freshness import fingerprint, is_up_to_date, refreshing
from inference_batch.products.artifacts import StepError, key, step_outputs, write_table, write_vector
from inference_batch.products.inputs import layer_key, open_source
from inference_batch.products.stats import split_by_commune
from ocsge import schema
from ocsge.nomenclature import CS_LEAVES, Kind, raster_value
from ocsge.products import block_prefix
from ocsge.progress import done, step
from ocsge.storage import Storage
from ocsge.territory import departement

CELL_M = 200
GRID_EPSG = 3035
ID = "idcar_200m"
SEALED_CS = ("CS1.1.1.1", "CS1.1.1.2")
WATER_CS = "CS1.2.2"


@dataclass(frozen=True)
class RenaturationParams:
    min_artif_pct: float = 50.0
    quantile: float = 0.8


def cell_id(x0: float, y0: float) -> str:
    return f"CRS3035RES{CELL_M}mN{round(y0)}E{round(x0)}"


def parse_cell_id(ident: str) -> tuple[int, int]:
    """(easting, northing) of the lower-left corner of an INSEE 200 m cell id."""
    rest = ident.split("mN", 1)[1]
    north, east = rest.split("E")
    return int(east), int(north)


def grid(bounds: tuple[float, float, float, float]) -> gpd.GeoDataFrame:
    """The cells of the INSEE 200 m grid over ``bounds`` (EPSG:3035)."""
    x0, y0 = np.floor(bounds[0] / CELL_M) * CELL_M, np.floor(bounds[1] / CELL_M) * CELL_M
    xs = np.arange(x0, bounds[2], CELL_M)
    ys = np.arange(y0, bounds[3], CELL_M)
    gx, gy = np.meshgrid(xs, ys)
    gx, gy = gx.ravel(), gy.ravel()
    return gpd.GeoDataFrame({
        schema.INSEE_COM: [cell_id(x, y) for x, y in zip(gx, gy, strict=True)],
        schema.NOM_COM: "", "ix": (gx // CELL_M).astype(np.int64), "iy": (gy // CELL_M).astype(np.int64),
    }, geometry=shapely.box(gx, gy, gx + CELL_M, gy + CELL_M), crs=GRID_EPSG)


def read_population(path: str | Path | bytes) -> pd.Series:
    """Population per cell from an INSEE-like table (``idcar_200m`` + ``ind``/``pop``/``population``)."""
    data = path if isinstance(path, bytes) else Path(path).read_bytes()
    table = pd.read_csv(io.BytesIO(data), sep=None, engine="python")
    lowered = {c.lower(): c for c in table.columns}
    ident = lowered.get("idcar_200m") or lowered.get("id")
    pop = next((lowered[c] for c in ("ind", "pop", "population") if c in lowered), None)
    if ident is None or pop is None:
        raise StepError(f"population grid: need columns idcar_200m and ind (or pop); found {list(table.columns)}")
    return table.groupby(table[ident].astype(str))[pop].sum().astype(float)


def cell_table(frames: Any, population: pd.Series | None = None,
               params: RenaturationParams = RenaturationParams()) -> gpd.GeoDataFrame:
    """Shares, scores and priority of every 200 m cell the layer covers. ``frames`` are chunks of an
    occupation layer (``code_cs``, ``artif``) in any CRS; they are reprojected to EPSG:3035."""
    chunks = [f.to_crs(GRID_EPSG) if f.crs is not None and f.crs.to_epsg() != GRID_EPSG else f for f in frames]
    chunks = [c for c in chunks if not c.empty]
    if not chunks:
        return gpd.GeoDataFrame({ID: []}, geometry=[], crs=GRID_EPSG)
    bounds = np.array([c.total_bounds for c in chunks])
    cells = grid((bounds[:, 0].min(), bounds[:, 1].min(), bounds[:, 2].max(), bounds[:, 3].max()))
    pieces = split_by_commune(chunks, cells, [schema.CODE_CS, schema.ARTIF])
    pieces = pieces[pieces[schema.INSEE_COM] != "hors_communes"]
    cs = pieces[schema.CODE_CS].fillna("").astype(str)
    groups = {
        "artificialise": (pieces[schema.ARTIF] == "artif").to_numpy(),
        "impermeable": cs.isin(SEALED_CS).to_numpy(),
        "arboree": cs.str.startswith("CS2.1.1").to_numpy(),
        "arbustive": cs.isin(("CS2.1.2", "CS2.1.3")).to_numpy(),
        "herbacee": cs.str.startswith("CS2.2").to_numpy(),
        "vegetation": cs.str.startswith("CS2").to_numpy(),
        "eau": (cs == WATER_CS).to_numpy(),
    }
    area = pieces.groupby(schema.INSEE_COM)["area"].sum()
    area = area[area >= 1.0]  # cells touched by less than 1 m² (reprojection slivers) are left out
    out = cells.set_index(schema.INSEE_COM).loc[area.index].copy()
    out["covered"] = area
    for name, mask in groups.items():
        out[name] = pieces[mask].groupby(schema.INSEE_COM)["area"].sum().reindex(out.index).fillna(0.0)
    # neighbourhood: the 3 × 3 block of existing cells, area-weighted
    index = {(x, y): i for i, (x, y) in enumerate(zip(out.ix, out.iy, strict=True))}
    sums = np.zeros((len(out), 3))
    values = out[["covered", "vegetation", "eau"]].to_numpy()
    for i, (x, y) in enumerate(zip(out.ix, out.iy, strict=True)):
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                j = index.get((x + dx, y + dy))
                if j is not None:
                    sums[i] += values[j]
    cov = out["covered"].to_numpy()
    res = pd.DataFrame(index=out.index)
    res["surface_couverte_ha"] = np.round(cov / 1e4, 4)
    for name in groups:
        res[f"{name}_pct"] = np.round(100 * out[name].to_numpy() / cov, 2)
    veg_n = 100 * sums[:, 1] / sums[:, 0]
    res["vegetation_voisinage_pct"] = np.round(veg_n, 2)
    res["eau_voisinage_pct"] = np.round(100 * sums[:, 2] / sums[:, 0], 2)
    bio = (veg_n + np.where(sums[:, 2] > 0, 100.0, 0.0)) / 2
    climat = 100 * out["impermeable"].to_numpy() / cov
    sante = 100 - veg_n
    if population is not None:
        pop = population.reindex(out.index).fillna(0.0).to_numpy()
        res["population"] = pop
        sante = sante * (pop / pop.max() if pop.max() > 0 else 0.0)
    res["score_biodiversite"] = np.round(bio, 2)
    res["score_climat"] = np.round(climat, 2)
    res["score_sante"] = np.round(sante, 2)
    potential = (bio + climat + sante) / 3
    res["potentiel"] = np.round(potential, 2)
    artificial = 100 * out["artificialise"].to_numpy() / cov >= params.min_artif_pct
    threshold = np.quantile(potential[artificial], params.quantile) if artificial.any() else np.inf
    res["prioritaire"] = artificial & (potential >= threshold - 1e-9)
    res = res.reset_index().rename(columns={schema.INSEE_COM: ID})
    return gpd.GeoDataFrame(res, geometry=out.geometry.to_numpy(), crs=GRID_EPSG)


def stored_population(storage: Storage, dep: object, millesime: int) -> bytes | None:
    """The stored population grid of the département: the millésime's, else the latest, else none."""
    d = departement(dep)
    keys = sorted(o.key for o in storage.list(f"ancillary/population/{d.token}/") if o.key.endswith(".csv"))
    if not keys:
        return None
    exact = key("population", d.code, millesime)
    return storage.get_bytes(exact if exact in keys else keys[-1])


def prediction_shares(paths: Iterable[str | Path], sample_m: float = 2.0) -> pd.DataFrame:
    """Per 200 m cell: vegetation, arboreal and herbaceous shares (%) of the classified pixels of the
    prediction rasters (couverture raster values; 0 = nodata), sampled every ``sample_m`` metres."""
    import rasterio
    from pyproj import Transformer
    from rasterio.enums import Resampling

    leaves = {c: raster_value(Kind.COUVERTURE, c) for c in CS_LEAVES}
    veg = np.array([v for c, v in leaves.items() if c.startswith("CS2")])
    arb = np.array([v for c, v in leaves.items() if c.startswith("CS2.1.1")])
    herb = np.array([v for c, v in leaves.items() if c.startswith("CS2.2")])
    parts = []
    for path in paths:
        with rasterio.open(path) as src:
            factor = max(1, round(sample_m / abs(src.res[0])))
            h, w = max(1, src.height // factor), max(1, src.width // factor)
            data = src.read(1, out_shape=(h, w), resampling=Resampling.nearest)
            rows, cols = np.nonzero(data != (src.nodata if src.nodata is not None else 0))
            if not len(rows):
                continue
            t = src.transform
            x = t.c + (cols + 0.5) * t.a * src.width / w
            y = t.f + (rows + 0.5) * t.e * src.height / h
            if src.crs is not None and src.crs.to_epsg() != GRID_EPSG:
                x, y = Transformer.from_crs(src.crs, GRID_EPSG, always_xy=True).transform(x, y)
            v = data[rows, cols]
            parts.append(pd.DataFrame({"ix": np.floor(np.asarray(x) / CELL_M).astype(np.int64),
                                       "iy": np.floor(np.asarray(y) / CELL_M).astype(np.int64),
                                       "n": 1, "veg": np.isin(v, veg), "arb": np.isin(v, arb),
                                       "herb": np.isin(v, herb)}))
    if not parts:
        return pd.DataFrame(columns=["vegetation_prediction_pct", "arboree_prediction_pct",
                                     "herbacee_prediction_pct"])
    counts = pd.concat(parts).groupby(["ix", "iy"]).sum()
    out = pd.DataFrame({
        "vegetation_prediction_pct": np.round(100 * counts.veg / counts.n, 2),
        "arboree_prediction_pct": np.round(100 * counts.arb / counts.n, 2),
        "herbacee_prediction_pct": np.round(100 * counts.herb / counts.n, 2),
    })
    out.index = [cell_id(ix * CELL_M, iy * CELL_M) for ix, iy in counts.index]
    return out


def run_renaturation(storage: Storage, dep: object, millesimes: list[int], *,
                     population: str | Path | None = None, params: RenaturationParams = RenaturationParams(),
                     force: bool = False) -> dict[str, str]:
    """Step: the 200 m cells of each millésime with shares, scores and priority (GeoParquet + CSV). The
    population grid is the file given, else the stored ``population`` table of the département, if any."""
    d = departement(dep)
    keys: dict[str, str] = {}
    for year in sorted(millesimes):
        pop_bytes = stored_population(storage, d.code, year) if population is None else Path(population).read_bytes()
        pop = read_population(pop_bytes) if pop_bytes is not None else None
        pop_digest = hashlib.sha256(pop_bytes).hexdigest() if pop_bytes is not None else None
        kp, kc = key("renaturation", d.code, year), key("renaturation_csv", d.code, year)
        keys[f"renaturation_{year}"], keys[f"renaturation_csv_{year}"] = kp, kc
        layer = layer_key(storage, d.code, year)
        blocks = block_prefix("prediction", d.code, year)
        digest = fingerprint(storage, [layer], [blocks], params={**asdict(params), "population": pop_digest})
        if not force and is_up_to_date(storage, [kp, kc], digest):
            continue
        step(f"renaturation {d.code} {year}: {layer} on the INSEE 200 m grid")
        with open_source(storage, layer, [schema.CODE_CS, schema.CODE_US, schema.ARTIF]) as src:
            table = cell_table(src.iter_chunks(), pop, params)
        predictions = sorted(o.key for o in storage.list(blocks) if o.key.endswith(".tif"))
        if predictions:
            with contextlib.ExitStack() as stack:
                paths = [stack.enter_context(storage.local_copy(k)) for k in predictions]
                shares = prediction_shares(paths)
            for column in shares.columns:
                table[column] = shares[column].reindex(table[ID]).to_numpy()
        table.insert(1, schema.MILLESIME, year)
        with refreshing(storage, [kp, kc], digest), step_outputs(storage) as outputs:
            outputs.add(write_vector(storage, kp, table))
            outputs.add(write_table(storage, kc, pd.DataFrame(table.drop(columns="geometry"))))
        done(f"renaturation {d.code} {year}: {len(table)} cells, {int(table.prioritaire.sum())} priority")
    return keys
