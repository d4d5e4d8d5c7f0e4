"""Keras 3 layers over :func:`subpixel.shuffle` and :func:`subpixel.sub_pixel_conv`;
the same numbers on every Keras backend (TensorFlow, JAX, PyTorch), unlike
``keras.ops.depth_to_space`` whose channels_first order depends on the backend.
Also Keras's side of moving layers between frameworks (:func:`to_agnostic`,
:func:`from_agnostic`).

Kernels use Keras's conv layout ``(*kernel, C_in, C_out * prod(factor))``; the
output channels are in ``order``.  Layers serialise with ``get_config`` and
``.keras`` files (registered under the package name ``subpixel``).

>>> import numpy as np
>>> from subpixel.layers.keras import SubPixelConv
>>> tuple(SubPixelConv(3, 3, factor=2)(np.zeros((1, 8, 8, 16), "float32")).shape)
(1, 16, 16, 3)

(Rewriting a model's layers moved to :mod:`subpixel.rewrite.keras`; the bundled ESPCN
as a model to :meth:`subpixel.models.ESPCN.to_keras`.  The old names here still work
for one release, with a ``DeprecationWarning``.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

import keras

from .. import ops, weights
from .._core import deprecation as _deprecation
from .._core import spec as _spec
from .._core.channels import icnr_index
from .._core.layer_spec import LayerSpec, SpecFields, check_plain_conv
from .._core.lowering import Lowering, check_native, normalize_lowering
from .._core.spec import Crop, Factor, Layout, Order, Padding
from .._frameworks.keras import to_numpy
from ..layer import SubPixelConv as AgnosticSubPixelConv
from . import _keras_lowering

# a Keras initializer: its name, a config, an instance, or a function (shape, dtype)
Initializer: TypeAlias = "str | dict | keras.initializers.Initializer | Callable[..., object]"

__all__ = [
    "ICNR",
    "PixelShuffle",
    "PixelUnshuffle",
    "SubPixelConv",
    "from_agnostic",
    "to_agnostic",
]

_register = keras.saving.register_keras_serializable(package="subpixel")


def _data_format(data_format: str | None) -> Layout:
    return _spec.normalize_layout(data_format or keras.config.image_data_format())


@_register
class ICNR(keras.initializers.Initializer):
    """ICNR for a Keras conv kernel ``(*k, C_in, C_out * prod(factor))``: a base
    kernel from ``initializer`` copied to every phase (the rule of
    :func:`subpixel._core.channels.icnr_index`)."""

    def __init__(
        self, factor: Factor, order: Order = "CRD", initializer: Initializer = "he_normal"
    ) -> None:
        self.factor = factor
        self.order = _spec.normalize_order(order)
        self.initializer = keras.initializers.get(initializer)

    def __call__(self, shape, dtype=None):
        r = _spec.normalize_factor(self.factor, len(shape) - 2)
        base_channels = _spec.check_divisible_channels("shape", shape[-1], r, shape)
        base = self.initializer((*shape[:-1], base_channels), dtype=dtype)
        index = icnr_index(base_channels, r, self.order)
        return keras.ops.take(base, keras.ops.convert_to_tensor(index), axis=-1)

    def get_config(self) -> dict:
        return {
            "factor": self.factor,
            "order": self.order,
            "initializer": keras.initializers.serialize(self.initializer),
        }


def _check_lowering(lowering: Lowering, factor: tuple[int, ...], data_format: str) -> Lowering:
    lowering = normalize_lowering(lowering)
    check_native(lowering, factor)
    if lowering == "native" and data_format != "channels_last":
        raise ValueError(
            "`lowering='native'` needs data_format='channels_last' (TensorFlow's depth_to_space "
            f"and TFLite's DEPTH_TO_SPACE are NHWC). Received: data_format={data_format!r}"
        )
    return lowering


@_register
class PixelShuffle(keras.layers.Layer):
    """:func:`subpixel.shuffle` as a Keras layer.  ``lowering``: how a TFLite/LiteRT
    conversion writes it (``"auto"``, ``"native"``, ``"reshape"``, ``"flat"``,
    ``"conv"``; docs/deploy.md); the numbers are the same in every lowering."""

    op = "shuffle"

    def __init__(
        self,
        factor: Factor,
        spatial_dims: int | None = None,
        order: Order = "CRD",
        data_format: Layout | None = None,
        lowering: Lowering = "auto",
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        self.factor, self.spatial_dims, self.order, self.data_format = _spec.shuffle_args(
            factor, spatial_dims, order, data_format or keras.config.image_data_format()
        )
        self.lowering = _check_lowering(lowering, self.factor, self.data_format)

    def call(self, x, mask=None):  # `mask`: accepted (and ignored) where a Lambda stood
        return _keras_lowering.rearrange(
            x, self.op, self.factor, self.spatial_dims, self.order, self.data_format, self.lowering
        )

    def compute_output_shape(self, input_shape):
        plan = _spec.make_plan(
            self.op, input_shape, self.factor, self.spatial_dims, self.data_format, self.order
        )
        return plan.out_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            factor=list(self.factor),
            spatial_dims=self.spatial_dims,
            order=self.order,
            data_format=self.data_format,
            lowering=self.lowering,
        )
        return config


@_register
class PixelUnshuffle(PixelShuffle):
    """:func:`subpixel.unshuffle` as a Keras layer."""

    op = "unshuffle"


@_register
class SubPixelConv(SpecFields, keras.layers.Layer):
    """Sub-pixel convolution: LR conv with ``filters * prod(factor)`` outputs, then
    the shuffle.  ``kernel_initializer="icnr"`` (default) is ICNR over He normal.

    Args:
        filters: output channels after the shuffle.
        kernel_size: int or one per spatial dim (their count is the layer's rank).
        factor: int or one per spatial dim.
        padding: ``"same"``, ``"valid"``, ints or ``(before, after)`` pairs.
        order: ``"CRD"`` or ``"DCR"``; data_format: Keras's (default channels_last).
        blur: replication pad + 2x2 average after the shuffle.
        crop: pixels removed from the output, ``(before, after)`` per spatial dim.
        activation: applied to the layer's output, as in Keras's conv layers.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, ...],
        factor: Factor,
        padding: Padding = "same",
        order: Order = "CRD",
        data_format: Layout | None = None,
        use_bias: bool = True,
        kernel_initializer: Initializer = "icnr",
        bias_initializer: Initializer = "zeros",
        blur: bool = False,
        spatial_dims: int | None = None,
        crop: Crop = None,
        activation: str | Callable[..., object] | None = None,
        lowering: Lowering = "auto",
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        self.spec = LayerSpec.create(
            None,
            filters,
            kernel_size,
            factor,
            spatial_dims=spatial_dims,
            order=order,
            padding=padding,
            crop=crop,
            blur=blur,
            bias=use_bias,
            layout=_data_format(data_format),
        )
        if kernel_initializer == "icnr":
            kernel_initializer = ICNR(self.spec.factor, self.spec.order)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.activation = keras.activations.get(activation)
        self.lowering = _check_lowering(lowering, self.spec.factor, self.spec.layout)

    filters = SpecFields.out_channels
    data_format = SpecFields.layout

    @property
    def use_bias(self) -> bool:
        return self.spec.bias

    @property
    def spatial_dims(self) -> int:
        return self.spec.spatial_dims

    def build(self, input_shape) -> None:
        c_in = input_shape[1] if self.data_format == "channels_first" else input_shape[-1]
        self.spec = self.spec.replace(in_channels=c_in)
        lr = self.spec.lr_channels
        self.kernel = self.add_weight(
            name="kernel", shape=(*self.kernel_size, c_in, lr), initializer=self.kernel_initializer
        )
        self.bias = (
            self.add_weight(name="bias", shape=(lr,), initializer=self.bias_initializer)
            if self.use_bias
            else None
        )

    def call(self, x):
        spec = self.spec
        d = spec.spatial_dims
        if self.lowering == "auto" and not _keras_lowering.tracing_for_tflite():
            weight = keras.ops.transpose(self.kernel, (d + 1, d, *range(d)))  # -> (O, I, *k)
            bias = None if self.bias is None else keras.ops.add(self.bias, 0)  # a backend tensor
            return self.activation(ops.sub_pixel_conv(x, weight, bias, **spec.op_kwargs()))
        return self.activation(
            _keras_lowering.sub_pixel_conv(x, self.kernel, self.bias, spec, self.lowering)
        )

    def compute_output_shape(self, input_shape):
        plan = _spec.make_conv_plan(
            input_shape,
            (self.spec.lr_channels, None, *self.kernel_size),
            None,
            self.factor,
            self.padding,
            self.spatial_dims,
            self.data_format,
            self.order,
            crop=self.crop,
            check_channels=False,
        )
        return plan.out_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=list(self.kernel_size),
            factor=list(self.factor),
            padding=[list(p) for p in self.padding],
            order=self.order,
            data_format=self.data_format,
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            blur=self.blur,
            spatial_dims=self.spatial_dims,
            crop=[list(p) for p in self.crop],
            activation=keras.activations.serialize(self.activation),
            lowering=self.lowering,
        )
        return config


