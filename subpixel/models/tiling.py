"""Running a model over an image: the network on a fixed grid of blocks (so tiled,
untiled and chunked runs give the same bits), region by region into an output of
the image's own dtype (so memory holds the output and one region's work, never the
whole image's floats), chroma and alpha bicubic, any region of an image exactly as
the whole image gives it.

A model here is anything :class:`ImageModel` describes: the bundled
:class:`~subpixel.models.ESPCN` (luminance), or a file opened with
:class:`~subpixel.models.runtime.RuntimeModel` (luminance or RGB).  Its ``grid``
(:class:`~subpixel.models.field.Grid`) says which blocks it runs on and with how much
context; a model without one (an operation over the whole image) runs on the whole
image at once and is never tiled.

>>> import numpy as np
>>> from subpixel.models import ESPCN, upscale_image
>>> upscale_image(np.zeros((8, 10, 3), np.uint8), ESPCN.pretrained(2)).shape
(16, 20, 3)
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .. import image
from ..backends import backend_by_name
from .espcn import RADIUS
from .field import BLOCK, Grid

__all__ = [
    "BLOCK",
    "HALO",
    "ImageModel",
    "LumaModel",
    "Plan",
    "check_dtype",
    "plan",
    "upscale_image",
    "upscale_luma",
    "upscale_regions",
    "value_range",
]

HALO = 4  # LR context bicubic needs (3 taps), and the bundled network's RADIUS
DTYPES = ("uint8", "uint16", "float16", "float32", "float64")
_ESPCN_GRID = Grid(BLOCK, RADIUS, 1)  # a model that says nothing: the bundled network's grid


def _progress(done: int, total: int) -> None:
    width = 30
    filled = width * done // total
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} tiles")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _spans(n: int, step: int) -> list[tuple[int, int]]:
    return [(a, min(a + step, n)) for a in range(0, n, step)]


class ImageModel(Protocol):
    """What the upscaling functions run: ``(N, C, H, W)`` in [0, 1] -> ``(N, C,
    H * scale, W * scale)`` (:class:`ESPCN`, or a file opened with
    :class:`~subpixel.models.runtime.RuntimeModel`).  Optional attributes: ``channels``
    (1, luminance, the default, or 3, RGB), ``grid`` (the blocks it runs on exactly;
    None: whole images only, ``untiled_reason`` says why), ``fixed`` (the one input
    height and width it takes, None per free axis) and ``name`` (for messages)."""

    scale: int

    def __call__(self, y: Any) -> Any: ...


LumaModel = ImageModel  # the name of subpixel 0.3


def _name(model: Any) -> str:
    return str(getattr(model, "name", None) or f"the x{model.scale} model")


def _grid(model: Any) -> Grid | None:
    return getattr(model, "grid", _ESPCN_GRID)


@dataclass(frozen=True)
class Plan:
    """How an image is run: ``grid`` (None: the whole image in one call), ``region``,
    the LR pixels per side of the regions worked at once (whole blocks; None: the
    whole image) and ``halo``, the LR context a region is cut with (the network's and
    bicubic's)."""

    grid: Grid | None
    region: int | None
    halo: int


def _check_tile(tile: Any) -> None:
    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 1):
        raise ValueError(f"`tile` must be a positive integer. Received: tile={tile!r}")


