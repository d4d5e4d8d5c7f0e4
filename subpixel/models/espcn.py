"""ESPCN (Shi et al. 2016, arXiv 1609.05158): 5x5/64 and 3x3/32 tanh convolutions
in LR space, then a 3x3 sub-pixel convolution to ``scale**2`` channels and the
shuffle (CRD), on the luminance channel; chroma is upscaled bicubically.

The weights ship as ``espcn_x{2,3,4}.safetensors`` next to this file, trained by
``examples/train_espcn.py``; the forward pass runs on any backend.

>>> import numpy as np
>>> from subpixel.models import ESPCN
>>> model = ESPCN.pretrained(3)
>>> model(np.zeros((1, 1, 8, 8), np.float32)).shape
(1, 1, 24, 24)
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import _safetensors, _spec, image, ops
from .._dispatch import backend_by_name, backend_for

SCALES = (2, 3, 4)
RADIUS = 4  # LR pixels of context an output pixel sees: 2 + 1 + 1
BLOCK = 128  # LR pixels per side of the fixed blocks the network runs on (upscale_luma)
_DIR = Path(__file__).parent


def _tanh(backend_name: str) -> Callable[[Any], Any]:
    if backend_name == "numpy":
        return np.tanh
    if backend_name == "torch":
        import torch

        return torch.tanh
    if backend_name == "tensorflow":
        import tensorflow as tf

        return tf.math.tanh
    if backend_name == "jax":
        import jax.numpy as jnp

        return jnp.tanh
    import cupy

    return cupy.tanh


def _conv(x: Any, weight: Any, bias: Any, padding: int) -> Any:
    """A plain stride-1 convolution on any backend (the LR half of sub_pixel_conv)."""
    backend = backend_for(x)
    cplan = _spec.make_conv_plan(
        backend.shape(x), backend.shape(weight), backend.shape(bias), 1, padding
    )
    return backend.conv(x, weight, bias, cplan)


class ESPCN:
    """The network; ``params`` maps conv{1,2,3}.{weight,bias} to NumPy arrays in
    PyTorch layout; ``metadata["input_mean"]`` is subtracted from the input and
    added to the output (the training script centres luminance for tanh)."""

    def __init__(
        self, params: dict[str, np.ndarray], scale: int, metadata: dict[str, str] | None = None
    ) -> None:
        self.scale = int(scale)
        self.params = {k: np.asarray(v, np.float32) for k, v in params.items()}
        self.metadata = metadata or {}
        self.mean = float(self.metadata.get("input_mean", 0.0))  # subtracted in, added out
        expected = {
            "conv1.weight": (64, 1, 5, 5),
            "conv2.weight": (32, 64, 3, 3),
            "conv3.weight": (self.scale**2, 32, 3, 3),
        }
        for key, shape in expected.items():
            if self.params.get(key, np.empty(0)).shape != shape:
                raise ValueError(f"ESPCN x{scale}: `{key}` must have shape {shape}")
        self._on: dict[tuple, dict[str, Any]] = {}

    @classmethod
    def pretrained(cls, scale: int) -> ESPCN:
        if scale not in SCALES:
            raise ValueError(f"`scale` must be one of {SCALES}. Received: scale={scale!r}")
        tensors, metadata = _safetensors.load(_DIR / f"espcn_x{scale}.safetensors")
        return cls(tensors, scale, metadata)

    def _params_like(self, x: Any) -> dict[str, Any]:
        backend = backend_for(x)
        key = (backend.name, str(getattr(x, "device", "")), str(x.dtype))
        if key not in self._on:
            self._on[key] = {k: backend.from_numpy(v, like=x) for k, v in self.params.items()}
        return self._on[key]

    def __call__(self, y: Any) -> Any:
        """``(N, 1, H, W)`` luminance in [0, 1] -> ``(N, 1, H * scale, W * scale)``."""
        p = self._params_like(y)
        tanh = _tanh(backend_for(y).name)
        h = tanh(_conv(y - self.mean, p["conv1.weight"], p["conv1.bias"], 2))
        h = tanh(_conv(h, p["conv2.weight"], p["conv2.bias"], 1))
        out = ops.sub_pixel_conv(
            h, p["conv3.weight"], p["conv3.bias"], factor=self.scale, padding=1
        )
        return out + self.mean


def _progress(done: int, total: int) -> None:
    width = 30
    filled = width * done // total
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} tiles")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _spans(n: int, step: int) -> list[tuple[int, int]]:
    return [(a, min(a + step, n)) for a in range(0, n, step)]


def upscale_luma(
    model: ESPCN,
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
    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 1):
        raise ValueError(f"`tile` must be a positive integer. Received: tile={tile!r}")
    be = backend_by_name(backend)
    r = model.scale
    y = np.asarray(y, np.float32)
    H, W = y.shape
    blocks_per_tile = -(-tile // BLOCK) if tile else max(-(-H // BLOCK), -(-W // BLOCK), 1)
    step = blocks_per_tile * BLOCK
    tiles = [(ty, tx) for ty in _spans(H, step) for tx in _spans(W, step)]
    out = np.empty((H * r, W * r), np.float64)
    for n, ((ty0, ty1), (tx0, tx1)) in enumerate(tiles, 1):
        # the tile with the context its blocks need, sent to the backend once
        a0, b0 = max(ty0 - RADIUS, 0), max(tx0 - RADIUS, 0)
        a1, b1 = min(ty1 + RADIUS, H), min(tx1 + RADIUS, W)
        on_backend = be.from_numpy(np.ascontiguousarray(y[a0:a1, b0:b1])[None, None])
        for y0, y1 in _spans(H, BLOCK)[ty0 // BLOCK : -(-ty1 // BLOCK)]:  # the tile's blocks
            for x0, x1 in _spans(W, BLOCK)[tx0 // BLOCK : -(-tx1 // BLOCK)]:
                c0, d0 = max(y0 - RADIUS, 0), max(x0 - RADIUS, 0)
                c1, d1 = min(y1 + RADIUS, H), min(x1 + RADIUS, W)
                block = on_backend[..., c0 - a0 : c1 - a0, d0 - b0 : d1 - b0]
                hr = be.to_numpy(model(block))[0, 0]
                out[y0 * r : y1 * r, x0 * r : x1 * r] = hr[
                    (y0 - c0) * r : (y1 - c0) * r, (x0 - d0) * r : (x1 - d0) * r
                ]
        if progress:
            _progress(n, len(tiles))
    return out


def upscale_image(
    rgb: np.ndarray,
    model: ESPCN,
    *,
    backend: str = "numpy",
    tile: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Super-resolve an RGB (or grey) uint8 image: ESPCN on Y, bicubic on Cb/Cr."""
    rgb = np.asarray(rgb)
    if rgb.ndim == 3 and rgb.shape[2] in (2, 4):  # drop alpha
        rgb = rgb[..., :-1]
    grey = rgb.ndim == 2 or rgb.shape[2] == 1
    r = model.scale
    if grey:
        y = rgb.reshape(rgb.shape[:2]).astype(np.float64)
        return _to_uint8(
            upscale_luma(model, y / 255.0, backend=backend, tile=tile, progress=progress) * 255.0
        )
    ycc = image.rgb_to_ycbcr(rgb)
    H, W = rgb.shape[:2]
    y_hr = (
        upscale_luma(model, ycc[..., 0] / 255.0, backend=backend, tile=tile, progress=progress)
        * 255.0
    )
    chroma = image.resize_bicubic(ycc[..., 1:], H * r, W * r)
    return _to_uint8(image.ycbcr_to_rgb(np.concatenate([y_hr[..., None], chroma], axis=-1)))


def _to_uint8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.round(a), 0, 255).astype(np.uint8)
