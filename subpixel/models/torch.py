"""The bundled ESPCN as a PyTorch module (what :meth:`subpixel.models.ESPCN.to_torch`
gives, and ``subpixel export`` exports to ONNX)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from .._core.lowering import Lowering
from .._core.spec import Order
from ..layers.torch import SubPixelConv2d

__all__ = ["Shift", "espcn"]


class Shift(nn.Module):
    """Adds a constant (ESPCN's input mean, subtracted before and added after)."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = float(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.value


def espcn(
    params: Mapping[str, np.ndarray],
    scale: int,
    mean: float,
    *,
    lowering: Lowering = "auto",
    order: Order = "CRD",
) -> nn.Sequential:
    """ESPCN holding ``params`` (``conv{1,2,3}.{weight,bias}``, PyTorch layout, the last
    layer's channels in ``order``), its last layer a
    :class:`~subpixel.layers.torch.SubPixelConv2d` with ``lowering`` and ``order`` (the
    same numbers in either): ``(N, 1, H, W)`` luminance in [0, 1] in,
    ``(N, 1, H * scale, W * scale)`` out, in evaluation mode."""
    p = {k: torch.from_numpy(v) for k, v in params.items()}
    conv1, conv2 = nn.Conv2d(1, 64, 5, padding=2), nn.Conv2d(64, 32, 3, padding=1)
    head = SubPixelConv2d(
        32, 1, 3, scale, padding=1, lowering=lowering, order=order, init="default"
    )
    with torch.no_grad():
        for layer, name in ((conv1, "conv1"), (conv2, "conv2"), (head, "conv3")):
            layer.weight.copy_(p[f"{name}.weight"])
            assert layer.bias is not None
            layer.bias.copy_(p[f"{name}.bias"])
    return nn.Sequential(Shift(-mean), conv1, nn.Tanh(), conv2, nn.Tanh(), head, Shift(mean)).eval()
