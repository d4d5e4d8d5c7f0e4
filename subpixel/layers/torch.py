"""PyTorch modules over :func:`subpixel.shuffle` and :func:`subpixel.sub_pixel_conv`,
and PyTorch's side of moving layers between frameworks (:func:`to_agnostic`,
:func:`from_agnostic`).

>>> import torch
>>> from subpixel.layers.torch import SubPixelConv2d
>>> layer = SubPixelConv2d(16, 3, 3, factor=2)          # ICNR-initialised, CRD
>>> layer(torch.zeros(1, 16, 8, 8)).shape
torch.Size([1, 3, 16, 16])

(Rewriting a model's layers moved to :mod:`subpixel.rewrite.torch`; the bundled ESPCN
as a module to :meth:`subpixel.models.ESPCN.to_torch`.  The old names here still
work for one release, with a ``DeprecationWarning``.)
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from torch import nn

from .._core import deprecation as _deprecation
from .._core import phases as _phases
from .._core import spec as _spec
from .._core.layer_spec import LayerSpec, SpecFields, check_plain_conv
from .._core.lowering import Lowering, check_native, normalize_lowering
from .._core.spec import Crop, Factor, Layout, Order, Padding
from .._frameworks.torch import to_numpy
from ..layer import SubPixelConv
from . import _torch_lowering

__all__ = [
    "PhasedConvTranspose",
    "PixelShuffle",
    "PixelUnshuffle",
    "SubPixelConv1d",
    "SubPixelConv2d",
    "SubPixelConv3d",
    "SubPixelConvNd",
    "from_agnostic",
    "to_agnostic",
]


def _check_lowering(lowering: Lowering, factor: tuple[int, ...], layout: str) -> Lowering:
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
        factor: Factor,
        *,
        spatial_dims: int | None = None,
        order: Order = "CRD",
        layout: Layout = "channels_first",
        lowering: Lowering = "auto",
    ) -> None:
        super().__init__()
        self.factor, self.spatial_dims, self.order, self.layout = _spec.shuffle_args(
            factor, spatial_dims, order, layout
        )
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


class SubPixelConvNd(SpecFields, nn.Module):
    """What :class:`SubPixelConv1d`, :class:`SubPixelConv2d` and :class:`SubPixelConv3d`
    share: an LR convolution with ``out_channels * prod(factor)`` outputs, then the
    shuffle (channels_first), an optional blur and crop.  ``init``: ``"icnr"`` (default)
    or ``"default"`` (PyTorch's conv initialisation); ``lowering`` as :class:`PixelShuffle`."""

    spatial_dims = 2

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, ...],
        factor: Factor,
        *,
        padding: Padding = "same",
        bias: bool = True,
        order: Order = "CRD",
        init: str = "icnr",
        blur: bool = False,
        crop: Crop = None,
        lowering: Lowering = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
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
        self.init = _spec.choice(init, "init", ("icnr", "default"))
        self.lowering = _check_lowering(lowering, self.spec.factor, "channels_first")
        shape, channels = self.spec.weight_shape, self.spec.lr_channels
        self.weight = nn.Parameter(torch.empty(shape, device=device, dtype=dtype))
        self.bias = (
            nn.Parameter(torch.empty(channels, device=device, dtype=dtype)) if bias else None
        )
        self.reset_parameters()

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

    def forward(
        self, x: torch.Tensor, output_size: tuple[int, ...] | torch.Size | None = None
    ) -> torch.Tensor:
        """``output_size`` (as a ``ConvTranspose``'s forward takes it) is checked: this
        layer's output size is fixed by its crop."""
        y = _torch_lowering.sub_pixel_conv(x, self.weight, self.bias, self.spec, self.lowering)
        if output_size is not None:
            want = tuple(int(n) for n in output_size)[-self.spec.spatial_dims :]
            got = tuple(y.shape[-self.spec.spatial_dims :])
            if want != got:
                raise ValueError(
                    f"`output_size` must be this layer's output size {got} (its crop is "
                    "fixed; replace_conv_transpose(mode='phases') keeps a per-call "
                    f"output_padding). Received: output_size={tuple(output_size)}"
                )
        # a drop-in replacement: the output in the input's memory format (PyTorch's
        # convolutions, and a ConvTranspose being replaced, keep it)
        fmt = _memory_format(x)  # (a strided view's output is left as it comes)
        if (fmt != torch.contiguous_format or x.is_contiguous()) and not y.is_contiguous(
            memory_format=fmt
        ):
            y = y.contiguous(memory_format=fmt)
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


class SubPixelConv1d(SubPixelConvNd):
    """LR ``Conv1d`` with ``out_channels * factor`` outputs, then a 1-D shuffle."""

    spatial_dims = 1


