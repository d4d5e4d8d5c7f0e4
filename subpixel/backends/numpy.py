"""NumPy backend: the reference and the default.

A shuffle is a strided copy.  ``np.copyto`` of the transposed view is correct
but slow when the destination's innermost axis is a factor (2 or 3 long): the
copy loop then runs a few elements at a time.  So the copy is *scheduled*:

* small innermost destination axes are looped over in Python, so that every
  ``np.copyto`` call moves long runs;
* the outer axes are cut into blocks of about ``_BLOCK_BYTES`` so that a block's
  source and destination stay in cache while all its phases are written;
* blocks are shared between threads (NumPy releases the GIL while copying)
  when the array is large; ``SUBPIXEL_NUM_THREADS`` or :func:`set_num_threads`
  sets how many (default: the CPUs this process may use, at most 8).
"""

from __future__ import annotations

import itertools
import math
import operator
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from .._core.spec import ConvPlan, Plan
from ._base import ArrayBackend
from ._im2col import im2col_conv

_BLOCK_BYTES = 2 << 20  # destination bytes per block (about one L2 cache)
_MAX_THREADS = 256
_SMALL_AXIS = 16  # innermost destination axes shorter than this are looped in Python
_MAX_LOOP = 64  # at most this many Python-level copies per block
_THREAD_MIN_BYTES = 4 << 20  # below this, one thread


def _thread_count(value: Any, name: str, *, text: bool = False) -> int:
    """``value`` (a decimal string if ``text``) as a thread count from 1 to
    ``_MAX_THREADS``; ``ValueError`` naming ``name`` otherwise."""
    n: int | None = None
    if text:
        if re.fullmatch(r"\s*[0-9]+\s*", value):
            n = int(value)
    elif not isinstance(value, (bool, str)):
        try:
            n = operator.index(value)
        except TypeError:
            n = None
    if n is None or not 1 <= n <= _MAX_THREADS:
        raise ValueError(
            f"`{name}` must be an integer from 1 to {_MAX_THREADS}. Received: {name}={value!r}"
        )
    return n


def _default_threads() -> int:
    env = os.environ.get("SUBPIXEL_NUM_THREADS")
    if env is not None and env.strip():
        return _thread_count(env, "SUBPIXEL_NUM_THREADS", text=True)
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


_num_threads = _default_threads()
_pool: tuple[ThreadPoolExecutor, int] | None = None  # the executor and its size
_pool_lock = threading.Lock()


def set_num_threads(n: int) -> None:
    """Threads used for large NumPy shuffles (1 disables threading; at most 256).

    Safe while other threads shuffle: they finish on the pool they started with,
    whose threads exit once it is no longer used."""
    global _num_threads, _pool
    n = _thread_count(n, "n")
    with _pool_lock:
        _num_threads = n
        # never shut down a pool another thread may be submitting to: drop the
        # reference; its idle workers exit when the executor is garbage-collected
        _pool = None


def get_num_threads() -> int:
    return _num_threads


