"""The bundled ESPCN as a Keras model (what :meth:`subpixel.models.ESPCN.to_keras`
gives, and ``subpixel export`` converts to LiteRT/TFLite), and its form for a
full-integer conversion (:func:`espcn_int8`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import keras
import numpy as np

from .. import weights
from .._core.lowering import Lowering
from .._core.spec import Order
from ..layers.keras import PixelShuffle, SubPixelConv

__all__ = ["espcn", "espcn_int8"]


class Group(Protocol):
    """What :func:`espcn_int8` reads of a group of channels quantized together
    (:class:`subpixel.models.calibration.Group` gives it)."""

    @property
    def channels(self) -> tuple[int, ...]: ...
    @property
    def low(self) -> float: ...
    @property
    def high(self) -> float: ...


def espcn(
    params: Mapping[str, np.ndarray],
    scale: int,
    mean: float,
    *,
    lowering: Lowering = "auto",
    order: Order = "CRD",
) -> keras.Model:
    """ESPCN holding ``params`` (``conv{1,2,3}.{weight,bias}``, PyTorch layout, the last
    layer's channels in ``order``) as a Keras model in NHWC, its last layer a
    :class:`~subpixel.layers.keras.SubPixelConv` with ``lowering`` and ``order`` (the
    same numbers in either): ``(N, H, W, 1)`` luminance in [0, 1] in,
    ``(N, H * scale, W * scale, 1)`` out."""
    inputs = keras.Input((None, None, 1))
    h = keras.layers.Rescaling(1.0, offset=-mean)(inputs)
    conv1 = keras.layers.Conv2D(64, 5, padding="same", activation="tanh")
    conv2 = keras.layers.Conv2D(32, 3, padding="same", activation="tanh")
    head = SubPixelConv(
        1, 3, scale, padding=1, order=order, lowering=lowering, data_format="channels_last"
    )
    h = head(conv2(conv1(h)))
    outputs = keras.layers.Rescaling(1.0, offset=mean)(h)
    for layer, name in ((conv1, "conv1"), (conv2, "conv2"), (head, "conv3")):
        kernel = weights.convert_layout(params[f"{name}.weight"], src="torch", dst="keras")
        layer.set_weights([kernel, params[f"{name}.bias"]])
    return keras.Model(inputs, outputs)


class _Range(keras.layers.Layer):
    """Values held on 256 levels from ``low`` to ``high`` (a fake quantization, which
    TensorFlow's LiteRT converter takes as the tensor's int8 range); the identity
    when ``quantize`` is off."""

    def __init__(self, low: float, high: float, quantize: bool = True, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.low, self.high, self.quantize = float(low), float(high), quantize

    def call(self, x):
        if not self.quantize:
            return x
        return keras.quantizers.fake_quant_with_min_max_vars(x, self.low, self.high, num_bits=8)


class _PadWith(keras.layers.Layer):
    """``pad`` pixels of the constant ``value`` around the spatial axes (NHWC)."""

    def __init__(self, pad: int, value: float, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.pad, self.value = int(pad), float(value)

    def call(self, x):
        p = self.pad
        return keras.ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], constant_values=self.value)


def espcn_int8(
    params: Mapping[str, np.ndarray],
    scale: int,
    mean: float,
    conv1: Sequence[Group],
    conv2: Sequence[Group],
    *,
    lowering: Lowering = "auto",
    quantize: bool = True,
) -> keras.Model:
    """ESPCN (``params`` in PyTorch layout, CRD) rewritten for LiteRT's full-integer
    quantization, the same function in float: ``(N, H, W, 1)`` luminance in [0, 1]
    in, ``(N, H * scale, W * scale, 1)`` out (held on [0, 1] when ``quantize``).

    - The input and output are held on [0, 1] (the 8-bit grid ``k / 255``): every
      8-bit luminance exactly, no bright pixel clipped, the output's rounding the one
      an 8-bit image makes anyway.
    - ``mean`` is folded into the first convolution's bias (its border padded with
      ``mean``, as ``x - mean`` padded with zeros) and the last one's: no int8 ``ADD``
      that would round the input again (``x - 0.5`` is half a level off the grid).
    - Each hidden layer is one convolution per :class:`~subpixel.models.calibration.Group`
      of its channels, each with that group's range before ``tanh``, then
      concatenated (exact: every ``tanh`` output is on LiteRT's fixed k / 128 grid).

    ``quantize=False`` leaves the ranges out (the float function, for checks)."""
    w1, w2, w3 = (params[f"conv{i}.weight"] for i in (1, 2, 3))
    b1 = params["conv1.bias"] - mean * w1.sum(axis=(1, 2, 3))
    b2, b3 = params["conv2.bias"], params["conv3.bias"] + mean
    inputs = keras.Input((None, None, 1))
    h = _Range(0.0, 1.0, quantize)(inputs)
    h = _PadWith(2, mean)(h)
    assigned: list[tuple[keras.layers.Layer, list[np.ndarray]]] = []
    previous = None  # the order of the previous layer's channels after concatenation
    for groups, weight, bias, padding in ((conv1, w1, b1, "valid"), (conv2, w2, b2, "same")):
        branches = []
        for group in groups:
            idx = np.asarray(group.channels)
            w = weight[idx] if previous is None else weight[idx][:, previous]
            conv = keras.layers.Conv2D(len(idx), w.shape[-1], padding=padding)
            z = _Range(group.low, group.high, quantize)(conv(h))
            branches.append(keras.layers.Activation("tanh")(z))
            assigned.append(
                (conv, [weights.convert_layout(w, src="torch", dst="keras"), bias[idx]])
            )
        h = keras.layers.Concatenate()(branches) if len(branches) > 1 else branches[0]
        previous = np.concatenate([np.asarray(g.channels) for g in groups])
    # the last layer as its convolution and its shuffle, the range held between them
    # too (a lowering whose shuffle is an op of its own, a one-hot transposed
    # convolution, then moves values already on the output's grid); DCR channels, so
    # that the native lowering needs no gather
    head = keras.layers.Conv2D(scale * scale, 3, padding="same")
    h = _Range(0.0, 1.0, quantize)(head(h))
    h = PixelShuffle(scale, order="DCR", lowering=lowering, data_format="channels_last")(h)
    outputs = _Range(0.0, 1.0, quantize)(h)
    w3, b3 = (
        weights.reorder_channels(a, (scale, scale), src="CRD", dst="DCR")
        for a in (w3[:, previous], b3)
    )
    assigned.append((head, [weights.convert_layout(w3, src="torch", dst="keras"), b3]))
    for layer, values in assigned:
        layer.set_weights(values)
    return keras.Model(inputs, outputs)
