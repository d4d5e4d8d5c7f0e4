"""PyTorch emitters of :mod:`subpixel._core.lowering`: the same numbers as
:func:`subpixel.shuffle` in every lowering, written into the graph that
``torch.onnx.export`` (either exporter) or ``torch.export`` records.

In eager mode ``native`` and ``auto`` run the backend's fastest path; while an ONNX
export traces, ``native`` is one ONNX ``DepthToSpace``/``SpaceToDepth`` node
(``torch.onnx.ops.symbolic`` for the dynamo exporter, an autograd function's
``symbolic`` for the TorchScript one).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .. import ops
from .._core import lowering as _lowering
from .._core import spec as _spec
from .._core.channels import gather_index

__all__ = ["lr_conv", "rearrange", "sub_pixel_conv"]

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _onnx_node(x: torch.Tensor, plan: _spec.Plan) -> torch.Tensor:
    """One ONNX node (and, for a CRD unshuffle, one channel gather) for a 4-D plan."""
    r = plan.factor[0]
    n, c, h, w = x.shape
    if plan.op == "shuffle":
        shape = [n, c // (r * r), h * r, w * r]
        if torch.jit.is_tracing():
            return _DepthToSpace.apply(x, r, plan.order)
        return torch.onnx.ops.symbolic(
            "DepthToSpace",
            (x,),
            {"blocksize": r, "mode": plan.order},
            dtype=x.dtype,
            shape=shape,
            version=13,
        )
    shape = [n, c * r * r, h // r, w // r]
    if torch.jit.is_tracing():
        y = _SpaceToDepth.apply(x, r)
    else:
        y = torch.onnx.ops.symbolic(
            "SpaceToDepth", (x,), {"blocksize": r}, dtype=x.dtype, shape=shape, version=13
        )
    if plan.order == "CRD":  # SpaceToDepth gives DCR: one gather puts the channels in CRD
        index = gather_index(int(c) * r * r, plan.factor, "DCR", "CRD")
        y = y.index_select(1, torch.as_tensor(index, device=x.device))
    return y


def _untraced(op: str, x: torch.Tensor, r: int, order: str) -> torch.Tensor:
    """The values, computed where the TorchScript tracer does not look (the exported
    node comes from ``symbolic``; a traced body would only confuse the exporter)."""
    a = getattr(ops, op)(x.detach().cpu().numpy(), r, order=order)
    return torch.from_numpy(a).to(x.device)


class _DepthToSpace(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, r: int, mode: str) -> torch.Tensor:
        return _untraced("shuffle", x, r, mode)

    @staticmethod
    def symbolic(g: Any, x: Any, r: int, mode: str) -> Any:
        return g.op("DepthToSpace", x, blocksize_i=r, mode_s=mode)


class _SpaceToDepth(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, r: int) -> torch.Tensor:
        return _untraced("unshuffle", x, r, "DCR")

    @staticmethod
    def symbolic(g: Any, x: Any, r: int) -> Any:
        return g.op("SpaceToDepth", x, blocksize_i=r)


def _exporting() -> bool:
    return torch.onnx.is_in_onnx_export()


def _reshape(x: torch.Tensor, plan: _spec.Plan) -> torch.Tensor:
    return x.reshape(plan.src_shape).permute(plan.perm).reshape(plan.out_shape)


def _flat(x: torch.Tensor, plan: _spec.Plan) -> torch.Tensor:
    for shape, perm in _lowering.flat_steps(plan):
        x = x.reshape(shape).permute(perm)
    return x.reshape(plan.out_shape)


def _conv(x: torch.Tensor, plan: _spec.Plan) -> torch.Tensor:
    d = plan.spatial_dims
    nbatch = plan.batch_ndim
    # the kernel is a constant: its channel count is fixed (a dynamic one is specialised)
    channels = int((plan.out_shape if plan.op == "shuffle" else plan.in_shape)[nbatch])
    kernel, groups = _lowering.one_hot_kernel(channels, plan.factor, plan.order)
    weight = torch.as_tensor(kernel, dtype=x.dtype, device=x.device)
    flat = x.reshape(-1, *x.shape[nbatch:]) if nbatch != 1 else x
    if plan.op == "shuffle":
        y = _CONV_T[d](flat, weight, stride=plan.factor, groups=groups)
    else:
        y = _CONV[d](flat, weight, stride=plan.factor, groups=groups)
    return y.reshape(plan.out_shape) if nbatch != 1 else y


def _one_batch_axis(x: torch.Tensor, nbatch: int, fn: Any) -> torch.Tensor:
    """``fn`` of ``x`` with its ``nbatch`` leading batch axes (none, or several) made one."""
    lead = x.shape[:nbatch]
    y = fn(x.reshape(-1, *x.shape[nbatch:]))
    return y.reshape(*lead, *y.shape[1:])


def rearrange(
    x: torch.Tensor,
    op: str,
    factor: Any,
    spatial_dims: Any,
    order: str,
    lowering: str,
    layout: str = "channels_first",
) -> torch.Tensor:
    """``subpixel.shuffle``/``unshuffle`` in ``lowering`` (native and conv: channels_first)."""
    exporting = _exporting()
    kw = {"spatial_dims": spatial_dims, "order": order, "layout": layout}
    if lowering == "auto" and not exporting:
        return getattr(ops, op)(x, factor, **kw)
    plan = _spec.make_plan(op, tuple(x.shape), factor, spatial_dims, layout, order, cache=False)
    if plan.batch_ndim != 1 and (lowering == "conv" or (lowering == "native" and exporting)):
        # the ops take one batch axis: the batch axes become one around them
        return _one_batch_axis(
            x, plan.batch_ndim, lambda t: rearrange(t, op, factor, spatial_dims, order, lowering)
        )
    native = layout == "channels_first" and plan.batch_ndim == 1
    if lowering == "native" or (
        lowering == "auto" and native and _lowering.has_native_op(plan.factor)
    ):
        _lowering.check_native("native", plan.factor)
        if not exporting:
            return getattr(ops, op)(x, factor, **kw)
        return _onnx_node(x, plan)
    if lowering == "flat":
        return _flat(x, plan)
    if lowering == "conv":
        return _conv(x, plan)
    return _reshape(x, plan)


def lr_conv(x: torch.Tensor, weight: torch.Tensor, bias: Any, padding: tuple) -> torch.Tensor:
    """The LR convolution of a layer, as plain PyTorch ops (exports everywhere)."""
    d = len(padding)
    if all(a == b for a, b in padding):
        return _CONV[d](x, weight, bias, padding=tuple(a for a, _ in padding))
    x = F.pad(x, [v for pair in reversed(padding) for v in pair])
    return _CONV[d](x, weight, bias)


def sub_pixel_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: Any, spec: Any, lowering: str
) -> torch.Tensor:
    """A layer's forward pass with its shuffle in ``lowering``."""
    if lowering == "auto" and not _exporting():
        return ops.sub_pixel_conv(x, weight, bias, **spec.op_kwargs())
    y = rearrange(
        lr_conv(x, weight, bias, spec.padding),
        "shuffle",
        spec.factor,
        spec.spatial_dims,
        spec.order,
        lowering,
    )
    if spec.blur:
        y = ops.blur(y, spatial_dims=spec.spatial_dims)
    if spec.has_crop:
        key = (
            Ellipsis,
            *(
                slice(a, y.shape[y.dim() - spec.spatial_dims + i] - b)
                for i, (a, b) in enumerate(spec.crop)
            ),
        )
        y = y[key]
    return y
