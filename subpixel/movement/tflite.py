"""LiteRT (``.tflite``) flatbuffers into the neutral :class:`~.graph.Graph`.

The file is read through the flatbuffer schema that ships with LiteRT
(``ai_edge_litert``, or TensorFlow's copy), memory-mapped, so that only the parts
the analysis touches are read.  Sizes come from the file; where it declares dynamic
dimensions and the LiteRT interpreter is installed, the model is run once on a
random probe input to read every tensor's size.  Each data-movement op gets its
NumPy semantics (:mod:`.steps`, channels-last as LiteRT's ops are); a float
convolution with a constant kernel of zeros and ones is a candidate the analysis
probes.
"""

from __future__ import annotations

import math
import mmap
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._core.files import FileError
from . import steps
from .graph import Graph, Node, Quant
from .onnx import PROBE_BATCH, PROBE_SIZES

__all__ = ["read", "run"]

MAX_BYTES = 2**31
_CONST_ELEMENTS = 2**20

# TensorType enum of the schema -> NumPy dtype name
_DTYPES = {
    0: "float32",
    1: "float16",
    2: "int32",
    3: "uint8",
    4: "int64",
    6: "bool",
    7: "int16",
    9: "int8",
    10: "float64",
    12: "uint64",
    15: "uint32",
    16: "uint16",
}


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        try:
            from tensorflow.lite.python import schema_py_generated as schema
        except ImportError:
            raise ImportError(
                "reading .tflite files needs LiteRT's schema: pip install ai-edge-litert"
            ) from None
    return schema


def _open(path: str) -> Any:
    try:
        size = os.path.getsize(path)
        if os.path.isdir(path):
            raise FileError(path, "is a folder, not a LiteRT file")
        if size > MAX_BYTES:
            raise FileError(path, f"is {size} bytes; larger LiteRT files are not read")
        if size < 8:
            raise FileError(path, "not a LiteRT model (too short)")
        with open(path, "rb") as f:
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as e:
        raise FileError(path, f"cannot be read ({e.strerror or e})") from None
    if data[4:8] != b"TFL3":
        raise FileError(path, "not a LiteRT model (no TFL3 identifier)")
    return data


