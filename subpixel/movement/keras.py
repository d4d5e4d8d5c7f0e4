"""Keras 3 models into the neutral :class:`~.graph.Graph`.

On the TensorFlow backend the model is traced as ``model(x, training=False)`` in a
``tf.function`` on the example's ``TensorSpec`` and the ops of that concrete function
are read: functional, Sequential, subclassed and nested models alike, whatever
``call()`` does (``tf.nn.depth_to_space``, ``keras.ops`` calls, Lambda layers,
Python control flow).  Each variable the graph reads is a constant named by its
Keras path (``variable.path``, e.g. ``"conv2d/kernel"``): the output of the
``ReadVariableOp`` of its captured handle carries it as ``param``.  A data-movement
op's semantics is the op itself, run eagerly on an index array (TensorFlow is its
own oracle); ``DepthToSpace``/``SpaceToDepth`` (DCR, in either ``data_format``) and
convolutions with a constant one-hot kernel are :mod:`.steps`.  Values are read
with the pruned concrete function, so the model's current weights are used and
nothing of it is changed.

On the JAX backend the model is the jaxpr of ``model.stateless_call(trainable,
non_trainable, x, training=False)`` (:mod:`.jaxpr`), parameters named by their
paths; on the PyTorch backend the ATen ops of one run (:mod:`.torch`), parameters
named by their paths too.

The graph's layout is ``channels_last`` unless the model's layers that have a
``data_format`` are mostly ``channels_first`` (no such layer: Keras's
``image_data_format()``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._core.spec import Layout
from . import steps
from .graph import ExampleError, Graph, Node, Value, error_line

__all__ = ["Traced", "layout_of", "read_model", "trace"]

Runner = Callable[[list[np.ndarray], Sequence[str]], dict[str, np.ndarray]]

# TensorFlow ops that only move the data of one input (given the others, constant):
# their semantics is the op itself on an index array
_MOVES = {
    *"Reshape Squeeze ExpandDims Transpose GatherV2 StridedSlice Slice ReverseV2".split(),
    *"BroadcastTo Identity Snapshot StopGradient PreventGradient EnsureShape".split(),
    *"CheckNumerics CheckNumericsV2 IdentityN Tile ResizeNearestNeighbor".split(),
}
# ops that move several tensors (Node.many): the inputs they move, by input count
_MANY: dict[str, Callable[[int], tuple[int, ...]]] = {
    "Split": lambda n: (1,),  # Split(split_dim, value)
    "SplitV": lambda n: (0,),
    "Unpack": lambda n: (0,),
    "ConcatV2": lambda n: tuple(range(n - 1)),  # ConcatV2(values..., axis)
    "Pack": lambda n: tuple(range(n)),
}
_SHAPES = {"Shape", "ShapeN", "Size", "Rank"}
_ELEMENTWISE = {
    *"BiasAdd Add AddV2 Sub Mul RealDiv Div DivNoNan FloorDiv FloorMod Mod Maximum".split(),
    *"Minimum Pow SquaredDifference Relu Relu6 LeakyRelu Elu Selu Sigmoid Tanh".split(),
    *"Softplus Softsign Exp Expm1 Log Log1p Sqrt Rsqrt Square Neg Abs Sign Floor Ceil".split(),
    *"Round Rint Reciprocal Inv Cast Select SelectV2 Erf Erfc Sin Cos Tan Atan Atan2".split(),
    *"Asin Acos Sinh Cosh Asinh Acosh Atanh IsFinite IsNan IsInf Greater GreaterEqual".split(),
    *"Less LessEqual Equal NotEqual LogicalAnd LogicalOr LogicalNot ClipByValue".split(),
    *"Gelu Mish Xlogy Xdivy MulNoNan AddN".split(),
}
_CONVS = {
    "Conv2D",
    "Conv3D",
    "DepthwiseConv2dNative",
    "Conv2DBackpropInput",
    "Conv3DBackpropInputV2",
}
# ops that write a variable: a run restores the model's variables after
_WRITES = ("Assign", "ResourceScatter", "ResourceApply", "ResourceSparseApply", "ResourceStrided")
_MAX_KERNEL = 2**20


@dataclass
class Traced:
    """A traced Keras model: ``graph``, the values of its constants (by value name:
    variables, ``Const`` ops, values computed from them alone, as needed by the
    data-movement ops), and ``run(feeds, names)`` giving named values of a run."""

    graph: Graph
    constants: dict[str, Any]
    run: Runner = field(repr=False)

    @property
    def inputs(self) -> list[tuple[str, tuple[int, ...], str]]:
        return [
            (n, self.graph.values[n].probe_shape or (), self.graph.values[n].dtype)
            for n in self.graph.inputs
        ]


def _as_args(example: Any) -> list[np.ndarray]:
    args = list(example) if isinstance(example, (tuple, list)) else [example]
    out = []
    for a in args:
        if hasattr(a, "numpy") and not isinstance(a, np.ndarray):
            a = a.numpy()
        out.append(np.asarray(a))
    return out


def _call_arg(xs: Sequence[Any]) -> Any:
    return xs[0] if len(xs) == 1 else list(xs)


def layout_of(model: Any) -> str:
    """``channels_first`` where most of the model's layers that have a
    ``data_format`` use it, else ``channels_last``; Keras's ``image_data_format()``
    where no layer says."""
    import keras

    layers = [model]
    try:
        layers += list(model._flatten_layers(include_self=False, recursive=True))
    except Exception:
        layers += list(getattr(model, "layers", []))
    formats = [getattr(layer, "data_format", None) for layer in layers]
    first = sum(f == "channels_first" for f in formats)
    last = sum(f == "channels_last" for f in formats)
    if first == last == 0:
        return str(keras.config.image_data_format())
    return "channels_first" if first > last else "channels_last"


def _ensure_built(model: Any, args: list[np.ndarray]) -> None:
    """A model that has no weights yet gets them from one call on the example (in
    inference mode), as any first call would; a built model is left alone."""
    if getattr(model, "built", True):
        return
    try:
        model(_call_arg(args), training=False)
    except Exception as e:
        raise ExampleError(type(model).__name__, e) from None


def trace(model: Any, example: Any) -> Traced:
    """The graph of ``model(example, training=False)`` on the current Keras backend
    (TensorFlow: the ops of a ``tf.function`` trace; JAX: the jaxpr of
    ``stateless_call``; PyTorch: the ATen ops of one run).  The model's weights and
    statistics are not changed; a model that does not trace is one ``ValueError``."""
    import keras

    backend = keras.config.backend()
    args = _as_args(example)
    _ensure_built(model, args)
    if backend == "tensorflow":
        return _trace_tf(model, args)
    if backend == "jax":
        return _trace_jax(model, args)
    if backend == "torch":
        return _trace_torch(model, args)
    raise ValueError(
        f"Keras models on the {backend!r} backend cannot be read (use tensorflow, jax or torch)"
    )


def read_model(
    model: Any, example: Any
) -> tuple[Graph, Runner, list[tuple[str, tuple[int, ...], str]]]:
    """(graph, run, inputs) of a Keras model traced on ``example``."""
    t = trace(model, example)
    return t.graph, t.run, t.inputs


# ---------------------------------------------------------------------------
# JAX and PyTorch backends: the other readers
# ---------------------------------------------------------------------------


def _trace_jax(model: Any, args: list[np.ndarray]) -> Traced:
    from . import jaxpr

    tv, ntv = list(model.trainable_variables), list(model.non_trainable_variables)
    names = [v.path for v in (*tv, *ntv)]

    # (stateless_call hands its keywords to call() as they are)
    kw = {"training": False} if getattr(model, "_call_has_training_arg", True) else {}

    def forward(params: Any, *xs: Any) -> Any:
        return model.stateless_call(params[0], params[1], _call_arg(xs), **kw)[0]

    def current() -> Any:
        return ([v.value for v in tv], [v.value for v in ntv])

    forward.__name__ = forward.__qualname__ = type(model).__name__
    t = jaxpr.trace_function(
        forward,
        tuple(args),
        current(),
        names=names,
        current=current,
        source="keras",
        layout=layout_of(model),
    )
    return Traced(t.graph, t.constants, t.run)


def _trace_torch(model: Any, args: list[np.ndarray]) -> Traced:
    import torch

    from . import torch as reader

    params = {id(v.value): v.path for v in model.variables}
    inputs = [torch.from_numpy(np.ascontiguousarray(a)) for a in args]

    def record(xs: list[Any], wanted: set[str] | None) -> Any:
        rec = reader.Recorder(params, xs, wanted)
        # a call() that updates a statistic or a counter in place: put back after
        saved = [(v.value, v.value.detach().clone()) for v in model.non_trainable_variables]
        try:
            with torch.no_grad(), rec:
                out = model(_call_arg(xs), training=False)
        finally:
            with torch.no_grad():
                for t, a in saved:
                    t.copy_(a)
        from torch.utils._pytree import tree_flatten

        outs, _ = tree_flatten(out)
        rec.graph.outputs = [rec.name_of(t) for t in outs if isinstance(t, torch.Tensor)]
        return rec

    try:
        rec = record(inputs, None)
    except Exception as e:
        raise ExampleError(type(model).__name__, e) from None
    graph = rec.graph
    graph.source, graph.layout = "keras", layout_of(model)

    def run(feeds: list[np.ndarray], names: Sequence[str]) -> dict[str, np.ndarray]:
        xs = [torch.from_numpy(np.ascontiguousarray(np.asarray(f))) for f in feeds]
        r = record(xs, set(names))
        for i, x in enumerate(feeds):
            r.seen.setdefault(f"input_{i}", np.asarray(x))
        for n in names:
            if n not in r.seen and n in r.constants:
                r.seen[n] = r.constants[n].detach().cpu().numpy().copy()
        missing = [n for n in names if n not in r.seen]
        if missing:
            raise ValueError(
                f"the run on the probe input took another path: {', '.join(missing[:3])} not computed"
            )
        return {n: r.seen[n] for n in names}

    return Traced(graph, rec.constants, run)


# ---------------------------------------------------------------------------
# TensorFlow backend: the ops of a concrete function
# ---------------------------------------------------------------------------


def _tname(t: Any) -> str:
    return t.op.name if t.value_index == 0 else f"{t.op.name}:{t.value_index}"


def _variables(model: Any) -> dict[int, tuple[str, Any]]:
    """Keras variables by the id of their TensorFlow handle: (path, variable)."""
    out: dict[int, tuple[str, Any]] = {}
    for v in model.variables:
        tv = getattr(v, "value", v)
        handle = getattr(tv, "handle", None)
        if handle is not None:
            out.setdefault(id(handle), (v.path, v))
    return out


_CALLS = ("PartitionedCall", "StatefulPartitionedCall")


def _inlined(concrete: Any) -> tuple[Any, Any]:
    """A concrete function whose graph calls other functions (a ``tf.function`` inside
    ``call()``) with every call inlined (Grappler's function inliner, as TensorFlow's
    freezing does): (graph, function over ``(inputs..., captures...)``)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        _run_inline_graph_optimization,
    )

    graph_def = _run_inline_graph_optimization(concrete, False, True)

    def imports() -> None:
        tf.graph_util.import_graph_def(graph_def, name="")

    wrapped = tf.compat.v1.wrap_function(imports, [])
    return wrapped.graph, wrapped


