"""Argument checks shared by the steps: refuse, with the fix, rather than coerce."""

from __future__ import annotations

from typing import Any

import numpy as np


def require_int(name: str, value: Any, low: int, hint: str = "") -> int:
    """An integer >= low (bools and non-integral numbers are refused, not coerced)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}. {hint}".rstrip())
    return int(value)


def require_positive(name: str, value: float, hint: str) -> float:
    """A finite number > 0 (strings and bools are refused, not coerced)."""
    if isinstance(value, bool | str) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a positive number, got {value!r}. {hint}".rstrip())
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value}. {hint}".rstrip())
    return float(value)