def plan(model: ImageModel, size: tuple[int, int], tile: int | None = None) -> Plan:
    """The :class:`Plan` for an image of ``size`` ``(H, W)``: regions of ``tile`` LR
    pixels per side rounded up to whole blocks of the model's grid (default: one
    block).  A ``ValueError`` naming the model when it cannot run on the image (a fixed
    input size that is not the image's) or cannot be tiled as asked (no grid and a
    ``tile`` smaller than the image)."""
    _check_tile(tile)
    H, W = size
    fixed = getattr(model, "fixed", (None, None))
    if (fixed[0] not in (None, H)) or (fixed[1] not in (None, W)):
        fh, fw = fixed
        raise ValueError(
            f"{_name(model)}: takes only inputs of {fw or 'any'}x{fh or 'any'} pixels (a fixed "
            f"size); the image is {W}x{H}"
        )
    grid = _grid(model)
    if grid is None:
        if tile is not None and tile < max(H, W):
            reason = getattr(model, "untiled_reason", None) or "it has no block grid"
            raise ValueError(
                f"{_name(model)}: cannot be tiled ({tile} pixels asked): {reason}; without a "
                "tile it runs on the whole image at once"
            )
        return Plan(None, None, 0)
    region = -(-(tile or grid.block) // grid.block) * grid.block
    return Plan(grid, region, max(HALO, grid.context))


def _run_block(model: ImageModel, be: Any, block: Any, at: tuple[int, int]) -> np.ndarray:
    """The model on one block (a backend array ``(1, C, h, w)``): its HR output as
    NumPy ``(C, h * r, w * r)``, checked (shape, and finite: NaN or infinity would
    become black or white pixels)."""
    n, c, h, w = be.shape(block)
    r = model.scale
    hr = np.asarray(be.to_numpy(model(block)))
    if hr.shape != (n, c, h * r, w * r):
        raise ValueError(
            f"{_name(model)}: gave an output of shape {hr.shape} for a block of shape "
            f"{(n, c, h, w)}; expected {(n, c, h * r, w * r)}"
        )
    if not np.isfinite(hr).all():
        raise ValueError(
            f"{_name(model)}: its output holds NaN or infinite values (the block at LR row "
            f"{at[0]}, column {at[1]}); nothing was written"
        )
    return hr[0]


def network_region(
    model: ImageModel,
    x: np.ndarray,
    size: tuple[int, int],
    origin: tuple[int, int],
    rows: tuple[int, int],
    cols: tuple[int, int],
    *,
    backend: str = "numpy",
) -> np.ndarray:
    """The network's HR output ``(h * r, w * r, C)`` (float64) for LR ``rows`` x
    ``cols`` of a ``size`` image, from ``x`` ``(h', w', C)`` float32 holding its LR
    pixels from ``origin`` on, with the grid's context around the region (or the
    image border).  Regions start on the grid; the network runs on the image's global
    grid of blocks, so any region gives exactly the pixels the whole image gives."""
    be = backend_by_name(backend)
    r, C = model.scale, x.shape[2]
    H, W = size
    (ry0, ry1), (rx0, rx1) = rows, cols
    oy, ox = origin
    out = np.empty(((ry1 - ry0) * r, (rx1 - rx0) * r, C), np.float64)
    grid = _grid(model)
    if grid is None:  # the whole image in one call
        if (rows, cols, origin) != ((0, H), (0, W), (0, 0)):
            raise ValueError(f"{_name(model)}: runs on the whole image only, not on a region")
        patch = np.ascontiguousarray(np.moveaxis(np.asarray(x, np.float32), -1, 0)[None])
        out[...] = np.moveaxis(_run_block(model, be, be.from_numpy(patch), (0, 0)), 0, -1)
        return out
    B, K, p = grid.block, grid.context, grid.period
    a0, b0 = max(ry0 - K, 0), max(rx0 - K, 0)
    a1, b1 = min(ry1 + K, H), min(rx1 + K, W)
    # the region with the context its blocks need, channels first, sent to the backend once
    patch = np.ascontiguousarray(
        np.moveaxis(np.asarray(x[a0 - oy : a1 - oy, b0 - ox : b1 - ox], np.float32), -1, 0)[None]
    )
    on_backend = be.from_numpy(patch)
    for y0, y1 in _spans(H, B)[ry0 // B : -(-ry1 // B)]:  # the region's blocks
        for x0, x1 in _spans(W, B)[rx0 // B : -(-rx1 // B)]:
            c0, d0 = max(y0 - K, 0), max(x0 - K, 0)
            c1, d1 = min(y1 + K, H), min(x1 + K, W)
            pad_y, pad_x = -(c1 - c0) % p, -(d1 - d0) % p
            if pad_y or pad_x:  # the image's edge, off the model's period: repeat it
                piece = patch[..., c0 - a0 : c1 - a0, d0 - b0 : d1 - b0]
                widths = ((0, 0), (0, 0), (0, pad_y), (0, pad_x))
                block = be.from_numpy(np.pad(piece, widths, mode="edge"))
            else:
                block = on_backend[..., c0 - a0 : c1 - a0, d0 - b0 : d1 - b0]
            hr = _run_block(model, be, block, (y0, x0))
            out[(y0 - ry0) * r : (y1 - ry0) * r, (x0 - rx0) * r : (x1 - rx0) * r] = np.moveaxis(
                hr[:, (y0 - c0) * r : (y1 - c0) * r, (x0 - d0) * r : (x1 - d0) * r], 0, -1
            )
    return out


def luma_region(
    model: ImageModel,
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
    """The HR luminance ``(h * r, w * r)`` of LR ``rows`` x ``cols``: :func:`network_region`
    of a one-channel model on ``y`` ``(h', w')`` (``tile`` and ``progress`` are those of
    subpixel 0.3: checked, no longer used)."""
    _check_tile(tile)
    y = np.asarray(y, np.float32)[..., None]
    return network_region(model, y, size, origin, rows, cols, backend=backend)[..., 0]


def upscale_luma(
    model: ImageModel,
    y: np.ndarray,
    *,
    backend: str = "numpy",
    tile: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Super-resolve an ``(H, W)`` luminance image in [0, 1] with a one-channel model
    (float64 NumPy out).

    The network always runs on the same fixed grid of blocks (the model's ``grid``;
    the bundled ESPCN's: :data:`BLOCK` x :data:`BLOCK` LR blocks with
    :data:`~subpixel.models.espcn.RADIUS` pixels of context, cut at the image border),
    whatever ``tile`` is.  Every output pixel is therefore computed by the same
    arithmetic on the same block shapes, tiled or not: the results are bit-identical
    on any machine (the BLAS's summation order, which depends on matrix shapes and
    CPU, is the same on both sides).

    ``tile``: LR pixels per side of the regions sent to the backend at once, rounded
    up to whole blocks (default: one block); it bounds the memory of a region, never
    the result.  ``progress``: a progress bar on stderr."""
    y = np.asarray(y, np.float32)
    H, W = y.shape
    r = model.scale
    how = plan(model, (H, W), tile)
    out = np.empty((H * r, W * r), np.float64)
    spans = _regions(H, W, how.region)
    for n, (rows, cols) in enumerate(spans, 1):
        out[rows[0] * r : rows[1] * r, cols[0] * r : cols[1] * r] = luma_region(
            model, y, (H, W), (0, 0), rows, cols, backend=backend
        )
        if progress:
            _progress(n, len(spans))
    return out


def _regions(H: int, W: int, side: int | None) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    if side is None:
        return [((0, H), (0, W))]
    return [(ys, xs) for ys in _spans(H, side) for xs in _spans(W, side)]


def check_dtype(dtype: Any) -> None:
    """The sample types an image may have: ``uint8``, ``uint16`` or a float (16, 32 or
    64 bits); ``ValueError`` for any other (the one rule of the in-memory and the
    larger-than-memory paths)."""
    if np.dtype(dtype).name not in DTYPES:
        raise ValueError(
            f"the image must be uint8, uint16 or float (16, 32 or 64-bit). Received: dtype "
            f"{np.dtype(dtype)}"
        )


def value_range(img: np.ndarray) -> tuple[float, float]:
    """The range ``upscale_image`` maps to [0, 1]: the dtype's for integers, and for
    floats ``[min(0, lowest), max(1, highest)]`` (NaN and infinities refused)."""
    check_dtype(img.dtype)
    if img.dtype.kind == "u":
        return 0.0, float(np.iinfo(img.dtype).max)
    if not np.isfinite(img).all():
        raise ValueError("`img` holds NaN or infinite samples: they have no brightness to scale")
    return min(0.0, float(img.min())), max(1.0, float(img.max()))


def _as_image(img: Any) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4) or 0 in img.shape[:2]:
        raise ValueError(
            "`img` must be a non-empty (H, W) or (H, W, C) image with C in 1..4. Received: "
            f"shape {img.shape}"
        )
    return img


def upscale_regions(
    img: np.ndarray,
    model: ImageModel,
    *,
    backend: str = "numpy",
    tile: int | None = None,
    progress: bool = False,
) -> Iterator[tuple[tuple[int, int], tuple[int, int], np.ndarray]]:
    """The upscaled ``img`` (as :func:`upscale_image` gives it) one region at a time:
    ``(rows, cols, pixels)``, HR rows and columns and the pixels there, in the image's
    dtype and channels.  Everything is checked (dtype, range, the model's sizes and
    grid) before the first region is computed; a region's work is held only while it
    is made, so memory is the consumer's output and one region."""
    img = _as_image(img)
    limits = value_range(img)
    H, W = img.shape[:2]
    how = plan(model, (H, W), tile)
    return _upscale_regions(img, model, limits, how, backend=backend, progress=progress)


def _upscale_regions(
    img: np.ndarray,
    model: ImageModel,
    limits: tuple[float, float],
    how: Plan,
    *,
    backend: str,
    progress: bool,
) -> Iterator[tuple[tuple[int, int], tuple[int, int], np.ndarray]]:
    H, W = img.shape[:2]
    r, halo = model.scale, how.halo
    spans = _regions(H, W, how.region)
    for n, (rows, cols) in enumerate(spans, 1):
        a0, b0 = max(rows[0] - halo, 0), max(cols[0] - halo, 0)
        a1, b1 = min(rows[1] + halo, H), min(cols[1] + halo, W)
        pixels = upscale_region(
            img[a0:a1, b0:b1], model, limits, (H, W), (a0, b0), rows, cols, backend=backend
        )
        yield (rows[0] * r, rows[1] * r), (cols[0] * r, cols[1] * r), pixels
        if progress:
            _progress(n, len(spans))


def upscale_image(
    img: np.ndarray,
    model: ImageModel,
    *,
    backend: str = "numpy",
    tile: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Super-resolve an image array.  A luminance model (the bundled ESPCN) runs on the
    luminance (BT.601 Y), chroma is bicubic; an RGB model runs on RGB (a grey image
    repeated in R, G and B, its output's luma kept); alpha is bicubic, kept, never
    dropped.  ``img`` is ``(H, W)`` or ``(H, W, C)`` with C = 1, 2 (grey + alpha), 3
    (RGB) or 4 (RGBA), in ``uint8``, ``uint16`` or a float type (any range: scaled to
    [0, 1] by ``[min(0, lo), max(1, hi)]`` and back); the result has the same dtype and
    channels, filled region by region.  ``tile`` as in :func:`upscale_luma`."""
    flat = np.ndim(img) == 2
    img = _as_image(img)
    H, W, C = img.shape
    r = model.scale
    regions = upscale_regions(img, model, backend=backend, tile=tile, progress=progress)
    out = np.empty((H * r, W * r, C), img.dtype)
    for (y0, y1), (x0, x1), pixels in regions:
        out[y0:y1, x0:x1] = pixels
    return out[..., 0] if flat else out


def _grey(rgb: np.ndarray) -> np.ndarray:
    """The luma of RGB on its own scale (BT.601 weights, elementwise in a fixed order)."""
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def upscale_region(
    img: np.ndarray,
    model: ImageModel,
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
    ``img`` holding its pixels from ``origin`` on with the plan's halo (:func:`plan`)
    around the region (or the image border).  Exactly the same pixels as
    :func:`upscale_image` of the whole image: the network runs on the global block grid
    and bicubic adds its taps in a fixed order (how images larger than memory are
    upscaled chunk by chunk).  ``tile``, ``progress``: those of subpixel 0.3, unused."""
    _check_tile(tile)
    lo, hi = value_range
    C, r = img.shape[2], model.scale
    H, W = size
    to_255 = (img.astype(np.float64) - lo) * (255.0 / (hi - lo))  # exact for uint8
    colour = to_255[..., :3] if C >= 3 else to_255[..., :1]
    alpha = to_255[..., -1] if C in (2, 4) else None
    hr_rows, hr_cols = (rows[0] * r, rows[1] * r), (cols[0] * r, cols[1] * r)

    def bicubic(channels: np.ndarray) -> np.ndarray:
        return image.resize_region(channels, (H, W), (H * r, W * r), hr_rows, hr_cols, origin)

    def network(x: np.ndarray) -> np.ndarray:
        return network_region(model, x, size, origin, rows, cols, backend=backend)

    grey = colour.shape[2] == 1
    if getattr(model, "channels", 1) == 3:
        rgb = colour / 255.0
        hr = network((np.repeat(rgb, 3, axis=2) if grey else rgb).astype(np.float32)) * 255.0
        out = _grey(hr)[..., None] if grey else hr
    elif grey:
        out = network((colour[..., :1] / 255.0).astype(np.float32)) * 255.0
    else:
        ycc = image.rgb_to_ycbcr(colour)
        y_hr = network((ycc[..., :1] / 255.0).astype(np.float32)) * 255.0
        out = image.ycbcr_to_rgb(np.concatenate([y_hr, bicubic(ycc[..., 1:])], axis=-1))
    if alpha is not None:
        out = np.concatenate([out, bicubic(alpha[..., None])], axis=-1)
    np.clip(out, 0.0, 255.0, out=out)  # in place: a region's HR floats are the biggest array
    if img.dtype.kind == "f":
        out *= (hi - lo) / 255.0
        out += lo
        return out.astype(img.dtype)
    out *= hi / 255.0
    return np.round(out, out=out).astype(img.dtype)
