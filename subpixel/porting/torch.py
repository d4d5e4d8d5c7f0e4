"""PyTorch's side of :func:`subpixel.port_weights`: a module's parameterised layers
(from its modules), its trace (the ATen ops of one run, :mod:`subpixel.movement.torch`)
and writing converted parameters back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .._frameworks.torch import as_input, to_numpy
from ..layers import torch as torch_layers
from ..movement import Graph
from ..movement import torch as movement_torch
from .records import Kind, ReadError, Record, check_known, spec_settings

__all__ = ["layout", "model_input", "output", "read", "restore", "snapshot", "trace", "write"]

_SUBPIXEL = torch_layers.SubPixelConvNd
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# modules whose weight is computed from other parameters each call: written to, the
# port would be lost at the next call
_REPARAMETRISED = ("weight_g", "weight_v", "weight_orig")


def layout(model: Any) -> str:
    return "channels_first"


def _numpy(t: Any) -> np.ndarray | None:
    """A tensor's values as a NumPy array of its own (never a view of the model), 16-bit
    floats as float32 (exactly)."""
    if t is None:
        return None
    return np.array(to_numpy(t), dtype=np.float32 if t.dtype == torch.float16 else None)


def _pads(m: Any) -> tuple:
    """The padding rule of a convolution: ("explicit", per-axis (low, high)) or
    ("same_torch",) / ("valid",)."""
    p = m.padding
    if isinstance(p, str):
        return ("same_torch",) if p == "same" else ("valid",)
    return ("explicit", tuple((int(v), int(v)) for v in p))


def _computed_weight(m: nn.Module) -> Any:
    """The weight a module computes at each call (old-style weight or spectral norm),
    as it computes it in evaluation mode (no power iteration: no state moves)."""
    from torch.nn.utils.spectral_norm import SpectralNorm
    from torch.nn.utils.weight_norm import WeightNorm

    for hook in m._forward_pre_hooks.values():
        if isinstance(hook, SpectralNorm):
            return hook.compute_weight(m, do_power_iteration=False)
        if isinstance(hook, WeightNorm):
            return hook.compute_weight(m)
    return m.weight if hasattr(m, "weight") else None


def _record(name: str, m: nn.Module, canonical: dict[int, str]) -> Record | None:
    def p(**params: Any) -> tuple[dict[str, np.ndarray | None], dict[str, str]]:
        if "weight" in params and any(hasattr(m, a) for a in _REPARAMETRISED):
            params["weight"] = _computed_weight(m)
        values = {k: _numpy(v) for k, v in params.items()}
        paths = {k: canonical.get(id(v), f"{name}.{k}") for k, v in params.items() if v is not None}
        # every tensor the module reads at a call: where it runs is found by them all
        for key, t in (*m.named_parameters(), *m.named_buffers()):
            paths.setdefault(f"+{key}", canonical.get(id(t), f"{name}.{key}"))
        return values, paths

    def kernel(kind: Kind, settings: dict[str, Any], groups: int = 1) -> Record:
        """A (transposed) convolution's record: its weight and bias."""
        values, paths = p(weight=m.weight, bias=m.bias)
        dims = m.weight.dim() - 2
        return Record(kind, name, values, dims, paths=paths, settings=settings, groups=groups)

    if isinstance(m, _SUBPIXEL):
        return kernel("conv", spec_settings(m.spec))
    if isinstance(m, _CONV):
        settings = {
            "groups": m.groups,
            "stride": tuple(m.stride),
            "dilation": tuple(m.dilation),
            "padding_mode": m.padding_mode,
            "pads": _pads(m),
        }
        return kernel("conv", settings, m.groups)
    if isinstance(m, (torch_layers.PhasedConvTranspose, *_CONV_T)):
        phased = isinstance(m, torch_layers.PhasedConvTranspose)  # the original's parameters
        groups = 1 if phased else m.groups
        settings = (
            {"stride": tuple(m.stride)}
            if phased
            else {"groups": groups, "stride": tuple(m.stride), "dilation": tuple(m.dilation)}
        )
        return kernel("conv_transpose", settings, groups)
    if isinstance(m, nn.Linear):
        values, paths = p(weight=m.weight, bias=m.bias)
        return Record("dense", name, values, paths=paths)
    if isinstance(m, _NORMS):
        values, paths = p(
            weight=m.weight, bias=m.bias, running_mean=m.running_mean, running_var=m.running_var
        )
        return Record("batch_norm", name, values, paths=paths, settings={"eps": m.eps})
    if isinstance(m, nn.LayerNorm):
        values, paths = p(weight=m.weight, bias=m.bias)
        k = len(m.normalized_shape)
        return Record(
            "layer_norm",
            name,
            values,
            paths=paths,
            settings={"eps": m.eps},
            param_axes=tuple(range(-k, 0)),
        )
    if isinstance(m, nn.PReLU):
        values, paths = p(weight=m.weight)
        return Record("prelu", name, values, paths=paths)
    if isinstance(m, nn.Embedding):
        values, paths = p(weight=m.weight)
        return Record("embedding", name, values, paths=paths)
    return None


