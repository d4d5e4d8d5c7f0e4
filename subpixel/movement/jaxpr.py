"""JAX functions and Flax NNX modules into the neutral :class:`~.graph.Graph`, as jaxprs.

A function is traced once on an example (``jax.make_jaxpr``); calls the tracer keeps
as nested jaxprs (``jit``, ``custom_jvp_call`` such as ``jax.nn.relu``,
``custom_vjp_call``, ``checkpoint``/``remat``, ``closed_call``) are inlined, so every
primitive that runs is a node.  A Flax NNX module is split (``nnx.split``) on an
evaluation-mode clone and traced as ``merge(graphdef, state)(x)`` with its state as
inputs: the value of each state leaf is named by its path (``conv/kernel``,
``layers/0/bias``) and carries it as ``param``.  Keras models on the JAX backend come
through :func:`trace_function` too (:mod:`.keras`).

A data-movement primitive's semantics is the primitive itself, bound to an index
array with its other (constant) inputs as they were: the framework is its own
oracle.  A convolution with a constant kernel of zeros and ones is a candidate
(``"maybe"``), its semantics :func:`.steps.conv_general` in float64.

The running function (:meth:`Traced.run`) evaluates the jaxpr primitive by primitive
with the model's current parameters, keeping the values asked for by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import steps
from .graph import ExampleError, Graph, Node, Value

__all__ = ["Traced", "read_function", "read_model", "read_module", "trace", "trace_function"]

# primitives whose nested jaxpr takes the eqn's inputs one for one: inlined
_INLINE = {
    *"jit pjit closed_call core_call custom_jvp_call custom_vjp_call".split(),
    *"custom_vjp_call_jaxpr remat remat2 checkpoint".split(),
}
_JAXPR_PARAMS = ("jaxpr", "call_jaxpr", "fun_jaxpr")
# primitives that only move the data of their first operand, given constant others
_MOVES = {
    *"reshape transpose squeeze expand_dims rev slice dynamic_slice gather".split(),
    *"copy copy_p device_put sharding_constraint broadcast_in_dim".split(),
}
# primitives whose every output element depends only on the same position of their
# inputs (lax's elementwise ops take equal shapes or scalars)
_ELEMENTWISE = {
    *"add sub mul div rem pow integer_pow max min neg sign abs floor ceil round".split(),
    *"is_finite exp exp2 log log1p expm1 tanh logistic sin cos tan asin acos atan".split(),
    *"sinh cosh asinh acosh atanh atan2 sqrt rsqrt cbrt square erf erfc erf_inv".split(),
    *"lgamma digamma convert_element_type reduce_precision select_n clamp".split(),
    *"eq ne lt le gt ge and or not xor nextafter real imag conj complex copysign".split(),
    *"shift_left shift_right_logical shift_right_arithmetic population_count clz".split(),
}
# primitives that move every one of their inputs to several outputs or from several
# inputs (Node.many)
_MANY = {"split", "concatenate"}
_CONVS = {"conv_general_dilated"}
# a one-hot kernel larger than this is not looked at
_MAX_KERNEL = 2**20


@dataclass
class _Op:
    """One primitive as it runs, after inlining: value names in and out."""

    prim: Any
    params: dict[str, Any]
    inputs: list[str]
    outputs: list[str]


def _path(path: Sequence[Any]) -> str:
    """A pytree path as ``a/b/0``; the ``.value`` of a variable left out."""
    parts: list[str] = []
    for key in path:
        for attr in ("key", "idx", "name"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    if len(parts) > 1 and parts[-1] == "value" and hasattr(path[-1], "name"):
        parts.pop()
    return "/".join(parts)


def _as_args(example: Any) -> tuple[Any, ...]:
    import jax

    args = tuple(example) if isinstance(example, (tuple, list)) else (example,)
    return tuple(a if isinstance(a, jax.Array) else np.asarray(a) for a in args)


class _Builder:
    """The jaxpr flattened into :class:`_Op` s, nested jaxprs inlined, every value
    given a unique name."""

    def __init__(self, taken: set[str]) -> None:
        self.ops: list[_Op] = []
        self.consts: dict[str, Any] = {}
        self.avals: dict[str, Any] = {}
        self.count: dict[str, int] = {}
        self.used = set(taken)

    def fresh(self, base: str) -> str:
        while True:
            k = self.count[base] = self.count.get(base, 0) + 1
            name = f"{base}_{k}"
            if name not in self.used:
                self.used.add(name)
                return name

    def constant(self, value: Any, aval: Any) -> str:
        name = self.fresh("constant")
        self.consts[name], self.avals[name] = value, aval
        return name

    def walk(self, jaxpr: Any, consts: Sequence[Any], ins: list[str]) -> list[str]:
        from jax.extend.core import Literal

        env: dict[Any, str] = {}
        for v, c in zip(jaxpr.constvars, consts):
            env[v] = self.constant(c, v.aval)
        for v, name in zip(jaxpr.invars, ins):
            env[v] = name

        def read(a: Any) -> str:
            return self.constant(a.val, a.aval) if isinstance(a, Literal) else env[a]

        for eqn in jaxpr.eqns:
            args = [read(a) for a in eqn.invars]
            inner = _inner(eqn)
            if inner is not None:
                for v, name in zip(eqn.outvars, self.walk(inner[0], inner[1], args)):
                    env[v] = name
                continue
            base = self.fresh(eqn.primitive.name)
            outs = []
            for j, v in enumerate(eqn.outvars):
                name = base if j == 0 else f"{base}_{j}"
                self.used.add(name)
                self.avals[name] = v.aval
                env[v] = name
                outs.append(name)
            self.ops.append(_Op(eqn.primitive, dict(eqn.params), args, outs))
        return [read(a) for a in jaxpr.outvars]


def _inner(eqn: Any) -> tuple[Any, Sequence[Any]] | None:
    """The nested jaxpr (and its constants) of a call-like eqn to inline."""
    if eqn.primitive.name not in _INLINE:
        return None
    for key in _JAXPR_PARAMS:
        j = eqn.params.get(key)
        if j is None:
            continue
        jaxpr, consts = (j.jaxpr, j.consts) if hasattr(j, "consts") else (j, ())
        if len(jaxpr.invars) == len(eqn.invars) and len(jaxpr.outvars) == len(eqn.outvars):
            return jaxpr, consts
    return None


def _evaluate(
    ops: list[_Op], env: dict[str, Any], keep: set[str] | None = None, only_known: bool = False
) -> dict[str, Any]:
    """Run ``ops`` on the values in ``env`` (each op's primitive bound to its inputs).
    ``only_known``: run only ops whose inputs are all in ``env`` (constant folding),
    never raising.  Otherwise values no later op reads are dropped unless in ``keep``."""
    last: dict[str, int] = {}
    if not only_known:
        for i, op in enumerate(ops):
            for n in op.inputs:
                last[n] = i
    for i, op in enumerate(ops):
        if only_known and not all(n in env for n in op.inputs):
            continue
        try:
            out = op.prim.bind(*(env[n] for n in op.inputs), **op.params)
        except Exception:
            if only_known:
                continue
            raise
        outs = out if op.prim.multiple_results else [out]
        for n, v in zip(op.outputs, outs):
            env[n] = v
        if not only_known:
            for n in set(op.inputs):
                if last.get(n) == i and (keep is None or n not in keep):
                    env.pop(n, None)
    return env


@dataclass
class Traced:
    """What one trace holds: ``graph`` and the values of its constants (literals,
    closed-over arrays, parameters, and values computed from them alone); ``run``
    evaluates it on other inputs with the parameters ``current()`` gives."""

    graph: Graph
    constants: dict[str, Any]
    ops: list[_Op] = field(repr=False)
    fixed: dict[str, Any] = field(repr=False)  # literals and closed-over arrays
    param_names: list[str] = field(repr=False)
    input_names: list[str] = field(repr=False)
    treedef: Any = field(repr=False)
    current: Callable[[], Any] | None = field(repr=False)
    leaves: list[Any] = field(repr=False)

    def _params(self) -> list[Any]:
        if self.current is None:
            return self.leaves
        import jax

        leaves, treedef = jax.tree_util.tree_flatten(self.current())
        if treedef != self.treedef:
            raise ValueError("the model's parameters changed structure since it was traced")
        return leaves

    def run(self, feeds: Sequence[Any], names: Sequence[str]) -> dict[str, np.ndarray]:
        """The named values of a run on ``feeds`` (the graph's inputs in turn)."""
        if len(feeds) != len(self.input_names):
            raise ValueError(
                f"the graph has {len(self.input_names)} inputs, got {len(feeds)} feeds"
            )
        env = dict(self.fixed)
        env.update(zip(self.param_names, self._params()))
        for name, x, (_, shape, dtype) in zip(self.input_names, feeds, self.inputs):
            x = np.asarray(x, dtype=dtype) if not hasattr(x, "shape") or x.dtype != dtype else x
            if tuple(x.shape) != tuple(shape):
                raise ValueError(f"{name} was traced at shape {tuple(shape)}, got {tuple(x.shape)}")
            env[name] = x
        wanted = set(names)
        _evaluate(self.ops, env, keep=wanted)
        missing = [n for n in names if n not in env]
        if missing:
            raise ValueError(f"no value named {', '.join(map(repr, missing[:3]))} in the graph")
        return {n: np.asarray(env[n]) for n in names}

    @property
    def inputs(self) -> list[tuple[str, tuple[int, ...], str]]:
        return [
            (n, self.graph.values[n].probe_shape or (), self.graph.values[n].dtype)
            for n in self.graph.inputs
        ]


def trace_function(
    fn: Callable[..., Any],
    example: Any,
    params: Any = None,
    *,
    names: Sequence[str] | None = None,
    current: Callable[[], Any] | None = None,
    source: str = "jax",
    layout: Any = "channels_last",
) -> Traced:
    """The jaxpr of ``fn`` on ``example`` (an array, or a tuple/list of arrays: the
    positional arguments) as a :class:`Traced` graph.  With ``params`` (a pytree of
    arrays), ``fn`` is called as ``fn(params, *example)`` and each leaf's value is a
    constant named by its pytree path (``names``: one name per leaf instead) with
    ``param`` set; ``current()`` gives the parameters :meth:`Traced.run` uses (the
    traced ones by default).  A function that does not trace is one ``ValueError``."""
    import jax

    args = _as_args(example)
    if params is not None:
        flat, treedef = jax.tree_util.tree_flatten_with_path(params)
        leaves = [leaf for _, leaf in flat]
        paths = [_path(p) for p, _ in flat] if names is None else [str(n) for n in names]
        if len(paths) != len(leaves):
            raise ValueError(f"{len(paths)} names for {len(leaves)} parameters")
    else:
        leaves, paths, treedef = [], [], jax.tree_util.tree_structure(None)

    def call(leaves: list[Any], *xs: Any) -> Any:
        if params is None:
            return fn(*xs)
        return fn(jax.tree_util.tree_unflatten(treedef, leaves), *xs)

    what = getattr(fn, "__name__", type(fn).__name__)
    try:
        closed = jax.make_jaxpr(call)(leaves, *args)
    except Exception as e:
        raise ExampleError(what, e, "trace") from None
    jaxpr = closed.jaxpr
    input_names = [f"input_{i}" for i in range(len(jaxpr.invars) - len(leaves))]
    # parameters keep their paths; a clash with another name gets a suffix
    taken = set(input_names)
    param_names = []
    for p in paths:
        name, k = p or "param", 1
        while name in taken:
            k += 1
            name = f"{p}_{k}"
        taken.add(name)
        param_names.append(name)
    b = _Builder(taken)
    for name, v in zip((*param_names, *input_names), jaxpr.invars):
        b.avals[name] = v.aval
    outputs = b.walk(jaxpr, closed.consts, [*param_names, *input_names])
    fixed = dict(b.consts)
    known = _evaluate(b.ops, {**fixed, **dict(zip(param_names, leaves))}, only_known=True)
    graph = _graph(b, known, param_names, dict(zip(param_names, paths)), input_names, outputs)
    graph.source, graph.layout = source, layout
    return Traced(graph, known, b.ops, fixed, param_names, input_names, treedef, current, leaves)


def _dtype(aval: Any) -> str:
    return str(getattr(aval, "dtype", "other"))


def _shape(aval: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in getattr(aval, "shape", ()))


def _graph(
    b: _Builder,
    known: dict[str, Any],
    param_names: list[str],
    paths: dict[str, str],
    input_names: list[str],
    outputs: list[str],
) -> Graph:
    graph = Graph("jax", "channels_last")
    data = set(input_names)
    for op in b.ops:
        if any(n in data for n in op.inputs):
            data.update(op.outputs)
    used = {n for op in b.ops for n in op.inputs} | set(outputs)

    def value(name: str) -> Value:
        aval = b.avals[name]
        shape = _shape(aval)
        v = Value(name, shape, _dtype(aval), shape, constant=name not in data)
        if name in paths:
            v.param = paths[name]
        graph.values[name] = v
        return v

    for name in input_names:
        value(name)
    graph.inputs = list(input_names)
    for name in (*param_names, *b.consts):
        if name in used:
            value(name)
    for op in b.ops:
        for node in _nodes(op, known, data, b.avals):
            graph.add(node)
        for name in op.outputs:
            value(name)
    graph.outputs = list(outputs)
    return graph


def _indices(op: _Op, others: list[Any], shape: tuple[int, ...]) -> np.ndarray:
    """A moving primitive bound to the flat indices of an operand of ``shape`` (other
    inputs as traced): where each output element comes from.  A gather that fills
    positions out of range fills them with -1 here."""
    import jax.numpy as jnp

    params = dict(op.params)
    if "fill_value" in params:
        params["fill_value"] = -1
    idx = jnp.asarray(np.arange(math.prod(shape), dtype=np.int32).reshape(shape))
    return np.asarray(op.prim.bind(idx, *others, **params), dtype=np.int64)


def _many_step(op: _Op) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    """A primitive that moves all its inputs (``split``, ``concatenate``): bound to
    their indices (numbered one after the other), the inputs' elements taken at each
    output."""
    import jax.numpy as jnp

    def run(xs: list[np.ndarray]) -> list[np.ndarray]:
        xs = [np.asarray(x) for x in xs]
        start = np.cumsum([0] + [x.size for x in xs])
        idx = [
            jnp.asarray((start[k] + np.arange(x.size)).astype(np.int32).reshape(x.shape))
            for k, x in enumerate(xs)
        ]
        out = op.prim.bind(*idx, **op.params)
        outs = out if op.prim.multiple_results else [out]
        flat = np.concatenate([x.reshape(-1) for x in xs])
        return [flat[np.asarray(o, dtype=np.int64)] for o in outs]

    return run


def _index_step(op: _Op, others: list[Any]) -> Callable[[np.ndarray], np.ndarray]:
    """A moving primitive's semantics: the operand's elements taken at
    :func:`_indices` (the framework is its own oracle, for any dtype)."""

    def run(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        return x.reshape(-1)[_indices(op, others, x.shape)]

    return run


def _selects(op: _Op, others: list[Any], shape: tuple[int, ...]) -> bool:
    """Whether a gather only picks elements at the probe size (none filled)."""
    n = math.prod(shape)
    if n == 0 or n > 2**25:
        return n == 0
    try:
        out = _indices(op, others, shape)
    except Exception:
        return False
    return bool(out.size == 0 or (out.min() >= 0 and out.max() < n))


def _nodes(op: _Op, known: dict[str, Any], data: set[str], avals: dict[str, Any]) -> list[Node]:
    """The graph node of one primitive."""
    name = op.prim.name
    data_at = next((i for i, n in enumerate(op.inputs) if n in data), 0)
    node_name = op.outputs[0] if op.outputs else f"{name}_op"
    if name in _ELEMENTWISE:
        return [Node(node_name, name, op.inputs, op.outputs, "elementwise", None, data_at)]
    if name in _MANY and op.inputs:  # every input moved: (many, step)
        many = tuple(range(len(op.inputs)))
        joint: Any = _many_step(op)  # (a step of lists: Node.many)
        return [Node(node_name, name, op.inputs, op.outputs, "move", joint, 0, many=many)]
    if name in _MOVES and op.inputs and data_at == 0:
        others = op.inputs[1:]
        if all(n in known for n in others):
            values = [known[n] for n in others]
            shape = _shape(avals[op.inputs[0]])
            if name == "device_put" and len(op.inputs) != 1:
                return [Node(node_name, name, op.inputs, op.outputs, "compute", None, 0)]
            step = _index_step(op, values)
            if name == "gather" and not _selects(op, values, shape):
                return [Node(node_name, name, op.inputs, op.outputs, "compute", None, 0)]
            return [Node(node_name, name, op.inputs, op.outputs, "move", step, 0)]
    if name in _CONVS and len(op.inputs) == 2 and data_at == 0:
        conv = _conv_step(op, known)
        if conv is not None:
            return [Node(node_name, name, op.inputs, op.outputs, "maybe", conv, 0)]
    return [Node(node_name, name, op.inputs, op.outputs, "compute", None, data_at)]


def _conv_step(op: _Op, known: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray] | None:
    """``conv_general_dilated`` with a constant kernel of zeros and ones: its semantics
    in float64, the dimension numbers undone around a channels-first convolution."""
    kernel = known.get(op.inputs[1])
    p = op.params
    if kernel is None or int(p.get("batch_group_count", 1)) != 1:
        return None
    try:
        w = np.asarray(kernel)
    except Exception:
        return None
    if w.dtype.kind != "f" or w.size > _MAX_KERNEL or not np.all((w == 0) | (w == 1)):
        return None
    dn = p["dimension_numbers"]
    lhs, rhs, out = (tuple(int(a) for a in s) for s in (dn.lhs_spec, dn.rhs_spec, dn.out_spec))
    weight = np.transpose(w.astype(np.float64), rhs)  # (O, I // groups, *k)
    d = weight.ndim - 2
    conv = steps.conv_general(
        weight,
        tuple(p.get("window_strides") or (1,) * d),
        [tuple(pair) for pair in p["padding"]],
        tuple(p.get("lhs_dilation") or (1,) * d),
        tuple(p.get("rhs_dilation") or (1,) * d),
        int(p.get("feature_group_count", 1)),
    )
    back = tuple(int(a) for a in np.argsort(out))

    def run(x: np.ndarray) -> np.ndarray:
        return np.transpose(conv(np.transpose(np.asarray(x), lhs)), back)

    return run


# ---------------------------------------------------------------------------
# Flax NNX modules
# ---------------------------------------------------------------------------


def trace(module: Any, example: Any) -> Traced:
    """The jaxpr of a Flax NNX module called on ``example``, in evaluation mode (a
    clone is switched: dropout off, batch norms on their running statistics; the
    module itself and its modes are untouched).  State leaves are named by their
    path; :meth:`Traced.run` reads the module's current state."""
    from flax import nnx

    if not isinstance(module, nnx.Module):
        kind = type(module)
        raise TypeError(
            f"`module` must be a Flax NNX module. Received: {kind.__module__}.{kind.__qualname__}"
        )
    copy = nnx.clone(module)
    copy.eval()
    graphdef, state = nnx.split(copy)

    def forward(state: Any, *xs: Any) -> Any:
        return nnx.merge(graphdef, state)(*xs)

    forward.__name__ = forward.__qualname__ = type(module).__name__
    return trace_function(forward, example, state, current=lambda: nnx.state(module), source="flax")


def read_module(
    module: Any, example: Any
) -> tuple[Graph, Callable[..., dict[str, np.ndarray]], list[tuple[str, tuple[int, ...], str]]]:
    """(graph, run, inputs) of a Flax NNX module traced on ``example``."""
    t = trace(module, example)
    return t.graph, t.run, t.inputs


read_model = read_module  # the name every reader's (model, example) entry point has


def read_function(
    fn: Callable[..., Any], example: Any, params: Any = None, *, names: Sequence[str] | None = None
) -> tuple[Graph, Callable[..., dict[str, np.ndarray]], list[tuple[str, tuple[int, ...], str]]]:
    """(graph, run, inputs) of a JAX function (``fn(*example)``, or
    ``fn(params, *example)`` with ``params``) traced on ``example``."""
    t = trace_function(fn, example, params, names=names)
    return t.graph, t.run, t.inputs
