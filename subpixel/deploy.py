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
import logging
import os
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ._core import deprecation as _deprecation
from ._core import files as _files

__all__ = [
    "ONNX_INLINE_LIMIT",
    "Quantization",
    "check_opset",
    "keras_to_tflite",
    "onnx_ops",
    "onnx_opsets",
    "run_litert",
    "run_onnx",
    "run_tflite",
    "runtime_of",
    "tensor_ranks",
    "tflite_ops",
    "tflite_quantization",
    "torch_to_onnx",
    "torch_to_tflite",
]


def runtime_of(path: str | os.PathLike) -> str:
    """``"onnx"`` or ``"tflite"`` by the file's extension; ``ValueError`` otherwise."""
    name = os.fspath(path).lower()
    if name.endswith(".onnx"):
        return "onnx"
    if name.endswith((".tflite", ".litert")):
        return "tflite"
    raise _files.FileError(path, "unknown model format (use .onnx or .tflite)")


def quiet() -> Any:
    """A context in which the frameworks' chatter is silenced (what :func:`_quiet`
    silences): for importing TensorFlow, whose C++ start-up lines bypass Python."""
    return _quiet()


@contextlib.contextmanager
def _quiet() -> Any:
    """The exporters' and converters' chatter silenced: Python warnings, ``print``s,
    their loggers, and what their C++ parts write to the process's standard output
    and error (TensorFlow's converter prints ``fully_quantize: 0, ...``)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
        _quiet_fds(),
    ):
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


@contextlib.contextmanager
def _quiet_fds() -> Any:
    """File descriptors 1 and 2 sent to the null device for a while (process-wide:
    what native code prints); a no-op where they cannot be redirected."""
    for stream in (sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            stream.flush()  # type: ignore[union-attr]
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        for stream in (sys.__stdout__, sys.__stderr__):
            with contextlib.suppress(Exception):
                stream.flush()  # type: ignore[union-attr]
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


# ---------------------------------------------------------------------------
# ONNX
# ---------------------------------------------------------------------------

# weights above this many bytes go to a data file beside the graph (a protobuf holds
# at most 2 GiB); below it, every tensor is inside the .onnx file
ONNX_INLINE_LIMIT = 1_800_000_000
# DepthToSpace's CRD mode, which PyTorch's pixel shuffle needs, came in opset 11
MIN_OPSET = 11
DEFAULT_OPSET = {True: 18, False: 17}  # the dynamo exporter's own opset; TorchScript's


def onnx_opsets(*, dynamo: bool = True) -> range:
    """The opsets :func:`torch_to_onnx` writes with this exporter (the installed
    PyTorch's newest; the dynamo exporter writes 18 where asked for less)."""
    try:
        from torch.onnx import _constants as c

        newest = c.ONNX_MAX_OPSET if dynamo else c.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET
    except (ImportError, AttributeError):
        newest = 20
    return range(MIN_OPSET, newest + 1)


def check_opset(opset: int, *, dynamo: bool = True) -> None:
    """``ValueError`` (one line) for an opset the exporter cannot write a shuffle in."""
    ok = onnx_opsets(dynamo=dynamo)
    if opset not in ok:
        exporter = "dynamo" if dynamo else "TorchScript"
        raise ValueError(
            f"opset {opset}: the {exporter} exporter writes opsets {ok.start} to {ok.stop - 1} "
            f"here (DepthToSpace in PyTorch's CRD order needs {MIN_OPSET} or newer)"
        )


def _weight_bytes(module: Any) -> int:
    seen: set[int] = set()
    total = 0
    for t in [*module.parameters(), *module.buffers()]:
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


def torch_to_onnx(
    module: Any,
    example: Any,
    path: str | os.PathLike,
    *,
    dynamo: bool = True,
    opset: int | None = None,
    dynamic: bool = True,
) -> None:
    """Export ``module`` (eval mode) to ``path`` with ``torch.onnx.export``, batch and
    spatial sizes dynamic (``dynamic``).  ``dynamo=False`` uses the TorchScript
    exporter.  ``opset``: default 18 (dynamo) or 17 (TorchScript); the dynamo exporter
    writes 18 where asked for less (:func:`onnx_opsets`, :func:`check_opset`).

    The file is self-contained: every weight is inside it.  A model whose weights pass
    :data:`ONNX_INLINE_LIMIT` (a protobuf holds at most 2 GiB) keeps them in one data
    file ``<path>.data`` beside it (the graph names it by that name: move the two
    together).  Both are written under temporary names and renamed when complete; a
    data file of an earlier export to ``path`` that the new file does not use is
    removed."""
    import torch

    opset = DEFAULT_OPSET[bool(dynamo)] if opset is None else int(opset)
    check_opset(opset, dynamo=dynamo)
    dims = [0, *range(2, example.dim())] if dynamic else []
    kw: dict[str, Any] = {}
    if dims and dynamo:
        kw["dynamic_shapes"] = ({i: torch.export.Dim.AUTO for i in dims},)
    elif dims:
        kw["dynamic_axes"] = {"x": {i: f"d{i}" for i in dims}, "y": {i: f"o{i}" for i in dims}}
    external = _weight_bytes(module) > ONNX_INLINE_LIMIT
    if dynamo:
        kw["external_data"] = external
    path = os.fspath(path)
    stale = _external_files(path)
    module = _fixed_mode(module)
    with _files.staged(path) as tmp:
        with _quiet(), torch.no_grad():
            torch.onnx.export(
                module,
                (example,),
                tmp,
                dynamo=dynamo,
                opset_version=opset,
                input_names=["x"],
                output_names=["y"],
                **kw,
            )
        _one_data_file(tmp, external)
    for name in stale - _external_files(path):
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(os.path.dirname(os.path.abspath(path)), name))


