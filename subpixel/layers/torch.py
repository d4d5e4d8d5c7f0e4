"""PyTorch modules over :func:`subpixel.shuffle` and :func:`subpixel.sub_pixel_conv`,
and PyTorch's side of moving layers between frameworks (:func:`to_agnostic`,
:func:`from_agnostic`).

>>> import torch
>>> from subpixel.layers.torch import SubPixelConv2d
>>> layer = SubPixelConv2d(16, 3, 3, factor=2)          # ICNR-initialised, CRD
>>> layer(torch.zeros(1, 16, 8, 8)).shape
torch.Size([1, 3, 16, 16])
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .. import _spec
from .._layer_spec import LayerSpec, check_plain_conv
from .._lowering import Lowering, check_native, normalize_lowering
from .._spec import Layout, Order
from . import _torch_lowering

if TYPE_CHECKING:
    from ..layer import SubPixelConv

__all__ = [
    "PixelShuffle",
    "PixelUnshuffle",
    "SubPixelConv1d",
    "SubPixelConv2d",
    "SubPixelConv3d",
    "from_agnostic",
    "from_espcn",
    "to_agnostic",
]


def _check_lowering(lowering: Any, factor: tuple[int, ...], layout: str) -> Lowering:
    lowering = normalize_lowering(lowering)
    check_native(lowering, factor)
    if lowering in ("native", "conv") and layout != "channels_first":
        raise ValueError(
            f"`lowering={lowering!r}` needs layout='channels_first' in PyTorch. Received: layout={layout!r}"
        )
    return lowering


class PixelShuffle(nn.Module):
    """:func:`subpixel.shuffle` as a module: N-D factors and both channel orders.

    ``lowering``: how an export writes the shuffle into the graph (``"auto"``,
    ``"native"``, ``"reshape"``, ``"flat"``, ``"conv"``; docs/deploy.md); the numbers
    are the same in every lowering."""

    op = "shuffle"

    def __init__(
        self,
        factor: Any,
        *,
        spatial_dims: int | None = None,
        order: Order = "CRD",
        layout: Layout = "channels_first",
        lowering: Lowering = "auto",
    ) -> None:
        super().__init__()
        d = _spec.normalize_spatial_dims(spatial_dims, factor)
        self.factor = _spec.normalize_factor(factor, d)
        self.spatial_dims = d
        self.order = _spec.normalize_order(order)
        self.layout = _spec.normalize_layout(layout)
        self.lowering = _check_lowering(lowering, self.factor, self.layout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _torch_lowering.rearrange(
            x, self.op, self.factor, self.spatial_dims, self.order, self.lowering, self.layout
        )

    def extra_repr(self) -> str:
        lowering = "" if self.lowering == "auto" else f", lowering={self.lowering!r}"
        return f"factor={self.factor}, order={self.order!r}, layout={self.layout!r}{lowering}"


class PixelUnshuffle(PixelShuffle):
    """:func:`subpixel.unshuffle` as a module (``lowering`` as :class:`PixelShuffle`)."""

    op = "unshuffle"


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
        order: Order = "CRD",
        init: str = "icnr",
        blur: bool = False,
        crop: Any = None,
        lowering: Lowering = "auto",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        self.spec = LayerSpec.create(
            in_channels,
            out_channels,
            kernel_size,
            factor,
            spatial_dims=self.spatial_dims,
            order=order,
            padding=padding,
            crop=crop,
            blur=blur,
            bias=bias,
        )
        if init not in ("icnr", "default"):
            raise ValueError(f"`init` must be 'icnr' or 'default'. Received: init={init!r}")
        self.init = init
        self.lowering = _check_lowering(lowering, self.spec.factor, "channels_first")
        kw = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(self.spec.weight_shape, **kw))
        self.bias = nn.Parameter(torch.empty(self.spec.lr_channels, **kw)) if bias else None
        self.reset_parameters()

    # the description's fields, read-only
    in_channels = property(lambda self: self.spec.in_channels)
    out_channels = property(lambda self: self.spec.out_channels)
    kernel_size = property(lambda self: self.spec.kernel_size)
    factor = property(lambda self: self.spec.factor)
    order = property(lambda self: self.spec.order)
    padding = property(lambda self: self.spec.padding)
    blur = property(lambda self: self.spec.blur)
    crop = property(lambda self: self.spec.crop)

    def reset_parameters(self) -> None:
        """PyTorch's conv initialisation; with ``init="icnr"`` drawn for the base
        kernel and copied to every phase (zero bias), so that the layer starts as
        conv + nearest-neighbour upsampling."""
        fan_in = self.spec.inputs * math.prod(self.spec.kernel_size)
        with torch.no_grad():
            if self.init == "default":
                nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
                if self.bias is not None:
                    nn.init.uniform_(self.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
                return
            base = torch.empty(
                (self.spec.out_channels, *self.spec.weight_shape[1:]),
                dtype=self.weight.dtype,
                device=self.weight.device,
            )
            nn.init.kaiming_uniform_(base, a=math.sqrt(5))
            index = torch.as_tensor(self.spec.icnr_index(), device=self.weight.device)
            self.weight.copy_(base.index_select(0, index))
            if self.bias is not None:
                self.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _torch_lowering.sub_pixel_conv(x, self.weight, self.bias, self.spec, self.lowering)
        # a drop-in replacement: the output in the input's memory format (PyTorch's
        # convolutions, and a ConvTranspose being replaced, keep it)
        if x.is_contiguous() and not y.is_contiguous():
            y = y.contiguous()
        return y

    def extra_repr(self) -> str:
        s = self.spec
        return (
            f"{s.in_channels}, {s.out_channels}, kernel_size={s.kernel_size}, "
            f"factor={s.factor}, padding={s.padding}, order={s.order!r}, "
            f"bias={s.bias}, blur={s.blur}"
            + (f", crop={s.crop}" if s.has_crop else "")
            + ("" if self.lowering == "auto" else f", lowering={self.lowering!r}")
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


# ---------------------------------------------------------------------------
# moving layers between frameworks: PyTorch's side
# ---------------------------------------------------------------------------


def _numpy(t: torch.Tensor | None) -> Any:
    if t is None:
        return None
    t = t.detach().cpu()
    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()


def from_agnostic(layer: SubPixelConv) -> _SubPixelConvNd:
    """A ``SubPixelConvNd`` holding a :class:`subpixel.SubPixelConv`'s parameters
    (float32; the data layout of a PyTorch layer is channels_first)."""
    spec = layer.spec
    module = SUB_PIXEL_CONV[spec.spatial_dims](
        spec.inputs,
        spec.out_channels,
        spec.kernel_size,
        spec.factor,
        padding=spec.padding,
        bias=spec.bias,
        order=spec.order,
        blur=spec.blur,
        crop=spec.crop,
        init="default",
    )
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(layer.weight.astype("float32")))
        if module.bias is not None and layer.bias is not None:
            module.bias.copy_(torch.from_numpy(layer.bias.astype("float32")))
    return module


_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def to_agnostic(
    module: Any, *, factor: Any = None, order: Order = "CRD", layout: Layout = "channels_first"
) -> SubPixelConv:
    """A :class:`subpixel.SubPixelConv` from a ``SubPixelConvNd``, or from a plain
    ``nn.Conv1d/2d/3d`` (stride 1, undilated, ungrouped, zero padding) read as the
    LR convolution of a sub-pixel conv with ``factor`` and ``order``.  Anything it
    cannot represent exactly is refused."""
    from ..layer import SubPixelConv

    if isinstance(module, nn.Module) and any(p.is_meta for p in module.parameters()):
        raise ValueError("`module` holds no data (its parameters are on the meta device)")
    if isinstance(module, _SubPixelConvNd):
        spec = module.spec.replace(layout=layout)
        return SubPixelConv.from_spec(spec, _numpy(module.weight), _numpy(module.bias))
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        raise ValueError(
            f"`module` is a transposed convolution ({type(module).__name__}): use "
            "SubPixelConv.from_conv_transpose(module.weight, module.bias, stride=module.stride, "
            "padding=module.padding, output_padding=module.output_padding)"
        )
    if not isinstance(module, _CONVS):
        raise ValueError(
            "`module` must be a subpixel SubPixelConv1d/2d/3d or a torch.nn.Conv1d/2d/3d. "
            f"Received: module of type {type(module).__module__}.{type(module).__qualname__}"
        )
    check_plain_conv("torch", factor, module.stride, module.dilation, module.groups)
    if module.padding_mode != "zeros":
        raise ValueError(
            "`module` pads with padding_mode="
            f"{module.padding_mode!r}; a SubPixelConv pads with zeros only, so its numbers would differ"
        )
    padding = module.padding if isinstance(module.padding, str) else tuple(module.padding)
    return SubPixelConv.from_weights(
        _numpy(module.weight),
        _numpy(module.bias),
        factor=factor,
        order=order,
        padding=padding,
        layout=layout,
    )


class _Shift(nn.Module):
    """Adds a constant (ESPCN's input mean, subtracted before and added after)."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = float(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.value


def from_espcn(model: Any, lowering: Lowering = "auto", order: Order = "CRD") -> nn.Sequential:
    """The bundled ESPCN (:class:`subpixel.models.ESPCN`) as a PyTorch module, its last
    layer a :class:`SubPixelConv2d` with ``lowering`` and ``order`` (the same numbers
    in either): ``(N, 1, H, W)`` luminance in [0, 1] in, ``(N, 1, H * scale, W * scale)``
    out."""
    p = {k: torch.from_numpy(v) for k, v in model.head_params(order).items()}
    conv1, conv2 = nn.Conv2d(1, 64, 5, padding=2), nn.Conv2d(64, 32, 3, padding=1)
    head = SubPixelConv2d(
        32, 1, 3, model.scale, padding=1, lowering=lowering, order=order, init="default"
    )
    with torch.no_grad():
        for layer, name in ((conv1, "conv1"), (conv2, "conv2"), (head, "conv3")):
            layer.weight.copy_(p[f"{name}.weight"])
            assert layer.bias is not None
            layer.bias.copy_(p[f"{name}.bias"])
    return nn.Sequential(
        _Shift(-model.mean), conv1, nn.Tanh(), conv2, nn.Tanh(), head, _Shift(model.mean)
    ).eval()
