"""PyTorch modules into the neutral :class:`~.graph.Graph`, as ATen graphs.

The module runs once on an example (evaluation mode, no gradients) under a
dispatch mode that records every ATen op it executes, with the tensors it reads and
writes: whatever the forward code does (control flow on the data included), the
graph holds what ran on the example.  Every way of writing a shuffle is ops there:
``F.pixel_shuffle``, ``nn.PixelShuffle``, ``view``/``permute``/``reshape`` chains,
einops, a constant ``index_select``.  A data-movement op's semantics are the op
itself, run on an index tensor (the framework is its own oracle); parameters and
buffers are values named by their path in the module (``conv1.weight``).  The
recording is local to the calling thread: nothing of the module or of ``torch`` is
patched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .graph import ExampleError, Graph, Node, NodeKind, Value

__all__ = ["Traced", "evaluating", "read_module", "run", "trace"]

# nearest-neighbour resampling picks elements: run in float64 (no integer kernels)
_NEAREST = {
    f"{prefix}{d}d" for prefix in ("upsample_nearest", "_upsample_nearest_exact") for d in (1, 2, 3)
}
# ATen ops that only move the data of their first argument (given their other,
# constant, arguments): their semantics is the op itself
MOVE_OPS = {
    *"view reshape _unsafe_view permute transpose t pixel_shuffle pixel_unshuffle".split(),
    *"channel_shuffle native_channel_shuffle flatten unflatten squeeze unsqueeze".split(),
    *"contiguous clone alias detach index_select select slice narrow movedim swapaxes".split(),
    *"lift_fresh_copy dropout feature_dropout alpha_dropout feature_alpha_dropout".split(),
    *"view_copy permute_copy _reshape_alias alias_copy".split(),
    # (these repeat elements: a chain through them is a selection, never a site)
    *"repeat repeat_interleave expand expand_as tile".split(),
    *_NEAREST,
}
# ATen ops whose every output element depends only on the same position of their
# (broadcast) inputs
ELEMENTWISE_OPS = {
    *"relu relu_ relu6 gelu silu silu_ sigmoid sigmoid_ tanh tanh_ hardtanh hardtanh_".split(),
    *"leaky_relu leaky_relu_ elu elu_ selu celu hardswish hardsigmoid mish softplus".split(),
    *"clamp clamp_ clamp_min clamp_max clip abs neg exp log log1p sqrt rsqrt pow".split(),
    *"add add_ sub sub_ mul mul_ div div_ rsub where maximum minimum reciprocal square".split(),
    *"erf sin cos floor ceil round trunc sign _to_copy to type_as prelu _prelu_kernel".split(),
    *"lerp addcmul addcdiv threshold gt lt ge le eq ne logical_not bitwise_not".split(),
}
# ATen ops that move several tensors (Node.many): a list in, or a list out
_MANY_IN = {"cat", "concat", "concatenate", "stack"}
_MANY_OUT = {"split", "split_with_sizes", "unbind", "chunk", "tensor_split", "unsafe_split"}
CONV_OPS = {
    *"conv1d conv2d conv3d convolution _convolution conv_transpose1d".split(),
    *"conv_transpose2d conv_transpose3d".split(),
}
SHAPE_OPS = {"sym_size", "sym_numel", "sym_stride", "size", "sym_storage_offset"}


def base_name(target: Any) -> str:
    """``aten.view.default`` -> ``view``."""
    name = getattr(target, "_opname", None) or getattr(target, "__name__", str(target))
    return str(name).split(".")[0]


@contextlib.contextmanager
def evaluating(model: Any) -> Iterator[None]:
    """Evaluation mode without gradients; each module's mode restored after."""
    import torch

    modes = {m: m.training for m in model.modules()}
    try:
        with contextlib.suppress(NotImplementedError):  # a torch.export program's module:
            model.eval()  # its mode was fixed when it was exported
        with torch.no_grad():
            yield
    finally:
        for m, mode in modes.items():
            m.training = mode


@dataclass
class Traced:
    """What one run recorded: ``graph`` and the tensors of its constants
    (parameters, buffers, tensors made outside the recorded ops)."""

    graph: Graph
    constants: dict[str, Any]


def _as_args(example: Any) -> tuple[Any, ...]:
    import torch

    args = tuple(example) if isinstance(example, (tuple, list)) else (example,)
    return tuple(a if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a)) for a in args)


