"""How far apart two arrays of numbers are, as every check of this package measures
it (a port against its source, an exported graph against the model)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["differences", "max_difference"]


def differences(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``|a - b|`` element by element (in float64, arrays of one shape), a NaN or an
    infinity where both hold the same counting as no difference."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    with np.errstate(invalid="ignore"):
        return np.where((a == b) | (np.isnan(a) & np.isnan(b)), 0.0, np.abs(a - b))


def max_difference(a: np.ndarray, b: np.ndarray) -> float:
    """The largest absolute difference of ``a`` and ``b`` (in float64), a NaN or an
    infinity where both hold the same counting as equal; ``inf`` where the shapes
    differ.

    >>> max_difference(np.array([1.0, np.nan]), np.array([1.5, np.nan]))
    0.5
    """
    if np.shape(a) != np.shape(b):
        return math.inf
    d = differences(a, b)
    return float(d.max()) if d.size else 0.0
