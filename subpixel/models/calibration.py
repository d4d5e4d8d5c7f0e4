"""Calibration of the bundled ESPCN for a full-integer (int8) LiteRT export: which
inputs it is measured on, and the int8 range of every tensor that has a free one.

An int8 tensor holds 256 levels between a low and a high value.  LiteRT fixes some
of them (a ``TANH`` output is ``k / 128``); the export fixes the input and output
to ``k / 255`` on [0, 1] (the 8-bit grid: every luminance an 8-bit image holds,
every output level it will be rounded to); the rest, the two pre-activations
before ``tanh``, are measured here on calibration patches: the channels of a layer
are split into :data:`GROUPS` groups of similar range (each group becomes its own
convolution in the exported graph, so a channel that spans 0.5 is not quantized on
the grid of one that spans 4), and each group's range is the one whose quantization
after ``tanh`` errs least on the patches (not their extremes: a saturated ``tanh``
needs no precision).

The default patches are :func:`synthetic`: ramps over the whole luminance range,
textures with a natural image's power spectrum, and dead-leaves images (occlusion
edges of every contrast and scale); :func:`read_folder` takes a user's images
instead (``subpixel export --calibration``).

>>> patches = synthetic()
>>> len(patches), patches[0].shape, float(min(p.min() for p in patches)), float(max(p.max() for p in patches))
(48, (64, 64), 0.0, 1.0)
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .. import image, ops
from .._core import files as _files
from .espcn import ESPCN

__all__ = [
    "FORMATS",
    "GROUPS",
    "PATCH",
    "PATCHES",
    "Calibration",
    "Group",
    "calibrate",
    "read_folder",
    "synthetic",
]

PATCH = 64  # side of a calibration patch (LR pixels)
PATCHES = 48  # synthetic patches; also how many are cut from a folder's images at least
GROUPS = 4  # channel groups per hidden layer, each with its own int8 range
# the image formats a calibration folder may hold: those every image is read in
FORMATS = image.READ_FORMATS
_KEEP = 1 << 18  # pre-activation values kept per channel for the statistics
_SCALINGS = np.linspace(0.1, 1.0, 19)  # candidate ranges: fractions of the group's extremes


@dataclass(frozen=True)
class Group:
    """Channels of a layer quantized together: their pre-``tanh`` values are held on
    256 levels from ``low`` to ``high`` (LiteRT nudges the grid so 0 is on it)."""

    channels: tuple[int, ...]
    low: float
    high: float


@dataclass(frozen=True)
class Calibration:
    """What :func:`calibrate` measured: the groups of ``conv1``'s 64 and ``conv2``'s
    32 pre-activations, and what the patches were (``source``, ``patches``)."""

    conv1: tuple[Group, ...]
    conv2: tuple[Group, ...]
    source: str
    patches: int


# ---------------------------------------------------------------------------
# the patches
# ---------------------------------------------------------------------------


def _texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """Noise with a power spectrum ~ 1/f^beta (natural images have beta near 2),
    stretched to [0, 1]."""
    f = np.fft.fftfreq(size)[:, None] ** 2 + np.fft.fftfreq(size)[None, :] ** 2
    f[0, 0] = 1.0
    beta = rng.uniform(1.5, 2.5)
    spectrum = (rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))) / f ** (
        beta / 2
    )
    v = np.real(np.fft.ifft2(spectrum))
    return (v - v.min()) / (v.max() - v.min())


def _dead_leaves(size: int, rng: np.random.Generator) -> np.ndarray:
    """Disks of random grey levels, each hiding the ones dropped after it, radii
    distributed as 1/r^3 (the dead-leaves model of natural images: occlusion edges
    of every contrast at every scale), drawn at twice the size and downscaled."""
    big = 2 * size
    yy, xx = np.mgrid[0:big, 0:big] / big
    v = np.full((big, big), np.nan)
    r_min, r_max = 0.01, 0.5
    for _ in range(400):
        u = rng.uniform()
        r = (r_min**-2 - u * (r_min**-2 - r_max**-2)) ** -0.5
        cy, cx = rng.uniform(-0.1, 1.1, 2)
        v[((yy - cy) ** 2 + (xx - cx) ** 2 < r * r) & np.isnan(v)] = rng.uniform()
    v[np.isnan(v)] = rng.uniform()
    return np.clip(image.resize_bicubic(v, size, size), 0.0, 1.0)


def synthetic(n: int = PATCHES, size: int = PATCH, seed: int = 0) -> list[np.ndarray]:
    """``n`` float32 luminance patches ``(size, size)``, the same on every machine,
    spanning [0, 1]: in turn a ramp from 0 to 1 at a random angle, a 1/f texture at a
    random level and contrast, and a dead-leaves image (occlusion edges)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    out = []
    for k in range(n):
        if k % 3 == 0:
            t = rng.uniform(0, 2 * np.pi)
            v = np.cos(t) * xx + np.sin(t) * yy
            v = (v - v.min()) / (v.max() - v.min())
        elif k % 3 == 1:
            lo, hi = np.sort(rng.uniform(0, 1, 2))
            v = lo + (hi - lo) * _texture(size, rng)
        else:
            v = _dead_leaves(size, rng)
        out.append(v.astype(np.float32))
    return out