def _forget_pool_after_fork() -> None:
    # a forked child inherits the executor object but not its threads
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _get_pool() -> tuple[ThreadPoolExecutor, int]:
    """The current pool and its size (callers keep using the pool they got)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = (ThreadPoolExecutor(_num_threads, thread_name_prefix="subpixel"), _num_threads)
        return _pool


@dataclass(frozen=True)
class _Schedule:
    loop_axes: tuple[int, ...]  # destination axes iterated in Python, innermost ones
    block_axis: int  # destination axis cut into chunks; axes before it are iterated
    blocks: tuple[tuple, ...]  # index tuples (slices) over axes 0..block_axis
    loop_keys: tuple[tuple, ...]  # one index tuple per combination of loop_axes values


@lru_cache(maxsize=256)
def _schedule(dst_shape: tuple, perm: tuple, itemsize: int) -> _Schedule:
    """How to copy ``src.transpose(perm)`` into a C-contiguous ``dst``."""
    ndim = len(dst_shape)
    # Short axes that are innermost on either side (within a cache line) are
    # looped over in Python, so every np.copyto moves long runs and all phases
    # of a cache line are written while it is hot.
    loop_axes: list[int] = []
    combos = 1
    for order in (range(ndim - 1, 0, -1), [perm.index(k) for k in range(ndim - 1, -1, -1)]):
        for a in order:
            if a in loop_axes:
                continue
            if a == 0 or dst_shape[a] >= _SMALL_AXIS or combos * dst_shape[a] > _MAX_LOOP:
                break
            loop_axes.append(a)
            combos *= dst_shape[a]
    loop_axes.sort()
    big_axes = [a for a in range(ndim) if a not in loop_axes]

    def footprint(a: int) -> int:
        """Bytes of destination under one index of axis ``a`` (loops included)."""
        inner = math.prod(dst_shape[a + 1 :])
        looped = math.prod(dst_shape[b] for b in loop_axes if b < a)
        return inner * looped * itemsize

    block_axis = big_axes[-1]
    for a in big_axes:
        if footprint(a) <= _BLOCK_BYTES:
            block_axis = a
            break
    chunk = max(1, _BLOCK_BYTES // max(footprint(block_axis), 1))
    # outer big axes are indexed with length-1 slices so that blocks keep every axis
    outer = [
        [slice(i, i + 1) for i in range(dst_shape[a])] if a in big_axes else [slice(None)]
        for a in range(block_axis)
    ]
    n = dst_shape[block_axis]
    chunks = [slice(s, min(s + chunk, n)) for s in range(0, n, chunk)]
    blocks = tuple((*tuple(o), c) for o in itertools.product(*outer) for c in chunks)
    loop_keys = []
    for idx in itertools.product(*(range(dst_shape[a]) for a in loop_axes)):
        key: list[Any] = [slice(None)] * ndim
        for a, i in zip(loop_axes, idx):
            key[a] = i
        loop_keys.append(tuple(key))
    return _Schedule(tuple(loop_axes), block_axis, blocks, tuple(loop_keys))


def _copy_blocks(dst: np.ndarray, src: np.ndarray, sched: _Schedule, blocks) -> None:
    keys = sched.loop_keys
    for block in blocks:
        d_block = dst[block]
        s_block = src[block]
        for key in keys:
            np.copyto(d_block[key], s_block[key], casting="no")


def strided_copy(dst: np.ndarray, src: np.ndarray, perm: tuple) -> None:
    """``np.copyto(dst, src.transpose(perm))`` for a C-contiguous ``dst``,
    scheduled for cache and threads."""
    src = src.transpose(perm)
    nbytes = dst.nbytes
    if nbytes < 2 * _BLOCK_BYTES or dst.ndim < 2:
        np.copyto(dst, src, casting="no")
        return
    sched = _schedule(dst.shape, perm, dst.itemsize)
    blocks = sched.blocks
    if _num_threads <= 1 or len(blocks) <= 1 or nbytes < _THREAD_MIN_BYTES:
        _copy_blocks(dst, src, sched, blocks)
        return
    pool, size = _get_pool()
    threads = min(size, len(blocks))
    step = -(-len(blocks) // threads)
    parts = [blocks[i : i + step] for i in range(0, len(blocks), step)]
    futures = [pool.submit(_copy_blocks, dst, src, sched, part) for part in parts[1:]]
    _copy_blocks(dst, src, sched, parts[0])
    for f in futures:
        f.result()


class NumpyBackend(ArrayBackend[np.ndarray]):
    name = "numpy"
    mutable = True

    def shape(self, x: Any) -> tuple:
        return np.shape(x)

    def is_array(self, obj: Any) -> bool:
        return isinstance(obj, np.ndarray)

    def may_share_memory(self, a: Any, b: Any) -> bool:
        return bool(np.may_share_memory(a, b))

    def out_problem(self, out: Any, x: Any) -> tuple[str, str] | None:
        if not out.flags.writeable:
            return "read_only", "flags.writeable=False"
        if any(st == 0 and n > 1 for st, n in zip(out.strides, out.shape)):
            return "internal_overlap", f"strides={out.strides}"
        return None

    def copy_into(self, out: Any, y: Any) -> None:
        np.copyto(out, y, casting="no")

    def zeros(self, shape: tuple, like: Any) -> np.ndarray:
        return np.zeros(shape, dtype=like.dtype)

    def tanh(self, x: Any) -> np.ndarray:
        return np.tanh(x)

    def bench_baselines(self, x: Any) -> dict[str, Any]:
        buf = np.empty_like(x)
        return {"copy": lambda: np.copyto(buf, x)}

    def from_numpy(self, a: np.ndarray, like: Any = None) -> np.ndarray:
        return np.array(a, dtype=None if like is None else like.dtype)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def concat(self, arrays: list, axis: int) -> np.ndarray:
        return np.concatenate(arrays, axis=axis)

    def conv(self, x: Any, weight: Any, bias: Any, cplan: ConvPlan) -> np.ndarray:
        """LR convolution by im2col + one batched matrix product (BLAS)."""
        return im2col_conv(np, np.asarray(x), np.asarray(weight), bias, cplan)

    def rearrange(self, x: Any, plan: Plan, out: Any = None) -> np.ndarray:
        x = np.asarray(x)
        src = x.reshape(plan.src_shape)
        if out is None:
            result = np.empty(plan.out_shape, dtype=x.dtype)
            strided_copy(result.reshape(plan.dst_shape), src, plan.perm)
            return result
        if out.flags.c_contiguous:
            strided_copy(out.reshape(plan.dst_shape), src, plan.perm)
        else:
            tmp = np.empty(plan.out_shape, dtype=x.dtype)
            strided_copy(tmp.reshape(plan.dst_shape), src, plan.perm)
            np.copyto(out, tmp, casting="no")
        return out


backend = NumpyBackend()
