"""Flax NNX modules over :func:`subpixel.shuffle` and :func:`subpixel.sub_pixel_conv`,
and Flax's side of moving layers between frameworks (:func:`to_agnostic`,
:func:`from_agnostic`).

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

from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .. import _spec, ops, weights
from .._layer_spec import LayerSpec, icnr_index
from .._spec import Layout, Order

if TYPE_CHECKING:
    from ..layer import SubPixelConv as AgnosticSubPixelConv

__all__ = [
    "PixelShuffle",
    "PixelUnshuffle",
    "SubPixelConv",
    "from_agnostic",
    "icnr_init",
    "to_agnostic",
]


def icnr_init(factor: Any, order: Order = "CRD", base_init: Any = None):
    """A Flax initializer: ICNR over ``base_init`` (default: Flax's conv default,
    LeCun normal) for a kernel ``(*k, C_in, C_out * prod(factor))`` (the rule of
    :func:`subpixel._layer_spec.icnr_index`)."""
    base_init = base_init or nnx.initializers.lecun_normal()
    order = _spec.normalize_order(order)

    def init(key, shape, dtype=jnp.float32):
        r = _spec.normalize_factor(factor, len(shape) - 2)
        base_channels = _spec.check_divisible_channels("shape", shape[-1], r, shape)
        base = base_init(key, (*shape[:-1], base_channels), dtype)
        return jnp.take(base, jnp.asarray(icnr_index(base_channels, r, order)), axis=-1)

    return init


class PixelShuffle(nnx.Module):
    """:func:`subpixel.shuffle` as an NNX module (default ``channels_last``)."""

    op = staticmethod(ops.shuffle)

    def __init__(
        self,
        factor: Any,
        *,
        spatial_dims: int | None = None,
        order: Order = "CRD",
        layout: Layout = "channels_last",
    ) -> None:
        d = _spec.normalize_spatial_dims(spatial_dims, factor)
        self.factor, self.spatial_dims = _spec.normalize_factor(factor, d), d
        self.order = _spec.normalize_order(order)
        self.layout = _spec.normalize_layout(layout)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.op(
            x, self.factor, spatial_dims=self.spatial_dims, layout=self.layout, order=self.order
        )


class PixelUnshuffle(PixelShuffle):
    """:func:`subpixel.unshuffle` as an NNX module."""

    op = staticmethod(ops.unshuffle)


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
        order: Order = "CRD",
        layout: Layout = "channels_last",
        use_bias: bool = True,
        kernel_init: Any = None,
        bias_init: Any = None,
        blur: bool = False,
        crop: Any = None,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        self.spec = LayerSpec.create(
            in_features,
            out_features,
            kernel_size,
            factor,
            order=order,
            padding=padding,
            crop=crop,
            blur=blur,
            bias=use_bias,
            layout=layout,
        )
        spec = self.spec
        kernel_init = kernel_init or icnr_init(spec.factor, spec.order)
        self.kernel = nnx.Param(
            kernel_init(
                rngs.params(), (*spec.kernel_size, spec.in_channels, spec.lr_channels), param_dtype
            )
        )
        bias_init = bias_init or nnx.initializers.zeros_init()
        self.bias = (
            nnx.Param(bias_init(rngs.params(), (spec.lr_channels,), param_dtype))
            if use_bias
            else None
        )

    in_features = property(lambda self: self.spec.in_channels)
    out_features = property(lambda self: self.spec.out_channels)
    kernel_size = property(lambda self: self.spec.kernel_size)
    factor = property(lambda self: self.spec.factor)
    padding = property(lambda self: self.spec.padding)
    order = property(lambda self: self.spec.order)
    layout = property(lambda self: self.spec.layout)
    blur = property(lambda self: self.spec.blur)
    crop = property(lambda self: self.spec.crop)

    def __call__(self, x: jax.Array) -> jax.Array:
        d = self.spec.spatial_dims
        weight = jnp.transpose(self.kernel[...], (d + 1, d, *range(d)))  # -> (O, I, *k)
        bias = None if self.bias is None else self.bias[...]
        return ops.sub_pixel_conv(x, weight, bias, **self.spec.op_kwargs())


# ---------------------------------------------------------------------------
# moving layers between frameworks: Flax's side
# ---------------------------------------------------------------------------


def from_agnostic(
    layer: AgnosticSubPixelConv, layout: Layout | None = None, rngs: Any = None
) -> SubPixelConv:
    """A Flax :class:`SubPixelConv` holding a :class:`subpixel.SubPixelConv`'s parameters."""
    spec = layer.spec
    module = SubPixelConv(
        spec.inputs,
        spec.out_channels,
        spec.kernel_size,
        spec.factor,
        padding=spec.padding,
        order=spec.order,
        layout=layout or spec.layout,
        use_bias=spec.bias,
        blur=spec.blur,
        crop=spec.crop,
        rngs=rngs or nnx.Rngs(0),
    )
    module.kernel[...] = jnp.asarray(weights.convert_layout(layer.weight, src="torch", dst="flax"))
    if layer.bias is not None and module.bias is not None:
        module.bias[...] = jnp.asarray(layer.bias)
    return module


def to_agnostic(module: Any) -> AgnosticSubPixelConv:
    """A :class:`subpixel.SubPixelConv` from a Flax :class:`SubPixelConv`."""
    from ..layer import SubPixelConv as Agnostic

    if not isinstance(module, SubPixelConv):
        raise ValueError(
            "`module` must be a subpixel.layers.flax.SubPixelConv. "
            f"Received: module of type {type(module).__module__}.{type(module).__qualname__}"
        )
    kernel = weights.convert_layout(np.asarray(module.kernel[...]), src="flax", dst="torch")
    bias = None if module.bias is None else np.asarray(module.bias[...])
    return Agnostic.from_spec(module.spec, kernel, bias)
