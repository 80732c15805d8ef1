"""US235 and its split US2/US3/US5 are one usage when compared across generations of the nomenclature."""

from __future__ import annotations

import numpy as np

from ocsge.usage import generation_only, same_usage


def test_us235_equals_its_parts_only() -> None:
    before = ["US235", "US5", "US235", "US2", "US235", "US1.1", None, None, "US4.1.1"]
    after = ["US5", "US235", "US3", "US5", "US1.1", "US1.1", None, "US5", "US4.1.1"]
    assert same_usage(before, after).tolist() == [True, True, True, False, False, True, True, False, True]
    assert generation_only(before, after).tolist() == [True, True, True, False, False, False, False, False, False]
    assert same_usage(np.array([], dtype=object), np.array([], dtype=object)).shape == (0,)
