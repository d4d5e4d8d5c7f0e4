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

import contextlib
import itertools
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .. import _phases, _spec
from .._layer_spec import LayerSpec, check_plain_conv, check_rewrite_mode, example_error
from .._lowering import Lowering, check_native, normalize_lowering
from .._spec import Layout, Order
from . import _torch_lowering

if TYPE_CHECKING:
    from ..layer import SubPixelConv

__all__ = [
    "PhasedConvTranspose",
    "PixelShuffle",
    "PixelUnshuffle",
    "SubPixelConv1d",
    "SubPixelConv2d",
    "SubPixelConv3d",
    "from_agnostic",
    "from_espcn",
    "replace_conv_transpose",
    "replace_pixel_shuffle",
    "sub_pixel_of",
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

    def forward(self, x: torch.Tensor, output_size: Any = None) -> torch.Tensor:
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


def from_agnostic(layer: SubPixelConv, dtype: torch.dtype | None = None) -> _SubPixelConvNd:
    """A ``SubPixelConvNd`` holding a :class:`subpixel.SubPixelConv`'s parameters in
    ``dtype`` (default float32; the data layout of a PyTorch layer is channels_first)."""
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
    ).to(dtype=dtype or torch.float32)
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(np.array(layer.weight)))
        if module.bias is not None and layer.bias is not None:
            module.bias.copy_(torch.from_numpy(np.array(layer.bias)))
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


# ---------------------------------------------------------------------------
# rewriting a model's upsampling layers, exactly
# ---------------------------------------------------------------------------

_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _replaceable(m: nn.Module) -> bool:
    """A transposed convolution with an exact sub-pixel form and plain parameters (not
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


def sub_pixel_of(m: nn.Module) -> _SubPixelConvNd:
    """The exact sub-pixel form of a ``ConvTranspose1d/2d/3d`` (stride > 1, ungrouped,
    undilated), on its device and dtype."""
    from ..layer import SubPixelConv

    agnostic = SubPixelConv.from_conv_transpose(
        _numpy(m.weight),
        _numpy(m.bias),
        stride=tuple(m.stride),
        padding=tuple(m.padding),
        output_padding=tuple(m.output_padding),
    )
    module = from_agnostic(agnostic, dtype=m.weight.dtype).to(device=m.weight.device)
    module.weight.requires_grad_(m.weight.requires_grad)
    if module.bias is not None and m.bias is not None:
        module.bias.requires_grad_(m.bias.requires_grad)
    return module.train(m.training)


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
        if not _replaceable(m):
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

    def forward(self, x: torch.Tensor, output_size: Any = None) -> torch.Tensor:
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

    def _output_padding(self, x: torch.Tensor, output_size: Any) -> tuple[int, ...]:
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


def _check_module(model: Any) -> None:
    if not isinstance(model, nn.Module):
        kind = type(model)
        raise TypeError(
            "`model` must be a PyTorch nn.Module. "
            f"Received: model of type {kind.__module__}.{kind.__qualname__}"
        )


def _swap(model: nn.Module, test: Any, make: Any) -> nn.Module:
    """Replace every submodule ``test`` accepts by ``make(submodule)``, in place (a
    module used in two places by one replacement, used in both); ``model`` itself if
    ``test`` accepts it (then the replacement is returned).  Every replacement is made
    before the first is put in: one that fails leaves ``model`` as it was."""
    if test(model):
        return _carry_hooks(model, make(model))
    made: dict[int, nn.Module] = {}
    slots = []
    for parent in model.modules():
        for name, child in list(parent._modules.items()):  # a shared child under each name
            if test(child):
                if id(child) not in made:
                    made[id(child)] = _carry_hooks(child, make(child))
                slots.append((parent, name, made[id(child)]))
    for parent, name, new in slots:
        setattr(parent, name, new)
    return model


# the forward and backward hooks a module holds (state-dict hooks name its parameters,
# which a replacement names differently: they stay)
_HOOKS = (
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_backward_pre_hooks",
    "_backward_hooks",
)


def _carry_hooks(old: nn.Module, new: nn.Module) -> nn.Module:
    """``new`` holding ``old``'s forward and backward hooks: the same dictionaries, so
    that the handles ``register_*_hook`` returned still remove them."""
    if new is not old and any(getattr(old, a, None) for a in _HOOKS):
        for attr in _HOOKS:
            if hasattr(old, attr):
                getattr(old, attr).update(getattr(new, attr, {}))
                setattr(new, attr, getattr(old, attr))
        new._is_full_backward_hook = old._is_full_backward_hook
    return new


def _as_input(model: nn.Module, example: Any) -> torch.Tensor:
    """``example`` (a tensor or an array) as an input for ``model``: on its device, a
    float in its parameters' dtype (integers, token ids say, as they are)."""
    x = torch.as_tensor(np.asarray(example) if not isinstance(example, torch.Tensor) else example)
    param = next(model.parameters(), None)
    if param is not None:
        x = x.to(device=param.device)
        if x.is_floating_point() and param.is_floating_point():
            x = x.to(dtype=param.dtype)
    return x


