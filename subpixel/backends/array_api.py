"""Array API backend: any array that exposes ``__array_namespace__`` and that no other
backend claims (array-api-strict, ndonnx, ...) is handled through its namespace, with
the standard's functions only.

* Shuffles: ``reshape -> permute_dims -> reshape`` (a copy where nothing moves).
* The LR convolution: im2col from basic slicing and ``stack``, then one ``matmul``
  per batch (``concat`` with zeros pads).
* Arrays are treated as immutable: ``out=`` is refused by :mod:`subpixel.ops`.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from .._core.spec import ConvPlan, Plan
from . import backend_or_none
from ._base import ArrayBackend


def namespace(x: Any) -> Any:
    return x.__array_namespace__()


def _on(like: Any) -> dict[str, Any]:
    """``device=`` of ``like`` for an array-creation call: new arrays live where the
    data does (not on the library's default device)."""
    device = getattr(like, "device", None)
    return {} if device is None else {"device": device}


class ArrayApiBackend(ArrayBackend[Any]):
    name = "array_api"
    mutable = False

    def is_array(self, obj: Any) -> bool:
        """An array the dispatcher gives to this backend (NumPy's, say, it does not)."""
        return hasattr(type(obj), "__array_namespace__") and backend_or_none(obj, "x") is self

    def dtype_name(self, x: Any) -> str:
        return str(x.dtype).rsplit(".", 1)[-1]  # "array_api_strict.float32" -> "float32"

    def astype(self, x: Any, name: str) -> Any:
        xp = namespace(x)
        return xp.astype(x, getattr(xp, name))

    def device(self, x: Any) -> str:
        return str(getattr(x, "device", "cpu"))

    def from_numpy(self, a: Any, like: Any = None) -> Any:
        if like is None:
            raise TypeError("the array API backend needs an array to take its namespace from")
        xp = namespace(like)
        a = np.asarray(a)
        out = xp.asarray(np.ascontiguousarray(a.astype(a.dtype.newbyteorder("="))), **_on(like))
        return xp.astype(out, like.dtype) if out.dtype != like.dtype else out

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.from_dlpack(x)

    def concat(self, arrays: list, axis: int) -> Any:
        return namespace(arrays[0]).concat(arrays, axis=axis)

    def zeros(self, shape: tuple, like: Any) -> Any:
        return namespace(like).zeros(shape, dtype=like.dtype, **_on(like))

    def tanh(self, x: Any) -> Any:
        return namespace(x).tanh(x)

    def bench_baselines(self, x: Any) -> dict[str, Any]:
        xp = namespace(x)
        return {"copy": lambda: xp.asarray(x, copy=True)}

    def rearrange(self, x: Any, plan: Plan, out: Any = None) -> Any:
        xp = namespace(x)
        if plan.is_identity:
            return xp.reshape(xp.asarray(x, copy=True), plan.out_shape)
        y = xp.permute_dims(xp.reshape(x, plan.src_shape), plan.perm)
        return xp.reshape(y, plan.out_shape)

    def conv(self, x: Any, weight: Any, bias: Any, cplan: ConvPlan) -> Any:
        """im2col from slices (one per kernel tap), then ``matmul``."""
        xp = namespace(x)
        d = len(cplan.kernel)
        nbatch = x.ndim - d - 1
        if cplan.layout == "channels_last":  # work channels_first, move back at the end
            x = xp.permute_dims(x, (*range(nbatch), x.ndim - 1, *range(nbatch, x.ndim - 1)))
        batch = x.shape[:nbatch]
        x = xp.reshape(x, (math.prod(batch), *x.shape[nbatch:]))
        for axis, (a, b) in enumerate(cplan.padding, start=2):
            parts = []
            for n in (a, None, b):
                if n is None:
                    parts.append(x)
                elif n:
                    shape = list(x.shape)
                    shape[axis] = n
                    parts.append(xp.zeros(tuple(shape), dtype=x.dtype, **_on(x)))
            x = xp.concat(parts, axis=axis)
        lr = tuple(x.shape[2 + i] - k + 1 for i, k in enumerate(cplan.kernel))
        taps = []
        for offsets in itertools.product(*(range(k) for k in cplan.kernel)):
            key = (slice(None), slice(None), *(slice(o, o + n) for o, n in zip(offsets, lr)))
            taps.append(x[key])
        cols = xp.stack(taps, axis=2)  # (B, C, taps, *L)
        B, C = cols.shape[:2]
        cols = xp.reshape(cols, (B, C * len(taps), math.prod(lr)))
        w2 = xp.reshape(weight, (weight.shape[0], C * len(taps)))
        out = xp.matmul(w2, cols)  # (B, O, P)
        if bias is not None:
            out = out + xp.reshape(bias, (-1, 1))
        out = xp.reshape(out, (*batch, weight.shape[0], *lr))
        if cplan.layout == "channels_last":
            n = out.ndim
            out = xp.permute_dims(out, (*range(nbatch), *range(nbatch + 1, n), nbatch))
        return out


backend = ArrayApiBackend()
