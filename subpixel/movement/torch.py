"""PyTorch modules into the neutral :class:`~.graph.Graph`, through ``torch.export``.

The ATen graph ``torch.export`` traces on an example holds every way of writing a
shuffle as ops: ``F.pixel_shuffle``, ``nn.PixelShuffle``, ``view``/``permute``/
``reshape`` chains, einops, a constant ``index_select``.  A data-movement op's
semantics are the op itself, run on an index tensor (the framework is its own
oracle); parameters and buffers are values with their path in the module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .graph import Graph, Node

__all__ = ["export", "read_module", "read_program"]

# ATen ops that only move the data of their first argument (given their other,
# constant, arguments): their semantics is the op itself
_MOVES = {
    "view", "reshape", "_unsafe_view", "permute", "transpose", "t", "pixel_shuffle",
    "pixel_unshuffle", "channel_shuffle", "native_channel_shuffle", "flatten", "unflatten",
    "squeeze", "unsqueeze", "contiguous", "clone", "alias", "detach", "index_select",
    "select", "slice", "narrow", "movedim", "swapaxes", "lift_fresh_copy", "dropout",
    "feature_dropout", "alpha_dropout", "feature_alpha_dropout", "view_copy", "permute_copy",
    "expand_as",
}
_CONVS = {"conv1d", "conv2d", "conv3d", "convolution", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "_convolution"}
_SHAPES = {"sym_size", "sym_numel", "sym_stride", "size"}


def _base(target: Any) -> str:
    """``aten.view.default`` -> ``view``."""
    name = getattr(target, "_opname", None) or getattr(target, "__name__", str(target))
    return str(name).split(".")[0]


@contextlib.contextmanager
def _evaluating(model: Any) -> Iterator[None]:
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        yield
    finally:
        for m, mode in modes.items():
            m.training = mode


def export(model: Any, example: Any) -> Any:
    """``torch.export`` of ``model`` (in evaluation mode; each module's mode restored)
    on ``example``; one-line ``ValueError`` naming the model where it cannot be traced."""
    import torch

    args = tuple(example) if isinstance(example, (tuple, list)) else (example,)
    args = tuple(a if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a)) for a in args)
    try:
        with _evaluating(model), torch.no_grad():
            return torch.export.export(model, args, strict=False)
    except Exception as e:
        line = (str(e).strip().splitlines() or [""])[0][:300]
        raise ValueError(
            f"cannot trace {type(model).__name__} with torch.export ({type(e).__name__}: {line})"
        ) from None


def _constants(ep: Any) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """Tensors of the program's parameter/buffer/constant placeholders, their paths in
    the module, and the user inputs' placeholder names (in order)."""
    from torch.export.graph_signature import InputKind

    values: dict[str, Any] = {}
    paths: dict[str, str] = {}
    users: list[str] = []
    for spec in ep.graph_signature.input_specs:
        name = spec.arg.name
        if spec.kind == InputKind.USER_INPUT:
            users.append(name)
        elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
            t = ep.state_dict.get(spec.target)
            if t is None:
                t = ep.constants.get(spec.target)
            values[name], paths[name] = t, spec.target
        elif spec.kind == InputKind.CONSTANT_TENSOR:
            values[name], paths[name] = ep.constants.get(spec.target), spec.target
    return values, paths, users


def _step(node: Any, consts: dict[str, Any]) -> tuple[str, Callable[[np.ndarray], np.ndarray] | None]:
    """(kind, semantics) of an ATen node: the op run on an index tensor with its other
    arguments (constants only) as traced."""
    import torch

    base = _base(node.target)
    fx = torch.fx
    if base in _SHAPES:
        return "shape", None
    moves, maybe = base in _MOVES, base in _CONVS
    if not (moves or maybe) or not node.args or not isinstance(node.args[0], fx.Node):
        return "compute", None

    def const(a: Any) -> Any:
        if isinstance(a, fx.Node):
            if a.name not in consts or consts[a.name] is None:
                raise KeyError(a.name)
            return consts[a.name]
        if isinstance(a, (list, tuple)):
            return type(a)(const(v) for v in a)
        return a

    try:
        rest = [const(a) for a in node.args[1:]]
        kwargs = {k: const(v) for k, v in node.kwargs.items()}
    except KeyError:
        return "compute", None
    if maybe:
        w = rest[0] if rest else None
        b = rest[1] if len(rest) > 1 else kwargs.get("bias")
        if not isinstance(w, torch.Tensor) or not bool(((w == 0) | (w == 1)).all()):
            return "compute", None
        if isinstance(b, torch.Tensor) and bool((b != 0).any()):
            return "compute", None
        rest = [r.double() if isinstance(r, torch.Tensor) else r for r in rest]
        kwargs = {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}

    target = node.target

    def run(x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(x))
        if maybe:
            t = t.double()
        with torch.no_grad():
            return target(t, *rest, **kwargs).numpy()

    return ("maybe" if maybe else "move"), run


def read_program(ep: Any) -> Graph:
    """The graph of an ``ExportedProgram`` (sizes as traced)."""
    import torch

    consts, paths, users = _constants(ep)
    graph = Graph("torch", "channels_first")
    graph.inputs = list(users)
    outputs: list[str] = []
    for node in ep.graph.nodes:
        if node.op == "placeholder":
            graph.values.setdefault(node.name, _value(node, graph))
            v = graph.values[node.name]
            v.constant, v.param = node.name in consts, paths.get(node.name)
            continue
        if node.op == "output":
            outs = node.args[0] if isinstance(node.args[0], (list, tuple)) else [node.args[0]]
            outputs = [o.name for o in outs if isinstance(o, torch.fx.Node)]
            continue
        if node.op != "call_function":
            continue
        kind, step = _step(node, consts)
        inputs = [a.name for a in node.all_input_nodes]
        data = inputs.index(node.args[0].name) if node.args and isinstance(node.args[0], torch.fx.Node) else 0
        graph.add(Node(node.name, str(node.target), inputs, [node.name], kind, step, data))  # type: ignore[arg-type]
        _value(node, graph)
    graph.outputs = outputs
    return graph


def _value(node: Any, graph: Graph) -> Any:
    from .graph import Value

    v = graph.values.get(node.name) or Value(node.name)
    graph.values[node.name] = v
    val = node.meta.get("val")
    shape = getattr(val, "shape", None)
    if shape is not None:
        try:
            v.probe_shape = tuple(int(s) for s in shape)
            v.shape = v.probe_shape
        except (TypeError, ValueError):
            v.probe_shape = None
        v.dtype = str(getattr(val, "dtype", "")).removeprefix("torch.")
    return v


def run_program(ep: Any, inputs: Sequence[Any], names: Sequence[str]) -> dict[str, np.ndarray]:
    """The named values of ``ep`` run on ``inputs`` (an FX interpreter noting them)."""
    import torch

    consts, _, users = _constants(ep)
    wanted = set(names)
    seen: dict[str, np.ndarray] = {}

    class Noting(torch.fx.Interpreter):
        def run_node(self, n: Any) -> Any:
            out = super().run_node(n)
            if n.name in wanted and isinstance(out, torch.Tensor):
                seen[n.name] = out.detach().cpu().numpy().copy()
            return out

    feeds = iter(torch.as_tensor(np.asarray(x)) for x in inputs)
    args = []
    for spec in ep.graph_signature.input_specs:
        name = spec.arg.name
        args.append(next(feeds) if name in users else consts[name])
    with torch.no_grad():
        Noting(ep.graph_module).run(*args)
    return seen


def read_module(model: Any, example: Any) -> tuple[Graph, Any, list[tuple[str, tuple[int, ...], str]]]:
    """(graph, run, inputs) of a PyTorch module traced on ``example``."""
    ep = export(model, example)
    graph = read_program(ep)

    def run(feeds: list[np.ndarray], names: Sequence[str]) -> dict[str, np.ndarray]:
        return run_program(ep, feeds, names)

    inputs = [(n, graph.values[n].probe_shape or (), graph.values[n].dtype) for n in graph.inputs]
    return graph, run, inputs
