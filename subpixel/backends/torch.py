"""PyTorch backend.

* Graph path (autograd, ``torch.compile``, ``torch.onnx.export``, GPUs): one
  ``reshape -> permute -> reshape`` from the plan, a single copy.  PyTorch's own
  ``pixel_shuffle`` computes the same for CRD channels_first 2-D; it is used
  where it is not slower: small tensors (lower overhead) and inputs in
  ``channels_last`` memory format.  On large contiguous CPU tensors its kernel
  is slower than one copy (docs/benchmarks.md).
* CPU fast path, when nothing records the operation (no autograd, no tracer)
  and the tensor is large: the NumPy backend's scheduled copy (cache-blocked,
  threaded) runs on the tensors' own memory, which beats PyTorch's strided
  ``copy_`` for these permutations.  Any dtype travels as raw bytes.
* A 4-D/5-D input in ``channels_last``/``channels_last_3d`` memory format is
  shuffled through its dense NHWC view, so the result keeps that format.
* ``out=``: the data is written straight into ``out``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .._core.spec import ConvPlan, Plan, make_plan
from ._base import ArrayBackend
from .numpy import strided_copy

_SUB_BYTE = frozenset(
    getattr(torch, f"{kind}{bits}")
    for kind in ("int", "uint")
    for bits in range(1, 8)
    if hasattr(torch, f"{kind}{bits}")
)
_MEMORY_FORMAT_BY_NDIM = {4: torch.channels_last, 5: torch.channels_last_3d}
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_FAST_MIN_BYTES = 1 << 20  # below this the graph path's lower overhead wins
# dtypes moved as raw bytes of the same size by the NumPy fast path
_RAW_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_PLAIN_TYPES = (torch.Tensor, torch.nn.Parameter)
# dtypes PyTorch's pixel_shuffle/pixel_unshuffle have kernels for (others, such as
# uint16 or float8, move through reshape/permute)
_NATIVE_DTYPES = frozenset(
    {
        torch.bool,
        torch.uint8,
        torch.int8,
        torch.int16,
        torch.int32,
        torch.int64,
        torch.float16,
        torch.bfloat16,
        torch.float32,
        torch.float64,
        torch.complex64,
        torch.complex128,
    }
)


def _is_native_shape(plan: Plan) -> bool:
    f = plan.factor
    return plan.layout == "channels_first" and len(f) == 2 and f[0] == f[1] and f[0] > 1


def _is_native(plan: Plan, dtype: torch.dtype) -> bool:
    """PyTorch's pixel_shuffle/pixel_unshuffle compute exactly this plan."""
    return plan.order == "CRD" and _is_native_shape(plan) and dtype in _NATIVE_DTYPES


def _native(x: torch.Tensor, plan: Plan) -> torch.Tensor:
    r = plan.factor[0]
    return F.pixel_shuffle(x, r) if plan.op == "shuffle" else F.pixel_unshuffle(x, r)


def _nothing_records(x: torch.Tensor) -> bool:
    return not (x.requires_grad and torch.is_grad_enabled())


def _fast_path_ok(*tensors: torch.Tensor) -> bool:
    """True where the NumPy copy may stand in for PyTorch's (call when not tracing):
    not under a dispatch mode either (``make_fx``, a recorder of the ops that run),
    which would not see a copy made outside PyTorch."""
    if torch._C._len_torch_dispatch_stack():
        return False
    for t in tensors:
        if (
            type(t) not in _PLAIN_TYPES
            or t.device.type != "cpu"
            or t.layout != torch.strided
            or not t.is_contiguous()
            or t.is_conj()
            or t.is_neg()
            or t.element_size() not in _RAW_VIEW
        ):
            return False
    return _nothing_records(tensors[0])


def _as_numpy(t: torch.Tensor) -> np.ndarray:
    """The tensor's memory as a NumPy array of same-size integers (no copy)."""
    return t.detach().view(_RAW_VIEW[t.element_size()]).numpy()


def _fast_into(x: torch.Tensor, plan: Plan, dst: torch.Tensor) -> None:
    src = _as_numpy(x).reshape(plan.src_shape)
    strided_copy(_as_numpy(dst).reshape(plan.dst_shape), src, plan.perm)