class Recorder:
    """A ``TorchDispatchMode`` (made on first use: torch is imported lazily) noting
    each op with its inputs and outputs by name; tensors are told apart by identity
    (weak references: a tensor that dies frees its name)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        from torch.utils._python_dispatch import TorchDispatchMode

        from .._frameworks.torch import to_numpy

        class _Mode(TorchDispatchMode):
            def __init__(
                self, params: dict[int, str], inputs: list[Any], wanted: set[str] | None
            ) -> None:
                super().__init__()
                import weakref

                self.weakref = weakref
                self.params = params
                self.graph = Graph("torch", "channels_first")
                self.constants: dict[str, Any] = {}
                self.names: dict[int, tuple[Any, str]] = {}
                self.count: dict[str, int] = {}
                self.wanted = wanted
                self.seen: dict[str, np.ndarray] = {}
                self.data: set[str] = set()  # names of the values computed from the inputs
                for i, x in enumerate(inputs):
                    name = f"input_{i}"
                    self.data.add(name)
                    self._bind(x, name)
                    self.graph.inputs.append(name)
                    self._value(name, x)

            def _bind(self, t: Any, name: str) -> None:
                self.names[id(t)] = (self.weakref.ref(t), name)

            def _value(self, name: str, t: Any) -> Value:
                v = self.graph.values.get(name) or Value(name)
                self.graph.values[name] = v
                v.probe_shape = v.shape = tuple(int(s) for s in t.shape)
                v.dtype = str(t.dtype).removeprefix("torch.")
                return v

            def name_of(self, t: Any) -> str:
                held = self.names.get(id(t))
                if held is not None and held[0]() is t:
                    return held[1]
                path = self.params.get(id(t))
                name = path if path is not None else f"constant_{len(self.constants)}"
                v = self._value(name, t)
                v.constant, v.param = True, path
                self.constants[name] = t
                self._bind(t, name)
                return name

            def __torch_dispatch__(
                self, func: Any, types: Any, args: Any = (), kwargs: Any = None
            ) -> Any:
                import torch
                from torch.utils._pytree import tree_flatten

                kwargs = kwargs or {}
                leaves, _ = tree_flatten((args, kwargs))
                inputs = [self.name_of(t) for t in leaves if isinstance(t, torch.Tensor)]
                first = args[0] if args else None
                data = inputs.index(self.name_of(first)) if isinstance(first, torch.Tensor) else 0
                out = func(*args, **kwargs)
                outs, _ = tree_flatten(out)
                base = base_name(func)
                k = self.count[base] = self.count.get(base, 0) + 1
                names = []
                from_data = any(i in self.data for i in inputs)
                for j, t in enumerate(o for o in outs if isinstance(o, torch.Tensor)):
                    name = f"{base}_{k}" + (f"_{j}" if j else "")
                    if from_data:
                        self.data.add(name)
                    self._bind(t, name)
                    self._value(name, t).constant = not from_data
                    names.append(name)
                    if self.wanted is not None and name in self.wanted:
                        self.seen[name] = np.array(to_numpy(t))  # (a copy; bf16 widened)
                if self.wanted is None:
                    many = _many(func, args, kwargs)
                    if many is not None:  # (a step of lists: Node.many)
                        joint: Any = many[0]
                        at = many[1][0]
                        self.graph.add(
                            Node(
                                names[0], str(func), inputs, names, "move", joint, at, many=many[1]
                            )
                        )
                        return out
                    kind, step = _step(func, args, kwargs, self.data, self.name_of)
                    self.graph.add(
                        Node(
                            names[0] if names else f"{base}_{k}",
                            str(func),
                            inputs,
                            names,
                            kind,
                            step,
                            data,
                        )
                    )
                return out

        return _Mode(*args, **kwargs)


def _params(model: Any) -> dict[int, str]:
    out: dict[int, str] = {}
    for name, t in (
        *model.named_parameters(remove_duplicate=False),
        *model.named_buffers(remove_duplicate=False),
    ):
        out.setdefault(id(t), name)
    return out


def _run(model: Any, args: tuple[Any, ...], wanted: set[str] | None) -> Any:
    rec = Recorder(_params(model), list(args), wanted)
    with evaluating(model), rec:
        out = model(*args)
    import torch
    from torch.utils._pytree import tree_flatten

    outs, _ = tree_flatten(out)
    rec.graph.outputs = [rec.name_of(t) for t in outs if isinstance(t, torch.Tensor)]
    return rec


def trace(model: Any, example: Any) -> Traced:
    """The ATen ops of one run of ``model`` on ``example`` (evaluation mode, no
    gradients, each module's mode restored: no state moves); a run that fails is one
    ``ValueError`` naming the model."""
    args = _as_args(example)
    try:
        rec = _run(model, args, None)
    except Exception as e:
        raise ExampleError(type(model).__name__, e) from None
    return Traced(rec.graph, rec.constants)


def run(model: Any, feeds: Sequence[Any], names: Sequence[str]) -> dict[str, np.ndarray]:
    """The named values (as :func:`trace` names them) of a run on ``feeds``."""
    rec = _run(model, _as_args(list(feeds)), set(names))
    for i, x in enumerate(feeds):
        if f"input_{i}" in names:
            rec.seen[f"input_{i}"] = np.asarray(x)
    outs = {n: rec.seen[n] for n in names if n in rec.seen}
    missing = [n for n in names if n not in outs]
    if missing:
        raise ValueError(
            f"the run on the probe input took another path: {', '.join(missing[:3])} not computed"
        )
    return outs


def _step(
    func: Any, args: Any, kwargs: Any, data: set[str], name_of: Callable[[Any], str]
) -> tuple[NodeKind, Callable[[np.ndarray], np.ndarray] | None]:
    """(kind, semantics) of an ATen op: the op itself run on an index tensor with its
    other arguments as they were (constant tensors only)."""
    import torch

    base = base_name(func)
    if base in SHAPE_OPS:
        return "shape", None
    if base in ELEMENTWISE_OPS:
        return "elementwise", None
    moves, maybe = base in MOVE_OPS, base in CONV_OPS
    if not (moves or maybe) or not args or not isinstance(args[0], torch.Tensor):
        return "compute", None
    rest, kw = list(args[1:]), dict(kwargs)
    for a in (*rest, *kw.values()):
        if isinstance(a, torch.Tensor) and name_of(a) in data:
            return "compute", None  # an index or kernel computed from the data
    if maybe:
        w = rest[0] if rest else None
        b = rest[1] if len(rest) > 1 else kw.get("bias")
        if not isinstance(w, torch.Tensor) or not _zeros_and_ones(w):
            return "compute", None
        if isinstance(b, torch.Tensor) and bool((b != 0).any()):
            return "compute", None
        rest = [r.detach().double() if isinstance(r, torch.Tensor) else r for r in rest]
        kw = {k: v.detach().double() if isinstance(v, torch.Tensor) else v for k, v in kw.items()}
    else:
        rest = [r.detach().clone() if isinstance(r, torch.Tensor) else r for r in rest]

    def step(x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.require(x, requirements=["C", "W"]))
        if maybe or base in _NEAREST:
            t = t.double()
        with torch.no_grad():
            y = func(t, *rest, **kw).numpy()
        return y.astype(x.dtype) if base in _NEAREST else y

    return ("maybe" if maybe else "move"), step


def _zeros_and_ones(w: Any) -> bool:
    """Whether a kernel holds only 0 and 1 (a convolution that may move data); a
    trained kernel is told by its first elements, without a pass over all of it."""
    flat = w.detach().reshape(-1)
    head = flat[:64]
    if not bool(((head == 0) | (head == 1)).all()):
        return False
    return bool(((flat == 0) | (flat == 1)).all())


def _many(
    func: Any, args: Any, kwargs: Any
) -> tuple[Callable[[list[np.ndarray]], list[np.ndarray]], tuple[int, ...]] | None:
    """(semantics, moved inputs) of an op that joins tensors (``cat``, ``stack``) or
    cuts one (``split``, ``unbind``, ``chunk``): the op itself run on index tensors
    (numbered one after the other), its other arguments as they were."""
    import torch

    base = base_name(func)
    if (base not in _MANY_IN and base not in _MANY_OUT) or not args:
        return None
    many_in = base in _MANY_IN
    moved = list(args[0]) if many_in and isinstance(args[0], (list, tuple)) else [args[0]]
    if not moved or not all(isinstance(t, torch.Tensor) for t in moved):
        return None
    for a in (*args[1:], *kwargs.values()):
        if isinstance(a, torch.Tensor):
            return None  # sizes or indices as tensors
    rest = args[1:]

    def step(xs: list[np.ndarray]) -> list[np.ndarray]:
        xs = [np.asarray(x) for x in xs]
        start = np.cumsum([0] + [x.size for x in xs])
        ts = [
            torch.from_numpy((start[i] + np.arange(x.size, dtype=np.int64)).reshape(x.shape))
            for i, x in enumerate(xs)
        ]
        with torch.no_grad():
            out = func(ts, *rest, **kwargs) if many_in else func(ts[0], *rest, **kwargs)
        outs = list(out) if isinstance(out, (list, tuple)) else [out]
        flat = np.concatenate([x.reshape(-1) for x in xs])
        return [flat[o.numpy()] for o in outs]

    return step, tuple(range(len(moved)))


def read_module(
    model: Any, example: Any
) -> tuple[Graph, Any, list[tuple[str, tuple[int, ...], str]]]:
    """(graph, run, inputs) of a PyTorch module traced on ``example``."""
    graph = trace(model, example).graph
    inputs = [(n, graph.values[n].probe_shape or (), graph.values[n].dtype) for n in graph.inputs]

    def runner(feeds: list[np.ndarray], names: Sequence[str]) -> dict[str, np.ndarray]:
        return run(model, feeds, names)

    return graph, runner, inputs
