"""CuPy backend on raw CUDA kernels (``cuda/subpixel_kernels.cuh``).

* Shuffle/unshuffle: one gather kernel, ``out[i] = in[offset(i)]``, over the
  plan's minimal axes; consecutive threads write consecutive elements
  (coalesced stores).  Kernels are keyed on the element size (1, 2, 4, 8 or 16
  bytes: every dtype moves as raw bytes), the index width (32-bit, or 64-bit
  where an array has 2^31 elements or more) and the number of axes.  Where the
  innermost axis is contiguous on both sides it moves as vectors of up to 16
  bytes.  Non-contiguous inputs are made contiguous first.
* Sub-pixel convolution: im2col + ``cupy.matmul`` (cuBLAS) for the LR
  convolution, then one epilogue kernel that adds the bias while writing the
  shuffled HR output, so the HR result is written once (float32/float64; other
  dtypes shuffle after the GEMM).
* Kernels are compiled with NVRTC on first use and cached per device and
  specialisation.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import cupy as cp
import numpy as np

from .._core.spec import ConvPlan, Plan
from ._base import ArrayBackend
from ._cuda_geometry import FLOAT_TYPES, epilogue_name, geometry, kernel_name, launch_config
from ._im2col import im2col_conv

SOURCE_DIR = Path(__file__).parent / "cuda"
# the header itself (subpixel_kernels.cu only includes it): CuPy's compile cache
# keys on the source text, so a changed header recompiles
_SOURCE = (SOURCE_DIR / "subpixel_kernels.cuh").read_text()
_OPTIONS = ("-std=c++17",)

_functions: dict[tuple[int, str], Any] = {}
_geoms: dict[tuple[int, tuple], Any] = {}


def _kernel(name: str) -> Any:
    key = (cp.cuda.Device().id, name)
    fn = _functions.get(key)
    if fn is None:
        module = cp.RawModule(code=_SOURCE, options=_OPTIONS, name_expressions=[name])
        fn = _functions[key] = module.get_function(name)
    return fn


def _geom_on_device(values: list[int]) -> Any:
    key = (cp.cuda.Device().id, tuple(values))
    arr = _geoms.get(key)
    if arr is None:
        arr = _geoms[key] = cp.asarray(np.asarray(values, dtype=np.int64))
    return arr


def _alignment(*pointers: int) -> int:
    """The largest power of two up to 16 that divides every pointer."""
    align = 16
    for p in pointers:
        while p % align:
            align //= 2
    return align


def _index(bits: int, value: int) -> Any:
    return np.uint32(value) if bits == 32 else np.int64(value)


def _launch(fn: Any, total: int, args: tuple) -> None:
    blocks, threads = launch_config(total)
    fn((blocks,), (threads,), args)


class CupyBackend(ArrayBackend[Any]):
    name = "cupy"
    mutable = True

    def is_array(self, obj: Any) -> bool:
        return isinstance(obj, cp.ndarray)

    def device(self, x: Any) -> str:
        return f"cuda:{x.device.id}"

    def may_share_memory(self, a: Any, b: Any) -> bool:
        return bool(cp.may_share_memory(a, b))

    def copy_into(self, out: Any, y: Any) -> None:
        with out.device:
            cp.copyto(out, y, casting="no")

    def zeros(self, shape: tuple, like: Any) -> Any:
        with like.device:
            return cp.zeros(shape, dtype=like.dtype)

    def from_numpy(self, a: Any, like: Any = None) -> Any:
        if like is None:
            return cp.asarray(a)
        with like.device:
            return cp.asarray(np.asarray(a, dtype=like.dtype))

    def to_numpy(self, x: Any) -> np.ndarray:
        return cp.asnumpy(x)

    def concat(self, arrays: list, axis: int) -> Any:
        return cp.concatenate(arrays, axis=axis)

    def tanh(self, x: Any) -> Any:
        return cp.tanh(x)

    def synchronize(self, x: Any) -> None:
        x.device.synchronize()

    def describe_devices(self) -> str:
        return f"cuda x{cp.cuda.runtime.getDeviceCount()}"

    def bench_baselines(self, x: Any) -> dict[str, Any]:
        buf = cp.empty_like(x)
        return {"copy": lambda: cp.copyto(buf, x)}

    def rearrange(self, x: Any, plan: Plan, out: Any = None) -> Any:
        with x.device:
            x = cp.ascontiguousarray(x)
            direct = out is not None and out.flags.c_contiguous
            target = out if direct else cp.empty(plan.out_shape, dtype=x.dtype)
            if target.size:
                geom = geometry(plan, x.itemsize, _alignment(x.data.ptr, target.data.ptr))
                fn = _kernel(kernel_name(geom))
                _launch(
                    fn,
                    geom.total,
                    (
                        x,
                        target,
                        _geom_on_device(geom.geom_array()),
                        _index(geom.index_bits, geom.total),
                    ),
                )
            if out is None:
                return target
            if not direct:
                out[...] = target
            return out

    def conv(self, x: Any, weight: Any, bias: Any, cplan: ConvPlan) -> Any:
        with x.device:
            return im2col_conv(cp, x, weight, bias, cplan)

    def sub_pixel_conv(self, x: Any, weight: Any, bias: Any, cplan: ConvPlan) -> Any:
        """cuBLAS GEMM for the LR conv, then the bias + shuffle epilogue kernel."""
        dtype = np.dtype(x.dtype).name
        if dtype not in FLOAT_TYPES:
            return self.rearrange(self.conv(x, weight, bias, cplan), cplan.shuffle)
        with x.device:
            lr = im2col_conv(cp, x, weight, None, cplan)  # contiguous, in the data's layout
            plan = cplan.shuffle
            hr = cp.empty(plan.out_shape, dtype=lr.dtype)
            if hr.size == 0:
                return hr
            geom = geometry(plan, lr.itemsize, lr.itemsize)  # element-wise: no widening
            d = plan.spatial_dims
            lr_channels = weight.shape[0]
            channel_stride = (
                math.prod(cplan.lr_shape[-d:]) if plan.layout == "channels_first" else 1
            )
            has_bias = bias is not None
            fn = _kernel(epilogue_name(dtype, geom, has_bias))
            b = bias.astype(lr.dtype, copy=False) if has_bias else lr
            _launch(
                fn,
                geom.total,
                (
                    lr,
                    cp.ascontiguousarray(b),
                    hr,
                    _geom_on_device(geom.geom_array((channel_stride, lr_channels))),
                    _index(geom.index_bits, geom.total),
                ),
            )
            return hr


backend = CupyBackend()