class SubPixelConv2d(SubPixelConvNd):
    """LR ``Conv2d`` with ``out_channels * prod(factor)`` outputs, then a shuffle (ESPCN)."""

    spatial_dims = 2


class SubPixelConv3d(SubPixelConvNd):
    """LR ``Conv3d`` with ``out_channels * prod(factor)`` outputs, then a 3-D shuffle."""

    spatial_dims = 3


SUB_PIXEL_CONV = {1: SubPixelConv1d, 2: SubPixelConv2d, 3: SubPixelConv3d}


# ---------------------------------------------------------------------------
# moving layers between frameworks: PyTorch's side
# ---------------------------------------------------------------------------


def from_agnostic(layer: SubPixelConv, dtype: torch.dtype | None = None) -> SubPixelConvNd:
    """A ``SubPixelConvNd`` holding a :class:`subpixel.SubPixelConv`'s parameters in
    ``dtype`` (default float32; the data layout of a PyTorch layer is channels_first)."""
    spec = layer.spec
    module = SUB_PIXEL_CONV[spec.spatial_dims](
        spec.inputs,
        spec.out_channels,
        spec.kernel_size,
        spec.factor,
        bias=spec.bias,
        init="default",
        **spec.layer_kwargs(),
    ).to(dtype=dtype or torch.float32)
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(np.array(layer.weight)))
        if module.bias is not None and layer.bias is not None:
            module.bias.copy_(torch.from_numpy(np.array(layer.bias)))
    return module


_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def to_agnostic(
    module: nn.Module,
    *,
    factor: Factor | None = None,
    order: Order = "CRD",
    layout: Layout = "channels_first",
) -> SubPixelConv:
    """A :class:`subpixel.SubPixelConv` from a ``SubPixelConvNd``, or from a plain
    ``nn.Conv1d/2d/3d`` (stride 1, undilated, ungrouped, zero padding) read as the
    LR convolution of a sub-pixel conv with ``factor`` and ``order``.  Anything it
    cannot represent exactly is refused."""
    if isinstance(module, nn.Module) and any(p.is_meta for p in module.parameters()):
        raise ValueError("`module` holds no data (its parameters are on the meta device)")
    if isinstance(module, SubPixelConvNd):
        spec = module.spec.replace(layout=layout)
        return SubPixelConv.from_spec(spec, to_numpy(module.weight), to_numpy(module.bias))
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
        to_numpy(module.weight),
        to_numpy(module.bias),
        factor=factor,
        order=order,
        padding=padding,
        layout=layout,
    )


# ---------------------------------------------------------------------------
# a transposed convolution computed phase by phase
# ---------------------------------------------------------------------------

_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def is_plain_conv_transpose(m: nn.Module) -> bool:
    """A transposed convolution with an exact phased and sub-pixel form (stride > 1,
    undilated, ungrouped, zero padding given as numbers) and plain parameters (not
    re-parametrised by weight or spectral norm, whose weight is computed each call)."""
    return (
        isinstance(m, _CONV_T)
        and not nn.utils.parametrize.is_parametrized(m)
        and not any(hasattr(m, a) for a in ("weight_orig", "weight_g", "weight_v"))
        and any(s > 1 for s in m.stride)
        and all(v == 1 for v in m.dilation)
        and m.groups == 1
        and m.padding_mode == "zeros"
        and not isinstance(m.padding, str)
    )


