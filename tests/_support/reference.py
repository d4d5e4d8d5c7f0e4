"""Independent oracles for shuffle/unshuffle, written from the index formula in
SEED_NOTES (never via reshape/transpose):

    CRD: input channel = c * R + b        DCR: input channel = b * C + c

where ``R = prod(factor)``, ``C`` is the number of output channels and ``b`` the
row-major position of ``(y_1 mod r_1, ..., y_d mod r_d)`` in the block.

``shuffle_loops``/``unshuffle_loops`` walk every output element in Python (slow,
for small arrays and to check the others); ``shuffle_gather``/``unshuffle_gather``
evaluate the same formula on index arrays.
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def _norm(x, factor, spatial_dims, layout):
    d = (
        spatial_dims
        if spatial_dims is not None
        else (len(factor) if isinstance(factor, tuple) else 2)
    )
    r = tuple(factor) if isinstance(factor, tuple) else (factor,) * d
    return d, r


def _input_channel(c, block, C, R, order):
    return c * R + block if order == "CRD" else block * C + c


def _block_index(phases, r):
    b = 0
    for p, f in zip(phases, r):
        b = b * f + p
    return b


def _to_channels_first(x, d, layout):
    return x if layout == "channels_first" else np.moveaxis(x, -1, x.ndim - d - 1)


def _from_channels_first(x, d, layout):
    return x if layout == "channels_first" else np.moveaxis(x, x.ndim - d - 1, -1)


def shuffle_loops(x, factor, *, spatial_dims=None, layout="channels_first", order="CRD"):
    d, r = _norm(x, factor, spatial_dims, layout)
    x = _to_channels_first(np.asarray(x), d, layout)
    R = math.prod(r)
    batch = x.shape[: x.ndim - d - 1]
    C = x.shape[x.ndim - d - 1] // R
    lo = x.shape[x.ndim - d :]
    out = np.empty((*batch, C, *tuple(s * f for s, f in zip(lo, r))), dtype=x.dtype)
    for bidx in itertools.product(*map(range, batch)):
        for c in range(C):
            for y in itertools.product(*(range(s * f) for s, f in zip(lo, r))):
                phases = tuple(yk % f for yk, f in zip(y, r))
                src = tuple(yk // f for yk, f in zip(y, r))
                ch = _input_channel(c, _block_index(phases, r), C, R, order)
                out[(*bidx, c, *y)] = x[(*bidx, ch, *src)]
    return _from_channels_first(out, d, layout)


def unshuffle_loops(y, factor, *, spatial_dims=None, layout="channels_first", order="CRD"):
    d, r = _norm(y, factor, spatial_dims, layout)
    y = _to_channels_first(np.asarray(y), d, layout)
    R = math.prod(r)
    batch = y.shape[: y.ndim - d - 1]
    C = y.shape[y.ndim - d - 1]
    hi = y.shape[y.ndim - d :]
    out = np.empty((*batch, C * R, *tuple(s // f for s, f in zip(hi, r))), dtype=y.dtype)
    for bidx in itertools.product(*map(range, batch)):
        for c in range(C):
            for yy in itertools.product(*map(range, hi)):
                phases = tuple(yk % f for yk, f in zip(yy, r))
                dst = tuple(yk // f for yk, f in zip(yy, r))
                ch = _input_channel(c, _block_index(phases, r), C, R, order)
                out[(*bidx, ch, *dst)] = y[(*bidx, c, *yy)]
    return _from_channels_first(out, d, layout)


def _hr_gather_index(batch, C, hi, r, order):
    """For every HR element (batch..., c, y...): the LR (channel, *spatial) it comes from."""
    R = math.prod(r)
    grids = np.indices((*batch, C, *tuple(hi)), sparse=True)
    nb = len(batch)
    c = grids[nb]
    ys = grids[nb + 1 :]
    block = 0
    for yk, f in zip(ys, r):
        block = block * f + yk % f
    ch = c * R + block if order == "CRD" else block * C + c
    src = tuple(yk // f for yk, f in zip(ys, r))
    return (*tuple(grids[:nb]), ch, *src)


def shuffle_gather(x, factor, *, spatial_dims=None, layout="channels_first", order="CRD"):
    d, r = _norm(x, factor, spatial_dims, layout)
    x = _to_channels_first(np.asarray(x), d, layout)
    R = math.prod(r)
    nb = x.ndim - d - 1
    batch = x.shape[:nb]
    C = x.shape[nb] // R
    hi = tuple(s * f for s, f in zip(x.shape[nb + 1 :], r))
    out = x[_hr_gather_index(batch, C, hi, r, order)]
    return _from_channels_first(out, d, layout)


def unshuffle_gather(y, factor, *, spatial_dims=None, layout="channels_first", order="CRD"):
    d, r = _norm(y, factor, spatial_dims, layout)
    y = _to_channels_first(np.asarray(y), d, layout)
    R = math.prod(r)
    nb = y.ndim - d - 1
    batch = y.shape[:nb]
    C = y.shape[nb]
    hi = y.shape[nb + 1 :]
    out = np.empty((*batch, C * R, *tuple(s // f for s, f in zip(hi, r))), dtype=y.dtype)
    out[_hr_gather_index(batch, C, hi, r, order)] = y
    return _from_channels_first(out, d, layout)


def reference(op, x, factor, **kw):
    return (shuffle_gather if op == "shuffle" else unshuffle_gather)(x, factor, **kw)


# ---------------------------------------------------------------------------
# convolutions, straight from their definitions (channels_first, PyTorch layouts)
# ---------------------------------------------------------------------------


def conv_ref(x, w, bias=None, padding=None, groups=1):
    """Cross-correlation ``out[n, o, m] = sum_{i, q} xpad[n, i, m + q] w[o, i, q]``.

    ``w``: (C_out, C_in // groups, *k); ``padding``: ((before, after), ...) zeros.
    """
    d = w.ndim - 2
    padding = padding or [(0, 0)] * d
    xp = np.pad(x, [(0, 0), (0, 0), *padding])
    k = w.shape[2:]
    lout = tuple(xp.shape[2 + i] - k[i] + 1 for i in range(d))
    c_out, g_in = w.shape[:2]
    g_out = c_out // groups
    out = np.zeros((x.shape[0], c_out, *lout), dtype=np.result_type(x, w))
    for q in itertools.product(*map(range, k)):
        window = xp[(slice(None), slice(None), *(slice(q[i], q[i] + lout[i]) for i in range(d)))]
        for g in range(groups):
            xs = window[:, g * g_in : (g + 1) * g_in]
            ws = w[(slice(g * g_out, (g + 1) * g_out), slice(None), *q)]
            out[:, g * g_out : (g + 1) * g_out] += np.einsum("ni...,oi->no...", xs, ws)
    if bias is not None:
        out += bias.reshape((1, -1) + (1,) * d)
    return out


def conv_transpose_ref(x, w, bias=None, stride=1, padding=0, output_padding=0, groups=1):
    """PyTorch's ConvTranspose semantics from the definition: every input pixel
    scatters ``x[n, i, l] * w[i, o, k]`` to full-output position ``l * s + k``; the
    output is the full output cropped by ``padding`` on both sides and extended by
    ``output_padding`` at the end.  ``w``: (C_in, C_out // groups, *k)."""
    d = w.ndim - 2
    s = (stride,) * d if np.isscalar(stride) else tuple(stride)
    p = (padding,) * d if np.isscalar(padding) else tuple(padding)
    op = (output_padding,) * d if np.isscalar(output_padding) else tuple(output_padding)
    n, c_in = x.shape[:2]
    L = x.shape[2:]
    k = w.shape[2:]
    g_in = c_in // groups
    g_out = w.shape[1]
    full_len = tuple((L[i] - 1) * s[i] + k[i] + op[i] for i in range(d))
    full = np.zeros((n, g_out * groups, *full_len), dtype=np.result_type(x, w))
    for q in itertools.product(*map(range, k)):
        dst = tuple(slice(q[i], q[i] + (L[i] - 1) * s[i] + 1, s[i]) for i in range(d))
        for g in range(groups):
            xs = x[:, g * g_in : (g + 1) * g_in]
            ws = w[(slice(g * g_in, (g + 1) * g_in), slice(None), *q)]
            full[(slice(None), slice(g * g_out, (g + 1) * g_out), *dst)] += np.einsum(
                "ni...,io->no...", xs, ws
            )
    out_len = tuple((L[i] - 1) * s[i] - 2 * p[i] + k[i] + op[i] for i in range(d))
    out = full[(slice(None), slice(None), *(slice(p[i], p[i] + out_len[i]) for i in range(d)))]
    if bias is not None:
        out = out + bias.reshape((1, -1) + (1,) * d)
    return out


def crop_ref(x, crop):
    d = len(crop)
    return x[(Ellipsis, *(slice(a, x.shape[x.ndim - d + i] - b) for i, (a, b) in enumerate(crop)))]


def blur_ref(y, spatial_dims=2, layout="channels_first"):
    """Replication pad one before each spatial axis, then the mean of each 2^d window."""
    d = spatial_dims
    y = _to_channels_first(np.asarray(y), d, layout)
    first = y.ndim - d
    padded = np.pad(y, [(0, 0)] * first + [(1, 0)] * d, mode="edge")
    out = np.zeros(y.shape, dtype=np.result_type(y.dtype, np.float32))
    for offsets in itertools.product((0, 1), repeat=d):
        key = (Ellipsis, *(slice(o, o + y.shape[first + i]) for i, o in enumerate(offsets)))
        out = out + padded[key]
    return _from_channels_first(out / 2**d, d, layout)


def sub_pixel_conv_ref(
    x, w, b, factor, padding, layout="channels_first", order="CRD", crop=None, blur=False
):
    """LR conv (reference) + shuffle (reference) + blur + crop, any batch dims."""
    d = w.ndim - 2
    x = _to_channels_first(np.asarray(x), d, layout)
    batch = x.shape[: x.ndim - d - 1]
    flat = x.reshape((math.prod(batch), *x.shape[x.ndim - d - 1 :]))
    y = shuffle_gather(conv_ref(flat, w, b, padding), factor, spatial_dims=d, order=order)
    if blur:
        y = blur_ref(y, d)
    if crop:
        y = crop_ref(y, crop)
    y = y.reshape(batch + y.shape[1:])
    return _from_channels_first(y, d, layout)