def read(model: nn.Module, *, target: bool = False) -> list[Record]:
    """The parameterised layers of ``model`` in definition order (read in evaluation
    mode: a spectral norm's power iteration does not run)."""
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        raise ReadError(
            "holds tensors on the meta device (no values): materialise it first "
            "(`to_empty(device=...)`) and load or initialise its weights"
        )
    canonical: dict[int, str] = {}
    for path, t in (
        *model.named_parameters(remove_duplicate=False),
        *model.named_buffers(remove_duplicate=False),
    ):
        canonical.setdefault(id(t), path)
    records = []
    with movement_torch.evaluating(model):
        for name, m in model.named_modules():
            if target and (
                any(hasattr(m, a) for a in _REPARAMETRISED) or getattr(m, "parametrizations", None)
            ):
                raise ReadError(
                    f"has a re-parametrised layer {name or '(the model itself)'} ({type(m).__name__}: "
                    "weight or spectral norm computes its weight at each call, so weights written "
                    "into it would be lost): remove the parametrization before porting into it"
                )
            r = _record(name, m, canonical)
            if r is not None:
                tensors = (*m.parameters(recurse=False), *m.buffers(recurse=False))
                held = next((t for t in tensors if t.is_floating_point()), None)
                if held is not None and held.dtype in (torch.float16, torch.bfloat16):
                    r.dtype = str(held.dtype).removeprefix("torch.")
                records.append(r)
            else:
                own = [k for k, v in m._parameters.items() if v is not None]
                check_known(name or "the model", type(m).__name__, own)
    for r in records:  # PyTorch kernels: (O, I, *k); transposed: (I, O, *k)
        r.kernel_out_axis = {"conv": 0, "conv_transpose": 1, "dense": 0}.get(r.kind)
    return records


model_input = as_input  # (the porting modules' common name)


def trace(model: nn.Module, example: Any) -> tuple[Graph, Any]:
    """The graph of one run on ``example`` and a runner giving its named values."""
    x = model_input(model, example)
    graph = movement_torch.trace(model, x).graph

    def run(feeds: Sequence[Any], names: Sequence[str]) -> dict[str, np.ndarray]:
        return movement_torch.run(model, [model_input(model, f) for f in feeds], names)

    return graph, run


def output(model: nn.Module, example: Any) -> np.ndarray:
    with movement_torch.evaluating(model):
        y = model(model_input(model, example))
    y = y[0] if isinstance(y, (tuple, list)) else y
    return np.asarray(_numpy(y))


def snapshot(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    seen: dict[int, torch.Tensor] = {}
    for t in (*model.parameters(), *model.buffers()):
        seen.setdefault(id(t), t)
    return [(t, t.detach().clone()) for t in seen.values()]


def restore(model: nn.Module, saved: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    with torch.no_grad():
        for t, value in saved:
            t.copy_(value)


def write(model: nn.Module, records: list[Record], converted: list[dict]) -> None:
    """Copy ``converted`` into the layers ``records`` name (every value converted
    first, so that the copying cannot fail half way); a tensor two layers share must
    receive one value."""
    modules = dict(model.named_modules())
    copies: dict[int, tuple[torch.Tensor, torch.Tensor, str]] = {}
    for record, params in zip(records, converted):
        m = modules[record.name]
        for key, value in params.items():
            t = getattr(m, key, None)
            if value is None or t is None:
                continue
            new = torch.as_tensor(value).to(dtype=t.dtype, device=t.device)
            held = copies.get(id(t))
            if held is not None and not torch.equal(held[1], new):
                raise ValueError(
                    f"`target` ties {held[2]} and {record.label}.{key} (one tensor), but the "
                    "source holds different values for them: the target would keep only one"
                )
            copies[id(t)] = (t, new, f"{record.label}.{key}")
    with torch.no_grad():
        for t, value, _ in copies.values():
            t.copy_(value)