def _fixed_mode(module: Any) -> Any:
    """``module`` in eval mode; a ``torch.export`` program's module, whose mode was fixed
    when it was exported and which refuses ``eval()``/``train()``, in a wrapper whose
    mode switches (the exporters make them) do not reach it."""
    import torch

    try:
        return module.eval()
    except NotImplementedError:
        pass

    class Exported(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: Any) -> Any:
            return self.inner(x)

        def train(self, mode: bool = True) -> Any:
            self.training = mode
            return self

    return Exported(module).eval()


def _external_files(path: str) -> set[str]:
    """The data files an ONNX file at ``path`` names (none if it is not one)."""
    try:
        import onnx

        model = onnx.load(path, load_external_data=False)
    except Exception:
        return set()
    out = set()
    for t in _initializers(model):
        for entry in t.external_data:
            if entry.key == "location":
                out.add(os.path.basename(entry.value))
    return out


def _initializers(model: Any) -> Any:
    import onnx

    yield from onnx.external_data_helper._get_all_tensors(model)


def _one_data_file(tmp: str, external: bool) -> None:
    """The file at ``tmp`` (in its private folder) made self-contained, or (``external``)
    its weights moved into one data file named after it."""
    folder, name = os.path.split(tmp)
    files = set(os.listdir(folder))
    data = f"{name}.data"
    if files == {name} and not external:
        return
    if files == {name, data} and external:
        return
    import onnx

    model = onnx.load(tmp)  # reads whatever data files the exporter wrote
    for f in files - {name}:
        os.unlink(os.path.join(folder, f))
    if external:
        onnx.save_model(
            model, tmp, save_as_external_data=True, all_tensors_to_one_file=True, location=data
        )
    else:
        onnx.external_data_helper.convert_model_from_external_data(model)
        onnx.save_model(model, tmp)


def onnx_ops(path: str | os.PathLike) -> set[str]:
    """The op types in an ONNX file."""
    import onnx

    model = onnx.load(os.fspath(path), load_external_data=False)
    return {node.op_type for node in model.graph.node}


def run_onnx(path: str | os.PathLike, x: Any) -> Any:
    """Run an ONNX file with one input in ONNX Runtime (CPU): its first output, a NumPy
    array (the same kind as :func:`run_litert`'s)."""
    import onnxruntime as ort

    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: x})[0]


def tensor_ranks(model: str | os.PathLike | bytes, x: Any = None) -> list[int]:
    import numpy as np

    """The rank of every tensor of an ONNX or LiteRT file (or LiteRT flatbuffer bytes).
    With an input ``x``: of every tensor of a run on ``x`` (ONNX Runtime with every
    intermediate value made an output; the LiteRT interpreter, its input resized to
    ``x``'s shape).  Without: ONNX by shape inference (a tensor whose rank it cannot
    tell, such as a reshape to a computed shape, is left out), LiteRT as declared."""
    if isinstance(model, (bytes, bytearray)) or runtime_of(model) == "tflite":
        blob = _blob(model)
        return _run_tflite(blob, x)[1] if x is not None else _tflite_ranks(blob)
    import onnx

    if x is not None:
        import onnxruntime as ort

        proto = onnx.load(os.fspath(model))
        shown = {o.name for o in proto.graph.output}
        for node in proto.graph.node:
            for name in node.output:
                if name and name not in shown:
                    proto.graph.output.append(onnx.ValueInfoProto(name=name))
                    shown.add(name)
        try:
            blob = proto.SerializeToString()
        except ValueError:  # over protobuf's 2 GiB: shape inference instead
            return tensor_ranks(model)
        session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return [len(np.shape(v)) for v in [x, *session.run(None, {name: x})]]
    graph = onnx.shape_inference.infer_shapes(
        onnx.load(os.fspath(model), load_external_data=False), data_prop=True
    ).graph
    ranks = []
    for v in [*graph.input, *graph.value_info, *graph.output]:
        t = v.type.tensor_type
        if t.HasField("shape"):
            ranks.append(len(t.shape.dim))
    return ranks


# ---------------------------------------------------------------------------
# LiteRT / TFLite
# ---------------------------------------------------------------------------


def _blob(model: str | os.PathLike | bytes) -> bytes:
    if isinstance(model, (bytes, bytearray)):
        return bytes(model)
    with open(os.fspath(model), "rb") as f:
        return f.read()


def _write_blob(path: str | os.PathLike, blob: bytes) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(blob)

    _files.atomic_write(path, write)