def _channels_last_format(x: torch.Tensor) -> bool:
    fmt = _MEMORY_FORMAT_BY_NDIM.get(x.dim())
    return (
        fmt is not None
        and not x.is_contiguous()
        and x.is_contiguous(memory_format=fmt)
        and x.numel() > 0
    )


def _via_channels_last(x: torch.Tensor, plan: Plan) -> torch.Tensor:
    """Shuffle an NCHW tensor stored NHWC through its dense NHWC view."""
    nhwc = x.movedim(1, -1)  # a contiguous view
    alt = make_plan(plan.op, tuple(nhwc.shape), plan.factor, None, "channels_last", plan.order)
    y = _rearrange(nhwc, alt)
    return y.movedim(-1, 1)  # NCHW logical shape, channels_last memory format


def _rearrange(x: torch.Tensor, plan: Plan) -> torch.Tensor:
    if not torch.compiler.is_compiling():
        nbytes = x.numel() * x.element_size()
        if nbytes >= _FAST_MIN_BYTES and _fast_path_ok(x):
            y = torch.empty(plan.out_shape, dtype=x.dtype)
            _fast_into(x, plan, y)
            return y
        # PyTorch's op is faster on small tensors (but wrong on empty ones: it returns
        # the input's shape from pixel_unshuffle)
        if 0 < nbytes < _FAST_MIN_BYTES and _is_native(plan, x.dtype):
            return _native(x, plan)
    if plan.is_identity:  # nothing moves, but the result must be a new tensor
        return x.clone(memory_format=torch.contiguous_format).view(plan.out_shape)
    # reshape copies unless the permuted view already has the output's shape: then
    # contiguous() does (a result is never a view of the input)
    y = x.reshape(plan.src_shape).permute(plan.perm).reshape(plan.out_shape).contiguous()
    if not torch.compiler.is_compiling() and not torch.jit.is_tracing() and _same_memory(x, y):
        y = y.clone()  # a size-1 axis moved at run time: the "copy" was a view
    return y


def _same_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.device.type == "meta" or a.numel() == 0:
        return False
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