class _Reader:
    """One model's flatbuffer, read through the schema's accessors."""

    def __init__(self, buf: Any, path: str) -> None:
        self.schema = _schema()
        self.buf, self.path = buf, path
        self.model = self.schema.Model.GetRootAsModel(buf, 0)
        if self.model.SubgraphsLength() < 1:
            raise FileError(path, "not a LiteRT model (no subgraph)")
        self.sg = self.model.Subgraphs(0)
        names = {
            v: k for k, v in vars(self.schema.BuiltinOperator).items() if not k.startswith("_")
        }
        self.codes = []
        for i in range(self.model.OperatorCodesLength()):
            oc = self.model.OperatorCodes(i)
            code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
            name = names.get(code, f"BUILTIN_{code}")
            if name == "CUSTOM":
                custom = oc.CustomCode()
                name = f"CUSTOM:{custom.decode(errors='replace') if custom else '?'}"
            self.codes.append(name)
        self.names = self._tensor_names()
        # the op writing each tensor (constants computed in the graph: a float16 weight's
        # DEQUANTIZE to float32)
        self.writer: dict[int, tuple[str, list[int]]] = {}
        for k in range(self.sg.OperatorsLength()):
            op = self.sg.Operators(k)
            code = self.codes[op.OpcodeIndex()] if op.OpcodeIndex() < len(self.codes) else ""
            ins = [int(i) for i in op.InputsAsNumpy()] if op.InputsLength() else []
            for o in op.OutputsAsNumpy() if op.OutputsLength() else []:
                self.writer[int(o)] = (code, ins)

    def _tensor_names(self) -> list[str]:
        raw = [
            (self.sg.Tensors(i).Name() or b"").decode(errors="replace") or f"tensor_{i}"
            for i in range(self.sg.TensorsLength())
        ]
        seen: dict[str, int] = {}
        for n in raw:
            seen[n] = seen.get(n, 0) + 1
        return [n if seen[n] == 1 else f"{n}#{i}" for i, n in enumerate(raw)]

    def shape(self, i: int) -> tuple[int, ...]:
        t = self.sg.Tensors(i)
        return tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()

    def declared(self, i: int) -> tuple[int | None, ...]:
        t = self.sg.Tensors(i)
        if t.ShapeSignatureLength():
            return tuple(None if s < 0 else int(s) for s in t.ShapeSignatureAsNumpy())
        return self.shape(i)

    def dtype(self, i: int) -> str:
        return _DTYPES.get(self.sg.Tensors(i).Type(), "other")

    def constant(self, i: int) -> np.ndarray | None:
        """A tensor's constant data (small ones only; a DEQUANTIZE of a constant, as
        float16 models keep their weights, evaluated)."""
        t = self.sg.Tensors(i)
        shape = self.shape(i)
        if math.prod(shape) > _CONST_ELEMENTS:
            return None
        if t.Buffer() <= 0 or not self.model.Buffers(t.Buffer()).DataLength():
            written = self.writer.get(i)
            if written is not None and written[0] == "DEQUANTIZE" and written[1]:
                src = written[1][0]
                value = self.constant(src)
                if value is None:
                    return None
                if value.dtype.kind == "f":
                    return value.astype(np.float32)
                q = self.quant(src)
                if q is not None and len(q.scale) == 1:
                    return ((value.astype(np.float64) - q.zero_point[0]) * q.scale[0]).astype(
                        np.float32
                    )
            if t.Buffer() <= 0:
                return None
        dtype = self.dtype(i)
        if dtype == "other":
            return None
        b = self.model.Buffers(t.Buffer())
        if b is None:
            return None
        if b.DataLength():
            raw = b.DataAsNumpy().tobytes()
        elif hasattr(b, "Offset") and b.Offset() > 1:
            raw = bytes(self.buf[b.Offset() : b.Offset() + b.Size()])
        else:
            return None
        a = np.frombuffer(raw, dtype=np.dtype(dtype))
        if a.size != math.prod(shape):
            return None
        return a.reshape(shape)

    def quant(self, i: int) -> Quant | None:
        q = self.sg.Tensors(i).Quantization()
        if q is None or not q.ScaleLength():
            return None
        return Quant(
            tuple(float(s) for s in q.ScaleAsNumpy()),
            tuple(int(z) for z in q.ZeroPointAsNumpy()) if q.ZeroPointLength() else (0,),
            int(q.QuantizedDimension()) if q.ScaleLength() > 1 else None,
        )

    def options(self, op: Any, kind: str) -> Any:
        table = op.BuiltinOptions()
        if table is None:
            return None
        cls = getattr(self.schema, kind)
        o = cls()
        o.Init(table.Bytes, table.Pos)
        return o


