"""ONNX files into the neutral :class:`~.graph.Graph` (with the ``onnx`` package).

Sizes are made concrete for one probe input: dynamic input dimensions get probe
sizes, the shape subgraphs exporters write for dynamic sizes (``Shape``, ``Gather``,
``Concat``, arithmetic on shapes) are evaluated with ONNX's reference implementation
of each op, and ONNX shape inference gives every tensor its size.  Each
data-movement op gets its NumPy semantics (:mod:`.steps`); a convolution with a
constant kernel of zeros and ones is a candidate that the analysis probes (a shuffle
lowered to a one-hot convolution is one).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._core.files import FileError
from . import steps
from .graph import Graph, Node

__all__ = ["MAX_BYTES", "probe_shapes", "read", "run"]

# a file larger than this is refused (ONNX keeps larger models' weights outside the
# file; their graphs are small)
MAX_BYTES = 2**31
# constants and folded shape values larger than this are not evaluated
_FOLD_ELEMENTS = 4096
# constants larger than this are not read (a one-hot kernel or gather is smaller)
_CONST_ELEMENTS = 2**20
# dynamic dimensions of an input get these sizes: batch 2, the others in turn
PROBE_BATCH = 2
PROBE_SIZES = (48, 72, 40)

_DTYPES = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
    16: "bfloat16",
}

_STANDARD_DOMAINS = ("", "ai.onnx")


def load(path: str | os.PathLike) -> Any:
    """The model of an ONNX file (external weights are not read); one-line
    :class:`FileError` for anything that is not a readable ONNX model."""
    import onnx
    from google.protobuf.message import DecodeError

    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise FileError(path, f"cannot be read ({e.strerror or e})") from None
    if os.path.isdir(path):
        raise FileError(path, "is a folder, not an ONNX file")
    if size > MAX_BYTES:
        raise FileError(path, f"is {size} bytes; ONNX files hold at most 2 GB")
    try:
        model = onnx.load(path, load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError, UnicodeDecodeError) as e:
        raise FileError(path, f"not an ONNX model ({type(e).__name__}: {_first_line(e)})") from None
    except Exception as e:  # protobuf raises whatever a hostile file provokes
        raise FileError(path, f"not an ONNX model ({type(e).__name__}: {_first_line(e)})") from None
    if not model.HasField("graph") or not model.graph.node:
        raise FileError(path, "not an ONNX model (no graph of nodes)")
    return model


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:200]


def _declared(type_proto: Any) -> tuple[int | None, ...] | None:
    tensor = type_proto.tensor_type
    if not tensor.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)


def probe_shapes(
    model: Any, shapes: Mapping[str, Sequence[int]] | None = None
) -> dict[str, tuple[int, ...]]:
    """A concrete shape for every graph input: ``shapes`` where given, else the
    declared sizes with :data:`PROBE_BATCH` for an open first dimension and
    :data:`PROBE_SIZES` for the other open ones."""
    init = {t.name for t in model.graph.initializer}
    out: dict[str, tuple[int, ...]] = {}
    for vi in model.graph.input:
        if vi.name in init:
            continue
        if shapes and vi.name in shapes:
            out[vi.name] = tuple(int(s) for s in shapes[vi.name])
            continue
        declared = _declared(vi.type)
        if declared is None:
            raise ValueError(f"input {vi.name!r} declares no shape: pass its shape")
        sizes = iter(PROBE_SIZES * 4)
        out[vi.name] = tuple(
            d if d is not None else (PROBE_BATCH if i == 0 else next(sizes))
            for i, d in enumerate(declared)
        )
    return out


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _external(
    tensor: Any, folder: str | None, limit: int | None = _CONST_ELEMENTS
) -> np.ndarray | None:
    """A small initializer kept in a file beside the model (as the dynamo exporter
    writes them), read if its location stays inside the model's folder."""
    from onnx import numpy_helper

    if folder is None or (limit is not None and math.prod(tensor.dims) > limit):
        return None
    info = {e.key: e.value for e in tensor.external_data}
    location = info.get("location", "")
    where = os.path.realpath(os.path.join(folder, location))
    if (
        not location
        or os.path.isabs(location)
        or not where.startswith(os.path.realpath(folder) + os.sep)
    ):
        return None
    try:
        offset, length = int(info.get("offset", 0)), int(info.get("length", -1))
        with open(where, "rb") as f:
            f.seek(offset)
            raw = f.read(length if length >= 0 else -1)
        t = type(tensor)()
        t.CopyFrom(tensor)
        del t.external_data[:]
        t.data_location = 0
        t.raw_data = raw
        return numpy_helper.to_array(t)
    except (OSError, ValueError):
        return None


