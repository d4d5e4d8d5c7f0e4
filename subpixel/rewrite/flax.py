"""Exact rewrites of a Flax NNX module: its strided transposed convolutions
(``nnx.ConvTranspose``) as their sub-pixel equivalents
(:class:`~subpixel.layers.flax.SubPixelConv`), in place.  (Flax has no pixel-shuffle
module of its own to replace: use :class:`~subpixel.layers.flax.PixelShuffle`.)

>>> import jax.numpy as jnp
>>> from flax import nnx
>>> from subpixel.rewrite.flax import replace_conv_transpose
>>> deconv = nnx.ConvTranspose(8, 4, (4, 4), strides=2, padding="SAME", rngs=nnx.Rngs(0))
>>> x = jnp.ones((1, 5, 5, 8))
>>> before = deconv(x)
>>> layer = replace_conv_transpose(deconv)
>>> type(layer).__name__, bool(jnp.allclose(layer(x), before, atol=1e-5))
('SubPixelConv', True)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flax import nnx

from .. import weights
from .._core import timing as _timing
from .._frameworks.flax import evaluating, model_input, put, to_numpy
from .._frameworks.flax import slots as walk_slots
from ..backends import standard_dtype
from ..layer import SubPixelConv as AgnosticSubPixelConv
from ..layers.flax import SubPixelConv, from_agnostic
from . import check_mode, example_error

__all__ = ["replace_conv_transpose", "sub_pixel_of"]


def _conv_transpose_args(m: Any) -> tuple[dict, Any]:
    """(``from_conv_transpose`` keywords, kernel) for an ``nnx.ConvTranspose``: 'SAME' and
    'VALID' are TensorFlow's rules; explicit ``(low, high)`` pads of the dilated input
    are PyTorch's ``padding = k - 1 - low``, ``output_padding = high - low``."""
    kernel = _real(m.kernel)
    d = kernel.ndim - 2
    strides = m.strides if isinstance(m.strides, (tuple, list)) else (m.strides,) * d
    if isinstance(m.padding, str):
        tf_kernel = weights.convert_layout(
            kernel,
            src="flax",
            dst="tensorflow",
            transposed=True,
            transpose_kernel=m.transpose_kernel,
        )
        return {
            "stride": tuple(strides),
            "padding": m.padding.lower(),
            "source": "tensorflow",
        }, tf_kernel
    pads = _explicit_pads(m.padding, d)
    k = kernel.shape[:d]
    torch_kernel = weights.convert_layout(
        kernel, src="flax", dst="torch", transposed=True, transpose_kernel=m.transpose_kernel
    )
    return {
        "stride": tuple(strides),
        "padding": tuple(k[i] - 1 - lo for i, (lo, _) in enumerate(pads)),
        "output_padding": tuple(hi - lo for lo, hi in pads),
    }, torch_kernel


def _real(param: Any) -> np.ndarray:
    """A parameter as NumPy, bfloat16 widened to float32 (exactly) for the conversion;
    the new module gets the original's ``param_dtype`` back."""
    return standard_dtype(to_numpy(param))


def _explicit_pads(padding: Any, d: int) -> list[tuple[int, int]]:
    """Flax's explicit padding (an int, or ``(low, high)`` pairs) as ``d`` pairs."""
    if isinstance(padding, int):
        return [(padding, padding)] * d
    return [(int(p), int(p)) if isinstance(p, int) else (int(p[0]), int(p[1])) for p in padding]


def _tuple(v: Any, d: int) -> tuple[int, ...]:
    v = 1 if v is None else v
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * d


