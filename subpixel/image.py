"""Images for the demo and the command line: PNG in and out (Pillow when
installed, else a small built-in codec), YCbCr conversion, bicubic resizing and
PSNR.  NumPy only.

>>> import numpy as np
>>> from subpixel import image
>>> small = np.arange(16, dtype=np.float64).reshape(4, 4)
>>> image.resize_bicubic(small, 8, 8).shape
(8, 8)
"""

from __future__ import annotations

import math
import os
import struct
import zlib
from functools import lru_cache

import numpy as np

__all__ = ["psnr", "read_png", "resize_bicubic", "rgb_to_ycbcr", "write_png", "ycbcr_to_rgb"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> samples per pixel


# ---------------------------------------------------------------------------
# PNG
# ---------------------------------------------------------------------------


def read_png(path: str | os.PathLike) -> np.ndarray:
    """An 8-bit image as ``(H, W)`` or ``(H, W, C)`` uint8.  ``ValueError`` if the
    file is not a PNG this reader handles (with Pillow installed, any image
    Pillow reads)."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        head = f.read(8)
    try:
        from PIL import Image
    except ImportError:
        Image = None
    if Image is not None:
        try:
            with Image.open(path) as im:
                if im.mode not in ("L", "RGB", "RGBA", "LA"):
                    im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
                return np.asarray(im)
        except Exception as exc:
            raise ValueError(f"{path}: not an image Pillow can read ({exc})") from exc
    if head != _PNG_SIGNATURE:
        raise ValueError(f"{path}: not a PNG file (install Pillow for other formats)")
    return _decode_png(path)


def _chunks(blob: bytes):
    pos = 8
    while pos + 8 <= len(blob):
        (length,) = struct.unpack(">I", blob[pos : pos + 4])
        kind = blob[pos + 4 : pos + 8]
        data = blob[pos + 8 : pos + 8 + length]
        yield kind, data
        pos += 12 + length


def _decode_png(path: str) -> np.ndarray:
    with open(path, "rb") as f:
        blob = f.read()
    ihdr, idat, palette = None, [], None
    for kind, data in _chunks(blob):
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", data)
        elif kind == b"IDAT":
            idat.append(data)
        elif kind == b"PLTE":
            palette = np.frombuffer(data, np.uint8).reshape(-1, 3)
    if ihdr is None:
        raise ValueError(f"{path}: PNG without IHDR")
    width, height, depth, colour, _, _, interlace = ihdr
    if depth != 8 or interlace or colour not in (0, 2, 3, 4, 6):
        raise ValueError(
            f"{path}: only 8-bit non-interlaced PNGs are read without Pillow "
            f"(bit depth {depth}, colour type {colour}, interlace {interlace})"
        )
    channels = 1 if colour == 3 else _CHANNELS[colour]
    stride = width * channels
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), np.uint8)
    prev = np.zeros(stride, np.int32)
    for y in range(height):
        kind, row = raw[y, 0], raw[y, 1:].astype(np.int32)
        if kind == 0:
            cur = row
        elif kind == 1:  # Sub: running sum per sample position
            cur = np.cumsum(row.reshape(width, channels), axis=0).reshape(-1) & 0xFF
        elif kind == 2:  # Up
            cur = (row + prev) & 0xFF
        elif kind in (3, 4):  # Average, Paeth: sequential along the row
            cur = row.copy()
            for x in range(stride):
                a = cur[x - channels] if x >= channels else 0
                b = prev[x]
                if kind == 3:
                    cur[x] = (cur[x] + (a + b) // 2) & 0xFF
                else:
                    c = prev[x - channels] if x >= channels else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                    cur[x] = (cur[x] + pred) & 0xFF
        else:
            raise ValueError(f"{path}: bad PNG filter type {kind}")
        out[y] = cur
        prev = cur.astype(np.int32)
    if colour == 3:
        if palette is None:
            raise ValueError(f"{path}: palette PNG without PLTE")
        return palette[out]
    return out.reshape(height, width) if channels == 1 else out.reshape(height, width, channels)


def write_png(path: str | os.PathLike, img: np.ndarray) -> None:
    """Write ``(H, W)`` or ``(H, W, 3|4)`` uint8 as PNG (built-in encoder)."""
    img = np.asarray(img)
    if (
        img.dtype != np.uint8
        or img.ndim not in (2, 3)
        or (img.ndim == 3 and img.shape[2] not in (1, 2, 3, 4))
    ):
        raise ValueError(
            f"`img` must be uint8 (H, W) or (H, W, C). Received: {img.dtype} {img.shape}"
        )
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    h, w = img.shape[:2]
    colour = {2: 0, 3: {2: 4, 3: 2, 4: 6}.get(img.shape[-1])}[img.ndim]
    rows = np.ascontiguousarray(img).reshape(h, -1)
    # filter "Up" (each row minus the one above): photographs compress better
    filtered = rows.copy()
    filtered[1:] = rows[1:] - rows[:-1]  # uint8 arithmetic wraps modulo 256, as PNG wants
    kinds = np.full((h, 1), 2, np.uint8)
    kinds[0] = 0
    raw = np.concatenate([kinds, filtered], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    with open(path, "wb") as f:
        f.write(_PNG_SIGNATURE)
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 6)))
        f.write(chunk(b"IEND", b""))


# ---------------------------------------------------------------------------
# colour
# ---------------------------------------------------------------------------

# ITU-R BT.601 "studio swing", as MATLAB's rgb2ycbcr (the SR literature's PSNR)
_RGB2YCBCR = (
    np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]])
    / 255.0
)
_OFFSET = np.array([16.0, 128.0, 128.0])


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """RGB in [0, 255] -> YCbCr (Y in [16, 235]) as float64."""
    return np.asarray(rgb, np.float64) @ _RGB2YCBCR.T + _OFFSET


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """The inverse of :func:`rgb_to_ycbcr` (float64, not clipped)."""
    return (np.asarray(ycc, np.float64) - _OFFSET) @ np.linalg.inv(_RGB2YCBCR).T


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
def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights: Keys' cubic (a = -0.5), antialiased when shrinking,
    replicated edges; pixel centres aligned as in MATLAB's imresize."""
    scale = n_out / n_in
    support = 2.0 / min(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) / scale - 0.5  # output centres in input coordinates
    left = np.floor(centres - support).astype(int)
    taps = math.ceil(2 * support) + 2
    idx = left[:, None] + np.arange(taps)
    dist = centres[:, None] - idx
    w = _cubic(dist * min(scale, 1.0))
    w /= w.sum(axis=1, keepdims=True)
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.repeat(np.arange(n_out), taps), np.clip(idx, 0, n_in - 1).ravel()), w.ravel())
    return m


def resize_bicubic(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic resize of ``(H, W)`` or ``(H, W, C)`` to ``(height, width)`` (float64)."""
    img = np.asarray(img, np.float64)
    rows = _resize_matrix(img.shape[0], height)
    cols = _resize_matrix(img.shape[1], width)
    out = np.tensordot(rows, img, axes=(1, 0))
    return np.moveaxis(np.tensordot(cols, out, axes=(1, 1)), 0, 1)


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0, shave: int = 0) -> float:
    """Peak signal-to-noise ratio in dB, ignoring ``shave`` border pixels."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if shave:
        a, b = a[shave:-shave, shave:-shave], b[shave:-shave, shave:-shave]
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(peak**2 / mse)
