"""How far apart two arrays of numbers are, as every check of this package measures
it (a port against its source, an exported graph against the model)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["max_difference"]


def max_difference(a: np.ndarray, b: np.ndarray) -> float:
    """The largest absolute difference of ``a`` and ``b`` (in float64), a NaN or an
    infinity where both hold the same counting as equal; ``inf`` where the shapes
    differ.

    >>> max_difference(np.array([1.0, np.nan]), np.array([1.5, np.nan]))
    0.5
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return math.inf
    with np.errstate(invalid="ignore"):
        d = np.where((a == b) | (np.isnan(a) & np.isnan(b)), 0.0, np.abs(a - b))
    return float(d.max()) if d.size else 0.0
