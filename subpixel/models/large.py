"""Images larger than memory: the bundled network on a lazy Dask array, chunk by chunk.

Each chunk of the LR image (a whole number of :data:`~subpixel.models.tiling.BLOCK`
blocks) is upscaled with :data:`~subpixel.models.tiling.HALO` pixels of context from
its neighbours by :func:`~subpixel.models.tiling.upscale_region`, the function the
in-memory path runs on the whole image: the result is identical to
:func:`~subpixel.models.tiling.upscale_image`, pixel for pixel.  Only a few chunks
are in memory at once, on the threaded scheduler or on a ``dask.distributed``
cluster.  Needs ``dask`` (and ``zarr`` or ``tifffile`` to read and write files).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import image
from .._core import files as _files
from .tiling import BLOCK, HALO, LumaModel, upscale_region

__all__ = ["Stored", "is_zarr", "open_lazy", "upscale_lazy", "upscale_store", "write_zarr"]

DEFAULT_CHUNK = 512  # LR pixels per side of a chunk (4 blocks; about 250 MB of work each at x3)


def _value_range(lr: Any) -> tuple[float, float]:
    import dask.array as da

    if lr.dtype == np.uint8 or lr.dtype == np.uint16:
        return 0.0, float(np.iinfo(lr.dtype).max)
    if lr.dtype.kind != "f":
        raise ValueError(f"the image must be uint8, uint16 or float. Received: dtype {lr.dtype}")
    lo, hi, finite = da.compute(lr.min(), lr.max(), da.isfinite(lr).all())  # one pass
    if not finite:
        raise ValueError(
            "the image holds NaN or infinite samples: they have no brightness to scale"
        )
    return min(0.0, float(lo)), max(1.0, float(hi))


def upscale_lazy(
    lr: Any, model: LumaModel, *, chunk: int | None = None, backend: str = "numpy"
) -> Any:
    """A lazy Dask array: ``lr`` ``(H, W)`` or ``(H, W, C)`` (a Dask array, or anything
    ``dask.array.asarray`` takes) upscaled like
    :func:`~subpixel.models.tiling.upscale_image`.  ``chunk``: LR pixels per side of a
    chunk, rounded up to whole blocks (default 512)."""
    import dask
    import dask.array as da

    lr = da.asarray(lr)
    flat = lr.ndim == 2
    if flat:
        lr = lr[..., None]
    if lr.ndim != 3 or lr.shape[2] not in (1, 2, 3, 4) or 0 in lr.shape[:2]:
        raise ValueError(
            f"the image must be (H, W) or (H, W, C) with C in 1..4. Received: shape {lr.shape}"
        )
    size = -(-(chunk or DEFAULT_CHUNK) // BLOCK) * BLOCK
    lr = lr.rechunk((size, size, -1))
    H, W, C = lr.shape
    r = model.scale
    limits = _value_range(lr)
    extended = da.overlap.overlap(lr, depth={0: HALO, 1: HALO, 2: 0}, boundary="none")
    chunks = (tuple(c * r for c in lr.chunks[0]), tuple(c * r for c in lr.chunks[1]), (C,))
    # every task refers to the model by its one key in the graph, and holds nothing but
    # numbers: a graph of n chunks stays O(n) in size, in the client and the scheduler
    out = extended.map_blocks(
        _run_chunk,
        dask.delayed(model),
        limits=limits,
        shape=(H, W),
        lr_chunks=(lr.chunks[0], lr.chunks[1]),
        backend=backend,
        chunks=chunks,
        dtype=lr.dtype,
        meta=np.empty((0, 0, 0), lr.dtype),
    )
    return out[..., 0] if flat else out


def _run_chunk(
    block: np.ndarray,
    model: LumaModel,
    *,
    limits: tuple[float, float],
    shape: tuple[int, int],
    lr_chunks: tuple[tuple[int, ...], tuple[int, ...]],
    backend: str,
    block_info: Any = None,
) -> np.ndarray:
    """One chunk of :func:`upscale_lazy`: ``block`` is the chunk with its halo."""
    i, j, _ = block_info[None]["chunk-location"]
    r0, c0 = sum(lr_chunks[0][:i]), sum(lr_chunks[1][:j])
    rows, cols = (r0, r0 + lr_chunks[0][i]), (c0, c0 + lr_chunks[1][j])
    origin = (max(r0 - HALO, 0), max(c0 - HALO, 0))
    return upscale_region(block, model, limits, shape, origin, rows, cols, backend=backend)


def open_lazy(path: str | os.PathLike) -> Any:
    """A Zarr array, or a (large) TIFF read through ``tifffile``'s Zarr view, as a lazy
    Dask array; ``ValueError("<path>: <reason>")`` for anything else."""
    import dask.array as da

    path = os.fspath(path)
    try:
        if path.rstrip("/").lower().endswith(".zarr"):
            return da.from_zarr(path)
        import tifffile

        return da.from_zarr(tifffile.imread(path, aszarr=True))
    except ImportError as exc:
        raise _files.FileError(
            path, f"reading it lazily needs {exc.name} (pip install it)"
        ) from None
    except Exception as exc:  # the libraries' own errors: not an image they read
        raise _files.FileError(
            path, f"not a Zarr array or TIFF ({type(exc).__name__}: {exc})"
        ) from None


def write_zarr(
    image: Any,
    path: str | os.PathLike,
    *,
    force: bool = False,
    progress: bool = False,
    client: Any = None,
) -> None:
    """Compute a lazy image into a Zarr store at ``path``: written to a temporary store
    in the same folder and renamed when complete (an existing store is replaced only
    with ``force``).  ``client``: a ``dask.distributed`` client to run on."""
    import tempfile

    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp.zarr", dir=folder)
    try:
        shutil.rmtree(tmp)  # to_zarr creates the store itself
        if client is not None:
            future = client.compute(image.to_zarr(tmp, compute=False))
            if progress:
                from distributed import progress as show

                show(future)
            future.result()
        elif progress:
            from dask.diagnostics import ProgressBar

            with ProgressBar():
                image.to_zarr(tmp)
        else:
            image.to_zarr(tmp)
        if os.path.exists(path):
            if not force:
                raise _files.FileError(path, "exists; pass --force to overwrite it")
            old = f"{tmp}.old"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def is_zarr(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a Zarr store (by its ``.zarr`` extension)."""
    return os.fspath(path).rstrip("/").lower().endswith(".zarr")


