"""How a shuffle is written into an exported graph (``lowering=``), as plans every
framework executes with its own ops.  Pure Python and NumPy; the rules live here
once, the PyTorch and Keras layers only emit the ops.

=========  =====================================================================
lowering   the graph
=========  =====================================================================
native     the runtime's own op: ONNX ``DepthToSpace`` (CRD or DCR) /
           ``SpaceToDepth`` (DCR only: CRD adds one channel gather), TFLite
           ``DEPTH_TO_SPACE``/``SPACE_TO_DEPTH`` (DCR, NHWC: a CRD
           ``SubPixelConv`` folds the channel permutation into its kernel, a bare
           CRD shuffle adds one gather).  2-D, square factors.
reshape    reshape -> transpose -> reshape (the eager plan; 6-D for 2-D data)
flat       block rotations of rank <= the input's: no tensor of higher rank than
           the layer's input (:func:`flat_steps`)
conv       a fixed one-hot (transposed) convolution with stride = factor
           (:func:`one_hot_kernel`); exact for finite values
auto       eager: the backends' fastest path; exporting: ``native`` where it
           applies, else ``reshape``
=========  =====================================================================

>>> from subpixel._core import spec as _spec
>>> plan = _spec.make_plan("shuffle", (1, 8, 3, 4), 2)
>>> [shape for shape, _ in flat_steps(plan)]       # every tensor at most 4-D
[(2, 4, 3, 4), (12, 2, 4)]
"""

from __future__ import annotations

import math
from typing import Any, Literal

from . import spec as _spec
from .channels import phase_index

Lowering = Literal["auto", "native", "reshape", "flat", "conv"]
LOWERINGS: tuple[Lowering, ...] = ("auto", "native", "reshape", "flat", "conv")

__all__ = [
    "LOWERINGS",
    "Lowering",
    "check_native",
    "flat_steps",
    "normalize_lowering",
    "one_hot_kernel",
]


def normalize_lowering(lowering: Any) -> Lowering:
    return _spec.choice(lowering, "lowering", LOWERINGS)


def has_native_op(factor: tuple[int, ...]) -> bool:
    """Whether ONNX/TFLite depth-to-space ops express this factor (2-D, square, > 1)."""
    return len(factor) == 2 and factor[0] == factor[1] and factor[0] > 1


def check_native(lowering: str, factor: tuple[int, ...]) -> None:
    """``lowering="native"`` needs a factor the runtimes' ops can express."""
    if lowering == "native" and not has_native_op(factor):
        raise ValueError(
            "`lowering='native'` needs 2-D data and a square factor above 1 (DepthToSpace "
            "has one block size); use 'reshape', 'flat' or 'conv'. "
            f"Received: factor={factor}"
        )


def _is_one(size: Any) -> bool:
    return type(size) is int and size == 1


def flat_steps(plan: _spec.Plan) -> list[tuple[tuple, tuple[int, ...]]]:
    """The plan's transpose as ``(shape, perm)`` steps of rank at most 4 (3 where a
    side is empty): ``x.reshape(shape).transpose(perm)`` for each step, then a reshape
    to ``plan.out_shape``.  Each step swaps two adjacent blocks of axes, so no tensor
    has a higher rank than the plan's input when it has a batch axis, as a layer's
    input does (checked for every layout, order, factor and 1-, 2-, 3-D data in the
    tests; without one, a step may need one axis more).  Sizes may be symbolic (SymInts, tensors)."""
    sizes = plan.src_shape
    m = len(sizes)
    cur, tgt = list(range(m)), list(plan.perm)
    steps: list[tuple[tuple, tuple[int, ...]]] = []

    def prod(axes: list[int]) -> Any:
        out: Any = 1
        for a in axes:
            out = sizes[a] if _is_one(out) else out * sizes[a]
        return out

    while cur != tgt:
        i = next(a for a in range(m) if cur[a] != tgt[a])
        j = cur.index(tgt[i])
        k = 1
        while j + k < m and i + k < m and cur[j + k] == tgt[i + k]:
            k += 1
        shape: list[Any] = [prod(cur[:i]), prod(cur[i:j]), prod(cur[j : j + k]), prod(cur[j + k :])]
        perm = [0, 2, 1, 3]
        if _is_one(shape[3]):
            shape, perm = shape[:3], [0, 2, 1]
        if _is_one(shape[0]):
            shape, perm = shape[1:], [p - 1 for p in perm[1:]]
        steps.append((tuple(shape), tuple(perm)))
        cur = cur[:i] + cur[j : j + k] + cur[i:j] + cur[j + k :]
    return steps


def one_hot_kernel(
    channels: int, factor: tuple[int, ...], order: str, *, dense: bool = False
) -> tuple[Any, int]:
    """``(kernel, groups)`` of the fixed convolution that is an unshuffle of
    ``channels`` HR channels (a ``Conv`` with kernel = stride = factor), and, read as a
    ``ConvTranspose`` weight, the shuffle back: PyTorch layout ``(C * R, C // groups,
    *factor)``.  CRD keeps each channel's phases together, so the conv is grouped
    (one group per channel) unless ``dense``; DCR interleaves channels: dense."""
    import numpy as np

    R = math.prod(factor)
    grouped = order == "CRD" and not dense
    kernel = np.zeros((channels * R, 1 if grouped else channels, *factor), np.float32)
    for b, pos in enumerate(phase_index(factor)):
        for c in range(channels):
            lr = c * R + b if order == "CRD" else b * channels + c
            key = (lr, 0 if grouped else c, *pos)
            kernel[key] = 1.0
    return kernel, (channels if grouped else 1)