class TorchBackend(ArrayBackend[torch.Tensor]):
    name = "torch"
    mutable = True

    def cache_plans(self) -> bool:
        # TorchDynamo traces through functools.lru_cache (with a warning); let it
        # trace the plain function instead
        return not torch.compiler.is_compiling()

    def is_array(self, obj: Any) -> bool:
        return isinstance(obj, torch.Tensor)

    def dtype_name(self, x: Any) -> str:
        return str(x.dtype).removeprefix("torch.")

    def astype(self, x: Any, name: str) -> torch.Tensor:
        return x.to(getattr(torch, name))

    def movable(self, x: Any) -> bool:
        # quantized and sub-byte (int1..int7, uint1..uint7) dtypes have no copy kernel
        return not x.is_quantized and x.dtype not in _SUB_BYTE

    def device(self, x: Any) -> str:
        return str(x.device)

    def may_share_memory(self, a: Any, b: Any) -> bool:
        return a.device == b.device and _same_memory(a, b)

    def out_problem(self, out: Any, x: Any) -> tuple[str, str] | None:
        # (an input that requires grad is fine: the copy into `out` is recorded)
        if out.requires_grad and torch.is_grad_enabled():
            return "requires_grad", "requires_grad=True"
        if any(st == 0 and n > 1 for st, n in zip(out.stride(), out.shape)):
            return "internal_overlap", f"stride={tuple(out.stride())}"
        return None

    def copy_into(self, out: Any, y: Any) -> None:
        out.copy_(y)

    def zeros(self, shape: tuple, like: Any) -> torch.Tensor:
        return torch.zeros(shape, dtype=like.dtype, device=like.device)

    def tanh(self, x: Any) -> torch.Tensor:
        return torch.tanh(x)

    def synchronize(self, x: Any) -> None:
        if x.is_cuda:
            torch.cuda.synchronize(x.device)

    def describe_devices(self) -> str:
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return "cpu" + (f", cuda x{gpus}" if gpus else "")

    def bench_baselines(self, x: Any) -> dict[str, Any]:
        buf = torch.empty_like(x)
        return {"copy": lambda: buf.copy_(x), "native": lambda: F.pixel_shuffle(x, 2)}

    def from_numpy(self, a: Any, like: Any = None) -> torch.Tensor:
        a = np.asarray(a)
        t = torch.from_numpy(np.array(a, dtype=a.dtype.newbyteorder("="), copy=True))
        return t if like is None else t.to(device=like.device, dtype=like.dtype)

    def concat(self, arrays: list, axis: int) -> torch.Tensor:
        return torch.cat(arrays, dim=axis)

    def sub_pixel_conv(self, x: Any, weight: Any, bias: Any, cplan: ConvPlan) -> torch.Tensor:
        """LR conv + shuffle.  A 2-D DCR layer on the CPU runs as the equivalent CRD
        one (its output channels permuted): PyTorch's channels_last CRD shuffle is
        the fastest path there, and the numbers are the same."""
        plan = cplan.shuffle
        if plan.order == "DCR" and _is_native_shape(plan) and x.device.type == "cpu":
            R = math.prod(plan.factor)
            C = weight.shape[0] // R
            # CRD position c*R + b holds DCR channel b*C + c
            index = torch.arange(weight.shape[0], device=weight.device).view(R, C).t().reshape(-1)
            weight = weight.index_select(0, index)
            bias = None if bias is None else bias.index_select(0, index)
            plan = make_plan("shuffle", cplan.lr_shape, plan.factor, None, plan.layout, "CRD")
        lr = self.conv(x, weight, bias, cplan)
        if (
            plan.layout == "channels_first"
            and plan.order == "CRD"
            and plan.op == "shuffle"
            and plan.batch_ndim == 1
            and x.is_contiguous()
            and _channels_last_format(lr)
        ):
            # the conv ran channels_last; the output keeps the input's (contiguous)
            # format, as PyTorch's convolutions do, in one copy
            d = len(plan.factor)  # (N, C, *r, *spatial) is a view of this memory
            axes = (0, 1, *(a for i in range(d) for a in (2 + d + i, 2 + i)))
            return lr.unflatten(1, (-1, *plan.factor)).permute(axes).reshape(plan.out_shape)
        return self.rearrange(lr, plan)

    def conv(self, x: Any, weight: Any, bias: Any, cplan: ConvPlan) -> torch.Tensor:
        """LR convolution with PyTorch's conv; 2-D/3-D on CPU run in channels_last
        memory format (faster there, and PyTorch's shuffle for that format is too)."""
        d = len(cplan.kernel)
        nbatch = x.dim() - d - 1
        if cplan.layout == "channels_last":
            x = x.movedim(-1, nbatch)
        batch = x.shape[:nbatch]
        x = x.reshape(-1, *x.shape[nbatch:])
        fmt = _MEMORY_FORMAT_BY_NDIM.get(d + 2) if x.device.type == "cpu" else None
        if fmt is not None:
            x = x.contiguous(memory_format=fmt)
            weight = weight.contiguous(memory_format=fmt)
        if all(a == b for a, b in cplan.padding):
            padding: Any = tuple(a for a, _ in cplan.padding)
        else:
            x = F.pad(x, [v for pair in reversed(cplan.padding) for v in pair])
            padding = 0
        lr = _CONV[d](x, weight, bias, padding=padding)
        lr = lr.reshape(*batch, *lr.shape[1:]) if nbatch != 1 else lr
        if cplan.layout == "channels_last":
            lr = lr.movedim(nbatch, -1)
        return lr

    def to_numpy(self, x: Any) -> np.ndarray:
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16:
            x = x.float()
        return x.numpy()

    def rearrange(self, x: Any, plan: Plan, out: Any = None) -> torch.Tensor:
        if out is not None:
            return self._into(x, plan, out)
        if plan.layout == "channels_first" and plan.batch_ndim == 1 and _channels_last_format(x):
            # PyTorch's CRD kernel for this memory format is the fastest measured
            return _native(x, plan) if _is_native(plan, x.dtype) else _via_channels_last(x, plan)
        return _rearrange(x, plan)

    def _into(self, x: torch.Tensor, plan: Plan, out: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_compiling() and _fast_path_ok(x, out):
            _fast_into(x, plan, out)
            return out
        src = x.reshape(plan.src_shape).permute(plan.perm)
        if out.is_contiguous():
            out.view(plan.dst_shape).copy_(src)
        else:
            out.copy_(src.reshape(plan.out_shape))
        return out


backend = TorchBackend()
