"""Shared test geometry and data (plain NumPy: the GPU check script imports it too)."""

from __future__ import annotations

import math

import numpy as np

# (factor, spatial sizes at low resolution)
FACTORS = [
    (1, (5,)),
    (2, (3,)),
    (3, (4,)),
    (5, (2,)),
    (1, (3, 2)),
    (2, (3, 4)),
    (3, (2, 3)),
    ((2, 3), (3, 2)),
    ((1, 2), (2, 3)),
    ((5, 2), (1, 2)),
    (2, (2, 3, 2)),
    ((1, 2, 3), (2, 2, 1)),
    ((3, 1, 2), (1, 2, 2)),
]
# a smaller set with several output channels each, for framework-specific tests
GEOMETRIES = [(2, (3, 4)), (3, (2, 3)), ((2, 3), (3, 2)), (2, (5,)), ((1, 2, 3), (2, 2, 1))]
BATCHES = [(), (2,), (2, 3)]
# dtype names every backend may be asked for; bfloat16 has no NumPy dtype: its data
# travels as float32 (values chosen exactly representable)
ALL_DTYPES = (
    "bool",
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "float16",
    "bfloat16",
    "float32",
    "float64",
    "complex64",
    "complex128",
)
LAYOUTS = ["channels_first", "channels_last"]
ORDERS = ["CRD", "DCR"]


def host_dtype(name: str) -> np.dtype:
    """NumPy dtype carrying a backend dtype's values (bfloat16 travels as float32)."""
    return np.dtype("float32" if name == "bfloat16" else name)


def factor_tuple(factor, d):
    return factor if isinstance(factor, tuple) else (factor,) * d


def lr_shape(batch, channels, spatial, layout):
    return (
        (*batch, channels, *spatial) if layout == "channels_first" else (*batch, *spatial, channels)
    )


def shuffle_case(factor, spatial, layout, order, batch=(2,), channels=2):
    """``(input shape, keyword arguments)`` of a shuffle of ``channels`` output channels
    (``GEOMETRIES``' factor and LR spatial size) in ``layout`` and ``order``."""
    d = len(spatial)
    r = math.prod(factor if isinstance(factor, tuple) else (factor,) * d)
    shape = lr_shape(batch, channels * r, spatial, layout)
    return shape, dict(spatial_dims=d, layout=layout, order=order)


def hr_shape(batch, channels, spatial, r, layout):
    hi = tuple(s * f for s, f in zip(spatial, r))
    return lr_shape(batch, channels, hi, layout)


def op_shape(op, factor, spatial, batch, layout, channels=3):
    """Input shape of ``op`` for ``channels`` output (shuffle) / input (unshuffle) channels."""
    r = factor_tuple(factor, len(spatial))
    if op == "shuffle":
        return lr_shape(batch, channels * math.prod(r), spatial, layout)
    return hr_shape(batch, channels, spatial, r, layout)


def make_data(shape, dtype: str, seed: int = 0) -> np.ndarray:
    """Distinct values (modulo the dtype's exact range) in random positions."""
    rng = np.random.default_rng(seed)
    n = math.prod(shape)
    v = rng.permutation(n)
    if dtype == "bool":
        a = rng.integers(0, 2, n).astype(bool)
    elif dtype in ("int8", "uint8", "bfloat16"):
        a = (v % 256) - (128 if dtype == "int8" else 0)
    elif dtype in ("int16", "float16"):
        a = v % 2048
    elif dtype.startswith("complex"):
        a = v + 1j * (n - v)
    else:
        a = v
    return np.asarray(a).astype(host_dtype(dtype)).reshape(shape)


# (kernel, factor, padding) of a framework layer, in 1, 2 and 3 spatial dimensions
LAYER_GEOMETRIES = [((3, 3), (2, 3), "same"), ((2,), 3, "valid"), ((3, 1, 2), 2, 1)]
