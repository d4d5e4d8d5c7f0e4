"""Flax NNX modules over :func:`subpixel.shuffle` and :func:`subpixel.sub_pixel_conv`.

The kernel uses Flax's conv layout ``(*kernel, in_features, out_features * prod(factor))``;
data default to ``channels_last`` as everywhere in Flax.

>>> import jax.numpy as jnp
>>> from flax import nnx
>>> from subpixel.layers.flax import SubPixelConv
>>> layer = SubPixelConv(16, 3, (3, 3), factor=2, rngs=nnx.Rngs(0))
>>> layer(jnp.zeros((1, 8, 8, 16))).shape
(1, 16, 16, 3)
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from .. import _spec, ops

__all__ = ["PixelShuffle", "PixelUnshuffle", "SubPixelConv", "icnr_init"]


def icnr_init(factor: Any, order: str = "CRD", base_init: Any = None):
    """A Flax initializer: ICNR over ``base_init`` (default: Flax's conv default,
    LeCun normal) for a kernel ``(*k, C_in, C_out * prod(factor))``."""
    base_init = base_init or nnx.initializers.lecun_normal()
    order = _spec.normalize_order(order)

    def init(key, shape, dtype=jnp.float32):
        R = math.prod(_spec.normalize_factor(factor, len(shape) - 2))
        base = base_init(key, (*shape[:-1], shape[-1] // R), dtype)
        return (
            jnp.repeat(base, R, axis=-1)
            if order == "CRD"
            else jnp.tile(base, (1,) * (len(shape) - 1) + (R,))
        )

    return init


class PixelShuffle(nnx.Module):
    """:func:`subpixel.shuffle` as an NNX module (default ``channels_last``)."""

    def __init__(
        self,
        factor: Any,
        *,
        spatial_dims: int | None = None,
        order: str = "CRD",
        layout: str = "channels_last",
    ) -> None:
        self.factor, self.spatial_dims = factor, spatial_dims
        self.order = _spec.normalize_order(order)
        self.layout = _spec.normalize_layout(layout)

    def __call__(self, x: jax.Array) -> jax.Array:
        return ops.shuffle(
            x, self.factor, spatial_dims=self.spatial_dims, layout=self.layout, order=self.order
        )


class PixelUnshuffle(PixelShuffle):
    """:func:`subpixel.unshuffle` as an NNX module."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return ops.unshuffle(
            x, self.factor, spatial_dims=self.spatial_dims, layout=self.layout, order=self.order
        )


class SubPixelConv(nnx.Module):
    """LR conv with ``out_features * prod(factor)`` outputs, then the shuffle."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: Any,
        factor: Any,
        *,
        padding: Any = "same",
        order: str = "CRD",
        layout: str = "channels_last",
        use_bias: bool = True,
        kernel_init: Any = None,
        bias_init: Any = None,
        blur: bool = False,
        crop: Any = None,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        d = len(kernel_size) if isinstance(kernel_size, (tuple, list)) else 2
        self.kernel_size = _spec.normalize_factor(kernel_size, d, "kernel_size")
        self.factor = _spec.normalize_factor(factor, d)
        self.padding = _spec.normalize_padding(padding, self.kernel_size)
        self.order = _spec.normalize_order(order)
        self.layout = _spec.normalize_layout(layout)
        self.in_features, self.out_features, self.blur = in_features, out_features, blur
        self.crop = _spec.normalize_crop(crop, d)
        lr = out_features * math.prod(self.factor)
        kernel_init = kernel_init or icnr_init(self.factor, self.order)
        self.kernel = nnx.Param(
            kernel_init(rngs.params(), (*self.kernel_size, in_features, lr), param_dtype)
        )
        bias_init = bias_init or nnx.initializers.zeros_init()
        self.bias = nnx.Param(bias_init(rngs.params(), (lr,), param_dtype)) if use_bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        d = len(self.kernel_size)
        weight = jnp.transpose(self.kernel[...], (d + 1, d, *range(d)))  # -> (O, I, *k)
        return ops.sub_pixel_conv(
            x,
            weight,
            None if self.bias is None else self.bias[...],
            factor=self.factor,
            padding=self.padding,
            spatial_dims=d,
            layout=self.layout,
            order=self.order,
            blur=self.blur,
            crop=self.crop,
        )
