"""The bundled ESPCN exported to a runtime and checked there: what ``subpixel export``
does.  ``.onnx`` from PyTorch, ``.tflite`` from Keras (TensorFlow); the exported file
runs on the demo's input (the bundled sample made low-resolution) and is compared with
the source framework and with the original sample."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .. import deploy, image
from .._core import files as _files
from .._core.lowering import Lowering
from .espcn import ESPCN, SAMPLE
from .upscale import low_resolution

__all__ = ["Exported", "export_espcn", "sample_luma"]


def sample_luma(scale: int) -> tuple[np.ndarray, np.ndarray]:
    """The bundled sample's luminance in [0, 1]: HR (cropped to a multiple of the
    scale, float64) and its low-resolution version (float32), as the demo of
    ``subpixel upscale sample`` makes them."""
    hr, lr = low_resolution(image.read_image(SAMPLE), scale)
    return image.rgb_to_ycbcr(hr)[..., 0] / 255.0, (image.rgb_to_ycbcr(lr)[..., 0] / 255.0).astype(
        np.float32
    )


@dataclass(frozen=True)
class Exported:
    """What :func:`export_espcn` wrote and measured: the ops the file holds, the
    largest difference from the source framework on the sample, and the Y-PSNR (dB)
    of the exported file's and the source framework's outputs against the original."""

    ops: set[str]
    max_diff: float
    psnr_exported: float
    psnr_source: float


def export_espcn(
    path: str | os.PathLike,
    scale: int,
    *,
    lowering: Lowering = "auto",
    int8: bool = False,
    opset: int = 17,
    dynamo: bool = True,
) -> Exported:
    """Export the bundled ESPCN of ``scale`` to ``path`` (``.onnx``: PyTorch's exporter,
    ``dynamo`` or TorchScript, ``opset``; ``.tflite``: Keras with TensorFlow, ``int8``:
    full-integer quantization calibrated on the sample), run it in its runtime and
    measure it (:class:`Exported`)."""
    model = ESPCN.pretrained(scale)
    hr_y, lr_y = sample_luma(scale)
    x = lr_y[None, None]
    if deploy.runtime_of(path) == "onnx":
        import torch

        module = model.to_torch(lowering)
        example = torch.from_numpy(x)
        deploy.torch_to_onnx(module, example, path, dynamo=dynamo, opset=opset)
        with torch.no_grad():
            source = module(example).numpy()
        ops = deploy.onnx_ops(path)
        exported = deploy.run_onnx(path, x)
    else:
        keras_model = model.to_keras(lowering)
        representative = None
        if int8:  # calibrate on LR patches of the sample
            rng = np.random.default_rng(0)
            h, w = lr_y.shape
            representative = [
                lr_y[a : a + 32, b : b + 32][None, :, :, None]
                for a, b in zip(rng.integers(0, h - 32, 32), rng.integers(0, w - 32, 32))
            ]
        blob = deploy.keras_to_tflite(
            keras_model, mode="int8" if int8 else "float32", representative=representative
        )

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                f.write(blob)

        _files.atomic_write(path, write)
        source = np.moveaxis(np.asarray(keras_model(np.moveaxis(x, 1, -1))), -1, 1)
        ops = deploy.tflite_ops(blob)
        exported = np.moveaxis(deploy.run_tflite(blob, np.moveaxis(x, 1, -1))[0], -1, 1)

    def psnr(a: np.ndarray) -> float:
        return image.psnr(np.clip(a[0, 0], 0, 1) * 255, hr_y * 255, shave=scale)

    return Exported(
        ops=set(ops),
        max_diff=float(np.abs(exported - source).max()),
        psnr_exported=psnr(exported),
        psnr_source=psnr(source),
    )