def _fold(
    model: Any, shapes: dict[str, tuple[int, ...]], folder: str | None = None
) -> tuple[dict[str, np.ndarray], Any]:
    """Small constant values (initializers, ``Constant`` outputs, shape arithmetic
    evaluated for the probe) and the model with every value's shape inferred."""
    import onnx
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    known: dict[str, np.ndarray] = {}
    for t in model.graph.initializer:
        if t.data_location != onnx.TensorProto.EXTERNAL:
            if math.prod(t.dims) <= _CONST_ELEMENTS:
                known[t.name] = numpy_helper.to_array(t)
        else:
            value = _external(t, folder)
            if value is not None:
                known[t.name] = value
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.value_info[:]
    for vi in probe.graph.input:
        if vi.name in shapes:
            dims = vi.type.tensor_type.shape.dim
            del dims[:]
            for s in shapes[vi.name]:
                dims.add().dim_value = s
    inferred = _infer(probe)
    for _ in range(8):  # shapes feed folds feed shapes: until nothing new is learnt
        sizes = _value_shapes(inferred)
        before = len(known)
        for node in model.graph.node:
            if node.domain in _STANDARD_DOMAINS and not all(o in known for o in node.output if o):
                _fold_node(node, known, sizes, ReferenceEvaluator)
        if len(known) == before:
            break
        # the folded values as constants: shape inference then sees the reshapes' targets
        folded = [
            n for n in probe.graph.node if n.output and all(o in known for o in n.output if o)
        ]
        for node in folded:
            probe.graph.node.remove(node)
            for name in node.output:
                if name:
                    probe.graph.initializer.append(numpy_helper.from_array(known[name], name))
        inferred = _infer(probe)
    return known, inferred


def _fold_node(node: Any, known: dict[str, np.ndarray], sizes: dict, evaluator: Any) -> None:
    from onnx import numpy_helper

    if node.op_type == "Constant":
        a = _attrs(node)
        if "value" in a:
            known[node.output[0]] = numpy_helper.to_array(a["value"])
        elif a:
            known[node.output[0]] = np.asarray(next(iter(a.values())))
        return
    if node.op_type == "Shape":
        if sizes.get(node.input[0]) is not None:
            a = _attrs(node)
            full = np.asarray(sizes[node.input[0]], np.int64)
            known[node.output[0]] = full[a.get("start", 0) : a.get("end", len(full))]
        return
    ins = [i for i in node.input if i]
    if not ins or not all(i in known for i in ins) or node.op_type in _NO_FOLD:
        return
    if any(known[i].size > _FOLD_ELEMENTS for i in ins):
        return
    try:
        outs = evaluator(node).run(None, {i: known[i] for i in ins})
    except Exception:
        return
    for name, value in zip(node.output, outs):
        if name and np.asarray(value).size <= _FOLD_ELEMENTS:
            known[name] = np.asarray(value)


def _infer(model: Any) -> Any:
    import onnx

    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:
        return model


def _value_shapes(model: Any) -> dict[str, tuple[int, ...] | None]:
    out: dict[str, tuple[int, ...] | None] = {}
    g = model.graph
    for vi in (*g.input, *g.value_info, *g.output):
        d = _declared(vi.type)
        out[vi.name] = (
            None
            if d is None or any(s is None for s in d)
            else tuple(int(s) for s in d if s is not None)
        )
    for t in g.initializer:
        out[t.name] = tuple(int(s) for s in t.dims)
    return out


_MOVES = {"Reshape", "Transpose", "DepthToSpace", "SpaceToDepth", "Squeeze", "Unsqueeze"}
_MOVES |= {"Flatten", "Identity", "Gather", "Slice", "Dropout"}
# ops whose folding could be expensive or random
_NO_FOLD = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial"}
_NO_FOLD |= {"Conv", "ConvTranspose", "MatMul", "Gemm", "Loop", "Scan", "If"}


def _move_step(node: Any, a: dict[str, Any], known: dict[str, np.ndarray], sizes: dict) -> Any:
    """The NumPy semantics of a data-movement node, or None where it depends on
    values not known for the probe (a gather of computed indices)."""
    op, out = node.op_type, sizes.get(node.output[0])
    if op in ("Reshape", "Squeeze", "Unsqueeze", "Flatten"):
        return steps.reshape(out) if out is not None else None
    if op in ("Identity", "Dropout"):
        return steps.copy()
    if op == "Transpose":
        return steps.transpose(a.get("perm"))
    if op in ("DepthToSpace", "SpaceToDepth"):
        b = int(a["blocksize"])
        if op == "DepthToSpace":
            mode = a.get("mode", b"DCR")
            mode = mode.decode() if isinstance(mode, bytes) else str(mode)
            return steps.depth_to_space((b, b), mode, "channels_first")
        return steps.space_to_depth((b, b), "DCR", "channels_first")
    if op == "Gather" and len(node.input) > 1 and node.input[1] in known:
        return steps.take(known[node.input[1]], int(a.get("axis", 0)))
    if op == "Slice" and all(i in known for i in node.input[1:] if i):
        data = sizes.get(node.input[0])
        if data is None:
            return None
        starts: list[int] = known[node.input[1]].tolist()
        ends: list[int] = known[node.input[2]].tolist()
        given: list[int] | range = (
            known[node.input[3]].tolist()
            if len(node.input) > 3 and node.input[3]
            else range(len(starts))
        )
        stride: list[int] = (
            known[node.input[4]].tolist()
            if len(node.input) > 4 and node.input[4]
            else [1] * len(starts)
        )
        axes = [int(x) % len(data) for x in given]
        return steps.slicing(starts, ends, axes, stride)
    return None


