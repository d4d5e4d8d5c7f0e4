"""The NumPy semantics of the ops readers meet, as :data:`~.graph.Step` functions of
a node's data input.  Written from the formats' definitions; the analysis runs them
on index arrays, so they must move values exactly (they never round).

>>> import numpy as np
>>> x = np.arange(8).reshape(1, 8, 1, 1)
>>> depth_to_space((2, 2), "CRD", "channels_first")(x)[0, 1]     # channel 1 = 4..7
array([[4, 5],
       [6, 7]])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from .._core.spec import Layout
from .graph import Step

__all__ = [
    "concatenate",
    "conv",
    "conv_general",
    "conv_transpose",
    "copy",
    "depth_to_space",
    "reshape",
    "slicing",
    "space_to_depth",
    "split",
    "stack",
    "take",
    "transpose",
    "unstack",
]


def copy() -> Step:
    return lambda x: x


def reshape(shape: Sequence[int]) -> Step:
    """A reshape (and every squeeze, unsqueeze, flatten and view): row-major."""
    target = tuple(int(s) for s in shape)
    return lambda x: x.reshape(target)


def transpose(perm: Sequence[int] | None) -> Step:
    """Axes permuted (``None``: reversed, ONNX's and NumPy's default)."""
    axes = None if perm is None else tuple(int(p) for p in perm)
    return lambda x: np.transpose(x, axes)


def take(indices: np.ndarray, axis: int) -> Step:
    """Gather of constant ``indices`` along ``axis`` (negative indices count back)."""
    idx = np.asarray(indices, dtype=np.int64)

    def run(x: np.ndarray) -> np.ndarray:
        return np.take(x, np.where(idx < 0, idx + x.shape[axis], idx), axis=axis)

    return run


def slicing(
    starts: Sequence[int], ends: Sequence[int], axes: Sequence[int], steps: Sequence[int]
) -> Step:
    """A strided slice (Python's clamping rules, as ONNX's ``Slice``)."""
    spec = list(zip(axes, starts, ends, steps))

    def run(x: np.ndarray) -> np.ndarray:
        index = [slice(None)] * x.ndim
        for axis, start, end, step in spec:
            index[axis] = slice(int(start), int(end), int(step))
        return x[tuple(index)]

    return run


def _split(layout: Layout, ndim: int, d: int) -> tuple[int, int, list[int]]:
    """(batch axes, channel axis, spatial axes) of an ``ndim``-D tensor with ``d``
    spatial axes."""
    batch = ndim - d - 1
    if layout == "channels_first":
        return batch, batch, list(range(batch + 1, ndim))
    return batch, ndim - 1, list(range(batch, ndim - 1))


def depth_to_space(block: Sequence[int], order: str, layout: Layout) -> Step:
    """Depth-to-space by the index formula: output channel ``c`` at block position
    ``b`` (row-major in the block) reads input channel ``c * R + b`` (CRD) or
    ``b * C + c`` (DCR)."""
    r = tuple(int(b) for b in block)
    d, R = len(r), math.prod(r)

    def run(x: np.ndarray) -> np.ndarray:
        nb, ch, sp = _split(layout, x.ndim, d)
        lead, S, C = x.shape[:nb], [x.shape[a] for a in sp], x.shape[ch] // R
        # move channels first after the batch axes, split them, interleave blocks
        y = np.moveaxis(x, ch, nb)
        parts = (C, *r) if order == "CRD" else (*r, C)
        y = y.reshape(*lead, *parts, *S)
        c_axis = nb if order == "CRD" else nb + d
        r_axes = [nb + 1 + k for k in range(d)] if order == "CRD" else [nb + k for k in range(d)]
        s_axes = [nb + 1 + d + k for k in range(d)]
        perm = [*range(nb), c_axis, *(a for k in range(d) for a in (s_axes[k], r_axes[k]))]
        y = y.transpose(perm).reshape(*lead, C, *(s * f for s, f in zip(S, r)))
        return np.moveaxis(y, nb, ch)

    return run


def space_to_depth(block: Sequence[int], order: str, layout: Layout) -> Step:
    """The inverse of :func:`depth_to_space` with the same order."""
    r = tuple(int(b) for b in block)
    d, R = len(r), math.prod(r)

    def run(x: np.ndarray) -> np.ndarray:
        nb, ch, sp = _split(layout, x.ndim, d)
        lead, C = x.shape[:nb], x.shape[ch]
        S = [x.shape[a] // f for a, f in zip(sp, r)]
        y = np.moveaxis(x, ch, nb)  # (*lead, C, *S*r)
        y = y.reshape(*lead, C, *(v for k in range(d) for v in (S[k], r[k])))
        s_axes = [nb + 1 + 2 * k for k in range(d)]
        r_axes = [nb + 2 + 2 * k for k in range(d)]
        blocks = [nb, *r_axes] if order == "CRD" else [*r_axes, nb]
        y = y.transpose(*range(nb), *blocks, *s_axes).reshape(*lead, C * R, *S)
        return np.moveaxis(y, nb, ch)

    return run


def _windows(
    x: np.ndarray, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int]
) -> np.ndarray:
    """``(N, C, *out, *k)`` windows of a padded channels-first ``x``."""
    d = len(kernel)
    span = [(k - 1) * dl + 1 for k, dl in zip(kernel, dilation)]
    w = np.lib.stride_tricks.sliding_window_view(x, span, axis=tuple(range(2, 2 + d)))
    index = (
        slice(None),
        slice(None),
        *(slice(None, None, s) for s in stride),
        *(slice(None, None, dl) for dl in dilation),
    )
    return w[index]


def conv(
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: Sequence[int],
    pads: Sequence[tuple[int, int]],
    dilation: Sequence[int],
    groups: int,
) -> Step:
    """A channels-first convolution (weight ``(O, I // groups, *k)``, cross-correlation
    as every framework computes it), in float64."""
    w = np.asarray(weight, np.float64)
    d = w.ndim - 2

    def run(x: np.ndarray) -> np.ndarray:
        x = np.pad(np.asarray(x, np.float64), [(0, 0), (0, 0), *pads])
        win = _windows(x, w.shape[2:], stride, dilation)  # (N, C, *out, *k)
        N, out = win.shape[0], win.shape[2 : 2 + d]
        ci, co = w.shape[1], w.shape[0] // groups
        ys = []
        for g in range(groups):
            patch = win[:, g * ci : (g + 1) * ci]
            patch = np.moveaxis(patch, 1, 1 + d).reshape(N, *out, -1)
            kern = w[g * co : (g + 1) * co].reshape(co, -1)
            ys.append(np.moveaxis(patch @ kern.T, -1, 1))
        y = np.concatenate(ys, axis=1)
        if bias is not None:
            y = y + np.asarray(bias, np.float64).reshape(1, -1, *(1,) * d)
        return y

    return run


def conv_transpose(
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: Sequence[int],
    pads: Sequence[tuple[int, int]],
    dilation: Sequence[int],
    groups: int,
    output_padding: Sequence[int] | None = None,
) -> Step:
    """A channels-first transposed convolution (weight ``(I, O // groups, *k)``): the
    input dilated by ``stride``, then a convolution with the flipped, transposed
    kernel; ``pads`` are cropped from the full output."""
    w = np.asarray(weight, np.float64)
    d = w.ndim - 2
    ci, _co = w.shape[0] // groups, w.shape[1]
    flipped = np.flip(w, axis=tuple(range(2, 2 + d)))
    kern = np.concatenate(
        [np.swapaxes(flipped[g * ci : (g + 1) * ci], 0, 1) for g in range(groups)], axis=0
    )  # (O, I // groups, *k)
    extra = tuple(output_padding or (0,) * d)

    def run(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        N, C, *S = x.shape
        up = np.zeros((N, C, *((s - 1) * st + 1 for s, st in zip(S, stride))))
        strided = (slice(None), slice(None), *(slice(None, None, st) for st in stride))
        up[strided] = x
        full = [((k - 1) * dl, (k - 1) * dl + e) for k, dl, e in zip(w.shape[2:], dilation, extra)]
        y = conv(kern, bias, (1,) * d, full, dilation, groups)(up)
        cropped = (
            slice(None),
            slice(None),
            *(slice(lo, y.shape[2 + a] - hi) for a, (lo, hi) in enumerate(pads)),
        )
        return y[cropped]

    return run


def split(axis: int, sizes: Sequence[int]) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    """One tensor cut into parts of ``sizes`` along ``axis``."""
    cuts = np.cumsum([int(n) for n in sizes])[:-1]
    return lambda xs: list(np.split(xs[0], cuts, axis=axis))


def concatenate(axis: int) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    return lambda xs: [np.concatenate(xs, axis=axis)]


def stack(axis: int) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    return lambda xs: [np.stack(xs, axis=axis)]


def unstack(axis: int) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    return lambda xs: [np.take(xs[0], i, axis=axis) for i in range(xs[0].shape[axis])]


def conv_general(
    weight: np.ndarray,
    stride: Sequence[int],
    pads: Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int],
    rhs_dilation: Sequence[int],
    groups: int,
) -> Step:
    """XLA's convolution (``lax.conv_general_dilated``) on channels-first data, weight
    ``(O, I // groups, *k)``, in float64: the input dilated by ``lhs_dilation`` (zeros
    between its elements: how transposed convolutions are written), padded by
    ``pads`` (a negative pad crops), then a strided, dilated cross-correlation."""
    d = len(stride)

    def run(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if any(int(f) != 1 for f in lhs_dilation):
            N, C, *S = x.shape
            sizes = [(s - 1) * int(f) + 1 if s else 0 for s, f in zip(S, lhs_dilation)]
            up = np.zeros((N, C, *sizes))
            every = (slice(None), slice(None), *(slice(None, None, int(f)) for f in lhs_dilation))
            up[every] = x
            x = up
        grow = [(max(int(lo), 0), max(int(hi), 0)) for lo, hi in pads]
        x = np.pad(x, [(0, 0), (0, 0), *grow])
        crop = (
            slice(None),
            slice(None),
            *(
                slice(max(-int(lo), 0), x.shape[2 + a] - max(-int(hi), 0))
                for a, (lo, hi) in enumerate(pads)
            ),
        )
        x = x[crop]
        return conv(weight, None, stride, [(0, 0)] * d, rhs_dilation, groups)(x)

    return run
