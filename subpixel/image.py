"""Images for the demo and the command line: files in and out through Pillow
(strictly: its decompression-bomb guard applies, every problem is one
``ValueError("<path>: <reason>")``), YCbCr conversion, bicubic resizing and PSNR.

Arrays are ``(H, W)`` or ``(H, W, C)`` with C = 2 (grey + alpha), 3 (RGB) or 4
(RGBA), in one of three sample types: ``uint8``, ``uint16`` (16-bit grey) or
``float32`` (Pillow's "F", any range).  Nothing is clipped or dropped on the way in.

>>> import numpy as np
>>> from subpixel import image
>>> small = np.arange(16, dtype=np.float64).reshape(4, 4)
>>> image.resize_bicubic(small, 8, 8).shape
(8, 8)
"""

from __future__ import annotations

import io
import math
import os
from functools import lru_cache
from typing import Any

import numpy as np

from ._core import files as _files

__all__ = [
    "READ_FORMATS",
    "Canvas",
    "check_writable",
    "psnr",
    "read_image",
    "resize_bicubic",
    "resize_region",
    "rgb_to_ycbcr",
    "write_image",
    "ycbcr_to_rgb",
]

# modes Pillow writes and reads back under another name for the same samples
_MODE_FAMILY = {"I;16": "I16", "I;16B": "I16", "I;16L": "I16", "I;16N": "I16", "I": "I16"}
# Pillow modes read as they are, and those converted first (nothing is lost)
_AS_IS = {"L", "LA", "RGB", "RGBA", "I;16", "F"}
# the formats read: those Pillow decodes itself (it runs Ghostscript for EPS, which a
# file from someone else must never start)
READ_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "GIF", "WEBP", "PPM", "TGA", "QOI")
_CONVERT = {"1": "L", "PA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB"}


def _pil() -> Any:
    from PIL import Image

    return Image