def _many_step(node: Any, a: dict[str, Any], known: dict[str, np.ndarray], sizes: dict) -> Any:
    """(step, data input indices) of a Split or Concat whose sizes are known."""
    shapes = [sizes.get(o) for o in node.output]
    if node.op_type == "Split":
        data = sizes.get(node.input[0])
        if data is None or any(s is None for s in shapes):
            return None
        axis = int(a.get("axis", 0)) % len(data)
        return steps.split(axis, [s[axis] for s in shapes]), (0,)  # type: ignore[index]
    if any(i in known for i in node.input) or shapes[0] is None:
        return None
    axis = int(a.get("axis", 0)) % len(shapes[0])
    return steps.concatenate(axis), tuple(range(len(node.input)))


def _conv_step(node: Any, a: dict[str, Any], known: dict[str, np.ndarray], sizes: dict) -> Any:
    """A convolution with a constant kernel of zeros and ones (and no bias, or a zero
    one): the semantics the analysis probes; None for any other."""
    w = known.get(node.input[1]) if len(node.input) > 1 else None
    b = known.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if w is None or w.ndim < 3 or w.size > 2**20 or not np.all((w == 0) | (w == 1)):
        return None
    if b is not None and np.any(b != 0):
        return None
    x_shape, y_shape = sizes.get(node.input[0]), sizes.get(node.output[0])
    if x_shape is None or y_shape is None:
        return None
    d = w.ndim - 2
    stride = tuple(a.get("strides", (1,) * d))
    dilation = tuple(a.get("dilations", (1,) * d))
    groups = int(a.get("group", 1))
    pads = a.get("pads", (0,) * (2 * d))
    pairs = [(int(pads[k]), int(pads[k + d])) for k in range(d)]
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if node.op_type == "Conv":
        if auto in ("SAME_UPPER", "SAME_LOWER", "VALID"):
            pairs = []
            for k in range(d):
                span = (w.shape[2 + k] - 1) * dilation[k] + 1
                total = max((y_shape[2 + k] - 1) * stride[k] + span - x_shape[2 + k], 0)
                lo = total // 2 if auto != "SAME_LOWER" else total - total // 2
                pairs.append((0, 0) if auto == "VALID" else (lo, total - lo))
        return steps.conv(w, b, stride, pairs, dilation, groups)
    full = [
        (x_shape[2 + k] - 1) * stride[k] + (w.shape[2 + k] - 1) * dilation[k] + 1 for k in range(d)
    ]
    extra = [max(y_shape[2 + k] + pairs[k][0] + pairs[k][1] - full[k], 0) for k in range(d)]
    if auto in ("SAME_UPPER", "SAME_LOWER", "VALID") or "output_shape" in a:
        pairs, extra = [], [0] * d
        for k in range(d):
            total = full[k] - y_shape[2 + k]
            lo = total // 2 if auto == "SAME_LOWER" else total - total // 2
            pairs.append((max(lo, 0), max(total - lo, 0)))
    return steps.conv_transpose(w, b, stride, pairs, dilation, groups, extra)