# ---------------------------------------------------------------------------
# moving layers between frameworks: Keras's side
# ---------------------------------------------------------------------------


def from_agnostic(
    layer: AgnosticSubPixelConv,
    data_format: Layout | None = None,
    dtype: str | keras.DTypePolicy | None = None,
) -> SubPixelConv:
    """A built Keras :class:`SubPixelConv` holding a :class:`subpixel.SubPixelConv`'s
    parameters, in ``data_format`` (default: the layer's layout) and ``dtype`` (a
    Keras dtype or policy; default: the parameters' dtype)."""
    spec = layer.spec
    data_format = data_format or spec.layout
    k = SubPixelConv(
        spec.out_channels,
        spec.kernel_size,
        spec.factor,
        data_format=data_format,
        use_bias=spec.bias,
        kernel_initializer="zeros",
        dtype=dtype or layer.dtype.name,
        **spec.layer_kwargs(),
    )
    spatial = (None,) * spec.spatial_dims
    k.build(
        (None, spec.inputs, *spatial)
        if data_format == "channels_first"
        else (None, *spatial, spec.inputs)
    )
    params = [weights.convert_layout(layer.weight, src="torch", dst="keras")]
    if layer.bias is not None:
        params.append(layer.bias)
    k.set_weights([p.astype(k.variable_dtype) for p in params])
    return k