@contextlib.contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode without gradients (no batch-norm statistics move) for a while; each
    module's own mode is restored after."""
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            yield
    finally:
        for m, mode in modes.items():
            m.training = mode


def replace_conv_transpose(
    model: nn.Module, *, mode: str = "subpixel", example: Any = None
) -> nn.Module:
    """Swap every stride > 1 ``ConvTranspose1d/2d/3d`` of ``model`` (ungrouped,
    undilated, zero padding; in place) for an exact equivalent.  The outputs are
    unchanged (up to float rounding), training still works and the gradients are the
    same.

    ``mode``:

    - ``"subpixel"``: its sub-pixel form, a :class:`SubPixelConvNd` (one LR convolution
      with ``prod(stride)`` times the channels, the shuffle, the crop it needs);
    - ``"phases"``: a :class:`PhasedConvTranspose` (one convolution per output phase,
      the original's parameters and ``state_dict``);
    - ``"fastest"``: run ``model`` on ``example``, time the original and both forms on
      each layer's own input and keep, layer by layer, the fastest.
    """
    check_rewrite_mode(mode, example, ("subpixel", "phases", "fastest"))
    _check_module(model)
    if mode == "subpixel":
        return _swap(model, _replaceable, sub_pixel_of)
    if mode == "phases":
        return _swap(model, _replaceable, PhasedConvTranspose)
    inputs: dict[int, torch.Tensor] = {}
    hooks = [
        m.register_forward_pre_hook(lambda m, args: inputs.setdefault(id(m), args[0].detach()))
        for m in model.modules()
        if _replaceable(m)
    ]
    try:
        with _evaluating(model):
            model(_as_input(model, example))
    except Exception as e:
        raise example_error(e, example) from None
    finally:
        for h in hooks:
            h.remove()

    def fastest(m: nn.Module) -> nn.Module:
        from .._timing import fastest

        x = inputs.get(id(m))
        if x is None:  # not reached by the example: keep the original
            return m
        candidates = [m, sub_pixel_of(m), PhasedConvTranspose(m)]
        sync = (lambda _: torch.cuda.synchronize()) if x.is_cuda else None
        with torch.no_grad():
            # `forward`: the user's hooks on the original do not run while it is timed
            runs = [lambda c=c: c.forward(x) for c in candidates]
            return candidates[fastest(runs, sync=sync)]

    return _swap(model, _replaceable, fastest)


def replace_pixel_shuffle(
    model: nn.Module, *, lowering: Lowering = "auto", example: Any = None
) -> nn.Module:
    """Write every pixel shuffle and unshuffle of ``model`` with ``lowering`` (the same
    numbers; docs/deploy.md).

    With ``example`` (an input ``model`` runs on), every shuffle is found by what it
    does in a ``torch.export`` trace: ``nn.PixelShuffle`` modules, ``F.pixel_shuffle``
    calls, hand-written ``view``/``permute`` chains, einops, any channel order.  A
    module whose whole forward is a shuffle is swapped in place for subpixel's layer
    of the same order and ``model`` returned; where shuffles are written in code, the
    exported graph with each shuffle rewritten is returned (a ``GraphModule``, batch
    and spatial sizes dynamic; ``model`` itself is left as it was).

    Without ``example``, PyTorch's ``nn.PixelShuffle``/``nn.PixelUnshuffle`` modules are
    swapped in place for subpixel's (CRD); code is not seen."""

    _check_module(model)
    if example is not None:
        from ..rewrite import torch_sites

        return torch_sites.rewrite(model, example, normalize_lowering(lowering))

    def make(m: nn.Module) -> nn.Module:
        if isinstance(m, nn.PixelShuffle):
            return PixelShuffle(m.upscale_factor, order="CRD", lowering=lowering)
        return PixelUnshuffle(m.downscale_factor, order="CRD", lowering=lowering)

    return _swap(model, lambda m: isinstance(m, (nn.PixelShuffle, nn.PixelUnshuffle)), make)
