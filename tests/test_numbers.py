"""Numbers for JSON: finite floats pass, None / NaN / infinity become None."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ct_notebooks.numbers import finite_or_none


def test_finite_numbers_come_back_as_python_floats() -> None:
    assert finite_or_none(0.25) == 0.25
    assert finite_or_none(3) == 3.0 and type(finite_or_none(3)) is float
    value = finite_or_none(np.float64(0.5))
    assert value == 0.5 and type(value) is float
    assert type(finite_or_none(np.int64(7))) is float


@pytest.mark.parametrize("value", [None, math.nan, math.inf, -math.inf, np.float64("nan"), np.float32("inf")])
def test_missing_and_non_finite_become_none(value: float | None) -> None:
    assert finite_or_none(value) is None


def test_bool_counts_as_a_number() -> None:
    assert finite_or_none(True) == 1.0 and finite_or_none(False) == 0.0


def test_values_float_rejects_raise() -> None:
    with pytest.raises(TypeError):
        finite_or_none([1.0])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        finite_or_none("abc")  # type: ignore[arg-type]