_CONVS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)


def to_agnostic(
    layer: keras.layers.Layer, *, factor: Factor | None = None, order: Order = "CRD"
) -> AgnosticSubPixelConv:
    """A :class:`subpixel.SubPixelConv` from a built Keras :class:`SubPixelConv`, or
    from a built plain ``keras.layers.Conv1D/2D/3D`` (stride 1, undilated,
    ungrouped, no activation) read as the LR convolution of a sub-pixel conv with
    ``factor`` and ``order``.  Anything it cannot represent exactly is refused."""
    if not isinstance(layer, (SubPixelConv, *_CONVS)):
        if isinstance(layer, keras.layers.Layer) and "Transpose" in type(layer).__name__:
            raise ValueError(
                f"`layer` is a transposed convolution ({type(layer).__name__}): use "
                "SubPixelConv.from_conv_transpose(kernel, bias, stride=..., padding=..., "
                "source='tensorflow')"
            )
        raise ValueError(
            "`layer` must be a subpixel.layers.keras.SubPixelConv or a keras.layers.Conv1D/2D/3D. "
            f"Received: layer of type {type(layer).__module__}.{type(layer).__qualname__}"
        )
    if not layer.built:
        raise ValueError(f"`layer` {layer.name!r} is not built yet: call it on an input first")
    if layer.activation is not keras.activations.linear:
        raise ValueError(
            f"`layer` {layer.name!r} applies activation {layer.activation.__name__!r}, which a "
            "framework-free SubPixelConv does not: apply it after the converted layer"
        )
    kernel = weights.convert_layout(to_numpy(layer.kernel), src="keras", dst="torch")
    bias = to_numpy(layer.bias) if layer.bias is not None else None
    if isinstance(layer, SubPixelConv):
        return AgnosticSubPixelConv.from_spec(layer.spec, kernel, bias)
    check_plain_conv("Keras", factor, layer.strides, layer.dilation_rate, layer.groups)
    if layer.padding not in ("same", "valid"):
        raise ValueError(f"`layer` has padding={layer.padding!r}; only 'same' and 'valid' convert")
    return AgnosticSubPixelConv.from_weights(
        kernel, bias, factor=factor, order=order, padding=layer.padding, layout=layer.data_format
    )


# the spellings of subpixel 0.2, for one release
__getattr__ = _deprecation.moved_names(
    __name__,
    {
        "from_espcn": "subpixel.models.espcn:ESPCN.to_keras",
        "replace_conv_transpose": "subpixel.rewrite.keras:replace_conv_transpose",
        "replace_pixel_shuffle": "subpixel.rewrite.keras:replace_pixel_shuffle",
        "shuffle_op": "subpixel.rewrite.keras:shuffle_op",
        "sub_pixel_of": "subpixel.rewrite.keras:sub_pixel_of",
    },
)
