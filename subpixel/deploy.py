"""From a trained model to a runtime, checked: export PyTorch modules to ONNX and
Keras models to LiteRT/TFLite, run the exported file in its runtime, and list the
ops it holds.  Choose how each shuffle is written with the layers' ``lowering=``
(docs/deploy.md).  Every function imports its framework only when called.

>>> from subpixel import deploy
>>> deploy.runtime_of("model.onnx"), deploy.runtime_of("model.tflite")
('onnx', 'tflite')
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ._core import deprecation as _deprecation
from ._core import files as _files

__all__ = [
    "Quantization",
    "keras_to_tflite",
    "onnx_ops",
    "run_onnx",
    "run_tflite",
    "runtime_of",
    "tflite_ops",
    "tflite_quantization",
    "torch_to_onnx",
]


def runtime_of(path: str | os.PathLike) -> str:
    """``"onnx"`` or ``"tflite"`` by the file's extension; ``ValueError`` otherwise."""
    name = os.fspath(path).lower()
    if name.endswith(".onnx"):
        return "onnx"
    if name.endswith((".tflite", ".litert")):
        return "tflite"
    raise _files.FileError(path, "unknown model format (use .onnx or .tflite)")


@contextlib.contextmanager
def _quiet() -> Any:
    """The exporters' and converters' progress chatter, silenced."""
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        yield


# ---------------------------------------------------------------------------
# ONNX
# ---------------------------------------------------------------------------


def torch_to_onnx(
    module: Any,
    example: Any,
    path: str | os.PathLike,
    *,
    dynamo: bool = True,
    opset: int = 17,
    dynamic: bool = True,
) -> None:
    """Export ``module`` (eval mode) to ``path`` with ``torch.onnx.export``, batch and
    spatial sizes dynamic (``dynamic``), atomically.  ``dynamo=False`` uses the
    TorchScript exporter (which writes exactly ``opset``; the dynamo exporter writes
    18 or newer)."""
    import torch

    dims = [0, *range(2, example.dim())] if dynamic else []
    kw: dict[str, Any] = {}
    if dims and dynamo:
        kw["dynamic_shapes"] = ({i: torch.export.Dim.AUTO for i in dims},)
    elif dims:
        kw["dynamic_axes"] = {"x": {i: f"d{i}" for i in dims}, "y": {i: f"o{i}" for i in dims}}

    def write(tmp: str) -> None:
        with _quiet(), torch.no_grad():
            torch.onnx.export(
                module.eval(),
                (example,),
                tmp,
                dynamo=dynamo,
                opset_version=opset,
                input_names=["x"],
                output_names=["y"],
                **kw,
            )

    _files.atomic_write(path, write)


def onnx_ops(path: str | os.PathLike) -> set[str]:
    """The op types in an ONNX file."""
    import onnx

    return {node.op_type for node in onnx.load(os.fspath(path)).graph.node}


def run_onnx(path: str | os.PathLike, x: Any) -> Any:
    """Run an ONNX file with one input in ONNX Runtime (CPU); the first output."""
    import onnxruntime as ort

    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: x})[0]


# ---------------------------------------------------------------------------
# LiteRT / TFLite
# ---------------------------------------------------------------------------