def keras_to_tflite(
    model: Any,
    path: str | os.PathLike | None = None,
    *,
    mode: str = "float32",
    representative: Iterable[Any] | None = None,
    io: str = "float32",
) -> Any:
    """Write a Keras model (TensorFlow backend) to ``path`` as a LiteRT flatbuffer with
    builtin ops only, atomically: ``mode="float32"``, ``"float16"`` (weights) or
    ``"int8"`` (full integer, calibrated on ``representative`` inputs).  ``io``: the
    type of the input and output of an int8 model: ``"float32"`` (the model quantizes
    and dequantizes them itself), or ``"int8"``/``"uint8"`` for integer-only delegates
    (their scale and zero point: :func:`tflite_quantization`).  Without ``path``
    (deprecated: the spelling of 0.3) the flatbuffer's bytes are returned."""
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
        blob = bytes(converter.convert())
    if path is None:
        _deprecation.warn(
            "deploy.keras_to_tflite(model) returning bytes", "deploy.keras_to_tflite(model, path)"
        )
        return blob
    _write_blob(path, blob)
    return None


def torch_to_tflite(module: Any, example: Any, path: str | os.PathLike) -> None:
    """Export a PyTorch module (eval mode) to ``path`` as a LiteRT flatbuffer with
    litert-torch (``pip install litert-torch``), atomically.  The file keeps the
    module's NCHW interface and ``example``'s shape (litert-torch writes static shapes)."""
    import torch

    try:
        with _quiet():  # its import prints what torchao's optional kernels lack
            import litert_torch
    except ImportError as exc:
        raise ImportError(
            "a LiteRT export from PyTorch needs litert-torch (pip install litert-torch)",
            name="litert_torch",
        ) from exc
    module = _fixed_mode(module)
    with _quiet(), torch.no_grad():
        edge = litert_torch.convert(module, (example,))

    def write(tmp: str) -> None:
        with _quiet():
            edge.export(tmp)

    _files.atomic_write(path, write)


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


def tflite_quantization(
    model: str | os.PathLike | bytes,
) -> tuple[Quantization | None, Quantization | None]:
    """``(input, output)``: how a LiteRT model's (a file or its bytes) first input and
    first output hold real numbers, ``None`` for a float one.  Give an integer input
    ``input.quantize(x)``; read an integer output with ``output.dequantize(y)``."""
    it = tflite_interpreter(_blob(model), delegates=False)
    return _quantization(it.get_input_details()[0]), _quantization(it.get_output_details()[0])


def tflite_interpreter(blob: bytes, delegates: bool = True, num_threads: int | None = None) -> Any:
    """A LiteRT interpreter of ``blob`` (ai-edge-litert, else TensorFlow's copy): with
    the default delegates (XNNPACK) or, ``delegates=False``, the builtin kernels only;
    ``num_threads`` threads (None: the interpreter's default)."""
    try:
        from ai_edge_litert import interpreter as litert
    except ImportError:  # TensorFlow's own (deprecated) copy of the interpreter
        import tensorflow as tf

        litert = tf.lite
    kw: dict[str, Any] = {} if num_threads is None else {"num_threads": num_threads}
    if delegates:
        return litert.Interpreter(model_content=blob, **kw)
    types = getattr(litert, "OpResolverType", None) or litert.experimental.OpResolverType
    resolver = types.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return litert.Interpreter(model_content=blob, experimental_op_resolver_type=resolver, **kw)


def tflite_ops(model: str | os.PathLike | bytes) -> set[str]:
    """The builtin ops of a LiteRT model, a file or its bytes (before any delegate
    takes them over)."""
    it = tflite_interpreter(_blob(model), delegates=False)
    return {op["op_name"] for op in it._get_ops_details()}


def _tflite_ranks(blob: bytes) -> list[int]:
    it = tflite_interpreter(blob, delegates=False)
    return [len(t["shape"]) for t in it.get_tensor_details()]


def run_litert(model: str | os.PathLike | bytes, x: Any) -> Any:
    """Run a LiteRT model (a file or its bytes) on ``x``, its input resized to ``x``'s
    shape: its first output, a NumPy array (the same kind as :func:`run_onnx`'s).  An
    integer input or output is quantized and dequantized with its own parameters."""
    return _run_tflite(_blob(model), x)[0]


def run_tflite(blob: bytes, x: Any) -> tuple[Any, list[int]]:
    """Deprecated (the spelling of 0.3): ``(run_litert(blob, x), tensor_ranks(blob,
    x))``."""
    _deprecation.warn(
        "deploy.run_tflite(blob, x), which returns (output, ranks),",
        "deploy.run_litert(model, x) (an array, as run_onnx gives) and "
        "deploy.tensor_ranks(model, x)",
    )
    return _run_tflite(_blob(blob), x)


def _run_tflite(blob: bytes, x: Any) -> tuple[Any, list[int]]:
    """The first output of a LiteRT model run on ``x``, and the ranks of every tensor.
    An integer input is given ``x`` quantized, an integer output is returned
    dequantized (:class:`Quantization`)."""
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
