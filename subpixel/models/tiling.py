"""Running a luminance model over an image: the network on a fixed grid of blocks
(so tiled, untiled and chunked runs give the same bits), chroma and alpha bicubic,
any region of an image exactly as the whole image gives it.

A model here is anything :class:`LumaModel` describes: the bundled
:class:`~subpixel.models.ESPCN`, or an exported file opened with
:class:`~subpixel.models.runtime.RuntimeModel`.

>>> import numpy as np
>>> from subpixel.models import ESPCN, upscale_image
>>> upscale_image(np.zeros((8, 10, 3), np.uint8), ESPCN.pretrained(2)).shape
(16, 20, 3)
"""

from __future__ import annotations

import sys
from typing import Any, Protocol

import numpy as np

from .. import image
from ..backends import backend_by_name
from .espcn import RADIUS

__all__ = ["BLOCK", "HALO", "LumaModel", "upscale_image", "upscale_luma", "value_range"]

HALO = 4  # LR context a region needs: the network's RADIUS and bicubic's taps (3) both fit
BLOCK = 128  # LR pixels per side of the fixed blocks the network runs on (upscale_luma)


def _progress(done: int, total: int) -> None:
    width = 30
    filled = width * done // total
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} tiles")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _spans(n: int, step: int) -> list[tuple[int, int]]:
    return [(a, min(a + step, n)) for a in range(0, n, step)]


class LumaModel(Protocol):
    """What the upscaling functions run: ``(N, 1, H, W)`` luminance in [0, 1] ->
    ``(N, 1, H * scale, W * scale)`` (:class:`ESPCN`, or an exported file opened with
    :class:`~subpixel.models.runtime.RuntimeModel`)."""

    scale: int

    def __call__(self, y: Any) -> Any: ...


def upscale_luma(
    model: LumaModel,
    y: np.ndarray,
    *,
    backend: str = "numpy",
    tile: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Super-resolve an ``(H, W)`` luminance image in [0, 1] (float64 NumPy out).

    The network always runs on the same fixed grid of :data:`BLOCK` x
    :data:`BLOCK` LR blocks, each with :data:`RADIUS` pixels of context (cut at
    the image border), whatever ``tile`` is.  Every output pixel is therefore
    computed by the same arithmetic on the same block shapes, tiled or not: the
    results are bit-identical on any machine (the BLAS's summation order, which
    depends on matrix shapes and CPU, is the same on both sides).

    ``tile``: LR pixels per side of the tiles sent to the backend at once,
    rounded up to whole blocks (default: the whole image); it bounds the memory
    of a tile, never the result.  ``progress``: a progress bar on stderr.
    """
    y = np.asarray(y, np.float32)
    H, W = y.shape
    return luma_region(
        model, y, (H, W), (0, 0), (0, H), (0, W), backend=backend, tile=tile, progress=progress
    )


def luma_region(
    model: LumaModel,
    y: np.ndarray,
    size: tuple[int, int],
    origin: tuple[int, int],
    rows: tuple[int, int],
    cols: tuple[int, int],
    *,
    backend: str = "numpy",
    tile: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """The HR luminance of LR ``rows`` x ``cols`` of a ``size`` image, from ``y`` holding
    its LR pixels from ``origin`` on (with :data:`RADIUS` pixels of context around the
    region, or the image border).  Regions start on the :data:`BLOCK` grid; the
    network runs on the image's global grid of blocks, so any region gives exactly the
    pixels :func:`upscale_luma` gives for the whole image."""
    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 1):
        raise ValueError(f"`tile` must be a positive integer. Received: tile={tile!r}")
    be = backend_by_name(backend)
    r = model.scale
    H, W = size
    (ry0, ry1), (rx0, rx1) = rows, cols
    y = np.asarray(y, np.float32)
    blocks_per_tile = -(-tile // BLOCK) if tile else max(-(-H // BLOCK), -(-W // BLOCK), 1)
    step = blocks_per_tile * BLOCK
    tiles = [(ty, tx) for ty in _spans(H, step) for tx in _spans(W, step)]
    tiles = [
        ((a, b), (c, e)) for (a, b), (c, e) in tiles if a < ry1 and b > ry0 and c < rx1 and e > rx0
    ]
    out = np.empty(((ry1 - ry0) * r, (rx1 - rx0) * r), np.float64)
    oy, ox = origin
    for n, ((ty0, ty1), (tx0, tx1)) in enumerate(tiles, 1):
        ty0, ty1, tx0, tx1 = max(ty0, ry0), min(ty1, ry1), max(tx0, rx0), min(tx1, rx1)
        # the tile with the context its blocks need, sent to the backend once
        a0, b0 = max(ty0 - RADIUS, 0), max(tx0 - RADIUS, 0)
        a1, b1 = min(ty1 + RADIUS, H), min(tx1 + RADIUS, W)
        patch = np.ascontiguousarray(y[a0 - oy : a1 - oy, b0 - ox : b1 - ox])
        on_backend = be.from_numpy(patch[None, None])
        for y0, y1 in _spans(H, BLOCK)[ty0 // BLOCK : -(-ty1 // BLOCK)]:  # the tile's blocks
            for x0, x1 in _spans(W, BLOCK)[tx0 // BLOCK : -(-tx1 // BLOCK)]:
                c0, d0 = max(y0 - RADIUS, 0), max(x0 - RADIUS, 0)
                c1, d1 = min(y1 + RADIUS, H), min(x1 + RADIUS, W)
                block = on_backend[..., c0 - a0 : c1 - a0, d0 - b0 : d1 - b0]
                hr = be.to_numpy(model(block))[0, 0]
                out[(y0 - ry0) * r : (y1 - ry0) * r, (x0 - rx0) * r : (x1 - rx0) * r] = hr[
                    (y0 - c0) * r : (y1 - c0) * r, (x0 - d0) * r : (x1 - d0) * r
                ]
        if progress:
            _progress(n, len(tiles))
    return out


def value_range(img: np.ndarray) -> tuple[float, float]:
    """The range ``upscale_image`` maps to [0, 1]: the dtype's for integers, and for
    floats ``[min(0, lowest), max(1, highest)]`` (NaN and infinities refused)."""
    if img.dtype == np.uint8 or img.dtype == np.uint16:
        return 0.0, float(np.iinfo(img.dtype).max)
    if img.dtype == np.float32 or img.dtype == np.float64:
        if not np.isfinite(img).all():
            raise ValueError(
                "`img` holds NaN or infinite samples: they have no brightness to scale"
            )
        return min(0.0, float(img.min())), max(1.0, float(img.max()))
    raise ValueError(f"`img` must be uint8, uint16 or float32. Received: dtype {img.dtype}")


def upscale_image(
    img: np.ndarray,
    model: LumaModel,
    *,
    backend: str = "numpy",
    tile: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Super-resolve an image array: ESPCN on the luminance, bicubic on chroma and
    alpha (kept, never dropped).  ``img`` is ``(H, W)`` or ``(H, W, C)`` with C = 1,
    2 (grey + alpha), 3 (RGB) or 4 (RGBA), in ``uint8``, ``uint16`` or ``float32``
    (any range: scaled to [0, 1] by ``[min(0, lo), max(1, hi)]`` and back); the
    result has the same dtype and channels.  ``tile`` as in :func:`upscale_luma`."""
    img = np.asarray(img)
    flat = img.ndim == 2
    if flat:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4) or 0 in img.shape[:2]:
        raise ValueError(
            f"`img` must be a non-empty (H, W) or (H, W, C) image with C in 1..4. Received: shape {img.shape}"
        )
    H, W = img.shape[:2]
    result = upscale_region(
        img,
        model,
        value_range(img),
        (H, W),
        (0, 0),
        (0, H),
        (0, W),
        backend=backend,
        tile=tile,
        progress=progress,
    )
    return result[..., 0] if flat else result