def _luma(img: np.ndarray, path: str) -> np.ndarray:
    """An image array's luminance in [0, 1] as ``subpixel upscale`` feeds it to the
    network (integers by their dtype's range, floats by [min(0, lo), max(1, hi)];
    BT.601 Y of RGB, the grey channel of grey images; alpha ignored)."""
    if img.dtype == np.uint8 or img.dtype == np.uint16:
        lo, hi = 0.0, float(np.iinfo(img.dtype).max)
    else:
        if not np.isfinite(img).all():
            raise _files.FileError(path, "holds NaN or infinite samples")
        lo, hi = min(0.0, float(img.min())), max(1.0, float(img.max()))
    a = (img.astype(np.float64) - lo) * (255.0 / (hi - lo))
    if a.ndim == 3 and a.shape[2] >= 3:
        y = image.rgb_to_ycbcr(a[..., :3])[..., 0]
    else:
        y = a if a.ndim == 2 else a[..., 0]
    return (y / 255.0).astype(np.float32)


def _image_files(folder: str) -> list[str]:
    """The files directly in ``folder`` that are not hidden, sorted; a name that is
    no regular file (a FIFO, a device, a dangling link or a link loop) is refused."""
    if not os.path.isdir(folder):
        raise _files.FileError(
            folder, "no such folder" if not os.path.exists(folder) else "not a folder"
        )
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        raise _files.FileError(folder, exc.strerror or str(exc)) from None
    paths = []
    for name in names:
        if name.startswith("."):
            continue
        path = os.path.join(folder, name)
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:  # ELOOP, a dangling link, no permission
            raise _files.FileError(path, f"cannot be read ({exc.strerror or exc})") from None
        if stat.S_ISDIR(mode):
            continue  # subfolders are not searched
        if not stat.S_ISREG(mode):
            raise _files.FileError(path, "not a regular file")
        paths.append(path)
    return paths


def _check_format(path: str) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path, formats=FORMATS):
            pass
    except Image.DecompressionBombError as exc:
        raise _files.FileError(path, f"not an image subpixel can read ({exc})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        raise _files.FileError(
            path, f"not an image calibration reads ({', '.join(FORMATS)})"
        ) from None


def read_folder(
    folder: str | os.PathLike, n: int = PATCHES, size: int = PATCH, seed: int = 0
) -> list[np.ndarray]:
    """Luminance patches (float32, [0, 1]) cut from every image file directly in
    ``folder`` (hidden files and subfolders aside; PNG, JPEG, TIFF, BMP, GIF, WebP,
    PPM, TGA): at least ``n`` in all, at least one per image, ``size`` square or the
    whole image where it is smaller.  Any other file there, or none at all, is a
    :class:`~subpixel._core.files.FileError` naming it; nothing is executed (no
    format whose decoder runs a program)."""
    folder = os.fspath(folder)
    paths = _image_files(folder)
    if not paths:
        raise _files.FileError(
            folder, f"no images to calibrate on ({', '.join(FORMATS)} files directly in it)"
        )
    rng = np.random.default_rng(seed)
    per_image = max(1, math.ceil(n / len(paths)))
    patches = []
    for path in paths:
        _check_format(path)
        img = image.read_image(path)
        h, w = img.shape[:2]
        ph, pw = min(size, h), min(size, w)
        for _ in range(per_image):
            a, b = rng.integers(0, h - ph + 1), rng.integers(0, w - pw + 1)
            patches.append(_luma(img[a : a + ph, b : b + pw], path))
    return patches


# ---------------------------------------------------------------------------
# the ranges
# ---------------------------------------------------------------------------


