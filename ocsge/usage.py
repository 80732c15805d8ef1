"""Comparing usage codes across the two generations of the nomenclature.

The new-generation OCS GE splits ``US235`` (production secondaire, tertiaire et usage résidentiel) into
``US2``, ``US3`` and ``US5``; both forms occur in real deliveries, sometimes in two millésimes of the same
département (../shared/reference/ocsge-domain.md §1.1). Rule, used by every comparison of two layers (the
difference, the 65 m change grid, the corrections): two usage codes are the same usage when they are
equal, or when one side is ``US235`` and the other one of ``US2``/``US3``/``US5`` — the split code says
more, not something else. ``US2`` against ``US5`` stays a change. Codes are compared as delivered
otherwise (a missing code equals only a missing code).
"""

from __future__ import annotations

import numpy as np

from ocsge.nomenclature import US235_PARTS

US235 = "US235"


def _codes(values: object) -> np.ndarray:
    out = np.asarray(values, dtype=object).copy()
    missing = np.array([v is None or (isinstance(v, float) and v != v) for v in out], dtype=bool)
    out[missing] = ""
    return out


def same_usage(before: object, after: object) -> np.ndarray:
    """Element-wise: ``before[i]`` and ``after[i]`` are the same usage (``US235`` ≡ its split parts)."""
    a, b = _codes(before), _codes(after)
    if len(a) == 0:
        return np.zeros(0, dtype=bool)
    parts = list(US235_PARTS)
    generation = ((a == US235) & np.isin(b, parts)) | ((b == US235) & np.isin(a, parts))
    return (a == b) | generation


def generation_only(before: object, after: object) -> np.ndarray:
    """Element-wise: the codes differ only by the generation of the nomenclature (``US235`` ↔ ``US5``…)."""
    a, b = _codes(before), _codes(after)
    return same_usage(a, b) & (a != b)
