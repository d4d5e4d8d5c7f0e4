"""A model exported to a runtime and checked there: what ``subpixel export`` does.

The bundled ESPCN: ``.onnx`` from PyTorch, ``.tflite`` from Keras (TensorFlow; int8
calibrated by :mod:`.calibration`); the exported file runs on the demo's input (the
bundled sample made low-resolution) and is compared with the source framework and with
the original sample.

Any PyTorch model goes through :func:`subpixel.exporting.export_torch` (its shuffles
rewritten first), with the checks here.

Every file is checked where it is written, under a temporary name, and appears under
its own name only once it runs and agrees with its source (float32: within
:data:`FLOAT_TOLERANCE` of the output's scale); otherwise nothing is written."""

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

__all__ = [
    "FLOAT_TOLERANCE",
    "Exported",
    "check_outputs",
    "export_espcn",
    "run_file",
    "sample_luma",
    "written_files",
]

# a float32 export differs from its source by rounding only: relative to the output's
# largest magnitude (at least 1), far above the ~1e-6 rounding of the networks here
# and far below a misplaced shuffle (differences of the size of the signal)
FLOAT_TOLERANCE = 1e-3


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
    """What an export wrote and measured: the ops the file holds, the largest
    difference from the source framework on the check input, and (the bundled ESPCN)
    the Y-PSNR (dB) of the exported file's and the source framework's outputs against
    the original sample; ``max_rank``: the highest rank of a tensor in the file;
    ``input_shape``: the check input's; ``files``: the files written (an ONNX graph
    with a weights data file is two); ``route``: the exporter or converter;
    ``scale``: the output's size over the input's.  An int8 export also says what it
    was calibrated on (``calibration``) and how its input and output hold real
    numbers (``quantization``: ``(input, output)``, each ``None`` where it is float)."""

    ops: set[str]
    max_diff: float
    psnr_exported: float | None = None
    psnr_source: float | None = None
    max_rank: int | None = None
    input_shape: tuple[int, ...] = ()
    files: tuple[str, ...] = ()
    route: str = ""
    scale: int | None = None
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
    opset: int | None = None,
    dynamo: bool = True,
) -> Exported:
    """Export the bundled ESPCN of ``scale`` to ``path`` (``.onnx``: PyTorch's exporter,
    ``dynamo`` or TorchScript, ``opset``; ``.tflite``: Keras with TensorFlow), run it in
    its runtime and measure it (:class:`Exported`).  ``int8``: full-integer
    quantization (float input and output), calibrated on the images in the folder
    ``calibration`` or, by default, on synthetic patches spanning luminance 0..1
    (:mod:`subpixel.models.calibration`); ``int8_io="int8"`` or ``"uint8"``: the same
    with integer input and output, for integer-only delegates.  The file appears only
    once it runs and (float) agrees with the source; else ``ValueError`` and nothing
    is written."""
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
    with _files.staged(path) as tmp:
        if runtime == "onnx":
            import torch

            module = model.to_torch(lowering)
            example = torch.from_numpy(x)
            deploy.torch_to_onnx(module, example, tmp, dynamo=dynamo, opset=opset)
            with torch.no_grad():
                source = module(example).numpy()
            ops = deploy.onnx_ops(tmp)
            exported = run_file(path, tmp, x)
            route = (
                "PyTorch -> torch.onnx (dynamo)"
                if dynamo
                else "PyTorch -> torch.onnx (TorchScript)"
            )
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
                deploy.keras_to_tflite(
                    quantizable,
                    tmp,
                    mode="int8",
                    representative=samples,
                    io=int8_io or "float32",
                )
                quantization = deploy.tflite_quantization(tmp)
            else:
                deploy.keras_to_tflite(keras_model, tmp)
            source = np.moveaxis(np.asarray(keras_model(np.moveaxis(x, 1, -1))), -1, 1)
            ops = deploy.tflite_ops(tmp)
            exported = np.moveaxis(run_file(path, tmp, np.moveaxis(x, 1, -1)), -1, 1)
            route = "Keras -> TensorFlow's LiteRT converter"
        max_diff = check_outputs(path, exported, source, exact=not int8)
        ranks = deploy.tensor_ranks(tmp, x if runtime == "onnx" else np.moveaxis(x, 1, -1))
        files = written_files(path, tmp)

    def psnr(a: np.ndarray) -> float:
        return image.psnr(np.clip(a[0, 0], 0, 1) * 255, hr_y * 255, shave=scale)

    return Exported(
        ops=set(ops),
        max_diff=max_diff,
        psnr_exported=psnr(exported),
        psnr_source=psnr(source),
        max_rank=max(ranks, default=None),
        input_shape=tuple(x.shape),
        files=files,
        route=route,
        scale=scale,
        calibration=calibrated,
        quantization=quantization,
    )


def run_file(path: str | os.PathLike, tmp: str, x: np.ndarray) -> np.ndarray:
    """The exported file at ``tmp`` run on ``x``; the runtime's refusal, one line."""
    try:
        if deploy.runtime_of(path) == "onnx":
            return np.asarray(deploy.run_onnx(tmp, x))
        return np.asarray(deploy.run_litert(tmp, x))
    except ImportError:
        raise
    except Exception as exc:  # the runtime's own error: the file it was given does not run
        text = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:300]
        raise _files.FileError(
            path, f"the exported file does not run in its runtime ({text}); not written"
        ) from None


def check_outputs(
    path: str | os.PathLike, exported: np.ndarray, source: np.ndarray, exact: bool
) -> float:
    """The largest difference between the runtime's and the source's outputs;
    ``FileError`` where they differ in shape, or (``exact``: float32) by more than
    :data:`FLOAT_TOLERANCE` of the output's scale, or are not finite."""
    if exported.shape != source.shape:
        raise _files.FileError(
            path,
            f"the exported file gives an output of shape {exported.shape} where the source "
            f"gives {source.shape}; not written",
        )
    if not np.isfinite(source).all():
        raise _files.FileError(path, "the source model's output is not finite; not written")
    diff = float(np.abs(exported.astype(np.float64) - source).max()) if source.size else 0.0
    tol = FLOAT_TOLERANCE * max(1.0, float(np.abs(source).max(initial=0)))
    if not np.isfinite(diff) or (exact and diff > tol):
        raise _files.FileError(
            path,
            f"the exported file differs from its source by {diff:.3g} (tolerance {tol:.3g} in "
            "float32); not written",
        )
    return diff


def written_files(path: str | os.PathLike, tmp: str) -> tuple[str, ...]:
    """The final names of what the private folder of ``tmp`` holds (``path`` first)."""
    folder = os.path.dirname(os.fspath(path))
    names = sorted(os.listdir(os.path.dirname(tmp)), key=lambda f: f != os.path.basename(tmp))
    return tuple(os.path.join(folder, n) for n in names)