def _replaceable(m: Any) -> bool:
    """A stride > 1 ``nnx.ConvTranspose`` whose exact sub-pixel form exists: undilated,
    unmasked, zero padding 'SAME', 'VALID' or explicit pads a PyTorch transposed
    convolution can express (``0 <= low <= k - 1``, ``0 <= high - low < stride``)."""
    if not isinstance(m, nnx.ConvTranspose) or getattr(m, "mask", None) is not None:
        return False
    k = tuple(m.kernel[...].shape[:-2])
    d = len(k)
    strides, dilation = _tuple(m.strides, d), _tuple(m.kernel_dilation, d)
    if not any(s > 1 for s in strides) or any(v != 1 for v in dilation):
        return False
    if isinstance(m.padding, str):
        return m.padding.upper() in ("SAME", "VALID")
    try:
        pads = _explicit_pads(m.padding, d)
    except (TypeError, ValueError, IndexError):
        return False
    return len(pads) == d and all(
        0 <= lo <= n - 1 and 0 <= hi - lo < s for (lo, hi), n, s in zip(pads, k, strides)
    )


def sub_pixel_of(m: Any) -> SubPixelConv:
    """The exact sub-pixel form of an ``nnx.ConvTranspose`` (stride > 1, undilated)."""
    kwargs, kernel = _conv_transpose_args(m)
    bias = None if m.bias is None else _real(m.bias)
    agnostic = AgnosticSubPixelConv.from_conv_transpose(
        kernel, bias, layout="channels_last", **kwargs
    )
    return from_agnostic(agnostic, layout="channels_last", param_dtype=m.param_dtype, dtype=m.dtype)


def replace_conv_transpose(module: Any, *, mode: str = "subpixel", example: Any = None) -> Any:
    """Swap every stride > 1 ``nnx.ConvTranspose`` below ``module`` (in place, nested
    modules and lists included) for its exact sub-pixel equivalent; returns ``module``.
    (Flax has no pixel-shuffle module of its own to replace: use
    :class:`PixelShuffle`.)

    ``mode="fastest"``: run ``module`` on ``example``, time each layer and its
    sub-pixel form (``nnx.jit``) on the layer's own input and swap only the layers
    whose sub-pixel form is faster."""
    check_mode(mode, example, ("subpixel", "fastest"))
    if not isinstance(module, nnx.Module):
        kind = type(module)
        raise TypeError(
            "`module` must be a Flax NNX module. "
            f"Received: module of type {kind.__module__}.{kind.__qualname__}"
        )
    if _replaceable(module):
        return sub_pixel_of(module)
    slots = [(parent, key, m) for parent, key, m, _ in walk_slots(module) if _replaceable(m)]
    if mode == "fastest":
        slots = _faster_as_sub_pixel(module, slots, example)
    made: dict[int, SubPixelConv] = {}  # all made first: a failure changes nothing
    for _, _, m in slots:
        if id(m) not in made:  # a module shared by two attributes stays shared
            made[id(m)] = sub_pixel_of(m)
    for parent, key, m in slots:
        put(parent, key, made[id(m)])
    return module


class _Recorder:
    """Stands in for a layer during one run and keeps its input."""

    def __init__(self, layer: Any) -> None:
        self.layer, self.inputs = layer, list[Any]()

    def __call__(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        self.inputs.append(x)
        return self.layer(x, *args, **kwargs)


def _faster_as_sub_pixel(module: Any, slots: list, example: Any) -> list:
    recorders = [_Recorder(m) for _, _, m in slots]
    with evaluating(module):  # no batch statistics change; every mode restored after
        try:
            for (parent, key, _), recorder in zip(slots, recorders):
                put(parent, key, recorder)
            module(model_input(module, example))
        except Exception as e:
            raise example_error(e, example) from None
        finally:
            for parent, key, m in slots:
                put(parent, key, m)
    run = nnx.jit(lambda layer, x: layer(x))
    chosen = []
    for slot, recorder in zip(slots, recorders):
        if not recorder.inputs:  # not reached by the example: keep the original
            continue
        x = recorder.inputs[0]
        forms = (slot[2], sub_pixel_of(slot[2]))
        if _timing.fastest([lambda f=f, x=x: run(f, x).block_until_ready() for f in forms]) == 1:
            chosen.append(slot)
    return chosen
