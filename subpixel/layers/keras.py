"""Keras 3 layers over :func:`subpixel.shuffle`; the same numbers on every Keras
backend (TensorFlow, JAX, PyTorch), unlike ``keras.ops.depth_to_space`` whose
channels_first order depends on the backend.

Kernels use Keras's conv layout ``(*kernel, C_in, C_out * prod(factor))``; the
output channels are in ``order``.  Layers serialise with ``get_config`` and
``.keras`` files (registered under the package name ``subpixel``).

>>> import numpy as np
>>> from subpixel.layers.keras import SubPixelConv
>>> SubPixelConv(3, 3, factor=2)(np.zeros((1, 8, 8, 16), "float32")).shape
(1, 16, 16, 3)
"""

from __future__ import annotations

import math
from typing import Any

import keras

from .. import _spec, ops

__all__ = ["ICNR", "PixelShuffle", "PixelUnshuffle", "SubPixelConv"]

_register = keras.saving.register_keras_serializable(package="subpixel")


def _data_format(data_format: str | None) -> str:
    return _spec.normalize_layout(data_format or keras.config.image_data_format())


@_register
class ICNR(keras.initializers.Initializer):
    """ICNR for a Keras conv kernel ``(*k, C_in, C_out * prod(factor))``: a base
    kernel from ``initializer`` copied to every phase (CRD: each filter repeated
    consecutively; DCR: the base tiled)."""

    def __init__(self, factor: Any, order: str = "CRD", initializer: Any = "he_normal") -> None:
        self.factor = factor
        self.order = _spec.normalize_order(order)
        self.initializer = keras.initializers.get(initializer)

    def __call__(self, shape, dtype=None):
        d = len(shape) - 2
        r = _spec.normalize_factor(self.factor, d)
        R = math.prod(r)
        base_channels = _spec.check_divisible_channels("shape", shape[-1], r, shape)
        base = self.initializer((*shape[:-1], base_channels), dtype=dtype)
        if self.order == "CRD":
            full = keras.ops.repeat(base, R, axis=-1)
        else:
            full = keras.ops.tile(base, [1] * (len(shape) - 1) + [R])
        return keras.ops.copy(full)  # PyTorch's repeat/tile may return views of `base`

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
        order: str = "CRD",
        data_format: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.factor = list(factor) if isinstance(factor, (tuple, list)) else factor
        self.spatial_dims = spatial_dims
        self.order = _spec.normalize_order(order)
        self.data_format = _data_format(data_format)

    def _factor(self):
        return tuple(self.factor) if isinstance(self.factor, list) else self.factor

    def call(self, x):
        fn = ops.shuffle if self.op == "shuffle" else ops.unshuffle
        return fn(
            x,
            self._factor(),
            spatial_dims=self.spatial_dims,
            layout=self.data_format,
            order=self.order,
        )

    def compute_output_shape(self, input_shape):
        plan = _spec.make_plan(
            self.op, input_shape, self._factor(), self.spatial_dims, self.data_format, self.order
        )
        return plan.out_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            factor=self.factor,
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
    """

    def __init__(
        self,
        filters: int,
        kernel_size: Any,
        factor: Any,
        padding: Any = "same",
        order: str = "CRD",
        data_format: str | None = None,
        use_bias: bool = True,
        kernel_initializer: Any = "icnr",
        bias_initializer: Any = "zeros",
        blur: bool = False,
        spatial_dims: int | None = None,
        crop: Any = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if spatial_dims is None:
            spatial_dims = len(kernel_size) if isinstance(kernel_size, (tuple, list)) else 2
        self.spatial_dims = _spec.normalize_spatial_dims(spatial_dims, None)
        self.filters = filters
        self.kernel_size = _spec.normalize_factor(kernel_size, self.spatial_dims, "kernel_size")
        self.factor = _spec.normalize_factor(factor, self.spatial_dims)
        self.padding = _spec.normalize_padding(padding, self.kernel_size)
        self.order = _spec.normalize_order(order)
        self.data_format = _data_format(data_format)
        self.use_bias = use_bias
        if kernel_initializer == "icnr":
            kernel_initializer = ICNR(self.factor, self.order)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.blur = blur
        self.crop = _spec.normalize_crop(crop, self.spatial_dims)

    def build(self, input_shape) -> None:
        c_in = input_shape[1] if self.data_format == "channels_first" else input_shape[-1]
        lr = self.filters * math.prod(self.factor)
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
        channels_first = self.data_format == "channels_first"
        if any(a or b for a, b in self.padding):
            spatial = [list(p) for p in self.padding]
            pads = [[0, 0], [0, 0], *spatial] if channels_first else [[0, 0], *spatial, [0, 0]]
            x = keras.ops.pad(x, pads)
        kernel = keras.ops.cast(self.kernel, self.compute_dtype)
        y = keras.ops.conv(x, kernel, padding="valid", data_format=self.data_format)
        if self.bias is not None:
            bias = keras.ops.cast(self.bias, self.compute_dtype)
            y = y + keras.ops.reshape(bias, (-1,) + (1,) * d if channels_first else (-1,))
        y = ops.shuffle(y, self.factor, spatial_dims=d, layout=self.data_format, order=self.order)
        if self.blur:
            y = ops.blur(y, spatial_dims=d, layout=self.data_format)
        if any(a or b for a, b in self.crop):
            first = 2 if channels_first else 1
            key = [slice(None)] * (first + d + (0 if channels_first else 1))
            for k, (a, b) in enumerate(self.crop):
                key[first + k] = slice(a, -b if b else None)
            y = y[tuple(key)]
        return y

    def compute_output_shape(self, input_shape):
        plan = _spec.make_conv_plan(
            input_shape,
            (self.filters * math.prod(self.factor), None, *self.kernel_size),
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
        )
        return config
