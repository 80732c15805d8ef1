"""What the analyses need and the generated territory lacks, made for the demo and labelled synthetic:
a grouping of its communes (one EPCI of all of them) and a small population grid on the INSEE 200 m cells
(1 inhabitant per 40 m² of residential built land, our choice: the order of magnitude of French
residential floor area per person on one to two storeys). Written only when absent, so that real
tables put under the same keys are kept."""

from __future__ import annotations

import io

import pandas as pd

from inference_batch.analyses.renaturation import CELL_M, GRID_EPSG, cell_id
from inference_batch.products.artifacts import key, read_vector
from inference_batch.products.ingest import communes_key
from inference_batch.products.inputs import layer_key
from inference_batch.products.stats import normalise_communes
from ocsge import schema
from ocsge.storage import Storage
from ocsge.territory import departement

RESIDENTIAL_US = ("US5", "US235")
M2_PER_INHABITANT = 40.0


def demo_groupements(communes: pd.DataFrame, dep: object) -> pd.DataFrame:
    d = departement(dep)
    return pd.DataFrame({"insee_com": communes[schema.INSEE_COM].astype(str),
                         "groupement": f"EPCI-{d.code}", "nom_groupement": "Communauté de communes (synthétique)"})


def demo_population(occupation: pd.DataFrame) -> pd.DataFrame:
    """Inhabitants per 200 m cell from the residential built land of a layer."""
    built = occupation[(occupation[schema.CODE_CS] == "CS1.1.1.1")
                       & occupation[schema.CODE_US].isin(RESIDENTIAL_US)].to_crs(GRID_EPSG)
    if built.empty:
        return pd.DataFrame({"idcar_200m": [], "ind": []})
    points = built.geometry.representative_point()
    ids = [cell_id((x // CELL_M) * CELL_M, (y // CELL_M) * CELL_M) for x, y in zip(points.x, points.y, strict=True)]
    pop = pd.Series(built.geometry.area.to_numpy() / M2_PER_INHABITANT).groupby(ids).sum().round()
    return pd.DataFrame({"idcar_200m": pop.index, "ind": pop.to_numpy().astype(int)})


def ensure_demo_inputs(storage: Storage, dep: object, millesime: int) -> list[str]:
    """Write the synthetic groupements and population grid of the territory when none is stored."""
    d = departement(dep)
    written = []
    gkey, pkey = key("groupements", d.code, millesime), key("population", d.code, millesime)
    ckey = communes_key(storage, d, millesime)
    if ckey is not None and not any(storage.list(f"ancillary/groupements/{d.token}/")):
        table = demo_groupements(normalise_communes(read_vector(storage, ckey)), d.code)
        storage.put_bytes(gkey, _csv(table), "text/csv")
        written.append(gkey)
    if not any(storage.list(f"ancillary/population/{d.token}/")):
        occupation = read_vector(storage, layer_key(storage, d.code, millesime),
                                 columns=[schema.CODE_CS, schema.CODE_US, "geometry"])
        storage.put_bytes(pkey, _csv(demo_population(occupation)), "text/csv")
        written.append(pkey)
    return written


def _csv(table: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    table.to_csv(buf, index=False)
    return buf.getvalue().encode()
