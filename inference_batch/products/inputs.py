"""The input layers the product steps share: which stored layer stands for a millésime, and a chunked
reader over it that derives the matrix ``artif`` class when the layer has none."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import geopandas as gpd
import numpy as np

from inference_batch.products.artif import matrix_artif
from inference_batch.products.artifacts import StepError, key
from inference_batch.products.spatial import SpatialSource
from ocsge import schema
from ocsge.storage import Storage


def with_artif(layer: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """An occupation layer gets its matrix class when it has no ``artif`` (no thresholds: reported)."""
    if schema.ARTIF in layer:
        return layer
    matrix, _ = matrix_artif(layer[schema.CODE_CS].to_numpy(dtype=object), layer[schema.CODE_US].to_numpy(dtype=object))
    out = layer.copy()
    out[schema.ARTIF] = np.where(matrix, "artif", "non artif")
    return out


def layer_key(storage: Storage, dep: object, millesime: int, source: str = "occupation") -> str:
    """The layer to compare for a millésime: its artificialisation layer (codes + artif after the
    thresholds) when there is one, else the given source layer."""
    art = key("artificialisation", dep, millesime)
    if source == "occupation" and storage.exists(art):
        return art
    src = key(source, dep, millesime)
    if not storage.exists(src):
        raise StepError(f"no {source} layer for {dep} {millesime} ({src}); run `ocsge ingest` or `ocsge artif`")
    return src


@contextlib.contextmanager
def open_source(storage: Storage, layer: str, columns: list[str]) -> Iterator[SpatialSource]:
    """A chunked reader over a stored layer; an occupation layer gets matrix ``artif`` on the fly."""
    with storage.local_copy(layer) as path:
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
        if schema.ARTIF in columns and schema.ARTIF not in names:
            # the matrix class is computed on each row group as it is read: memory stays bounded
            read = [c for c in columns if c != schema.ARTIF]
            yield SpatialSource(path=path, columns=columns, read_columns=read, derive=with_artif)
        else:
            yield SpatialSource(path=path, columns=columns)