def read(
    source: str | os.PathLike | Any,
    shapes: Mapping[str, Sequence[int]] | None = None,
    folder: str | None = None,
) -> Graph:
    """The graph of an ONNX file (or a loaded ``ModelProto`` whose external weights,
    if any, lie in ``folder``), sizes made concrete for a probe input
    (:func:`probe_shapes`; ``shapes`` overrides it per input name)."""
    if isinstance(source, (str, os.PathLike)):
        model, folder = load(source), os.path.dirname(os.path.abspath(source))
    else:
        model = source
    concrete = probe_shapes(model, shapes)
    known, inferred = _fold(model, concrete, folder)
    sizes = _value_shapes(inferred)
    _run_for_sizes(model, folder, concrete, known, sizes)
    declared: dict[str, Any] = {}
    types: dict[str, str] = {}
    as_declared = _infer(model)  # the sizes the file fixes, the open ones None
    for vi in (*as_declared.graph.input, *as_declared.graph.value_info, *as_declared.graph.output):
        declared[vi.name] = _declared(vi.type)
    for vi in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        types[vi.name] = _DTYPES.get(vi.type.tensor_type.elem_type, "other")
    init = {t.name for t in model.graph.initializer}
    graph = Graph("onnx", "channels_first")
    graph.inputs = [vi.name for vi in model.graph.input if vi.name not in init]
    graph.outputs = [vi.name for vi in model.graph.output]
    for i, node in enumerate(model.graph.node):
        a = _attrs(node) if node.domain in _STANDARD_DOMAINS else {}
        kind, step, many = "compute", None, None
        if node.domain not in _STANDARD_DOMAINS:
            pass
        elif node.op_type in _MOVES:
            step = _move_step(node, a, known, sizes)
            kind = "move" if step is not None else "compute"
        elif node.op_type in ("Conv", "ConvTranspose"):
            step = _conv_step(node, a, known, sizes)
            kind = "maybe" if step is not None else "compute"
        elif node.op_type in ("Split", "Concat"):
            found = _many_step(node, a, known, sizes)
            if found is not None:
                (step, many), kind = found, "move"
        elif node.op_type in ("Shape", "Size"):
            kind = "shape"
        attrs = {"domain": node.domain} if node.domain not in _STANDARD_DOMAINS else {}
        graph.add(
            Node(
                node.name or f"{node.op_type}_{i}",
                node.op_type,
                list(node.input),
                list(node.output),
                kind,  # type: ignore[arg-type]
                step,
                many[0] if many else 0,
                attrs,
                many=many,
            )
        )
    for name, value in graph.values.items():
        value.shape = declared.get(name, value.shape)
        value.probe_shape = sizes.get(name) or (tuple(known[name].shape) if name in known else None)
        value.dtype = types.get(name, value.dtype)
        value.constant = name in init or name in known
    for name in graph.inputs:
        graph.values[name].probe_shape = concrete[name]
    return graph


def _run_for_sizes(
    model: Any,
    folder: str | None,
    concrete: dict[str, tuple[int, ...]],
    known: dict[str, np.ndarray],
    sizes: dict[str, tuple[int, ...] | None],
) -> None:
    """Where shape inference left a size around a data-movement op open (dynamic
    shapes computed in ways it does not follow), run the model once in ONNX Runtime
    on a random probe input and read the sizes (and the small integer inputs such as
    shapes and indices) off the run.  Without ONNX Runtime they stay open."""
    wanted: list[str] = []
    for node in model.graph.node:
        if node.domain not in _STANDARD_DOMAINS or node.op_type not in (
            *_MOVES,
            "Conv",
            "ConvTranspose",
        ):
            continue
        for i, name in enumerate((*node.input, *node.output)):
            is_data = i == 0 or i >= len(node.input)
            if name and (sizes.get(name) is None or (not is_data and name not in known)):
                if name not in {t.name for t in model.graph.initializer}:
                    wanted.append(name)
    if not wanted:
        return
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return
    rng = np.random.default_rng(0)
    feeds = {}
    types = {vi.name: vi.type.tensor_type.elem_type for vi in model.graph.input}
    for name, shape in concrete.items():
        dtype = np.dtype(_DTYPES.get(types.get(name, 1), "float32"))
        feeds[name] = (
            rng.random(shape).astype(dtype) if dtype.kind == "f" else np.zeros(shape, dtype)
        )
    try:
        got = run(model, feeds, list(dict.fromkeys(wanted)), folder)
    except Exception:
        return
    for name, value in got.items():
        sizes[name] = tuple(int(s) for s in value.shape)
        if value.dtype.kind in "iu" and value.size <= _FOLD_ELEMENTS:
            known.setdefault(name, value)


def run(
    model: Any,
    feeds: Mapping[str, np.ndarray],
    names: Sequence[str],
    folder: str | None = None,
) -> dict[str, np.ndarray]:
    """The values ``names`` (graph outputs or any intermediate tensor) of ``model`` run
    in ONNX Runtime (CPU) on ``feeds``; weights kept beside the file are read from
    ``folder`` (only from inside it)."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for t in m.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            value = _external(t, folder, limit=None)
            if value is None:
                raise FileError(
                    folder or ".", f"the weight {t.name!r} is kept in a file that cannot be read"
                )
            t.CopyFrom(numpy_helper.from_array(value, t.name))
    inferred = _infer(m)
    have = {o.name for o in m.graph.output}
    typed = {vi.name: vi for vi in (*inferred.graph.value_info, *inferred.graph.input)}
    for name in names:
        if name not in have:
            vi = typed.get(name)
            m.graph.output.append(vi if vi is not None else onnx.ValueInfoProto(name=name))
            have.add(name)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(
        m.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    wanted = list(dict.fromkeys(names))
    out = session.run(wanted, dict(feeds))
    return dict(zip(wanted, (np.asarray(o) for o in out)))
