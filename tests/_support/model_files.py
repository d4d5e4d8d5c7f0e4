"""Model files for `subpixel upscale --model` tests: PyTorch modules exported to ONNX
(the dynamo exporter, weights inside the file) and saved as ``torch.export`` programs,
and small models whose right answer is known:
nearest-neighbour enlargers (an exact oracle for channels, layout and colour
handling), global pooling, NaN, fixed sizes."""

from __future__ import annotations

import contextlib
import io
import os
import warnings

import torch
import torch.nn.functional as F
from torch import nn


def to_onnx(
    module: nn.Module,
    path,
    *,
    channels: int = 3,
    dynamic: bool = True,
    size: int = 32,
    nhwc: bool = False,
):
    """``module`` (NCHW, or NHWC with ``nhwc``) as an ONNX file with dynamic batch and
    spatial sizes (or all fixed at ``size``), written by the dynamo exporter with its
    weights inside."""
    shape = (1, size, size, channels) if nhwc else (1, channels, size, size)
    x = torch.rand(*shape)
    kw = {}
    if dynamic:
        d = torch.export.Dim.AUTO
        kw["dynamic_shapes"] = ({0: d, 1: d, 2: d} if nhwc else {0: d, 2: d, 3: d},)
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(), (x,), os.fspath(path), dynamo=True, external_data=False, **kw
        )
    return path


def to_pt2(module: nn.Module, path, *, channels: int = 3, size: int = 32):
    """``module`` as a ``torch.export`` program with dynamic spatial sizes."""
    x = torch.rand(1, channels, size, size)
    d = torch.export.Dim.AUTO
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(module.eval(), (x,), dynamic_shapes=({2: d, 3: d},))
        torch.export.save(program, os.fspath(path))
    return path


class Nearest(nn.Module):
    """Nearest-neighbour enlargement by ``scale``: the output pixel is its input pixel,
    so an upscale through it equals ``np.repeat`` exactly.  ``nhwc``: takes and gives
    channels last."""

    def __init__(self, scale: int, nhwc: bool = False) -> None:
        super().__init__()
        self.scale, self.nhwc = scale, nhwc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.nhwc:
            x = x.permute(0, 3, 1, 2)
        y = F.interpolate(x, scale_factor=float(self.scale), mode="nearest")
        return y.permute(0, 2, 3, 1) if self.nhwc else y


class GlobalPool(nn.Module):
    """A 3x3 conv, then every channel scaled by its global average (a squeeze-excite
    gate without the layers), then nearest x2: an output pixel depends on the whole
    image."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        gate = torch.sigmoid(F.adaptive_avg_pool2d(h, 1))
        return F.interpolate(h * gate, scale_factor=2.0, mode="nearest")


class Shifted(nn.Module):
    """Nearest x2 plus a ramp over the image's columns: not translation-equivariant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.arange(x.shape[-1], dtype=x.dtype) / 100.0
        return F.interpolate(x + ramp, scale_factor=2.0, mode="nearest")


class Log(nn.Module):
    """``log(x - 2)`` enlarged x2: NaN for every input in [0, 1]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(torch.log(x - 2), scale_factor=2.0, mode="nearest")


class Reciprocal(nn.Module):
    """``1 / (1 - x)`` enlarged x2: finite on the probes (random, below 1), infinite
    where an image is white."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(1.0 / (1.0 - x), scale_factor=2.0, mode="nearest")


class Cropping(nn.Module):
    """A 3x3 conv without padding then nearest x2: the output is 4 pixels short."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.conv(x), scale_factor=2.0, mode="nearest")


class ToGrey(nn.Module):
    """RGB in, one channel out (x2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x.mean(1, keepdim=True), scale_factor=2.0, mode="nearest")
