"""Dask backend: lazy shuffles and sub-pixel convolutions on ``dask.array`` arrays.

Nothing is computed at call time: every operation returns a Dask array whose task
graph has one task per chunk (plus a rechunk where noted), so it runs on the
threaded scheduler or on a ``dask.distributed`` cluster alike.

* Shuffle and unshuffle move each chunk with its own backend (the NumPy backend, or
  the CuPy kernels when the chunks are CuPy arrays), on a plan made for the chunk:
  spatial chunks become spatial chunks times the factor, batch chunks are
  kept.  Channels: a CRD shuffle keeps channel chunks that are whole multiples of
  ``prod(factor)`` (each maps to an output channel chunk); a DCR shuffle or unshuffle
  interleaves every channel, so the channel axis is rechunked to one chunk first.
  An unshuffle needs spatial chunks divisible by the factor: they are rechunked once
  where they are not.
* The LR convolution of ``sub_pixel_conv`` pads the array lazily and gives each chunk
  the ``kernel - 1`` pixels that follow it (``dask.array.overlap``), so chunk edges
  are exact; its channels are one chunk.  Blur and crop are Dask's own lazy slicing.

Dask arrays are immutable here: ``out=`` is refused by :mod:`subpixel.ops`.
"""

from __future__ import annotations

import math
from typing import Any

import dask
import dask.array as da
import numpy as np

from .._core import spec as _spec
from .._core.spec import ConvPlan, Plan
from . import backend_for
from ._base import ArrayBackend


def _channel_axis(ndim: int, plan_layout: str, d: int) -> int:
    return ndim - d - 1 if plan_layout == "channels_first" else ndim - 1


def _spatial_axes(ndim: int, layout: str, d: int) -> list[int]:
    first = ndim - d if layout == "channels_first" else ndim - d - 1
    return list(range(first, first + d))


def _multiples(chunks: tuple[int, ...], unit: int) -> tuple[int, ...] | None:
    """``chunks`` unchanged if every one is a multiple of ``unit``, else None."""
    return chunks if all(c % unit == 0 for c in chunks) else None