def _trace_tf(model: Any, args: list[np.ndarray]) -> Traced:
    import tensorflow as tf
    from tensorflow.python.eager import wrap_function

    specs = [
        tf.TensorSpec(a.shape, tf.as_dtype(a.dtype), name=f"input_{i}") for i, a in enumerate(args)
    ]

    def call(*xs: Any) -> Any:
        return model(_call_arg(xs), training=False)

    what = type(model).__name__
    try:
        concrete = tf.function(call, input_signature=specs).get_concrete_function()
    except Exception as e:
        raise ExampleError(what, e, "trace") from None
    g = concrete.graph
    # captured tensors by the name of the placeholder that stands for them
    captured = {internal.name: external for external, internal in g.captures}
    outputs = [t.name for t in g.outputs]
    inputs = [t.name for t in g.inputs[: len(args)]]
    fed: list[str] = []  # placeholders fed with captured tensors (an inlined graph)
    if any(op.type in _CALLS for op in g.get_operations()):
        try:
            g, pruner = _inlined(concrete)
        except Exception as e:
            raise ValueError(
                f"{what} calls functions that could not be inlined ({type(e).__name__}: {error_line(e)})"
            ) from None
        fed = [n for n in captured if _has_tensor(g, n)]
    else:
        holder = wrap_function.VariableHolder(share_variables=True)
        pruner = wrap_function.WrappedFunction(g, variable_holder=holder)
    placeholders = [g.get_tensor_by_name(n) for n in inputs]
    variables = _variables(model)
    writes = any(op.type.startswith(_WRITES) for op in g.get_operations())

    graph = Graph("keras", layout_of(model))  # type: ignore[arg-type]
    tensors: dict[str, Any] = {}
    known: dict[str, Any] = {}
    data: set[str] = set()
    ops: list[Any] = []
    handles: dict[str, tuple[Any, str | None]] = {}

    def value(t: Any, **kw: Any) -> Value:
        name = _tname(t)
        shape = None if t.shape.rank is None else tuple(t.shape.as_list())
        v = Value(name, shape, t.dtype.name, **kw)
        if shape is not None and all(s is not None for s in shape):
            v.probe_shape = tuple(int(s) for s in shape)
        graph.values[name], tensors[name] = v, t
        return v

    for p in placeholders:
        value(p)
        graph.inputs.append(_tname(p))
        data.add(_tname(p))
    for op in g.get_operations():
        if op.type == "Placeholder" and op.outputs[0].name not in inputs:
            t = op.outputs[0]
            external = captured.get(t.name)
            held = variables.get(id(external)) if external is not None else None
            if t.dtype == tf.resource:  # a variable's handle: a value only where an op reads it
                handles[_tname(t)] = (t, held[0] if held else None)
                continue
            value(t, constant=True)
            if external is not None:
                known[_tname(t)] = np.asarray(external)
        elif op.type == "Const":
            t = op.outputs[0]
            value(t, constant=True)
            known[_tname(t)] = tf.make_ndarray(op.get_attr("value"))
        elif op.type == "Identity" and _tname(op.inputs[0]) in handles:  # (inlined calls)
            handles[_tname(op.outputs[0])] = (op.outputs[0], handles[_tname(op.inputs[0])][1])
        elif op.type == "ReadVariableOp" and _tname(op.inputs[0]) in handles:
            value(op.outputs[0], constant=True, param=handles[_tname(op.inputs[0])][1])
        elif op.type not in ("NoOp", "Placeholder"):
            ops.append(op)
            reads_data = op.type not in _SHAPES and any(_tname(t) in data for t in op.inputs)
            for t in op.outputs:
                value(t, constant=not reads_data)
                if reads_data:
                    data.add(_tname(t))

    pruned: dict[tuple[str, ...], Any] = {}

    def fetch(names: Sequence[str], feeds: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        wanted = [n for n in dict.fromkeys(names) if n not in graph.inputs]
        out = {n: np.asarray(f) for n, f in zip(graph.inputs, feeds) if n in names}
        if not wanted:
            return out
        fn = pruned.get(tuple(wanted))
        if fn is None:
            sources = [*placeholders, *(g.get_tensor_by_name(n) for n in fed)]
            fn = pruner.prune(sources, [tensors[n] for n in wanted])
            pruned[tuple(wanted)] = fn
        saved = [(v, v.numpy()) for v in model.variables] if writes else []
        try:
            xs = [tf.constant(f, dtype=p.dtype) for f, p in zip(feeds, placeholders)]
            res = fn(*xs, *(captured[n] for n in fed))
        finally:
            for v, a in saved:
                v.assign(a)
        res = res if isinstance(res, (list, tuple)) else [res]
        out.update({n: np.asarray(r) for n, r in zip(wanted, res)})
        return out

    # the constants that moving ops and candidate convolutions take, and the sizes the
    # trace left open, from one run on the example
    needed = []
    for op in ops:
        if op.type in _MOVES or op.type in _CONVS or op.type in _MANY:
            needed += [_tname(t) for t in op.inputs if _tname(t) not in data | known.keys()]
    needed += [n for n, v in graph.values.items() if v.probe_shape is None]
    needed = [
        n
        for n in dict.fromkeys(needed)
        if n in tensors and tensors[n].dtype not in (tf.resource, tf.variant)
    ]
    # where every value computed from the input is small, one pruned function gives
    # them all, here and in the runs that follow (the layers' outputs a port compares):
    # one function built, not one per set of names
    every = [
        *needed,
        *_small_values(
            graph,
            tensors,
            data,
            [_tname(g.get_tensor_by_name(n)) for n in outputs],
            _FETCH_ALL_BYTES,
        ),
    ]
    if every:
        try:
            got = fetch(every, args)
        except Exception as e:
            raise ExampleError(what, e) from None
        got = {n: got[n] for n in needed}
        for n, a in got.items():
            graph.values[n].probe_shape = tuple(a.shape)
            if graph.values[n].constant:
                known[n] = a
    for op in ops:
        for node in _nodes(op, known, data, graph):
            graph.add(node)
            for n in node.inputs:
                if n in handles and n not in tensors:
                    value(handles[n][0], constant=True, param=handles[n][1]).probe_shape = ()
    graph.outputs = [_tname(g.get_tensor_by_name(n)) for n in outputs]

    def run(feeds: list[np.ndarray], names: Sequence[str]) -> dict[str, np.ndarray]:
        if len(feeds) != len(placeholders):
            raise ValueError(f"the graph has {len(placeholders)} inputs, got {len(feeds)} feeds")
        missing = [n for n in names if n not in tensors]
        if missing:
            raise ValueError(f"no value named {', '.join(map(repr, missing[:3]))} in the graph")
        arrays = [np.asarray(f) for f in feeds]
        if len(every) > len(needed) and set(names) <= {*every, *graph.inputs}:
            got = fetch([*every, *(n for n in names if n in graph.inputs)], arrays)
            return {n: got[n] for n in names}
        return fetch(list(names), arrays)

    return Traced(graph, known, run)


_FETCH_ALL_BYTES = 64 << 20


def _small_values(
    graph: Graph, tensors: dict[str, Any], data: set[str], outputs: list[str], budget: int
) -> list[str]:
    """The values computed from the input (and the outputs), where all of them have
    static shapes and together fit in ``budget`` bytes; else none."""
    import tensorflow as tf

    names = []
    total = 0
    for n in dict.fromkeys([*data, *outputs]):
        t = tensors.get(n)
        if n in graph.inputs or t is None or t.dtype in (tf.resource, tf.variant, tf.string):
            continue
        shape = graph.values[n].probe_shape
        if shape is None:
            return []
        total += int(np.prod(shape, dtype=np.int64)) * t.dtype.size
        if total > budget:
            return []
        names.append(n)
    return names


def _has_tensor(g: Any, name: str) -> bool:
    try:
        g.get_tensor_by_name(name)
    except (KeyError, ValueError):
        return False
    return True


def _raw_many(
    op: Any, many: tuple[int, ...], args: list[Any]
) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    """An op's semantics on its inputs ``many``: the op itself executed eagerly (its own
    attributes, the other inputs as traced) on the indices of those inputs (numbered
    one after the other), the inputs' elements taken at each output."""
    import tensorflow as tf
    from tensorflow.python.eager import context, execute

    od = op.op_def
    arg_of = []  # the op's argument of each (flattened) input
    for a in od.input_arg:
        n = int(op.get_attr(a.number_attr)) if a.number_attr else 1
        arg_of += [a] * n
    index_types = {arg_of[i].type_attr for i in many}
    attrs: list[Any] = []
    for a in od.attr:
        v = tf.int64 if a.name in index_types else op.get_attr(a.name)
        attrs += [a.name, v.as_datatype_enum if isinstance(v, tf.DType) else v]
    n_out = len(op.outputs)

    def run(xs: list[np.ndarray]) -> list[np.ndarray]:
        xs = [np.asarray(x) for x in xs]
        start = np.cumsum([0] + [x.size for x in xs])
        ins = list(args)
        for k, i in enumerate(many):
            ins[i] = start[k] + np.arange(xs[k].size, dtype=np.int64).reshape(xs[k].shape)
        outs = execute.execute(
            op.type, n_out, [tf.constant(a) for a in ins], tuple(attrs), context.context()
        )
        flat = np.concatenate([x.reshape(-1) for x in xs])
        return [flat[np.asarray(o)] for o in outs]

    return run


def _raw_step(op: Any, at: int, args: list[Any]) -> Callable[[np.ndarray], np.ndarray]:
    """An op's semantics on its input ``at`` (:func:`_raw_many` of that one input)."""
    step = _raw_many(op, (at,), args)
    return lambda x: step([x])[0]


def _nodes(op: Any, known: dict[str, Any], data: set[str], graph: Graph) -> list[Node]:
    """The graph nodes of one TensorFlow op (one per output for ``IdentityN``)."""
    ins = [_tname(t) for t in op.inputs]
    outs = [_tname(t) for t in op.outputs]
    kind = op.type
    data_at = next((i for i, n in enumerate(ins) if n in data), 0)

    def node(kind_: str, step: Any = None, at: int = data_at) -> list[Node]:
        return [Node(op.name, kind, ins, outs, kind_, step, at)]  # type: ignore[arg-type]

    if kind in _SHAPES:
        return node("shape")
    if kind in _ELEMENTWISE:
        return node("elementwise")
    if kind in ("DepthToSpace", "SpaceToDepth"):
        b = int(op.get_attr("block_size"))
        fmt = op.get_attr("data_format").decode()
        if fmt not in ("NHWC", "NCHW"):
            return node("compute")
        make = steps.depth_to_space if kind == "DepthToSpace" else steps.space_to_depth
        layout: Layout = "channels_last" if fmt == "NHWC" else "channels_first"
        return node("move", make((b, b), "DCR", layout), 0)
    if kind in _CONVS:
        step = _conv_step(op, known, graph)
        at = 2 if "Backprop" in kind else 0
        return node("maybe", step, at) if step is not None else node("compute", None, at)
    if kind == "IdentityN":
        return [
            Node(f"{op.name}:{j}" if j else op.name, kind, [i], [o], "move", steps.copy(), 0)
            for j, (i, o) in enumerate(zip(ins, outs))
        ]
    if kind in _MANY and ins:  # several tensors in or out
        many = _MANY[kind](len(ins))
        if any(ins[j] in data or ins[j] not in known for j in range(len(ins)) if j not in many):
            return node("compute")
        joint: Any = _raw_many(op, many, [known.get(n) for n in ins])  # (Node.many)
        return [Node(op.name, kind, ins, outs, "move", joint, many[0], many=many)]
    if kind not in _MOVES or not ins:
        return node("compute")
    at = 0
    others = [j for j in range(len(ins)) if j != at]
    if ins[at] not in data and any(n in data for n in ins):
        return node("compute")
    if any(ins[j] not in known for j in others):
        return node("compute")
    if kind in ("Identity", "Snapshot", "StopGradient", "PreventGradient", "EnsureShape"):
        return node("move", steps.copy(), 0)
    if kind.startswith("CheckNumerics"):
        return node("move", steps.copy(), 0)
    args = [known.get(n) for n in ins]
    return node("move", _raw_step(op, at, args), at)


def _spatial(values: Sequence[int], channels_last: bool) -> tuple[int, ...]:
    v = [int(x) for x in values]
    return tuple(v[1:-1] if channels_last else v[2:])


def _conv_step(
    op: Any, known: dict[str, Any], graph: Graph
) -> Callable[[np.ndarray], np.ndarray] | None:
    """A TensorFlow convolution with a constant kernel of zeros and ones: its
    semantics in float64 (:func:`.steps.conv` / :func:`.steps.conv_transpose`)."""
    kind = op.type
    backprop = "Backprop" in kind
    ins = [_tname(t) for t in op.inputs]
    w = known.get(ins[1])
    if w is None:
        return None
    w = np.asarray(w)
    if w.dtype.kind != "f" or w.size > _MAX_KERNEL or not np.all((w == 0) | (w == 1)):
        return None
    x_shape = graph.values[ins[2 if backprop else 0]].probe_shape
    y_shape = graph.values[_tname(op.outputs[0])].probe_shape
    if x_shape is None or y_shape is None:
        return None
    fmt = op.get_attr("data_format").decode()
    last = not fmt.startswith("NC")
    d = w.ndim - 2
    stride = _spatial(op.get_attr("strides"), last)
    try:
        dilation = _spatial(op.get_attr("dilations"), last)
    except ValueError:
        dilation = (1,) * d
    padding = op.get_attr("padding").decode()
    explicit: list[tuple[int, int]] = []
    if padding == "EXPLICIT":
        flat = [int(p) for p in op.get_attr("explicit_paddings")]
        pairs = [(flat[2 * a], flat[2 * a + 1]) for a in range(d + 2)]
        explicit = pairs[1:-1] if last else pairs[2:]
    xs, ys = _spatial(x_shape, last), _spatial(y_shape, last)
    k = w.shape[:d]
    span = [(k[a] - 1) * dilation[a] + 1 for a in range(d)]
    if backprop:  # filter (*k, out, in) -> (in, out, *k)
        weight = np.transpose(w, (d + 1, d, *range(d)))
        full = [(xs[a] - 1) * stride[a] + span[a] for a in range(d)]
        pads, extra = [], []
        for a in range(d):
            if padding == "EXPLICIT":
                lo, hi = explicit[a]
            elif padding == "SAME":
                total = max((xs[a] - 1) * stride[a] + span[a] - ys[a], 0)
                lo, hi = total // 2, total - total // 2
            else:
                lo, hi = 0, max(full[a] - ys[a], 0)
            pads.append((lo, hi))
            extra.append(max(ys[a] - (full[a] - lo - hi), 0))
        step = steps.conv_transpose(weight, None, stride, pads, dilation, 1, extra)
    else:
        if kind == "DepthwiseConv2dNative":  # (*k, C, m) -> (C * m, 1, *k)
            C, m = w.shape[d], w.shape[d + 1]
            weight = np.transpose(w, (d, d + 1, *range(d))).reshape(C * m, 1, *k)
            groups = C
        else:  # (*k, I, O) -> (O, I, *k); more input channels than I: grouped
            weight = np.transpose(w, (d + 1, d, *range(d)))
            c_in = x_shape[-1] if last else x_shape[1]
            groups = c_in // w.shape[d] if w.shape[d] else 1
        if padding == "EXPLICIT":
            pads = explicit
        elif padding == "SAME":
            pads = [_same(xs[a], span[a], stride[a]) for a in range(d)]
        else:
            pads = [(0, 0)] * d
        step = steps.conv(weight, None, stride, pads, dilation, groups)
    return _channels_last(step) if last else step


def _same(size: int, span: int, stride: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def _channels_last(step: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    def run(x: np.ndarray) -> np.ndarray:
        return np.moveaxis(step(np.moveaxis(np.asarray(x), -1, 1)), 1, -1)

    return run
