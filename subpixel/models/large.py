"""Images larger than memory: the bundled network on a lazy Dask array, chunk by chunk.

Each chunk of the LR image (a whole number of blocks of the model's grid) is upscaled
with the context its blocks and bicubic need from its neighbours by :func:`~subpixel.models.tiling.upscale_region`, the function the
in-memory path runs on the whole image: the result is identical to
:func:`~subpixel.models.tiling.upscale_image`, pixel for pixel.  Only a few chunks
are in memory at once, on the threaded scheduler or on a ``dask.distributed``
cluster.  Needs ``dask`` (and ``zarr`` or ``tifffile`` to read and write files).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import image
from .._core import files as _files
from .tiling import ImageModel, check_dtype, plan, upscale_region

__all__ = ["Stored", "is_zarr", "open_lazy", "upscale_lazy", "upscale_store", "write_zarr"]

DEFAULT_CHUNK = 512  # LR pixels per side of a chunk (4 blocks; about 250 MB of work each at x3)


def _value_range(lr: Any) -> tuple[float, float]:
    """:func:`~subpixel.models.tiling.value_range` of a lazy image, in one pass."""
    import dask.array as da

    check_dtype(lr.dtype)
    if lr.dtype.kind == "u":
        return 0.0, float(np.iinfo(lr.dtype).max)
    lo, hi, finite = da.compute(lr.min(), lr.max(), da.isfinite(lr).all())  # one pass
    if not finite:
        raise ValueError(
            "the image holds NaN or infinite samples: they have no brightness to scale"
        )
    return min(0.0, float(lo)), max(1.0, float(hi))


def _chunks(n: int, size: int, halo: int) -> tuple[int, ...]:
    """Chunks of ``size`` along an axis of ``n``; a last piece thinner than ``halo``
    joins the chunk before it (Dask would otherwise rechunk the overlap itself, off the
    block grid)."""
    sizes = [size] * (n // size) + ([n % size] if n % size else [])
    if len(sizes) > 1 and sizes[-1] < halo:
        sizes[-2:] = [sizes[-2] + sizes[-1]]
    return tuple(sizes)


def upscale_lazy(
    lr: Any, model: ImageModel, *, chunk: int | None = None, backend: str = "numpy"
) -> Any:
    """A lazy Dask array: ``lr`` ``(H, W)`` or ``(H, W, C)`` (a Dask array, or anything
    ``dask.array.asarray`` takes) upscaled like
    :func:`~subpixel.models.tiling.upscale_image`, pixel for pixel, whatever its size.
    ``chunk``: LR pixels per side of a chunk, rounded up to whole blocks of the model's
    grid (default 512).  A model that cannot run in blocks (no grid) runs only on an
    image that fits in one chunk."""
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
    check_dtype(lr.dtype)
    H, W, C = lr.shape
    side = chunk or DEFAULT_CHUNK
    if getattr(model, "grid", True) is None and max(H, W) > side:
        reason = getattr(model, "untiled_reason", None) or "it has no block grid"
        name = getattr(model, "name", None) or "the model"
        raise ValueError(
            f"{name}: cannot run chunk by chunk ({side}-pixel chunks): {reason}; give it an "
            "image file, which it runs on whole, in memory"
        )
    how = plan(model, (H, W), side)
    size = how.region or max(H, W)
    halo = how.halo
    lr = lr.rechunk((_chunks(H, size, halo), _chunks(W, size, halo), -1))
    r = model.scale
    limits = _value_range(lr)
    depth = {i: (halo if len(lr.chunks[i]) > 1 else 0) for i in (0, 1)}
    extended = da.overlap.overlap(lr, depth={**depth, 2: 0}, boundary="none")
    if extended.numblocks != lr.numblocks:  # the grid above is what every chunk assumes
        raise AssertionError(f"Dask rechunked the overlap: {lr.chunks} -> {extended.chunks}")
    chunks = (tuple(c * r for c in lr.chunks[0]), tuple(c * r for c in lr.chunks[1]), (C,))
    # every task refers to the model by its one key in the graph, and holds nothing but
    # numbers: a graph of n chunks stays O(n) in size, in the client and the scheduler
    out = extended.map_blocks(
        _run_chunk,
        dask.delayed(model),
        limits=limits,
        shape=(H, W),
        lr_chunks=(lr.chunks[0], lr.chunks[1]),
        depth=(depth[0], depth[1]),
        backend=backend,
        chunks=chunks,
        dtype=lr.dtype,
        meta=np.empty((0, 0, 0), lr.dtype),
    )
    return out[..., 0] if flat else out


def _run_chunk(
    block: np.ndarray,
    model: ImageModel,
    *,
    limits: tuple[float, float],
    shape: tuple[int, int],
    lr_chunks: tuple[tuple[int, ...], tuple[int, ...]],
    depth: tuple[int, int],
    backend: str,
    block_info: Any = None,
) -> np.ndarray:
    """One chunk of :func:`upscale_lazy`: ``block`` is the chunk with its halo."""
    i, j, _ = block_info[None]["chunk-location"]
    r0, c0 = sum(lr_chunks[0][:i]), sum(lr_chunks[1][:j])
    rows, cols = (r0, r0 + lr_chunks[0][i]), (c0, c0 + lr_chunks[1][j])
    origin = (max(r0 - depth[0], 0), max(c0 - depth[1], 0))
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


def _is_zarr_store(path: str) -> bool:
    return any(
        os.path.isfile(os.path.join(path, meta)) for meta in ("zarr.json", ".zarray", ".zgroup")
    )


def write_zarr(
    image: Any,
    path: str | os.PathLike,
    *,
    force: bool = False,
    progress: bool = False,
    client: Any = None,
) -> None:
    """Compute a lazy image into a Zarr store at ``path``: written to a temporary store
    in the same folder and renamed when complete (what replaces an existing store or
    file, only with ``force``; a folder that is not a Zarr store is never replaced).
    Temporary stores an interrupted run left for ``path`` are removed first
    (:func:`~subpixel._core.files.sweep_stale`).  ``client``: a ``dask.distributed``
    client to run on."""
    import tempfile

    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path) and not _is_zarr_store(path):
        raise _files.FileError(path, "is a folder that is not a Zarr store; it is not replaced")
    if os.path.lexists(path) and not force:
        raise _files.FileError(path, "exists; pass --force to overwrite it")
    folder, name = os.path.split(path)
    _files.sweep_stale(path, ".zarr")
    tmp = tempfile.mkdtemp(prefix=_files.temporary_prefix(name), suffix=".tmp.zarr", dir=folder)
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
        if os.path.lexists(path):
            if not force:
                raise _files.FileError(path, "exists; pass --force to overwrite it")
            old = f"{tmp}.old"
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
    finally:
        _remove(tmp)


def _remove(path: str) -> None:
    """A store, a file or a link, gone (quietly: nothing there is the user's)."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


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


def connect(scheduler: str) -> Any:
    """A ``dask.distributed`` client of the cluster at ``scheduler``; a ``ValueError``
    naming it when there is none to reach (after 10 s)."""
    from distributed import Client

    try:
        return Client(scheduler, timeout="10s")
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        reason = (str(exc) or type(exc).__name__).splitlines()[0]
        raise ValueError(f"{scheduler}: cannot reach a dask scheduler there ({reason})") from None


class _CanvasTarget:
    """What ``dask.array.store`` writes chunks into: an image canvas, one chunk at a time."""

    def __init__(self, canvas: Any) -> None:
        self.canvas = canvas

    def __setitem__(self, key: tuple[slice, ...], value: np.ndarray) -> None:
        rows, cols = key[0], key[1]
        self.canvas.paste((rows.start, rows.stop), (cols.start, cols.stop), value)


def upscale_store(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    model: ImageModel,
    *,
    tile: int | None = None,
    backend: str = "numpy",
    scheduler: str | None = None,
    force: bool = False,
    progress: bool = False,
) -> Stored:
    """Upscale ``source`` (a Zarr store, read lazily, or an image file) chunk by chunk
    into ``destination`` (a Zarr store, written as :func:`write_zarr` does, or an image
    file, filled chunk by chunk), on the threaded scheduler or on the
    ``dask.distributed`` cluster at ``scheduler`` (reached first, before any work).
    ``tile``: LR pixels per side of a chunk (see :func:`upscale_lazy`)."""
    import dask.array as da

    lr = open_lazy(source) if is_zarr(source) else da.from_array(image.read_image(source))
    hr = upscale_lazy(lr, model, chunk=tile, backend=backend)
    canvas = None
    if not is_zarr(destination):  # checked before the work: the format must take it
        channels = 1 if hr.ndim == 2 else hr.shape[2]
        canvas = image.Canvas(hr.shape[0], hr.shape[1], channels, hr.dtype, destination)
    client = connect(scheduler) if scheduler else None
    try:
        if canvas is None:
            write_zarr(hr, destination, force=force, progress=progress, client=client)
        else:
            if client is not None:
                canvas.paste((0, hr.shape[0]), (0, hr.shape[1]), client.compute(hr).result())
            else:
                target: Any = _CanvasTarget(canvas)
                da.store(hr, target, lock=True)
            canvas.write()
    finally:
        if client is not None:
            client.close()
    grid = plan(model, lr.shape[:2], tile or DEFAULT_CHUNK)
    return Stored(lr.shape[:2], hr.shape[:2], grid.region or max(lr.shape[:2]))
