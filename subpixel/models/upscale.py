"""Image files in, upscaled image files out: what ``subpixel upscale`` does with an
image that fits in memory (:func:`subpixel.models.large.upscale_store` does it chunk by
chunk for one that does not).  Also the demo: the bundled sample's low-resolution
version, upscaled and compared with the original (PSNR on luminance).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .. import image
from .espcn import SAMPLE
from .tiling import ImageModel, upscale_regions

__all__ = ["Upscaled", "low_resolution", "upscale_file"]


def low_resolution(img: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """``(hr, lr)``: ``img`` cropped to a multiple of ``scale``, and its bicubic
    downscale by ``scale`` rounded to 8 bits, as an image file would hold it (the
    demo's input)."""
    h, w = (img.shape[0] // scale) * scale, (img.shape[1] // scale) * scale
    hr = img[:h, :w]
    lr = np.clip(np.round(image.resize_bicubic(hr, h // scale, w // scale)), 0, 255)
    return hr, lr.astype(np.uint8)


def _to_255(a: np.ndarray) -> np.ndarray:
    """An 8-bit, 16-bit or [0, 1] float image on the 0..255 scale (float64)."""
    scale = {"uint8": 1.0, "uint16": 255.0 / 65535.0}.get(a.dtype.name, 255.0)
    return np.asarray(a, np.float64) * scale


def _luma(a255: np.ndarray) -> np.ndarray:
    """Luminance (BT.601, 0..255) of grey, grey + alpha, RGB or RGBA pixels."""
    if a255.ndim == 2:
        return a255
    if a255.shape[2] in (1, 2):
        return a255[..., 0]
    return image.rgb_to_ycbcr(a255[..., :3])[..., 0]


def luma_psnr(
    lr: np.ndarray, out: np.ndarray, reference: np.ndarray, scale: int
) -> tuple[float, float]:
    """The PSNR on luminance (``scale`` border pixels ignored) of ``out`` upscaled from
    ``lr``, and of ``lr``'s bicubic upscale (rounded to 8 bits, as an image would be),
    against ``reference``."""
    bicubic = np.clip(np.round(image.resize_bicubic(_to_255(lr), *out.shape[:2])), 0, 255)
    y_ref = _luma(_to_255(reference))
    return (
        image.psnr(_luma(_to_255(out)), y_ref, shave=scale),
        image.psnr(_luma(bicubic), y_ref, shave=scale),
    )


@dataclass(frozen=True)
class Upscaled:
    """What :func:`upscale_file` did: the sizes ``(height, width)`` in and out, and
    ``psnr``, ``(model, bicubic)`` in dB, where there was an original to compare with."""

    lr_size: tuple[int, int]
    hr_size: tuple[int, int]
    psnr: tuple[float, float] | None


def upscale_file(
    source: str | os.PathLike | None,
    destination: str | os.PathLike,
    model: ImageModel,
    *,
    reference: str | os.PathLike | None = None,
    backend: str = "numpy",
    tile: int | None = None,
    progress: bool = False,
) -> Upscaled:
    """Upscale the image file ``source`` with ``model`` into ``destination`` (its
    extension sets the format; checked before the work), comparing the result with
    ``reference`` if given.  ``source=None`` is the demo: the bundled sample, made
    low-resolution at the model's scale, upscaled and compared with the original.
    ``backend``, ``tile``, ``progress`` as in :func:`~subpixel.models.upscale_image`."""
    r = model.scale
    original = image.read_image(SAMPLE if source is None else source)
    if original.dtype.kind == "f" and not np.isfinite(original).all():
        raise ValueError(f"{source}: holds NaN or infinite samples, which have no brightness")
    if source is None:
        target, lr = low_resolution(original, r)
    else:
        lr, target = original, None
        if reference is not None:
            target = image.read_image(reference)
            expected = (lr.shape[0] * r, lr.shape[1] * r)
            if target.shape[:2] != expected:
                raise ValueError(
                    f"{reference}: is {target.shape[1]}x{target.shape[0]}, the output "
                    f"will be {expected[1]}x{expected[0]}: they must match"
                )
    h, w = lr.shape[:2]
    channels = 1 if lr.ndim == 2 else lr.shape[2]
    # before the work: the format must take this image, the model must run on it
    canvas = image.Canvas(h * r, w * r, channels, lr.dtype, destination)
    regions = upscale_regions(lr, model, backend=backend, tile=tile, progress=progress)
    for rows, cols, pixels in regions:
        canvas.paste(rows, cols, pixels)
    canvas.write()
    psnr = None
    if target is not None:
        psnr = luma_psnr(lr, canvas.array(), target, r)
    return Upscaled((h, w), (h * r, w * r), psnr)