# ---------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as an array (see the module docstring for dtypes and channels).

    16-bit grey stays ``uint16``, 32-bit float ``float32``; palette images become
    RGB (RGBA if they have transparency); bilevel, CMYK and YCbCr images become 8-bit
    L or RGB.  ``ValueError("<path>: <reason>")`` for anything Pillow cannot read."""
    Image = _pil()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise _files.FileError(path, "no such file")
    try:
        with Image.open(path, formats=READ_FORMATS) as im:
            im.load()
            mode = im.mode
            if mode.startswith("I;16"):  # any byte order: one native uint16 array below
                return np.asarray(im).astype(np.uint16)
            if mode == "I":  # 32-bit integers: 16-bit data as some codecs open it
                a = np.asarray(im)
                if a.size and (a.min() < 0 or a.max() > 65535):
                    raise ValueError(
                        f"32-bit integer samples outside 0..65535 ({a.min()}..{a.max()})"
                    )
                return a.astype(np.uint16)
            if mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif mode in _CONVERT:
                im = im.convert(_CONVERT[mode])
            elif mode not in _AS_IS:
                raise ValueError(f"unsupported image mode {mode!r}")
            return np.array(im)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
            raise _files.FileError(path, exc.strerror or str(exc)) from None
        if isinstance(exc, Image.UnidentifiedImageError):
            raise _files.FileError(
                path, f"not an image subpixel reads ({', '.join(READ_FORMATS)})"
            ) from None
        raise _files.FileError(path, f"not an image Pillow can read ({exc})") from None
    except (ValueError, Image.DecompressionBombError, SyntaxError, EOFError) as exc:
        raise _files.FileError(path, f"not an image subpixel can read ({exc})") from None


def _mode(img: np.ndarray, path: str) -> str:
    channels = 1 if img.ndim == 2 else img.shape[2]
    modes = {
        np.dtype(np.uint8): {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"},
        np.dtype(np.uint16): {1: "I;16"},
        np.dtype(np.float32): {1: "F"},
    }.get(img.dtype, {})
    if img.ndim not in (2, 3) or channels not in modes:
        raise _files.FileError(
            path,
            f"cannot write a {img.dtype} image with {channels} channel(s) and shape {img.shape} "
            "(8-bit grey/grey+alpha/RGB/RGBA, 16-bit grey or float grey)",
        )
    if 0 in img.shape[:2]:
        raise _files.FileError(path, f"cannot write an empty image of shape {img.shape}")
    return modes[channels]


def _format(path: str) -> str:
    Image = _pil()
    Image.init()
    ext = os.path.splitext(path)[1].lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None or fmt not in Image.SAVE:
        raise _files.FileError(
            path,
            f"unknown image format {ext or '(no extension)'!r}: use .png, .tif, .webp, .jpg, ...",
        )
    return fmt


def _picture(img: np.ndarray, mode: str) -> Any:
    """A Pillow image of ``img`` (Pillow infers the mode from the array's dtype and shape)."""
    picture = _pil().fromarray(np.ascontiguousarray(img))
    assert picture.mode == mode, (picture.mode, mode)  # _mode() mirrors Pillow's inference
    return picture


def check_writable(path: str | os.PathLike, like: np.ndarray) -> None:
    """Raise ``ValueError("<path>: <reason>")`` unless an image like ``like`` (its
    dtype and channels) can be written to ``path``'s format; writes nothing there."""
    path = os.fspath(path)
    img = np.asarray(like)
    mode, fmt = _mode(img, path), _format(path)
    buffer = io.BytesIO()
    try:
        _picture(img[:1, :1], mode).save(buffer, format=fmt)
        buffer.seek(0)
        with _pil().open(buffer) as back:
            kept = back.mode
    except (OSError, ValueError, KeyError) as exc:
        raise _files.FileError(path, f"{fmt} cannot store this image ({mode}): {exc}") from None
    if _MODE_FAMILY.get(kept, kept) != _MODE_FAMILY.get(mode, mode):  # a lossy conversion
        raise _files.FileError(
            path,
            f"{fmt} would store this {mode} image as {kept} (losing depth or alpha); "
            "use .png or .tif",
        )


def write_image(path: str | os.PathLike, img: np.ndarray) -> None:
    """Write an array (dtypes and channels as :func:`read_image` returns them) in the
    format of ``path``'s extension, atomically."""
    path = os.fspath(path)
    img = np.ascontiguousarray(img)
    check_writable(path, img)
    _save(path, _picture(img, _mode(img, path)))


def _save(path: str, picture: Any) -> None:
    """A Pillow image written to ``path`` in the format of its extension, atomically."""
    fmt = _format(path)

    def save(tmp: str) -> None:
        try:
            picture.save(tmp, format=fmt)
        except ValueError as exc:
            raise _files.FileError(path, str(exc)) from None

    _files.atomic_write(path, save)


class Canvas:
    """An image of ``height`` x ``width`` with ``channels`` (1 to 4) samples of ``dtype``
    (as :func:`read_image` returns them), filled region by region and written once:
    held as one Pillow image, the only full-size copy (Pillow encodes it where it
    lies; a NumPy array given to :func:`write_image` is copied into one first).
    ``path``: where it will be written (its format is checked now, before any work)."""

    def __init__(
        self, height: int, width: int, channels: int, dtype: Any, path: str | os.PathLike
    ) -> None:
        self.path = os.fspath(path)
        like = np.zeros((1, 1) if channels == 1 else (1, 1, channels), dtype)
        check_writable(self.path, like)
        self._mode = _mode(like, self.path)
        self._flat = channels == 1
        self.shape = (height, width) if channels == 1 else (height, width, channels)
        self.dtype = np.dtype(dtype)
        self._picture = _pil().new(self._mode, (width, height))

    def paste(self, rows: tuple[int, int], cols: tuple[int, int], pixels: np.ndarray) -> None:
        """Put ``pixels`` (this canvas's dtype; ``(h, w)`` or ``(h, w, C)``) at rows
        ``rows[0]:rows[1]`` and columns ``cols[0]:cols[1]``."""
        pixels = np.asarray(pixels)
        if self._flat and pixels.ndim == 3:
            pixels = pixels[..., 0]
        expected = (rows[1] - rows[0], cols[1] - cols[0], *self.shape[2:])
        if pixels.shape != expected or pixels.dtype != self.dtype:
            raise ValueError(
                f"`pixels` must be {self.dtype} of shape {expected}. Received: {pixels.dtype} "
                f"of shape {pixels.shape}"
            )
        self._picture.paste(_picture(pixels, self._mode), (cols[0], rows[0]))

    def array(self) -> np.ndarray:
        """The image as a NumPy array (a copy)."""
        a = np.asarray(self._picture)
        return a.astype(self.dtype).reshape(self.shape)

    def write(self) -> None:
        """Write the image to ``path`` atomically (see :func:`write_image`)."""
        _save(self.path, self._picture)


# ---------------------------------------------------------------------------
# colour
# ---------------------------------------------------------------------------

# ITU-R BT.601 "studio swing", as MATLAB's rgb2ycbcr (the SR literature's PSNR)
_RGB2YCBCR = (
    np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]])
    / 255.0
)
_OFFSET = np.array([16.0, 128.0, 128.0])
_YCBCR2RGB = np.linalg.inv(_RGB2YCBCR)


def _three_channels(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a, np.float64)
    if a.ndim < 1 or a.shape[-1] != 3:
        raise ValueError(
            f"`{name}` must have 3 channels on its last axis. Received: shape {a.shape}"
        )
    return a


