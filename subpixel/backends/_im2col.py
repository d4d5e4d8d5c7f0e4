"""The LR convolution as im2col + one batched matrix product, for array modules
with NumPy's API (NumPy itself, and CuPy where the product runs on cuBLAS)."""

from __future__ import annotations

import math
from typing import Any

from .._core.spec import ConvPlan


def im2col_conv(xp: Any, x: Any, weight: Any, bias: Any, cplan: ConvPlan) -> Any:
    """``conv(x, weight) + bias`` in ``x``'s layout (``weight``: ``(O, I, *k)``)."""
    d = len(cplan.kernel)
    nbatch = x.ndim - d - 1
    if cplan.layout == "channels_last":
        x = xp.moveaxis(x, -1, nbatch)
    batch = x.shape[:nbatch]
    x = x.reshape((-1, *x.shape[nbatch:]))  # (B, C, *S)
    if any(a or b for a, b in cplan.padding):
        x = xp.pad(x, [(0, 0), (0, 0), *cplan.padding])
    windows = xp.lib.stride_tricks.sliding_window_view(x, cplan.kernel, axis=tuple(range(2, 2 + d)))
    lr_spatial = windows.shape[2 : 2 + d]
    positions = math.prod(lr_spatial)
    w2 = weight.reshape(weight.shape[0], -1).astype(
        xp.result_type(x.dtype, weight.dtype), copy=False
    )
    if cplan.layout == "channels_first":
        # (B, C, *L, *k) -> columns (B, C*prod(k), prod(L)): one copy; W @ columns
        perm = (0, 1, *range(2 + d, 2 + 2 * d), *range(2, 2 + d))
        cols = windows.transpose(perm).reshape(windows.shape[0], -1, positions)
        lr = xp.matmul(w2, cols)  # (B, C_lr, P)
        if bias is not None:
            lr += bias.astype(lr.dtype, copy=False)[:, None]
        return lr.reshape((*batch, w2.shape[0], *lr_spatial))
    # channels_last: rows (B, prod(L), C*prod(k)) @ W^T -> (B, P, C_lr), already NHWC
    perm = (0, *range(2, 2 + d), 1, *range(2 + d, 2 + 2 * d))
    rows = windows.transpose(perm).reshape(windows.shape[0], positions, -1)
    lr = xp.matmul(rows, w2.T)
    if bias is not None:
        lr += bias.astype(lr.dtype, copy=False)
    return lr.reshape((*batch, *lr_spatial, w2.shape[0]))