def _round_chunks(chunks: tuple[int, ...], unit: int) -> tuple[int, ...]:
    """Chunks of about the same sizes, each a whole multiple of ``unit``."""
    total = sum(chunks)
    size = max(unit, (max(chunks) // unit) * unit)
    out = [size] * (total // size)
    if total % size:
        out.append(total % size)
    return tuple(out)


def _at_least(chunks: tuple[int, ...], k: int) -> tuple[int, ...]:
    """``chunks`` with small ones merged into their neighbours: each at least
    ``k - 1`` (the overlap a chunk borrows) and the last at least ``k``."""
    out: list[int] = []
    for c in chunks:
        if out and out[-1] < k:
            out[-1] += c
        else:
            out.append(c)
    while len(out) > 1 and out[-1] < k:
        last = out.pop()
        out[-1] += last
    return tuple(out)


def _block_op(op: str, factor: tuple[int, ...], d: int, layout: str, order: str):
    """The shuffle of one chunk, planned for the chunk and moved by its own backend
    (NumPy's or CuPy's)."""

    def run(block: Any) -> Any:
        inner = _chunk_backend(block)
        shape = inner.shape(block)
        plan = _spec.make_plan(op, shape, factor, d, layout, order, cache=inner.cache_plans())
        return inner.rearrange(block, plan)

    return run


# the chunk libraries Dask assembles results of (its concatenation dispatches on them)
CHUNK_BACKENDS = ("numpy", "cupy")


def _chunk_backend(block: Any) -> Any:
    """The backend of one chunk; ``TypeError`` for a library Dask cannot assemble."""
    backend = backend_for(block)
    if backend.name not in CHUNK_BACKENDS:
        kind = f"{type(block).__module__.split('.')[0]}.{type(block).__name__}"
        raise TypeError(
            f"a Dask array's chunks must be NumPy or CuPy arrays; this one holds {kind} "
            "chunks, which Dask cannot assemble (make them NumPy first: "
            "x.map_blocks(np.asarray))"
        )
    return backend


def _known_chunks(x: Any, axes: Any, what: str) -> None:
    """``ValueError`` where ``x``'s chunk sizes along ``axes`` are unknown (NaN)."""
    for ax in axes:
        if any(isinstance(c, float) and math.isnan(c) for c in x.chunks[ax]):
            raise ValueError(
                f"{what} needs the chunk sizes of axis {ax} of this Dask array, which are "
                "unknown (NaN, as after boolean indexing): call x.compute_chunk_sizes() first"
            )


class DaskBackend(ArrayBackend[da.Array]):
    name = "dask"
    mutable = False

    def shape(self, x: Any) -> tuple:
        return tuple(None if isinstance(s, float) and math.isnan(s) else s for s in x.shape)

    def is_array(self, obj: Any) -> bool:
        return isinstance(obj, da.Array)

    def device(self, x: Any) -> str:
        return "cpu" if isinstance(x._meta, np.ndarray) else type(x._meta).__module__.split(".")[0]

    def from_numpy(self, a: Any, like: Any = None) -> da.Array:
        a = np.asarray(a, dtype=None if like is None else like.dtype)
        if like is not None and not isinstance(like._meta, np.ndarray):
            a = backend_for(like._meta).from_numpy(a)  # CuPy chunks: the data on the GPU
        return da.from_array(a, chunks=-1, asarray=False)

    def to_numpy(self, x: Any) -> np.ndarray:
        value = x.compute()
        return np.asarray(backend_for(value).to_numpy(value))

    def concat(self, arrays: list, axis: int) -> da.Array:
        return da.concatenate(arrays, axis=axis)

    def zeros(self, shape: tuple, like: Any) -> da.Array:
        return da.zeros(shape, dtype=like.dtype)

    def tanh(self, x: Any) -> da.Array:
        return da.tanh(x)

    def describe_devices(self) -> str:
        return "cpu (and the devices of its chunks' library)"

    def bench_baselines(self, x: Any) -> dict[str, Any]:
        return {"copy": lambda: (x + 0).persist()}

    def synchronize(self, x: Any) -> None:
        if isinstance(x, da.Array):
            x.persist()

    # -- shuffles ------------------------------------------------------------

    def rearrange(self, x: Any, plan: Plan, out: Any = None) -> da.Array:
        d = plan.spatial_dims
        ndim = x.ndim
        cax = _channel_axis(ndim, plan.layout, d)
        saxes = _spatial_axes(ndim, plan.layout, d)
        R = math.prod(plan.factor)
        _chunk_backend(x._meta)
        if plan.op == "unshuffle":  # its chunks are rechecked to hold whole blocks
            _known_chunks(x, saxes, "unshuffle")
        chunks = dict(enumerate(x.chunks))
        # channels: whole multiples of R for a CRD shuffle, one chunk where DCR interleaves
        if plan.op == "shuffle" and plan.order == "CRD":
            chunks[cax] = _multiples(x.chunks[cax], R) or _round_chunks(x.chunks[cax], R)
        elif plan.order == "DCR":
            chunks[cax] = (x.shape[cax],)
        if plan.op == "unshuffle":  # each chunk must hold whole blocks
            for ax, f in zip(saxes, plan.factor):
                chunks[ax] = _multiples(x.chunks[ax], f) or _round_chunks(x.chunks[ax], f)
        wanted = tuple(chunks[a] for a in range(ndim))
        if wanted != x.chunks:
            x = x.rechunk(wanted)
        out_chunks = list(x.chunks)
        if plan.op == "shuffle":
            out_chunks[cax] = tuple(c // R for c in x.chunks[cax])
            for ax, f in zip(saxes, plan.factor):
                out_chunks[ax] = tuple(c * f for c in x.chunks[ax])
        else:
            out_chunks[cax] = tuple(c * R for c in x.chunks[cax])
            for ax, f in zip(saxes, plan.factor):
                out_chunks[ax] = tuple(c // f for c in x.chunks[ax])
        fn = _block_op(plan.op, plan.factor, d, plan.layout, plan.order)
        return x.map_blocks(fn, chunks=tuple(out_chunks), dtype=x.dtype, meta=x._meta)

    # -- the LR convolution -----------------------------------------------------

    def conv(self, x: Any, weight: Any, bias: Any, cplan: ConvPlan) -> da.Array:
        """Zero padding lazily, then each chunk with the ``kernel - 1`` pixels after it."""
        d = len(cplan.kernel)
        ndim = x.ndim
        cax = _channel_axis(ndim, cplan.layout, d)
        saxes = _spatial_axes(ndim, cplan.layout, d)
        _chunk_backend(x._meta)
        # overlapping chunks and the padding are built from the chunks' sizes
        _known_chunks(x, range(ndim), "sub_pixel_conv")
        # each chunk's library checked before Dask's own padding and overlap touch it
        x = x.map_blocks(_checked_chunk, dtype=x.dtype, meta=x._meta)
        pads = [(0, 0)] * ndim
        for ax, p in zip(saxes, cplan.padding):
            pads[ax] = p
        if any(a or b for a, b in cplan.padding):
            x = da.pad(x, pads, mode="constant")
        chunks = list(x.chunks)
        chunks[cax] = (x.shape[cax],)  # a convolution reads every input channel
        for ax, k in zip(saxes, cplan.kernel):  # every chunk at least the kernel's reach
            chunks[ax] = _at_least(x.chunks[ax], k)
        if tuple(chunks) != x.chunks:
            x = x.rechunk(tuple(chunks))
        depth: dict[int, Any] = {a: 0 for a in range(ndim)}
        for ax, k in zip(saxes, cplan.kernel):
            depth[ax] = (0, k - 1)
        extended = da.overlap.overlap(x, depth=depth, boundary="none")
        w_host = _host(weight)
        b_host = None if bias is None else _host(bias)
        out_chunks = list(x.chunks)
        out_chunks[cax] = (w_host.shape[0],)
        for ax, k in zip(saxes, cplan.kernel):
            out_chunks[ax] = (*x.chunks[ax][:-1], x.chunks[ax][-1] - (k - 1))
        # the parameters are one key each in the graph, not a copy in every task
        return extended.map_blocks(
            _conv_block,
            dask.delayed(w_host),
            None if b_host is None else dask.delayed(b_host),
            d=d,
            layout=cplan.layout,
            order=cplan.shuffle.order,
            chunks=tuple(out_chunks),
            dtype=x.dtype,
            meta=x._meta,
        )


def _checked_chunk(block: Any) -> Any:
    _chunk_backend(block)
    return block


def _conv_block(
    block: Any, w_host: np.ndarray, b_host: np.ndarray | None, *, d: int, layout: str, order: str
) -> Any:
    """One chunk (with the ``kernel - 1`` pixels after it) of the LR convolution."""
    backend = _chunk_backend(block)
    w = backend.from_numpy(w_host, like=block)
    b = None if b_host is None else backend.from_numpy(b_host, like=block)
    b_shape = None if b_host is None else b_host.shape
    plan = _spec.make_conv_plan(block.shape, w_host.shape, b_shape, 1, "valid", d, layout, order)
    return backend.conv(block, w, b, plan)


def _host(a: Any) -> np.ndarray:
    """A parameter as a NumPy array (a Dask parameter is small: computed once)."""
    if isinstance(a, da.Array):
        a = a.compute()
    return np.asarray(backend_for(a).to_numpy(a)) if not isinstance(a, np.ndarray) else a


backend = DaskBackend()
