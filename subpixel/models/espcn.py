"""ESPCN (Shi et al. 2016, arXiv 1609.05158): 5x5/64 and 3x3/32 tanh convolutions
in LR space, then a 3x3 sub-pixel convolution to ``scale**2`` channels and the
shuffle (CRD), on the luminance channel (:mod:`.tiling` runs it over an image; chroma
is upscaled bicubically).

The weights ship as ``espcn_x{2,3,4}.safetensors`` next to this file, trained by
``examples/train_espcn.py``; the forward pass runs on any backend that has a ``tanh``.

>>> import numpy as np
>>> from subpixel.models import ESPCN
>>> model = ESPCN.pretrained(3)
>>> model(np.zeros((1, 1, 8, 8), np.float32)).shape
(1, 1, 24, 24)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from .. import ops, weights
from .._core import deprecation as _deprecation
from .._core import files as _files
from .._core import spec as _spec
from .._core.lowering import Lowering
from .._core.spec import Order
from ..backends import backend_for
from . import field as _field

if TYPE_CHECKING:
    import keras
    from torch import nn

__all__ = ["ESPCN", "RADIUS", "SAMPLE", "SCALES"]

SCALES = (2, 3, 4)
RADIUS = 4  # LR pixels of context an output pixel sees: 2 + 1 + 1
_DIR = Path(__file__).parent
SAMPLE = _DIR / "sample.png"  # a 300x444 crop of the held-out "chelsea" (docs/models.md)
A = TypeVar("A")


@runtime_checkable
class Elementwise(Protocol[A]):
    """What the network asks of a backend beside the operations' contract (the
    backends of :mod:`subpixel.backends` all have it)."""

    def tanh(self, x: A) -> A: ...


def _conv(x: Any, weight: Any, bias: Any, padding: int) -> Any:
    """A plain stride-1 convolution on any backend (the LR half of sub_pixel_conv)."""
    backend = backend_for(x)
    cplan = _spec.make_conv_plan(
        backend.shape(x), backend.shape(weight), backend.shape(bias), 1, padding
    )
    return backend.conv(x, weight, bias, cplan)


class ESPCN:
    """The network; ``params`` maps conv{1,2,3}.{weight,bias} to NumPy arrays in
    PyTorch layout; ``metadata["input_mean"]`` is subtracted from the input and
    added to the output (the training script centres luminance for tanh).

    A luminance model (``channels`` 1) whose blocks need :data:`RADIUS` pixels of
    context by construction: ``grid`` is :data:`~subpixel.models.field.BLOCK` blocks
    with that context (:mod:`.tiling`)."""

    channels = 1
    grid = _field.Grid(_field.BLOCK, RADIUS, 1)

    def __init__(
        self, params: dict[str, np.ndarray], scale: int, metadata: dict[str, str] | None = None
    ) -> None:
        self.scale = int(scale)
        self.params = {k: np.asarray(v, np.float32) for k, v in params.items()}
        self.metadata = metadata or {}
        self.mean = float(self.metadata.get("input_mean", 0.0))  # subtracted in, added out
        expected = {
            "conv1.weight": (64, 1, 5, 5),
            "conv2.weight": (32, 64, 3, 3),
            "conv3.weight": (self.scale**2, 32, 3, 3),
        }
        for key, shape in expected.items():
            if self.params.get(key, np.empty(0)).shape != shape:
                raise ValueError(f"ESPCN x{scale}: `{key}` must have shape {shape}")
        self._on: dict[tuple, dict[str, Any]] = {}
        self.name = f"ESPCN x{self.scale}"

    @classmethod
    def pretrained(cls, scale: int) -> ESPCN:
        if scale not in SCALES:
            raise ValueError(f"`scale` must be one of {SCALES}. Received: scale={scale!r}")
        tensors, metadata = _files.read_all(_DIR / f"espcn_x{scale}.safetensors")
        return cls(tensors, scale, metadata)

    def head_params(self, order: Order = "CRD") -> dict[str, np.ndarray]:
        """The parameters with the last layer's channels in ``order`` (trained as CRD)."""
        if order == "CRD":
            return dict(self.params)
        r = (self.scale, self.scale)
        reordered = {
            k: weights.reorder_channels(self.params[k], r, src="CRD", dst="DCR")
            for k in ("conv3.weight", "conv3.bias")
        }
        return {**self.params, **reordered}

    def to_torch(self, lowering: Lowering = "auto", order: Order = "CRD") -> nn.Sequential:
        """This network as a PyTorch module, its last layer a ``SubPixelConv2d`` with
        ``lowering`` and ``order`` (:func:`subpixel.models.torch.espcn`)."""
        from . import torch as torch_models

        params = self.head_params(order)
        return torch_models.espcn(params, self.scale, self.mean, lowering=lowering, order=order)

    def to_keras(self, lowering: Lowering = "auto", order: Order = "CRD") -> keras.Model:
        """This network as a Keras model, NHWC, its last layer a Keras ``SubPixelConv``
        with ``lowering`` and ``order`` (:func:`subpixel.models.keras.espcn`)."""
        from . import keras as keras_models

        params = self.head_params(order)
        return keras_models.espcn(params, self.scale, self.mean, lowering=lowering, order=order)

    def _params_like(self, x: Any) -> dict[str, Any]:
        backend = backend_for(x)
        key = (backend.name, backend.device(x), backend.dtype_name(x))
        if key not in self._on:
            self._on[key] = {k: backend.from_numpy(v, like=x) for k, v in self.params.items()}
        return self._on[key]

    def __call__(self, y: Any) -> Any:
        """``(N, 1, H, W)`` luminance in [0, 1] -> ``(N, 1, H * scale, W * scale)``."""
        p = self._params_like(y)
        backend = backend_for(y)
        if not isinstance(backend, Elementwise):
            raise TypeError(f"the {backend.name} backend has no tanh: ESPCN cannot run on it")
        tanh = backend.tanh
        h = tanh(_conv(y - self.mean, p["conv1.weight"], p["conv1.bias"], 2))
        h = tanh(_conv(h, p["conv2.weight"], p["conv2.bias"], 1))
        out = ops.sub_pixel_conv(
            h, p["conv3.weight"], p["conv3.bias"], factor=self.scale, padding=1
        )
        return out + self.mean


# the spellings of subpixel 0.2, for one release (running a model over images moved to
# .tiling)
_TILING = (
    "BLOCK",
    "HALO",
    "LumaModel",
    "luma_region",
    "upscale_image",
    "upscale_luma",
    "upscale_region",
    "value_range",
)
__getattr__ = _deprecation.moved_names(
    __name__, {name: f"subpixel.models.tiling:{name}" for name in _TILING}
)