def _pre_activations(model: ESPCN, patches: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``conv1``'s and ``conv2``'s outputs before ``tanh`` on the patches, ``(C, K)``:
    at most :data:`_KEEP` positions per channel, drawn evenly from every patch."""
    p = model.params
    keep = max(64, _KEEP // len(patches))
    rng = np.random.default_rng(0)
    z1s: list[np.ndarray] = []
    z2s: list[np.ndarray] = []
    by_shape: dict[tuple[int, ...], list[np.ndarray]] = {}
    for patch in patches:
        by_shape.setdefault(patch.shape, []).append(patch)
    for batch in by_shape.values():
        for start in range(0, len(batch), 16):
            x = np.stack(batch[start : start + 16])[:, None].astype(np.float32) - model.mean
            z1 = ops.sub_pixel_conv(x, p["conv1.weight"], p["conv1.bias"], factor=1, padding=2)
            z2 = ops.sub_pixel_conv(
                np.tanh(z1), p["conv2.weight"], p["conv2.bias"], factor=1, padding=1
            )
            for z, out in ((z1, z1s), (z2, z2s)):
                flat = z.reshape(z.shape[0], z.shape[1], -1)
                for one in flat:  # (C, H * W) of one patch
                    pick = rng.choice(one.shape[1], min(keep, one.shape[1]), replace=False)
                    out.append(one[:, pick])
    return np.concatenate(z1s, axis=1), np.concatenate(z2s, axis=1)


def _tanh_error(z: np.ndarray, low: float, high: float) -> float:
    """Mean squared error of ``tanh`` of ``z`` held on 256 levels over [low, high]
    (zero nudged onto the grid, as LiteRT does) and rounded to LiteRT's k / 128."""
    scale = (high - low) / 255.0
    zero = round(-128 - low / scale)
    q = (np.clip(np.round(z / scale) + zero, -128, 127) - zero) * scale
    return float(np.mean((np.round(np.tanh(q) * 128) / 128 - np.tanh(z)) ** 2))


def _split(low: np.ndarray, high: np.ndarray, groups: int) -> list[np.ndarray]:
    """Channels cut into ``groups`` runs of similar range width, minimising the sum
    over channels of (group width / own width)^2: the noise each channel gets from
    sharing a grid, relative to a grid of its own (dynamic programming over the
    channels sorted by width)."""
    width = np.maximum(high - low, 1e-6)
    order = np.argsort(width, kind="stable")
    c = len(order)
    groups = min(groups, c)

    def cost(i: int, j: int) -> float:
        idx = order[i:j]
        return float((((high[idx].max() - low[idx].min()) / width[idx]) ** 2).sum())

    best = np.full((groups + 1, c + 1), np.inf)
    best[0, 0] = 0.0
    cut = np.zeros((groups + 1, c + 1), dtype=np.int64)
    for g in range(1, groups + 1):
        for j in range(g, c + 1):
            for i in range(g - 1, j):
                total = best[g - 1, i] + cost(i, j)
                if total < best[g, j]:
                    best[g, j], cut[g, j] = total, i
    runs, j = [], c
    for g in range(groups, 0, -1):
        i = int(cut[g, j])
        runs.append(np.sort(order[i:j]))
        j = i
    return runs[::-1]


def _groups(z: np.ndarray, groups: int) -> tuple[Group, ...]:
    low = np.minimum(np.quantile(z, 1e-4, axis=1), -1e-3)
    high = np.maximum(np.quantile(z, 1 - 1e-4, axis=1), 1e-3)
    rng = np.random.default_rng(0)
    out = []
    for channels in _split(low, high, groups):
        values = z[channels]
        sample = values[:, rng.choice(values.shape[1], min(10000, values.shape[1]), replace=False)]
        lo, hi = min(float(values.min()), -1e-3), max(float(values.max()), 1e-3)
        _, s = min((_tanh_error(sample, s * lo, s * hi), s) for s in _SCALINGS)
        out.append(Group(tuple(int(i) for i in channels), float(s * lo), float(s * hi)))
    return tuple(out)


def calibrate(
    model: ESPCN,
    patches: Sequence[np.ndarray] | None = None,
    *,
    groups: int = GROUPS,
    source: str | None = None,
) -> Calibration:
    """The int8 ranges of ``model``'s two pre-activations measured on ``patches``
    (luminance in [0, 1]; default :func:`synthetic`), each layer's channels in
    ``groups`` groups (1: one range per layer, as LiteRT's own calibration has it)."""
    if patches is None:
        patches = synthetic()
        source = source or (
            f"{len(patches)} synthetic {PATCH}x{PATCH} patches (ramps over luminance 0..1, "
            "1/f textures, dead leaves)"
        )
    patches = [np.asarray(p, np.float32) for p in patches]
    if not patches or any(p.ndim != 2 or 0 in p.shape for p in patches):
        raise ValueError("`patches` must be non-empty 2-D luminance arrays")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"`groups` must be a positive integer. Received: groups={groups!r}")
    z1, z2 = _pre_activations(model, patches)
    return Calibration(
        conv1=_groups(z1, groups),
        conv2=_groups(z2, groups),
        source=source or f"{len(patches)} patches",
        patches=len(patches),
    )
