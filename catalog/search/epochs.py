"""RFC 3339 datetimes as POSIX seconds, vectorised: shared by the in-memory index and the index built at publish
time (its own module so that neither imports the other)."""

from __future__ import annotations

import numpy as np

from catalog.search.request import parse_interval


def epochs(texts: list[str | None]) -> np.ndarray:
    """POSIX seconds of RFC 3339 strings (NaN for None), vectorised for the usual ``…Z`` form."""
    out = np.full(len(texts), np.nan)
    plain = [i for i, t in enumerate(texts) if t and t.endswith("Z") and len(t) in (20, 24, 27)]
    if plain:
        stamps = np.array([texts[i][:-1] for i in plain], dtype="datetime64[ms]")  # type: ignore[index]
        out[plain] = stamps.astype("int64") / 1000.0
    for i, t in enumerate(texts):
        if t and np.isnan(out[i]):
            out[i] = parse_interval(t)[0]
    return out
