"""The bundled ESPCN exported to a runtime and checked there: what ``subpixel export``
does.  ``.onnx`` from PyTorch, ``.tflite`` from Keras (TensorFlow; int8 calibrated by
:mod:`.calibration`); the exported file runs on the demo's input (the bundled sample
made low-resolution) and is compared with the source framework and with the original
sample."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .. import deploy, image
from .._core import files as _files
from .._core.lowering import Lowering
from . import calibration as _calibration
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
    of the exported file's and the source framework's outputs against the original.
    An int8 export also says what it was calibrated on (``calibration``) and how its
    input and output hold real numbers (``quantization``: ``(input, output)``, each
    ``None`` where it is float)."""

    ops: set[str]
    max_diff: float
    psnr_exported: float
    psnr_source: float
    calibration: _calibration.Calibration | None = None
    quantization: tuple[deploy.Quantization | None, deploy.Quantization | None] = (None, None)


def export_espcn(
    path: str | os.PathLike,
    scale: int,
    *,
    lowering: Lowering = "auto",
    int8: bool = False,
    int8_io: str | None = None,
    calibration: str | os.PathLike | None = None,
    opset: int = 17,
    dynamo: bool = True,
) -> Exported:
    """Export the bundled ESPCN of ``scale`` to ``path`` (``.onnx``: PyTorch's exporter,
    ``dynamo`` or TorchScript, ``opset``; ``.tflite``: Keras with TensorFlow), run it in
    its runtime and measure it (:class:`Exported`).  ``int8``: full-integer
    quantization (float input and output), calibrated on the images in the folder
    ``calibration`` or, by default, on synthetic patches spanning luminance 0..1
    (:mod:`subpixel.models.calibration`); ``int8_io="int8"`` or ``"uint8"``: the same
    with integer input and output, for integer-only delegates."""
    if int8_io is not None and int8_io not in ("int8", "uint8"):
        raise ValueError(f"`int8_io` must be 'int8' or 'uint8'. Received: int8_io={int8_io!r}")
    int8 = int8 or int8_io is not None
    if calibration is not None and not int8:
        raise ValueError("`calibration` is for int8 exports")
    runtime = deploy.runtime_of(path)
    if int8 and runtime == "onnx":
        raise ValueError("int8 quantization is for .tflite exports")
    model = ESPCN.pretrained(scale)
    patches = None if calibration is None else _calibration.read_folder(calibration)
    hr_y, lr_y = sample_luma(scale)
    x = lr_y[None, None]
    calibrated = None
    quantization: tuple[deploy.Quantization | None, deploy.Quantization | None] = (None, None)
    if runtime == "onnx":
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
        if int8:  # measured before anything is written
            source_of = None
            if patches is not None and calibration is not None:
                source_of = f"{len(patches)} patches of the images in {os.fspath(calibration)}"
            calibrated = _calibration.calibrate(model, patches, source=source_of)
            from .keras import espcn_int8

            quantizable = espcn_int8(
                model.params,
                scale,
                model.mean,
                calibrated.conv1,
                calibrated.conv2,
                lowering=lowering,
            )
            # every free range is fixed in the graph; the converter still wants inputs
            samples = [p[None, :, :, None] for p in (patches or _calibration.synthetic(8))[:8]]
            blob = deploy.keras_to_tflite(
                quantizable, mode="int8", representative=samples, io=int8_io or "float32"
            )
            quantization = deploy.tflite_quantization(blob)
        else:
            blob = deploy.keras_to_tflite(keras_model)

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
        calibration=calibrated,
        quantization=quantization,
    )
