"""The public operations: validate with :mod:`._spec`, then hand to the backend."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from . import _spec
from ._dispatch import backend_for

Array = TypeVar("Array")
Factor = int | Sequence[int]

__all__ = ["backend_name", "shuffle", "unshuffle"]


def _run(op: str, x, factor, spatial_dims, layout, order, out):
    backend = backend_for(x)
    plan = _spec.make_plan(
        op, backend.shape(x), factor, spatial_dims, layout, order, cache=backend.cache_plans()
    )
    if out is not None:
        if not backend.mutable:
            raise _spec.out_not_supported(backend.name, out)
        if not backend.is_array(out):
            raise _spec.out_wrong_type(backend.name, out)
        _spec.check_out(plan, backend.shape(out), backend.dtype(out), backend.dtype(x))
    return backend.rearrange(x, plan, out)


def shuffle(
    x: Array,
    factor: Factor,
    *,
    spatial_dims: int | None = None,
    layout: str = "channels_first",
    order: str = "CRD",
    out: Array | None = None,
) -> Array:
    """Pixel shuffle (depth-to-space): move channel blocks into space.

    ``(..., C * prod(factor), *S)`` -> ``(..., C, *(s * r for s, r in zip(S, factor)))``
    in ``channels_first`` layout; ``(..., *S, C * prod(factor))`` -> ``(..., *S * r, C)``
    in ``channels_last``.  ``order="CRD"`` reads the input channel as
    ``c * prod(factor) + b`` (PyTorch ``pixel_shuffle``), ``order="DCR"`` as
    ``b * C + c`` (TensorFlow ``depth_to_space``), where ``b`` is the row-major
    position in the block.

    Args:
        x: a NumPy, CuPy, PyTorch, TensorFlow or JAX array.
        factor: upscaling factor, an int or one int per spatial dimension.
        spatial_dims: how many trailing (channels_first) or inner (channels_last)
            axes are spatial; default ``len(factor)`` for a tuple, else 2.
            Axes before the channel and spatial axes are batch axes.
        layout: ``"channels_first"`` (default) or ``"channels_last"``.
        order: ``"CRD"`` (default) or ``"DCR"``.
        out: optional preallocated output (NumPy, CuPy, PyTorch only).

    Returns:
        A new array of ``x``'s library, dtype and device (or ``out``).

    Example:
        >>> import numpy as np, subpixel
        >>> x = np.arange(8).reshape(1, 8, 1, 1)   # 2 output channels, factor 2
        >>> subpixel.shuffle(x, 2)[0, 0]            # CRD: channels 0..3 -> channel 0
        array([[0, 1],
               [2, 3]])
        >>> subpixel.shuffle(x, 2, order="DCR")[0, 0]   # DCR: channels 0, 2, 4, 6
        array([[0, 2],
               [4, 6]])
    """
    return _run("shuffle", x, factor, spatial_dims, layout, order, out)


def unshuffle(
    x: Array,
    factor: Factor,
    *,
    spatial_dims: int | None = None,
    layout: str = "channels_first",
    order: str = "CRD",
    out: Array | None = None,
) -> Array:
    """Pixel unshuffle (space-to-depth): the exact inverse of :func:`shuffle`.

    ``(..., C, *S)`` -> ``(..., C * prod(factor), *(s // r))`` in
    ``channels_first``; every spatial size must be divisible by its factor.
    Arguments as in :func:`shuffle`.

    Example:
        >>> import numpy as np, subpixel
        >>> y = np.arange(32).reshape(2, 2, 2, 4)
        >>> x = subpixel.unshuffle(y, (1, 2), order="DCR")
        >>> x.shape
        (2, 4, 2, 2)
        >>> bool((subpixel.shuffle(x, (1, 2), order="DCR") == y).all())
        True
    """
    return _run("unshuffle", x, factor, spatial_dims, layout, order, out)


def backend_name(x: Any) -> str:
    """The name of the backend that handles ``x``: ``"numpy"``, ``"cupy"``,
    ``"torch"``, ``"tensorflow"`` or ``"jax"``.

    >>> import numpy as np, subpixel
    >>> subpixel.backend_name(np.zeros(3))
    'numpy'
    """
    return backend_for(x).name