def _mix(a: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``a @ matrix.T`` over the last axis, as elementwise sums in a fixed order (a
    BLAS product's rounding would depend on how many pixels it is given)."""
    return np.stack(
        [a[..., 0] * m[0] + a[..., 1] * m[1] + a[..., 2] * m[2] for m in matrix], axis=-1
    )


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """RGB in [0, 255] -> YCbCr (Y in [16, 235]) as float64."""
    return _mix(_three_channels(rgb, "rgb"), _RGB2YCBCR) + _OFFSET


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """The inverse of :func:`rgb_to_ycbcr` (float64, not clipped)."""
    return _mix(_three_channels(ycc, "ycc") - _OFFSET, _YCBCR2RGB)


# ---------------------------------------------------------------------------
# bicubic resizing
# ---------------------------------------------------------------------------


def _cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    x = np.abs(x)
    return np.where(
        x <= 1,
        (a + 2) * x**3 - (a + 3) * x**2 + 1,
        np.where(x < 2, a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a, 0.0),
    )


@lru_cache(maxsize=64)
def _taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """``(index, weight)``, each ``(n_out, taps)``: output pixel ``o`` is
    ``sum_t weight[o, t] * input[index[o, t]]`` (Keys' cubic, a = -0.5, antialiased
    when shrinking, replicated edges, pixel centres as MATLAB's imresize)."""
    scale = n_out / n_in
    support = 2.0 / min(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) / scale - 0.5  # output centres in input coordinates
    left = np.floor(centres - support).astype(np.int64)
    taps = math.ceil(2 * support) + 2
    idx = left[:, None] + np.arange(taps)
    w = _cubic((centres[:, None] - idx) * min(scale, 1.0))
    w /= w.sum(axis=1, keepdims=True)
    used = np.any(w != 0, axis=0)  # taps that are zero for every output pixel do nothing
    return np.clip(idx[:, used], 0, n_in - 1), w[:, used]


def _resize_axis(
    img: np.ndarray, axis: int, n_in: int, n_out: int, out: tuple[int, int], offset: int
) -> np.ndarray:
    """Output pixels ``out[0]:out[1]`` of resizing ``axis`` from ``n_in`` to ``n_out``,
    from ``img`` holding input pixels ``offset:offset + img.shape[axis]``.  The taps
    are added one by one in a fixed order, elementwise: every output pixel is the
    same arithmetic whatever part of the image is resized (tiles equal the whole)."""
    idx, w = _taps(n_in, n_out)
    idx, w = idx[out[0] : out[1]] - offset, w[out[0] : out[1]]
    shape = [1] * img.ndim
    shape[axis] = -1
    total = np.zeros((*img.shape[:axis], idx.shape[0], *img.shape[axis + 1 :]), np.float64)
    for t in range(idx.shape[1]):
        total += w[:, t].reshape(shape) * np.take(img, idx[:, t], axis=axis)
    return total


def resize_region(
    img: np.ndarray,
    size_in: tuple[int, int],
    size_out: tuple[int, int],
    rows: tuple[int, int],
    cols: tuple[int, int],
    origin: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """Rows ``rows`` and columns ``cols`` of the bicubic resize of a ``size_in`` image
    to ``size_out``, from ``img`` holding the input pixels from ``origin`` on (enough
    of them: three pixels beyond the region's reach when enlarging).  Bit-identical to
    the same pixels of :func:`resize_bicubic`."""
    img = np.asarray(img, np.float64)
    (h_in, w_in), (h_out, w_out) = size_in, size_out
    tall = _resize_axis(img, 0, h_in, h_out, rows, origin[0])
    return _resize_axis(tall, 1, w_in, w_out, cols, origin[1])


def resize_bicubic(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic resize of ``(H, W)`` or ``(H, W, C)`` to ``(height, width)`` (float64)."""
    img = np.asarray(img, np.float64)
    if img.ndim not in (2, 3) or 0 in img.shape[:2]:
        raise ValueError(
            f"`img` must be a non-empty (H, W) or (H, W, C) image. Received: shape {img.shape}"
        )
    for name, n in (("height", height), ("width", width)):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"`{name}` must be a positive integer. Received: {name}={n!r}")
    size_out = (int(height), int(width))
    return resize_region(img, img.shape[:2], size_out, (0, size_out[0]), (0, size_out[1]))


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0, shave: int = 0) -> float:
    """Peak signal-to-noise ratio in dB, ignoring ``shave`` border pixels."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(
            f"`a` and `b` must be images of one shape. Received: {a.shape} and {b.shape}"
        )
    if not peak > 0:
        raise ValueError(f"`peak` must be positive. Received: peak={peak!r}")
    if isinstance(shave, bool) or not isinstance(shave, (int, np.integer)) or shave < 0:
        raise ValueError(f"`shave` must be a non-negative integer. Received: shave={shave!r}")
    if 2 * shave >= min(a.shape[:2]):
        raise ValueError(f"`shave`={shave} leaves nothing of a {a.shape[0]}x{a.shape[1]} image")
    if shave:
        a, b = a[shave:-shave, shave:-shave], b[shave:-shave, shave:-shave]
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(peak**2 / mse)
