"""Exact rewrites of a PyTorch model: its transposed convolutions as their sub-pixel
(:class:`~subpixel.layers.torch.SubPixelConvNd`) or phase-by-phase
(:class:`~subpixel.layers.torch.PhasedConvTranspose`) equivalents, and its
``nn.PixelShuffle``/``nn.PixelUnshuffle`` modules as subpixel's, so that
``lowering=`` applies to them.  Every rewrite is in place, keeps the outputs (up to
float rounding), the gradients and the hooks, and changes nothing if it fails.

>>> import torch
>>> from subpixel.rewrite.torch import replace_conv_transpose
>>> model = torch.nn.Sequential(torch.nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1))
>>> x = torch.randn(1, 8, 5, 5)
>>> before = model(x)
>>> type(replace_conv_transpose(model)[0]).__name__
'SubPixelConv2d'
>>> torch.allclose(model(x), before, atol=1e-5)
True
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from numpy.typing import ArrayLike
from torch import nn

from .._core import timing as _timing
from .._core.lowering import Lowering, normalize_lowering
from .._frameworks.torch import as_input, evaluating, to_numpy
from ..layer import SubPixelConv
from ..layers.torch import (
    PhasedConvTranspose,
    PixelShuffle,
    PixelUnshuffle,
    SubPixelConvNd,
    from_agnostic,
    is_plain_conv_transpose,
)
from . import check_mode, example_error

__all__ = ["replace_conv_transpose", "replace_pixel_shuffle", "sub_pixel_of"]


def sub_pixel_of(m: nn.Module) -> SubPixelConvNd:
    """The exact sub-pixel form of a ``ConvTranspose1d/2d/3d`` (stride > 1, ungrouped,
    undilated), on its device and dtype."""
    agnostic = SubPixelConv.from_conv_transpose(
        to_numpy(m.weight),
        to_numpy(m.bias),
        stride=tuple(m.stride),
        padding=tuple(m.padding),
        output_padding=tuple(m.output_padding),
    )
    module = from_agnostic(agnostic, dtype=m.weight.dtype).to(device=m.weight.device)
    module.weight.requires_grad_(m.weight.requires_grad)
    if module.bias is not None and m.bias is not None:
        module.bias.requires_grad_(m.bias.requires_grad)
    return module.train(m.training)


def _check_module(model: object) -> None:
    if not isinstance(model, nn.Module):
        kind = type(model)
        raise TypeError(
            "`model` must be a PyTorch nn.Module. "
            f"Received: model of type {kind.__module__}.{kind.__qualname__}"
        )


def _swap(
    model: nn.Module,
    test: Callable[[nn.Module], bool],
    make: Callable[[nn.Module], nn.Module],
) -> nn.Module:
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
            if child is not None and test(child):
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


def replace_conv_transpose(
    model: nn.Module, *, mode: str = "subpixel", example: torch.Tensor | ArrayLike | None = None
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
    check_mode(mode, example, ("subpixel", "phases", "fastest"))
    _check_module(model)
    if mode == "subpixel":
        return _swap(model, is_plain_conv_transpose, sub_pixel_of)
    if mode == "phases":
        return _swap(model, is_plain_conv_transpose, PhasedConvTranspose)
    inputs: dict[int, torch.Tensor] = {}
    hooks = [
        m.register_forward_pre_hook(lambda m, args: inputs.setdefault(id(m), args[0].detach()))
        for m in model.modules()
        if is_plain_conv_transpose(m)
    ]
    try:
        with evaluating(model):
            model(as_input(model, example))
    except Exception as e:
        raise example_error(e, example) from None
    finally:
        for h in hooks:
            h.remove()

    def fastest(m: nn.Module) -> nn.Module:
        x = inputs.get(id(m))
        if x is None:  # not reached by the example: keep the original
            return m
        candidates = [m, sub_pixel_of(m), PhasedConvTranspose(m)]
        sync = (lambda _: torch.cuda.synchronize()) if x.is_cuda else None
        with torch.no_grad():
            # `forward`: the user's hooks on the original do not run while it is timed
            runs = [lambda c=c: c.forward(x) for c in candidates]
            return candidates[_timing.fastest(runs, sync=sync)]

    return _swap(model, is_plain_conv_transpose, fastest)


def replace_pixel_shuffle(
    model: nn.Module,
    *,
    lowering: Lowering = "auto",
    example: ArrayLike | torch.Tensor | None = None,
) -> nn.Module:
    """Write every pixel shuffle and unshuffle of ``model`` with ``lowering`` (the same
    numbers; docs/deploy.md).

    With ``example`` (an input ``model`` runs on), every shuffle is found by what it
    does in a ``torch.export`` trace: ``nn.PixelShuffle`` modules, ``F.pixel_shuffle``
    calls, hand-written ``view``/``permute`` chains, einops, any channel order.  A
    module whose whole forward is a shuffle is swapped in place for subpixel's layer
    of the same order and ``model`` is returned; where shuffles are written in code,
    the exported graph with each shuffle rewritten is returned (a ``GraphModule``,
    batch and spatial sizes dynamic where the export allows; ``model`` itself is left
    as it was).

    Without ``example``, PyTorch's ``nn.PixelShuffle``/``nn.PixelUnshuffle`` modules are
    swapped in place for subpixel's (CRD); shuffles written in code are not seen."""

    _check_module(model)
    if example is not None:
        from . import torch_sites

        return torch_sites.rewrite(model, example, normalize_lowering(lowering))

    def make(m: nn.Module) -> nn.Module:
        if isinstance(m, nn.PixelShuffle):
            return PixelShuffle(m.upscale_factor, order="CRD", lowering=lowering)
        return PixelUnshuffle(m.downscale_factor, order="CRD", lowering=lowering)

    return _swap(model, lambda m: isinstance(m, (nn.PixelShuffle, nn.PixelUnshuffle)), make)