@dataclass(frozen=True)
class Stored:
    """What :func:`upscale_store` did: the sizes ``(height, width)`` in and out and the
    LR pixels per side of a chunk."""

    lr_size: tuple[int, int]
    hr_size: tuple[int, int]
    chunk: int


def upscale_store(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    model: LumaModel,
    *,
    tile: int | None = None,
    backend: str = "numpy",
    scheduler: str | None = None,
    force: bool = False,
    progress: bool = False,
) -> Stored:
    """Upscale ``source`` (a Zarr store, read lazily, or an image file) chunk by chunk
    into ``destination`` (a Zarr store, written as :func:`write_zarr` does, or an image
    file), on the threaded scheduler or on the ``dask.distributed`` cluster at
    ``scheduler``.  ``tile``: LR pixels per side of a chunk (see :func:`upscale_lazy`)."""
    import dask.array as da

    lr = open_lazy(source) if is_zarr(source) else da.from_array(image.read_image(source))
    hr = upscale_lazy(lr, model, chunk=tile, backend=backend)
    client = None
    if scheduler:
        from distributed import Client

        client = Client(scheduler)
    try:
        if is_zarr(destination):
            write_zarr(hr, destination, force=force, progress=progress, client=client)
        else:
            result = client.compute(hr).result() if client is not None else hr.compute()
            image.write_image(destination, result)
    finally:
        if client is not None:
            client.close()
    chunk = -(-(tile or DEFAULT_CHUNK) // BLOCK) * BLOCK
    return Stored(lr.shape[:2], hr.shape[:2], chunk)