def upscale_region(
    img: np.ndarray,
    model: LumaModel,
    value_range: tuple[float, float],
    size: tuple[int, int],
    origin: tuple[int, int],
    rows: tuple[int, int],
    cols: tuple[int, int],
    *,
    backend: str = "numpy",
    tile: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """The HR pixels of LR ``rows`` x ``cols`` of a ``size`` image ``(H, W, C)``, from
    ``img`` holding its pixels from ``origin`` on with :data:`HALO` pixels of context
    around the region (or the image border).  Exactly the same pixels as
    :func:`upscale_image` of the whole image: the network runs on the global block
    grid and bicubic adds its taps in a fixed order (how images larger than memory
    are upscaled chunk by chunk)."""
    lo, hi = value_range
    C, r = img.shape[2], model.scale
    H, W = size
    to_255 = (img.astype(np.float64) - lo) * (255.0 / (hi - lo))  # exact for uint8
    colour = to_255[..., :3] if C >= 3 else to_255[..., :1]
    alpha = to_255[..., -1] if C in (2, 4) else None
    hr_rows, hr_cols = (rows[0] * r, rows[1] * r), (cols[0] * r, cols[1] * r)

    def bicubic(channels: np.ndarray) -> np.ndarray:
        return image.resize_region(channels, (H, W), (H * r, W * r), hr_rows, hr_cols, origin)

    run = dict(backend=backend, tile=tile, progress=progress)
    if colour.shape[2] == 1:
        out = luma_region(model, colour[..., 0] / 255.0, size, origin, rows, cols, **run)  # type: ignore[arg-type]
        out = out[..., None] * 255.0
    else:
        ycc = image.rgb_to_ycbcr(colour)
        y_hr = luma_region(model, ycc[..., 0] / 255.0, size, origin, rows, cols, **run) * 255.0  # type: ignore[arg-type]
        out = image.ycbcr_to_rgb(np.concatenate([y_hr[..., None], bicubic(ycc[..., 1:])], axis=-1))
    if alpha is not None:
        out = np.concatenate([out, bicubic(alpha[..., None])], axis=-1)
    np.clip(out, 0.0, 255.0, out=out)  # in place: a chunk's HR floats are the biggest array
    if img.dtype.kind == "f":
        out *= (hi - lo) / 255.0
        out += lo
        return out.astype(img.dtype)
    out *= hi / 255.0
    return np.round(out, out=out).astype(img.dtype)
