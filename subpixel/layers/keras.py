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
>>> SubPixelConv(3, 3, factor=2)(np.zeros((1, 8, 8, 16), "float32")).shape
(1, 16, 16, 3)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from .. import _spec, ops, weights
from .._layer_spec import LayerSpec, check_plain_conv, icnr_index
from .._spec import Layout, Order

if TYPE_CHECKING:
    from ..layer import SubPixelConv as AgnosticSubPixelConv

__all__ = ["ICNR", "PixelShuffle", "PixelUnshuffle", "SubPixelConv", "from_agnostic", "to_agnostic"]

_register = keras.saving.register_keras_serializable(package="subpixel")


def _data_format(data_format: str | None) -> Layout:
    return _spec.normalize_layout(data_format or keras.config.image_data_format())


@_register
class ICNR(keras.initializers.Initializer):
    """ICNR for a Keras conv kernel ``(*k, C_in, C_out * prod(factor))``: a base
    kernel from ``initializer`` copied to every phase (the rule of
    :func:`subpixel._layer_spec.icnr_index`)."""

    def __init__(self, factor: Any, order: Order = "CRD", initializer: Any = "he_normal") -> None:
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


@_register
class PixelShuffle(keras.layers.Layer):
    """:func:`subpixel.shuffle` as a Keras layer."""

    op = "shuffle"

    def __init__(
        self,
        factor: Any,
        spatial_dims: int | None = None,
        order: Order = "CRD",
        data_format: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        d = _spec.normalize_spatial_dims(spatial_dims, factor)
        self.factor = _spec.normalize_factor(factor, d)
        self.spatial_dims = d
        self.order = _spec.normalize_order(order)
        self.data_format = _data_format(data_format)

    def call(self, x):
        fn = ops.shuffle if self.op == "shuffle" else ops.unshuffle
        return fn(
            x,
            self.factor,
            spatial_dims=self.spatial_dims,
            layout=self.data_format,
            order=self.order,
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
        )
        return config


@_register
class PixelUnshuffle(PixelShuffle):
    """:func:`subpixel.unshuffle` as a Keras layer."""

    op = "unshuffle"


@_register
class SubPixelConv(keras.layers.Layer):
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
        kernel_size: Any,
        factor: Any,
        padding: Any = "same",
        order: Order = "CRD",
        data_format: str | None = None,
        use_bias: bool = True,
        kernel_initializer: Any = "icnr",
        bias_initializer: Any = "zeros",
        blur: bool = False,
        spatial_dims: int | None = None,
        crop: Any = None,
        activation: Any = None,
        **kwargs,
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

    filters = property(lambda self: self.spec.out_channels)
    kernel_size = property(lambda self: self.spec.kernel_size)
    factor = property(lambda self: self.spec.factor)
    padding = property(lambda self: self.spec.padding)
    order = property(lambda self: self.spec.order)
    data_format = property(lambda self: self.spec.layout)
    use_bias = property(lambda self: self.spec.bias)
    blur = property(lambda self: self.spec.blur)
    crop = property(lambda self: self.spec.crop)
    spatial_dims = property(lambda self: self.spec.spatial_dims)

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
        d = self.spatial_dims
        weight = keras.ops.transpose(self.kernel, (d + 1, d, *range(d)))  # -> (O, I, *k)
        bias = None if self.bias is None else keras.ops.add(self.bias, 0)  # a backend tensor
        y = ops.sub_pixel_conv(x, weight, bias, **self.spec.op_kwargs())
        return self.activation(y)

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
        )
        return config


# ---------------------------------------------------------------------------
# moving layers between frameworks: Keras's side
# ---------------------------------------------------------------------------


def _numpy(v: Any) -> Any:
    return None if v is None else np.asarray(keras.ops.convert_to_numpy(v))


def from_agnostic(layer: AgnosticSubPixelConv, data_format: str | None = None) -> SubPixelConv:
    """A built Keras :class:`SubPixelConv` holding a :class:`subpixel.SubPixelConv`'s
    parameters (float32), in ``data_format`` (default: the layer's layout)."""
    spec = layer.spec
    data_format = data_format or spec.layout
    k = SubPixelConv(
        spec.out_channels,
        spec.kernel_size,
        spec.factor,
        padding=spec.padding,
        order=spec.order,
        data_format=data_format,
        use_bias=spec.bias,
        blur=spec.blur,
        crop=spec.crop,
        kernel_initializer="zeros",
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
    k.set_weights([p.astype(np.float32) for p in params])
    return k


_CONVS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)


def to_agnostic(layer: Any, *, factor: Any = None, order: Order = "CRD") -> AgnosticSubPixelConv:
    """A :class:`subpixel.SubPixelConv` from a built Keras :class:`SubPixelConv`, or
    from a built plain ``keras.layers.Conv1D/2D/3D`` (stride 1, undilated,
    ungrouped, no activation) read as the LR convolution of a sub-pixel conv with
    ``factor`` and ``order``.  Anything it cannot represent exactly is refused."""
    from ..layer import SubPixelConv as Agnostic

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
    kernel = weights.convert_layout(_numpy(layer.kernel), src="keras", dst="torch")
    bias = _numpy(layer.bias) if layer.bias is not None else None
    if isinstance(layer, SubPixelConv):
        return Agnostic.from_spec(layer.spec, kernel, bias)
    check_plain_conv("Keras", factor, layer.strides, layer.dilation_rate, layer.groups)
    if layer.padding not in ("same", "valid"):
        raise ValueError(f"`layer` has padding={layer.padding!r}; only 'same' and 'valid' convert")
    return Agnostic.from_weights(
        kernel, bias, factor=factor, order=order, padding=layer.padding, layout=layer.data_format
    )
