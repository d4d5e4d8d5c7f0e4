"""Launch geometry for the CUDA kernels in ``cuda/`` (pure Python; shared by the
CuPy backend and the host-emulation tests, so both exercise the same numbers)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from .._core.spec import Plan

MAX_DIMS = 8
ELEMENT_TYPES = {
    1: "unsigned char",
    2: "unsigned short",
    4: "unsigned int",
    8: "unsigned long long",
    16: "subpixel::u128",
}
FLOAT_TYPES = {"float32": "float", "float64": "double"}
INDEX_TYPES = {32: "unsigned int", 64: "long long"}


@dataclass(frozen=True)
class Geometry:
    dst_shape: tuple[int, ...]  # output axes, C order
    src_strides: tuple[int, ...]  # input stride (elements) of each output axis
    itemsize: int  # bytes moved per element (after widening)
    widen: int  # original elements per moved element
    total: int  # moved elements in the output
    index_bits: int  # 32 or 64

    @property
    def ndim(self) -> int:
        return len(self.dst_shape)

    def geom_array(self, extra: tuple[int, ...] = ()) -> list[int]:
        return [*self.dst_shape, *self.src_strides, *extra]


def _strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    out, acc = [], 1
    for n in reversed(shape):
        out.append(acc)
        acc *= n
    return tuple(reversed(out))


@lru_cache(maxsize=512)
def geometry(plan: Plan, itemsize: int, max_widen_bytes: int = 16) -> Geometry:
    """The gather ``out[i] = in[offset(i)]`` for a plan, with the innermost axis
    widened into vectors of up to ``max_widen_bytes`` where it is contiguous on
    both sides (pass the alignment both pointers share)."""
    src_shape, perm = plan.src_shape, plan.perm
    src_strides = _strides(src_shape)
    dst_shape = tuple(src_shape[p] for p in perm)
    strides = tuple(src_strides[p] for p in perm)
    if not dst_shape:  # zero-dimensional: a single element
        dst_shape, strides = (1,), (1,)
    widen = 1
    if perm and perm[-1] == len(perm) - 1:  # innermost axis contiguous on both sides
        inner = dst_shape[-1]
        for k in (16, 8, 4, 2):
            if (
                k % itemsize == 0
                and k // itemsize > 1
                and k <= max_widen_bytes
                and inner % (k // itemsize) == 0
            ):
                widen = k // itemsize
                break
    if widen > 1:  # the innermost axis keeps stride 1, in wider elements
        dst_shape = (*dst_shape[:-1], dst_shape[-1] // widen)
        strides = (*(s // widen for s in strides[:-1]), 1)
    if len(dst_shape) > MAX_DIMS:  # pragma: no cover - plans have at most 2 * 3 + 2 axes
        raise ValueError(f"at most {MAX_DIMS} axes are supported; this plan has {len(dst_shape)}")
    total = math.prod(dst_shape)
    largest = max(total, *(s * (n - 1) + 1 for s, n in zip(strides, dst_shape)))
    bits = 32 if largest < 2**31 else 64
    return Geometry(dst_shape, strides, itemsize * widen, widen, total, bits)


def kernel_name(geom: Geometry) -> str:
    return f"subpixel::rearrange<{ELEMENT_TYPES[geom.itemsize]}, {INDEX_TYPES[geom.index_bits]}, {geom.ndim}>"


def epilogue_name(dtype: str, geom: Geometry, has_bias: bool) -> str:
    bias = "true" if has_bias else "false"
    return f"subpixel::shuffle_bias<{FLOAT_TYPES[dtype]}, {INDEX_TYPES[geom.index_bits]}, {geom.ndim}, {bias}>"


def all_kernel_names() -> list[str]:
    """Every specialisation the backend can ask for (CI compiles them all)."""
    names = []
    for bits in INDEX_TYPES:
        for ndim in range(1, MAX_DIMS + 1):
            for t in ELEMENT_TYPES.values():
                names.append(f"subpixel::rearrange<{t}, {INDEX_TYPES[bits]}, {ndim}>")
            for f in FLOAT_TYPES.values():
                for bias in ("true", "false"):
                    names.append(
                        f"subpixel::shuffle_bias<{f}, {INDEX_TYPES[bits]}, {ndim}, {bias}>"
                    )
    return names


def launch_config(total: int, threads: int = 256, max_blocks: int = 65535 * 8) -> tuple[int, int]:
    """(blocks, threads): one element per thread, capped (the kernels grid-stride)."""
    return max(1, min(-(-total // threads), max_blocks)), threads


def explicit_instantiations() -> str:
    """A translation unit instantiating every specialisation (for nvcc in CI)."""
    lines = ['#include "subpixel_kernels.cu"', ""]
    for name in all_kernel_names():
        base, args = name.split("<", 1)
        parts = [a.strip() for a in args[:-1].split(",")]
        if base.endswith("rearrange"):
            t, i = parts[0], parts[1]
            sig = f"(const {t}*, {t}*, const long long*, {i})"
        else:
            t, i = parts[0], parts[1]
            sig = f"(const {t}*, const {t}*, {t}*, const long long*, {i})"
        lines.append(f"template __global__ void {name}{sig};")
    return "\n".join(lines) + "\n"
