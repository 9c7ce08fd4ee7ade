"""Numbers for JSON: JSON has no NaN or infinity, so a non-finite number is written as ``null``."""

from __future__ import annotations

import math
from typing import SupportsFloat


def finite_or_none(value: SupportsFloat | None) -> float | None:
    """``value`` as a float, or None when it is None, NaN or infinite.

    Anything :class:`float` accepts counts as a number: a NumPy scalar, an int, a bool (``True`` is 1.0).
    A value :class:`float` rejects raises its :class:`TypeError` or :class:`ValueError`.
    """
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None