def keras_to_tflite(
    model: Any,
    *,
    mode: str = "float32",
    representative: Iterable[Any] | None = None,
    io: str = "float32",
) -> bytes:
    """A Keras model (TensorFlow backend) as a LiteRT flatbuffer with builtin ops only:
    ``mode="float32"``, ``"float16"`` (weights) or ``"int8"`` (full integer, calibrated
    on ``representative`` inputs).  ``io``: the type of the input and output of an
    int8 model: ``"float32"`` (the model quantizes and dequantizes them itself), or
    ``"int8"``/``"uint8"`` for integer-only delegates (their scale and zero point:
    :func:`tflite_quantization`)."""
    import tensorflow as tf

    if mode not in ("float32", "float16", "int8"):
        raise ValueError(f"`mode` must be 'float32', 'float16' or 'int8'. Received: mode={mode!r}")
    if io not in ("float32", "int8", "uint8"):
        raise ValueError(f"`io` must be 'float32', 'int8' or 'uint8'. Received: io={io!r}")
    if io != "float32" and mode != "int8":
        raise ValueError(f"`io={io!r}` needs mode='int8'. Received: mode={mode!r}")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        if representative is None:
            raise ValueError("`representative` inputs are needed for int8 quantization")
        samples = list(representative)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([s] for s in samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if io != "float32":
            converter.inference_input_type = converter.inference_output_type = getattr(tf, io)
    with _quiet():
        return bytes(converter.convert())


@dataclass(frozen=True)
class Quantization:
    """How an integer tensor holds real numbers: ``real = scale * (q - zero_point)``,
    ``q`` of ``dtype`` (``"int8"``, ``"uint8"``, ...).  What an integer-only LiteRT
    model expects of its input and gives as output (:func:`tflite_quantization`).

    >>> q = Quantization("uint8", 1 / 255, 0)
    >>> q.quantize([0.0, 0.25, 1.0, 1.5]).tolist(), q.dequantize([0, 255]).tolist()
    ([0, 64, 255, 255], [0.0, 1.0])
    """

    dtype: str
    scale: float
    zero_point: int

    def quantize(self, x: Any) -> Any:
        """``x`` (real numbers) as this tensor's integers: ``x * (1 / scale)`` in
        float32 rounded half to even, plus ``zero_point``, clipped to the dtype's range
        (what LiteRT's QUANTIZE computes on x86 CPUs)."""
        import numpy as np

        v = np.asarray(x, np.float32) * (np.float32(1) / np.float32(self.scale))
        info = np.iinfo(self.dtype)
        return np.clip(np.round(v) + self.zero_point, info.min, info.max).astype(self.dtype)

    def dequantize(self, q: Any) -> Any:
        """This tensor's integers ``q`` as the real numbers they stand for:
        ``scale * (q - zero_point)`` rounded once to float32 (LiteRT's own DEQUANTIZE
        may be one float32 ulp away)."""
        import numpy as np

        exact = (np.asarray(q).astype(np.float64) - self.zero_point) * self.scale
        return exact.astype(np.float32)


def _quantization(detail: dict[str, Any]) -> Quantization | None:
    import numpy as np

    if np.dtype(detail["dtype"]).kind not in "iu":
        return None
    scale, zero_point = detail["quantization"]
    return Quantization(np.dtype(detail["dtype"]).name, float(scale), int(zero_point))


def tflite_quantization(blob: bytes) -> tuple[Quantization | None, Quantization | None]:
    """``(input, output)``: how a LiteRT model's first input and first output hold
    real numbers, ``None`` for a float one.  Give an integer input
    ``input.quantize(x)``; read an integer output with ``output.dequantize(y)``."""
    it = tflite_interpreter(blob, delegates=False)
    return _quantization(it.get_input_details()[0]), _quantization(it.get_output_details()[0])


def tflite_interpreter(blob: bytes, delegates: bool = True) -> Any:
    try:
        from ai_edge_litert import interpreter as litert
    except ImportError:  # TensorFlow's own (deprecated) copy of the interpreter
        import tensorflow as tf

        litert = tf.lite
    if delegates:
        return litert.Interpreter(model_content=blob)
    types = getattr(litert, "OpResolverType", None) or litert.experimental.OpResolverType
    resolver = types.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return litert.Interpreter(model_content=blob, experimental_op_resolver_type=resolver)


def tflite_ops(blob: bytes) -> set[str]:
    """The builtin ops of a LiteRT model (before any delegate takes them over)."""
    it = tflite_interpreter(blob, delegates=False)
    return {op["op_name"] for op in it._get_ops_details()}


def run_tflite(blob: bytes, x: Any) -> tuple[Any, list[int]]:
    """Run a LiteRT model on ``x`` (its input resized to ``x``'s shape): the first output
    and the ranks of every tensor of the graph.  An integer input is given ``x``
    quantized, an integer output is returned dequantized (:class:`Quantization`)."""
    import numpy as np

    it = tflite_interpreter(blob, delegates=False)
    inp = it.get_input_details()[0]
    it.resize_tensor_input(inp["index"], list(np.shape(x)))
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    x = np.asarray(x, np.float32)
    quantized = _quantization(inp)
    if quantized is not None:  # an integer input: quantize with its own parameters
        x = quantized.quantize(x)
    it.set_tensor(inp["index"], x)
    it.invoke()
    out = it.get_output_details()[0]
    y = it.get_tensor(out["index"])
    quantized = _quantization(out)
    if quantized is not None:
        y = quantized.dequantize(y)
    ranks = [len(t["shape"]) for t in it.get_tensor_details()]
    return y, ranks


# the spellings of subpixel 0.2, for one release
__getattr__ = _deprecation.moved_names(
    __name__, {"RuntimeModel": "subpixel.models.runtime:RuntimeModel"}
)
