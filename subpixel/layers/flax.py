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

(Rewriting a module's transposed convolutions moved to :mod:`subpixel.rewrite.flax`;
the old names here still work for one release, with a ``DeprecationWarning``.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from .. import ops, weights
from .._core import deprecation as _deprecation
from .._core import spec as _spec
from .._core.channels import icnr_index
from .._core.layer_spec import LayerSpec, SpecFields
from .._core.spec import Crop, Factor, Layout, Order, Padding
from .._frameworks.flax import to_numpy
from ..layer import SubPixelConv as AgnosticSubPixelConv

# a Flax initializer: ``init(key, shape, dtype) -> array``
Initializer = Callable[..., jax.Array]

__all__ = [
    "PixelShuffle",
    "PixelUnshuffle",
    "SubPixelConv",
    "from_agnostic",
    "icnr_init",
    "to_agnostic",
]


def icnr_init(
    factor: Factor, order: Order = "CRD", base_init: Initializer | None = None
) -> Initializer:
    """A Flax initializer: ICNR over ``base_init`` (default: Flax's conv default,
    LeCun normal) for a kernel ``(*k, C_in, C_out * prod(factor))`` (the rule of
    :func:`subpixel._core.channels.icnr_index`)."""
    base_init = base_init or nnx.initializers.lecun_normal()
    order = _spec.normalize_order(order)

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
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
        factor: Factor,
        *,
        spatial_dims: int | None = None,
        order: Order = "CRD",
        layout: Layout = "channels_last",
    ) -> None:
        self.factor, self.spatial_dims, self.order, self.layout = _spec.shuffle_args(
            factor, spatial_dims, order, layout
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.op(
            x, self.factor, spatial_dims=self.spatial_dims, layout=self.layout, order=self.order
        )


class PixelUnshuffle(PixelShuffle):
    """:func:`subpixel.unshuffle` as an NNX module."""

    op = staticmethod(ops.unshuffle)


class SubPixelConv(SpecFields, nnx.Module):
    """LR conv with ``out_features * prod(factor)`` outputs, then the shuffle."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | tuple[int, ...],
        factor: Factor,
        *,
        padding: Padding = "same",
        order: Order = "CRD",
        layout: Layout = "channels_last",
        use_bias: bool = True,
        kernel_init: Initializer | None = None,
        bias_init: Initializer | None = None,
        blur: bool = False,
        crop: Crop = None,
        param_dtype: jax.typing.DTypeLike = jnp.float32,
        dtype: jax.typing.DTypeLike | None = None,
        rngs: nnx.Rngs,
    ) -> None:
        self.dtype = dtype  # the computation's (None: the input's and parameters')
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

    in_features = SpecFields.in_channels
    out_features = SpecFields.out_channels

    def __call__(self, x: jax.Array) -> jax.Array:
        d = self.spec.spatial_dims
        weight = jnp.transpose(self.kernel[...], (d + 1, d, *range(d)))  # -> (O, I, *k)
        bias = None if self.bias is None else self.bias[...]
        if self.dtype is not None:  # as nnx.Conv(dtype=...): compute in that dtype
            x, weight = x.astype(self.dtype), weight.astype(self.dtype)
            bias = None if bias is None else bias.astype(self.dtype)
        return ops.sub_pixel_conv(x, weight, bias, **self.spec.op_kwargs())


# ---------------------------------------------------------------------------
# moving layers between frameworks: Flax's side
# ---------------------------------------------------------------------------


def from_agnostic(
    layer: AgnosticSubPixelConv,
    layout: Layout | None = None,
    rngs: nnx.Rngs | None = None,
    param_dtype: jax.typing.DTypeLike | None = None,
    dtype: jax.typing.DTypeLike | None = None,
) -> SubPixelConv:
    """A Flax :class:`SubPixelConv` holding a :class:`subpixel.SubPixelConv`'s parameters
    (in ``param_dtype``; default: theirs), computing in ``dtype`` (default: the input's
    and parameters')."""
    spec = layer.spec
    module = SubPixelConv(
        spec.inputs,
        spec.out_channels,
        spec.kernel_size,
        spec.factor,
        layout=layout or spec.layout,
        use_bias=spec.bias,
        rngs=rngs or nnx.Rngs(0),
        param_dtype=param_dtype or layer.dtype,
        dtype=dtype,
        **spec.layer_kwargs(),
    )
    kernel = weights.convert_layout(layer.weight, src="torch", dst="flax")
    module.kernel[...] = jnp.asarray(kernel, module.kernel.dtype)
    if layer.bias is not None and module.bias is not None:
        module.bias[...] = jnp.asarray(layer.bias, module.bias.dtype)
    return module


def to_agnostic(module: nnx.Module) -> AgnosticSubPixelConv:
    """A :class:`subpixel.SubPixelConv` from a Flax :class:`SubPixelConv`."""
    if not isinstance(module, SubPixelConv):
        raise ValueError(
            "`module` must be a subpixel.layers.flax.SubPixelConv. "
            f"Received: module of type {type(module).__module__}.{type(module).__qualname__}"
        )
    kernel = weights.convert_layout(to_numpy(module.kernel), src="flax", dst="torch")
    return AgnosticSubPixelConv.from_spec(module.spec, kernel, to_numpy(module.bias))


# the spellings of subpixel 0.2, for one release
__getattr__ = _deprecation.moved_names(
    __name__,
    {
        "replace_conv_transpose": "subpixel.rewrite.flax:replace_conv_transpose",
        "sub_pixel_of": "subpixel.rewrite.flax:sub_pixel_of",
    },
)
