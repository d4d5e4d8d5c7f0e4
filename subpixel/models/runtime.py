"""An exported super-resolution file (``subpixel export``'s ``.onnx`` or ``.tflite``)
run in its runtime like the bundled model: ``subpixel upscale --model FILE``."""

from __future__ import annotations

import os
from typing import Any

from .. import deploy
from .._core import files as _files

__all__ = ["RuntimeModel"]


class RuntimeModel:
    """An exported ``.onnx``/``.tflite`` network mapping ``(N, 1, H, W)`` luminance to
    ``(N, 1, H * scale, W * scale)``, callable on NumPy arrays like
    :class:`~subpixel.models.ESPCN` (so :mod:`.tiling` runs it the same way).
    ``scale`` is measured on a small input when the file is opened."""

    def __init__(self, path: str | os.PathLike) -> None:
        import numpy as np

        self.path = os.fspath(path)
        self.runtime = deploy.runtime_of(path)
        if not os.path.isfile(self.path):
            raise _files.FileError(path, "no such file")
        try:
            if self.runtime == "onnx":
                import onnxruntime as ort

                self._session = ort.InferenceSession(self.path, providers=["CPUExecutionProvider"])
            else:
                with open(self.path, "rb") as f:
                    self._blob = f.read()
                deploy.tflite_interpreter(self._blob, delegates=False)
            probe = self(np.zeros((1, 1, 8, 8), np.float32))
        except _files.FileError:
            raise
        except ImportError as exc:
            raise _files.FileError(path, f"running it needs {exc.name} (pip install it)") from None
        except Exception as exc:  # the runtime's own error: not a model it can run
            text = f"{type(exc).__name__}: {exc}".splitlines()[0]
            raise _files.FileError(
                path, f"not a super-resolution model the runtime runs ({text})"
            ) from None
        scale = probe.shape[-1] // 8
        if (
            probe.ndim != 4
            or probe.shape[:2] != (1, 1)
            or probe.shape[-2:] != (8 * scale, 8 * scale)
            or scale < 1
        ):
            raise _files.FileError(
                path, f"maps a (1, 1, 8, 8) luminance input to {probe.shape}, not (1, 1, 8r, 8r)"
            )
        self.scale = scale

    def __call__(self, y: Any) -> Any:
        import numpy as np

        y = np.ascontiguousarray(y, np.float32)
        if self.runtime == "onnx":
            name = self._session.get_inputs()[0].name
            return self._session.run(None, {name: y})[0]
        out, _ = deploy.run_tflite(self._blob, np.moveaxis(y, 1, -1))  # LiteRT models are NHWC
        return np.ascontiguousarray(np.moveaxis(out, -1, 1))