def _tf_same(size: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    span = (k - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def _nhwc(step: Any) -> Any:
    """A channels-first step applied to channels-last data."""

    def run(x: np.ndarray) -> np.ndarray:
        y = step(np.moveaxis(x, -1, 1))
        return np.moveaxis(y, 1, -1)

    return run


def _one_hot(w: np.ndarray | None, bias: np.ndarray | None) -> bool:
    return (
        w is not None
        and w.dtype.kind == "f"
        and bool(np.all((w == 0) | (w == 1)))
        and (bias is None or not np.any(bias))
    )


def _real(r: _Reader, i: int) -> np.ndarray | None:
    """A constant's real values: integer tensors dequantized (``scale * (q - zero)``,
    per channel along the quantized axis), rounded to the nearest 1/1024 so that a
    quantized one-hot kernel reads as zeros and ones."""
    a = r.constant(i)
    if a is None or a.dtype.kind == "f":
        return a
    q = r.quant(i)
    if q is None:
        return a.astype(np.float64)
    shape = [1] * a.ndim
    if len(q.scale) > 1 and q.axis is not None:
        shape[q.axis] = -1
    scale = np.asarray(q.scale).reshape(shape)
    zero = np.asarray(
        q.zero_point if len(q.zero_point) == len(q.scale) else q.zero_point[:1] * len(q.scale)
    ).reshape(shape)
    return np.round((a.astype(np.float64) - zero) * scale * 1024) / 1024


def _step(
    r: _Reader, code: str, op: Any, ins: list[int], outs: list[int], sizes: dict
) -> tuple[str, Any, int]:
    """(kind, NumPy semantics, data input) of an operator."""
    out = sizes.get(outs[0]) if outs else None
    const = r.constant
    if code in ("RESHAPE", "SQUEEZE", "EXPAND_DIMS"):
        return ("move", steps.reshape(out), 0) if out is not None else ("compute", None, 0)
    if code == "TRANSPOSE" and len(ins) > 1:
        perm = const(ins[1])
        if perm is None:
            return "compute", None, 0
        return "move", steps.transpose(perm.tolist()), 0
    if code in ("DEPTH_TO_SPACE", "SPACE_TO_DEPTH"):
        kind = "DepthToSpaceOptions" if code == "DEPTH_TO_SPACE" else "SpaceToDepthOptions"
        o = r.options(op, kind)
        if o is None:
            return "compute", None, 0
        b = int(o.BlockSize())
        make = steps.depth_to_space if code == "DEPTH_TO_SPACE" else steps.space_to_depth
        return "move", make((b, b), "DCR", "channels_last"), 0
    if code == "GATHER" and len(ins) > 1:
        idx = const(ins[1])
        o = r.options(op, "GatherOptions")
        if idx is None or (o is not None and o.BatchDims() != 0):
            return "compute", None, 0
        return "move", steps.take(idx, int(o.Axis()) if o is not None else 0), 0
    if code == "SLICE" and len(ins) > 2:
        begin, size = const(ins[1]), const(ins[2])
        shape = sizes.get(ins[0])
        if begin is None or size is None or shape is None:
            return "compute", None, 0
        ends = [shape[a] if s < 0 else b + s for a, (b, s) in enumerate(zip(begin, size))]
        return "move", steps.slicing(begin.tolist(), ends, range(len(begin)), [1] * len(begin)), 0
    if code == "STRIDED_SLICE" and len(ins) > 3:
        return _strided_slice(r, op, ins, sizes, out)
    if code in ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV"):
        return _conv(r, code, op, ins, sizes, out)
    if code == "SHAPE":
        return "shape", None, 0
    return "compute", None, 0


def _many(
    r: _Reader, code: str, op: Any, ins: list[int], outs: list[int], sizes: dict
) -> tuple[Any, tuple[int, ...]] | None:
    """(step, data input indices) of an op moving several tensors, else None."""
    const = r.constant
    if code == "SPLIT" and len(ins) == 2:
        axis, shape = const(ins[0]), sizes.get(ins[1])
        if axis is None or shape is None:
            return None
        a = int(np.asarray(axis).reshape(-1)[0]) % len(shape)
        return steps.split(a, [shape[a] // len(outs)] * len(outs)), (1,)
    if code == "SPLIT_V" and len(ins) == 3:
        cut, axis, shape = const(ins[1]), const(ins[2]), sizes.get(ins[0])
        if cut is None or axis is None or shape is None:
            return None
        a = int(np.asarray(axis).reshape(-1)[0]) % len(shape)
        parts = [sizes.get(o) for o in outs]
        if any(p is None for p in parts):
            return None
        return steps.split(a, [p[a] for p in parts]), (0,)  # type: ignore[index]
    if (
        code in ("CONCATENATION", "PACK")
        and ins
        and all(
            r.sg.Tensors(i).Buffer() <= 0
            or not r.model.Buffers(r.sg.Tensors(i).Buffer()).DataLength()
            for i in ins
        )
    ):
        o = r.options(op, "ConcatenationOptions" if code == "CONCATENATION" else "PackOptions")
        if o is None or (code == "CONCATENATION" and o.FusedActivationFunction() != 0):
            return None
        rank = len(sizes.get(outs[0]) or ())
        a = int(o.Axis()) % max(rank, 1)
        return (steps.concatenate(a) if code == "CONCATENATION" else steps.stack(a)), tuple(
            range(len(ins))
        )
    if code == "UNPACK" and len(ins) == 1:
        o = r.options(op, "UnpackOptions")
        rank = len(sizes.get(ins[0]) or ())
        if o is None or not rank:
            return None
        return steps.unstack(int(o.Axis()) % rank), (0,)
    return None


def _strided_slice(
    r: _Reader, op: Any, ins: list[int], sizes: dict, out: Any
) -> tuple[str, Any, int]:
    begin, end, stride = (r.constant(i) for i in ins[1:4])
    o = r.options(op, "StridedSliceOptions")
    shape = sizes.get(ins[0])
    if begin is None or end is None or stride is None or o is None or shape is None or out is None:
        return "compute", None, 0
    if o.EllipsisMask() or o.NewAxisMask() or (hasattr(o, "Offset") and o.Offset()):
        return "compute", None, 0
    starts: list[int] = []
    ends: list[int] = []
    for a in range(len(begin)):
        forward = stride[a] > 0
        lo = None if o.BeginMask() >> a & 1 else int(begin[a])
        hi = None if o.EndMask() >> a & 1 else int(end[a])
        if o.ShrinkAxisMask() >> a & 1:
            hi = lo + 1 if lo is not None and lo != -1 else None
        starts.append(lo if lo is not None else (0 if forward else shape[a] - 1))
        ends.append(hi if hi is not None else (shape[a] if forward else -shape[a] - 1))
    cut = steps.slicing(starts, ends, range(len(begin)), [int(s) for s in stride])
    target = tuple(out)
    return "move", (lambda x: cut(x).reshape(target)), 0


def _conv(
    r: _Reader, code: str, op: Any, ins: list[int], sizes: dict, out: Any
) -> tuple[str, Any, int]:
    data = 2 if code == "TRANSPOSE_CONV" else 0
    w_at, b_at = (1, 3) if code == "TRANSPOSE_CONV" else (1, 2)
    w = _real(r, ins[w_at]) if len(ins) > w_at and ins[w_at] >= 0 else None
    bias = _real(r, ins[b_at]) if len(ins) > b_at and ins[b_at] >= 0 else None
    x = sizes.get(ins[data]) if len(ins) > data else None
    if not _one_hot(w, bias) or x is None or out is None or w is None or w.ndim != 4:
        return "compute", None, data
    opts = {
        "CONV_2D": "Conv2DOptions",
        "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
        "TRANSPOSE_CONV": "TransposeConvOptions",
    }[code]
    o = r.options(op, opts)
    if o is None or (hasattr(o, "FusedActivationFunction") and o.FusedActivationFunction() != 0):
        return "compute", None, data
    stride = (int(o.StrideH()), int(o.StrideW()))
    dilation = (
        (int(o.DilationHFactor()), int(o.DilationWFactor())) if code != "TRANSPOSE_CONV" else (1, 1)
    )
    same = o.Padding() == 0
    kh, kw = (w.shape[1], w.shape[2])
    if code == "TRANSPOSE_CONV":  # weight (O, H, W, I) -> (I, O, H, W)
        wt = np.transpose(w, (3, 0, 1, 2))
        full = [(x[1 + a] - 1) * stride[a] + k for a, k in enumerate((kh, kw))]
        pads = []
        for a in range(2):
            total = max(full[a] - out[1 + a], 0)
            pads.append((total // 2, total - total // 2) if same else (0, total))
        return "maybe", _nhwc(steps.conv_transpose(wt, None, stride, pads, (1, 1), 1)), data
    if code == "DEPTHWISE_CONV_2D":  # (1, H, W, C * m) -> (C * m, 1, H, W)
        wt, groups = np.transpose(w, (3, 0, 1, 2)), x[-1]
    else:  # (O, H, W, I) -> (O, I, H, W)
        wt, groups = np.transpose(w, (0, 3, 1, 2)), 1
    pads = [
        _tf_same(x[1 + a], k, stride[a], dilation[a]) if same else (0, 0)
        for a, k in enumerate((kh, kw))
    ]
    return "maybe", _nhwc(steps.conv(wt, None, stride, pads, dilation, groups)), data


def read(path: str | os.PathLike, shapes: Mapping[str, Sequence[int]] | None = None) -> Graph:
    """The graph of a LiteRT file's main subgraph, sizes concrete for a probe input."""
    path = os.fspath(path)
    buf = _open(path)
    try:
        return _read(buf, path, shapes)
    except FileError:
        raise
    except ImportError:
        raise
    except Exception as e:  # the schema's accessors on a corrupt buffer
        line = (str(e).strip().splitlines() or [""])[0][:200]
        raise FileError(path, f"not a readable LiteRT model ({type(e).__name__}: {line})") from None


def _read(buf: Any, path: str, shapes: Mapping[str, Sequence[int]] | None) -> Graph:
    r = _Reader(buf, path)
    sg = r.sg
    n_tensors = sg.TensorsLength()
    sizes: dict[int, tuple[int, ...] | None] = {i: r.shape(i) for i in range(n_tensors)}
    inputs = [int(i) for i in sg.InputsAsNumpy()] if sg.InputsLength() else []
    outputs = [int(i) for i in sg.OutputsAsNumpy()] if sg.OutputsLength() else []
    if any(d is None for i in range(n_tensors) for d in r.declared(i)) or shapes:
        _run_for_sizes(path, r, inputs, sizes, shapes)
    graph = Graph("tflite", "channels_last")
    graph.inputs = [r.names[i] for i in inputs]
    graph.outputs = [r.names[i] for i in outputs]
    for k in range(sg.OperatorsLength()):
        op = sg.Operators(k)
        code = r.codes[op.OpcodeIndex()] if op.OpcodeIndex() < len(r.codes) else "UNKNOWN"
        ins = [int(i) for i in op.InputsAsNumpy()] if op.InputsLength() else []
        outs = [int(i) for i in op.OutputsAsNumpy()] if op.OutputsLength() else []
        kind, step, data = _step(r, code, op, ins, outs, sizes)
        many = _many(r, code, op, ins, outs, sizes) if kind == "compute" else None
        if many is not None:
            kind, step = "move", many[0]
        name = r.names[outs[0]] if outs else f"{code}_{k}"
        graph.add(
            Node(
                name,
                code,
                [r.names[i] if i >= 0 else "" for i in ins],
                [r.names[i] for i in outs],
                kind,  # type: ignore[arg-type]
                step,
                many[1][0] if many is not None else data,
                many=many[1] if many is not None else None,
            )
        )
    for i in range(n_tensors):
        name = r.names[i]
        if name not in graph.values:
            continue
        v = graph.values[name]
        v.shape, v.dtype = r.declared(i), r.dtype(i)
        v.probe_shape = sizes.get(i)
        v.quant = r.quant(i)
        v.constant = (
            sg.Tensors(i).Buffer() > 0 and r.model.Buffers(sg.Tensors(i).Buffer()).DataLength() > 0
        )
    graph.attrs = {
        "subgraphs": r.model.SubgraphsLength(),
        "tensor_index": dict(zip(r.names, range(n_tensors))),
    }
    return graph


def _interpreter(path: str, preserve: bool = True) -> Any:
    """LiteRT's interpreter with its reference kernels (no delegate: every tensor kept,
    nothing printed)."""
    import warnings

    try:
        from ai_edge_litert import interpreter as litert

        Interpreter, resolver = litert.Interpreter, litert.OpResolverType
    except ImportError:
        import tensorflow as tf

        Interpreter, resolver = tf.lite.Interpreter, tf.lite.experimental.OpResolverType
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (keeping every tensor "is for debugging")
        return Interpreter(
            model_path=path,
            experimental_preserve_all_tensors=preserve,
            experimental_op_resolver_type=resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )


def _run_for_sizes(
    path: str,
    r: _Reader,
    inputs: list[int],
    sizes: dict[int, tuple[int, ...] | None],
    shapes: Mapping[str, Sequence[int]] | None,
) -> None:
    """Dynamic dimensions: resize the inputs to probe sizes and run once; every
    tensor's size is read off the run (without LiteRT they stay the file's)."""
    try:
        interp = _interpreter(path)
    except Exception:
        return
    try:
        rng = np.random.default_rng(0)
        details = interp.get_input_details()
        for d in details:
            name = r.names[d["index"]] if d["index"] < len(r.names) else ""
            if shapes and name in shapes:
                probe = tuple(int(s) for s in shapes[name])
            else:
                sig = d.get("shape_signature", d["shape"])
                extra = iter(PROBE_SIZES * 4)
                probe = tuple(
                    int(s) if s >= 0 else (PROBE_BATCH if a == 0 else next(extra))
                    for a, s in enumerate(sig)
                )
            interp.resize_tensor_input(d["index"], probe)
        interp.allocate_tensors()
        for d in interp.get_input_details():
            dt = np.dtype(d["dtype"])
            value = rng.random(d["shape"]) if dt.kind == "f" else np.zeros(d["shape"])
            interp.set_tensor(d["index"], value.astype(dt))
        interp.invoke()
        for i in range(len(r.names)):
            try:
                sizes[i] = tuple(int(s) for s in interp.get_tensor(i).shape)
            except ValueError:
                continue
    except Exception:
        return


def run(
    path: str | os.PathLike, feeds: Sequence[np.ndarray], names: Sequence[str], graph: Graph
) -> dict[str, np.ndarray]:
    """The tensors ``names`` of a LiteRT file run in the LiteRT interpreter on ``feeds``
    (one array per input, in order)."""
    interp = _interpreter(os.fspath(path))
    details = interp.get_input_details()
    for d, x in zip(details, feeds):
        interp.resize_tensor_input(d["index"], x.shape)
    interp.allocate_tensors()
    for d, x in zip(interp.get_input_details(), feeds):
        interp.set_tensor(d["index"], np.asarray(x, d["dtype"]))
    interp.invoke()
    index: dict[str, int] = graph.attrs["tensor_index"]  # type: ignore[assignment]
    return {name: np.array(interp.get_tensor(index[name])) for name in names}
