"""PyTorch modules over :func:`subpixel.shuffle` and :func:`subpixel.sub_pixel_conv`.

>>> import torch
>>> from subpixel.layers.torch import SubPixelConv2d
>>> layer = SubPixelConv2d(16, 3, 3, factor=2)          # ICNR-initialised, CRD
>>> layer(torch.zeros(1, 16, 8, 8)).shape
torch.Size([1, 3, 16, 16])
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .. import ops, weights
from .._spec import normalize_crop, normalize_factor, normalize_order, normalize_padding

__all__ = ["PixelShuffle", "PixelUnshuffle", "SubPixelConv1d", "SubPixelConv2d", "SubPixelConv3d"]


class PixelShuffle(nn.Module):
    """:func:`subpixel.shuffle` as a module: N-D factors and both channel orders."""

    def __init__(
        self,
        factor: Any,
        *,
        spatial_dims: int | None = None,
        order: str = "CRD",
        layout: str = "channels_first",
    ) -> None:
        super().__init__()
        self.factor, self.spatial_dims, self.order, self.layout = (
            factor,
            spatial_dims,
            order,
            layout,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.shuffle(
            x, self.factor, spatial_dims=self.spatial_dims, layout=self.layout, order=self.order
        )

    def extra_repr(self) -> str:
        return f"factor={self.factor}, order={self.order!r}, layout={self.layout!r}"


class PixelUnshuffle(PixelShuffle):
    """:func:`subpixel.unshuffle` as a module."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.unshuffle(
            x, self.factor, spatial_dims=self.spatial_dims, layout=self.layout, order=self.order
        )


class _SubPixelConvNd(nn.Module):
    spatial_dims = 2

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, ...],
        factor: int | tuple[int, ...],
        *,
        padding: Any = "same",
        bias: bool = True,
        order: str = "CRD",
        init: str = "icnr",
        blur: bool = False,
        crop: Any = None,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        d = self.spatial_dims
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = normalize_factor(kernel_size, d, "kernel_size")
        self.factor = normalize_factor(factor, d)
        self.padding = normalize_padding(padding, self.kernel_size)
        self.order = normalize_order(order)
        if init not in ("icnr", "default"):
            raise ValueError(f"`init` must be 'icnr' or 'default'. Received: init={init!r}")
        self.init, self.blur = init, blur
        self.crop = normalize_crop(crop, d)
        lr_channels = out_channels * math.prod(self.factor)
        kw = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(lr_channels, in_channels, *self.kernel_size, **kw))
        self.bias = nn.Parameter(torch.empty(lr_channels, **kw)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's conv initialisation; with ``init="icnr"`` drawn for the base
        kernel and copied to every phase (zero bias), so that the layer starts as
        conv + nearest-neighbour upsampling."""
        if self.init == "default":
            nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
            if self.bias is not None:
                fan_in = self.in_channels * math.prod(self.kernel_size)
                nn.init.uniform_(self.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
            return
        base = torch.empty(self.out_channels, self.in_channels, *self.kernel_size)
        nn.init.kaiming_uniform_(base, a=math.sqrt(5))
        full = weights.icnr(self.weight.shape, self.factor, order=self.order, init=base.numpy())
        with torch.no_grad():
            self.weight.copy_(torch.from_numpy(full))
            if self.bias is not None:
                self.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.sub_pixel_conv(
            x,
            self.weight,
            self.bias,
            factor=self.factor,
            padding=self.padding,
            spatial_dims=self.spatial_dims,
            order=self.order,
            blur=self.blur,
            crop=self.crop,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"factor={self.factor}, padding={self.padding}, order={self.order!r}, "
            f"bias={self.bias is not None}, blur={self.blur}"
        )


class SubPixelConv1d(_SubPixelConvNd):
    """LR ``Conv1d`` with ``out_channels * factor`` outputs, then a 1-D shuffle."""

    spatial_dims = 1


class SubPixelConv2d(_SubPixelConvNd):
    """LR ``Conv2d`` with ``out_channels * prod(factor)`` outputs, then a shuffle (ESPCN)."""

    spatial_dims = 2


class SubPixelConv3d(_SubPixelConvNd):
    """LR ``Conv3d`` with ``out_channels * prod(factor)`` outputs, then a 3-D shuffle."""

    spatial_dims = 3


SUB_PIXEL_CONV = {1: SubPixelConv1d, 2: SubPixelConv2d, 3: SubPixelConv3d}