class PhasedConvTranspose(nn.Module):
    """A ``ConvTranspose1d/2d/3d`` (stride > 1, ungrouped, undilated) computed as
    ``prod(stride)`` convolutions, one per output phase, each over exactly the inputs
    and kernel taps its outputs use, interleaved into the output (a pixel shuffle
    written as strided copies).  The same arithmetic as the transposed convolution: no
    tap is multiplied by a structural zero, so the parameters, their names and shapes
    (``weight (I, O, *k)``, ``bias``), the gradients and ``state_dict`` are the
    original's.

    >>> import torch
    >>> deconv = torch.nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1)
    >>> phased = PhasedConvTranspose(deconv)
    >>> x = torch.randn(1, 8, 5, 5)
    >>> torch.allclose(phased(x), deconv(x), atol=1e-6)
    True
    """

    def __init__(self, conv_transpose: nn.Module) -> None:
        super().__init__()
        m = conv_transpose
        if not is_plain_conv_transpose(m):
            raise ValueError(
                "`conv_transpose` must be a ConvTranspose1d/2d/3d with stride > 1, groups=1, "
                "dilation 1, zero padding and plain parameters (no weight or spectral norm). "
                f"Received: {m!r}"
            )
        self.stride = tuple(m.stride)
        self.padding = tuple(m.padding)
        self.output_padding = tuple(m.output_padding)
        # the original's parameters themselves: weights tied to another layer stay tied,
        # and an optimizer already holding them keeps working
        self.weight = m.weight
        self.bias = m.bias
        self.train(m.training)

    def extra_repr(self) -> str:
        i, o, *k = self.weight.shape
        return (
            f"{i}, {o}, kernel_size={tuple(k)}, stride={self.stride}, padding={self.padding}, "
            f"output_padding={self.output_padding}, bias={self.bias is not None}"
        )

    def forward(
        self, x: torch.Tensor, output_size: tuple[int, ...] | torch.Size | None = None
    ) -> torch.Tensor:
        d = len(self.stride)
        kernel = self.weight.shape[2:]
        output_padding = self.output_padding
        if output_size is not None:  # as ConvTranspose: the output padding it needs
            output_padding = self._output_padding(x, output_size)
        plans = [
            _phases.axis_plan(int(n), int(k), s, p, op)
            for n, k, s, p, op in zip(
                x.shape[-d:], kernel, self.stride, self.padding, output_padding
            )
        ]
        pads = [v for plan in reversed(plans) for v in (plan.pad_before, plan.pad_after)]
        x_pad = nn.functional.pad(x, pads) if any(pads) else x
        fmt = _memory_format(x)
        out = x.new_empty((*x.shape[: -d - 1], self.weight.shape[1], *(p.out_size for p in plans)))
        out = out.contiguous(memory_format=fmt)
        conv = (nn.functional.conv1d, nn.functional.conv2d, nn.functional.conv3d)[d - 1]
        spatial = tuple(range(2, 2 + d))
        convolved = False
        for phase in itertools.product(*(plan.phases for plan in plans)):
            if any(ph.count == 0 for ph in phase):
                continue
            outputs = (Ellipsis, *(slice(ph.q, None, s) for ph, s in zip(phase, self.stride)))
            dst = out[outputs]
            if any(ph.taps == 0 for ph in phase):  # no tap reaches these outputs: the bias
                dst.copy_(self._bias_only(dst))
                continue
            taps = (
                slice(None),
                slice(None),
                *(slice(ph.first_tap, None, s) for ph, s in zip(phase, self.stride)),
            )
            w = self.weight[taps].flip(spatial).transpose(0, 1)
            window = (
                Ellipsis,
                *(slice(ph.start, ph.start + ph.count + ph.taps - 1) for ph in phase),
            )
            dst.copy_(conv(x_pad[window], w, self.bias))
            convolved = True
        if not convolved:  # no output reads the input (all bias): still its function, as
            out = out + x.reshape(-1)[:0].sum()  # in ConvTranspose (a zero gradient, no NaN)
        return out

    def _output_padding(
        self, x: torch.Tensor, output_size: tuple[int, ...] | torch.Size
    ) -> tuple[int, ...]:
        d = len(self.stride)
        want = tuple(int(n) for n in output_size)[-d:]
        k = self.weight.shape[2:]
        smallest = [
            (int(n) - 1) * s - 2 * p + int(kk)
            for n, s, p, kk in zip(x.shape[-d:], self.stride, self.padding, k)
        ]
        pads = tuple(w - m for w, m in zip(want, smallest))
        if len(want) != d or any(not 0 <= op < s for op, s in zip(pads, self.stride)):
            raise ValueError(
                f"`output_size` must be between {tuple(smallest)} and "
                f"{tuple(m + s - 1 for m, s in zip(smallest, self.stride))} for this input. "
                f"Received: output_size={tuple(output_size)}"
            )
        return pads

    def _bias_only(self, like: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return torch.zeros_like(like)
        return self.bias.reshape(-1, *(1,) * len(self.stride)).expand_as(like)


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """The input's memory format, for an output that keeps it."""
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return torch.contiguous_format if x.is_contiguous() else torch.channels_last
    if x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.contiguous_format if x.is_contiguous() else torch.channels_last_3d
    return torch.contiguous_format


# the spellings of subpixel 0.2, for one release
__getattr__ = _deprecation.moved_names(
    __name__,
    {
        "_Shift": "subpixel.models.torch:Shift",  # (modules pickled by 0.2 unpickle)
        "from_espcn": "subpixel.models.espcn:ESPCN.to_torch",
        "replace_conv_transpose": "subpixel.rewrite.torch:replace_conv_transpose",
        "replace_pixel_shuffle": "subpixel.rewrite.torch:replace_pixel_shuffle",
        "sub_pixel_of": "subpixel.rewrite.torch:sub_pixel_of",
    },
)
