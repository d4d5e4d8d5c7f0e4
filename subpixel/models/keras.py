"""The bundled ESPCN as a Keras model (what :meth:`subpixel.models.ESPCN.to_keras`
gives, and ``subpixel export`` converts to LiteRT/TFLite)."""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np

from .. import weights
from .._core.lowering import Lowering
from .._core.spec import Order
from ..layers.keras import SubPixelConv

__all__ = ["espcn"]


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
