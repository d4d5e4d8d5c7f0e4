"""PyTorch's side of :func:`subpixel.port_weights`: read a module's parameterised layers
(with ``torch.fx`` tracing the shuffles they feed and the flattens before dense
layers), write converted parameters back, run the module recording layer outputs."""

from __future__ import annotations

import sys
import warnings
import weakref
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from .._frameworks.torch import as_input, evaluating, to_numpy
from ..layers import torch as torch_layers
from ._records import (
    PER_CHANNEL,
    ReadError,
    Record,
    Shuffle,
    check_known,
    flatten_features,
    mark_in_order,
    mark_shuffle,
    note_run_order,
    spec_settings,
)

__all__ = ["layout", "read", "run", "write"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# functions and modules that only pass channels through (walked over while tracing)
_PASS_MODULES = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.GELU,
    nn.SiLU,
    nn.Identity,
    nn.Dropout,
    nn.ELU,
)
_PASS_FUNCTIONS = {F.relu, F.leaky_relu, torch.tanh, torch.sigmoid, F.gelu, F.silu, torch.relu}
_FLATTENS = {torch.flatten, torch.reshape}
# calls (by name: torch.relu, F.relu, Tensor.relu_, ...) that keep every channel of
# their one tensor where it is: elementwise with numbers, activations, copies, views
_KEEPS_CHANNELS = {
    *("relu relu_ relu6 leaky_relu leaky_relu_ gelu silu elu selu celu hardtanh".split()),
    *("hardswish hardsigmoid mish softplus sigmoid sigmoid_ tanh tanh_ clamp clamp_".split()),
    *("clip clip_ abs neg add add_ sub sub_ mul mul_ div div_ pow".split()),
    *("__add__ __radd__ __iadd__ __sub__ __rsub__ __isub__ __mul__ __rmul__ __imul__".split()),
    *("__truediv__ __itruediv__ __neg__ __pow__".split()),
    *("contiguous clone detach float half double bfloat16 to type view reshape".split()),
    *("dropout dropout_ dropout2d dropout3d alpha_dropout feature_alpha_dropout".split()),
}
_OPS = {ops.shuffle: "shuffle", ops.unshuffle: "unshuffle"}


def layout(model: Any) -> str:
    return "channels_first"


def _numpy(t: Any) -> np.ndarray | None:
    """A tensor's values as a NumPy array of its own (never a view of the model)."""
    return None if t is None else np.array(to_numpy(t), copy=True)


def _record(name: str, m: nn.Module) -> Record | None:
    def p(**params: Any) -> dict[str, np.ndarray | None]:
        return {k: _numpy(v) for k, v in params.items()}

    if isinstance(m, torch_layers.SubPixelConvNd):
        return Record(
            "conv",
            name,
            p(weight=m.weight, bias=m.bias),
            m.spec.spatial_dims,
            shuffle=(m.spec.order, m.spec.factor),
            extra=spec_settings(m.spec),
        )
    if isinstance(m, _CONV):
        return Record(
            "conv",
            name,
            p(weight=m.weight, bias=m.bias),
            m.weight.dim() - 2,
            extra={"groups": m.groups, "stride": tuple(m.stride)},
        )
    if isinstance(m, torch_layers.PhasedConvTranspose):  # the original's parameters
        return Record(
            "conv_transpose",
            name,
            p(weight=m.weight, bias=m.bias),
            m.weight.dim() - 2,
            extra={"stride": tuple(m.stride)},
        )
    if isinstance(m, _CONV_T):
        return Record(
            "conv_transpose",
            name,
            p(weight=m.weight, bias=m.bias),
            m.weight.dim() - 2,
            extra={"groups": m.groups, "stride": tuple(m.stride)},
        )
    if isinstance(m, nn.Linear):
        return Record("dense", name, p(weight=m.weight, bias=m.bias))
    if isinstance(m, _NORMS):
        return Record(
            "batch_norm",
            name,
            p(weight=m.weight, bias=m.bias, running_mean=m.running_mean, running_var=m.running_var),
            extra={"eps": m.eps},
        )
    if isinstance(m, nn.LayerNorm):
        return Record("layer_norm", name, p(weight=m.weight, bias=m.bias), extra={"eps": m.eps})
    if isinstance(m, nn.PReLU):
        return Record("prelu", name, p(weight=m.weight))
    if isinstance(m, nn.Embedding):
        return Record("embedding", name, p(weight=m.weight))
    return None


def read(model: nn.Module, example: Any = None) -> list[Record]:
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        raise ReadError(
            "holds tensors on the meta device (no values): materialise it first "
            "(`to_empty(device=...)`) and load or initialise its weights"
        )
    records = []
    for name, m in model.named_modules():
        r = _record(name, m)
        if r is not None:
            records.append(r)
        else:
            own = [k for k, v in m._parameters.items() if v is not None]
            check_known(name or "the model", type(m).__name__, own)
    run = _run_order(model, example, {r.name: r.kind for r in records})
    _trace(model, records, example, run)
    note_run_order(records, None if run is None else run.called)
    return records


class _Run:
    """What ``model`` did on ``example``: ``called``, the names of its modules in the
    order they were called (a module called twice is named twice); ``fed``, the
    shuffles its code called as functions, each with the convolution whose channels it
    moved: ``("shuffle", conv, (op, order, factor), between, through)`` (``between``:
    the per-channel layers on the way; ``through``: the channels were shuffled by a
    function already) or ``("unshuffle", conv, (op, order, factor), between)``."""

    def __init__(self) -> None:
        self.called: list[str] = []
        self.fed: list[tuple] = []


def _run_order(model: nn.Module, example: Any, kinds_by_name: dict[str, str]) -> _Run | None:
    """Run ``model`` on ``example`` in evaluation mode, noting what it does (:class:`_Run`);
    None without an example or where it fails.  ``kinds_by_name``: the kind of each
    parameterised layer read (``"conv"``, ``"batch_norm"``, ...).

    Where a shuffle called as a function takes its channels from is followed by the
    data: each tensor a convolution (or a function unshuffle) gives is tagged, and a
    tag moves with the tensor through per-channel layers and through the calls that
    keep every channel where it is (``_KEEPS_CHANNELS``: activations, arithmetic with
    numbers or with the same channels, copies, views)."""
    if example is None:
        return None
    from torch.overrides import TorchFunctionMode

    names = {m: name for name, m in model.named_modules()}
    kinds = {m: kinds_by_name[name] for m, name in names.items() if name in kinds_by_name}
    # a shuffle module's or a parameterised layer's own calls are not the model's code
    opaque = set(kinds) | {m for m in names if _shuffle_module(m) is not None}
    run, depth = _Run(), [0]
    tags: dict[int, tuple[Any, tuple]] = {}  # id -> (weak reference to the tensor, tag)
    pending: list[tuple | None] = []  # the tag of each running layer's output

    def tag_of(t: Any) -> tuple | None:
        held = tags.get(id(t))
        return held[1] if held is not None and held[0]() is t else None

    def tag(t: Any, value: tuple | None) -> None:
        if value is not None and isinstance(t, torch.Tensor):
            tags[id(t)] = (weakref.ref(t), value)  # (a tensor that dies frees its id)

    def entered(m: nn.Module, args: Any) -> None:
        run.called.append(names[m])
        if m in opaque and not depth[0]:
            came = tag_of(args[0]) if args else None
            out: tuple | None = None
            if kinds.get(m) == "conv":
                if came is not None and came[0] == "unshuffled":
                    run.fed.append(("unshuffle", names[m], came[1], came[2]))
                out = ("conv", names[m], [], False)
            elif kinds.get(m) in PER_CHANNEL and came is not None:
                out = (*came[:2], [*came[2], names[m]], *came[3:])
            pending.append(out)
        depth[0] += m in opaque

    def left(m: nn.Module, args: Any, out: Any) -> None:
        depth[0] -= m in opaque
        if m in opaque and not depth[0] and pending:
            tag(out, pending.pop())

    def note(func: Any, args: Any, kwargs: dict, result: Any) -> None:
        call = _function_shuffle(func, args, kwargs)
        if call is None:  # what keeps each channel where it is keeps the tag
            tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
            held = [tag_of(t) for t in tensors]
            if (
                getattr(func, "__name__", "") in _KEEPS_CHANNELS
                and tensors
                and all(h == held[0] for h in held)  # (h * sigmoid(h), not conv + skip)
                and isinstance(result, torch.Tensor)
                and result.shape == tensors[0].shape
            ):
                tag(result, held[0])
            return
        found, x = call
        came = tag_of(x)
        if found[0] == "unshuffle":
            tag(result, ("unshuffled", found, []))
        elif came is not None and came[0] == "conv":
            run.fed.append(("shuffle", came[1], found, came[2], came[3]))
            tag(result, ("conv", came[1], came[2], True))

    class Shuffles(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            result = func(*args, **kwargs)
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if not depth[0] and not caller.startswith("subpixel."):  # (not inside a
                note(func, args, kwargs, result)  # layer, nor subpixel's own shuffle)
            return result

    def observed(op: Any, args: tuple, kwargs: dict, result: Any) -> None:
        # subpixel.shuffle/unshuffle called by the model's code
        if not depth[0] and kwargs.get("layout") == "channels_first":
            note(op, args, kwargs, result)

    hooks = [m.register_forward_pre_hook(entered) for m in names]
    hooks += [m.register_forward_hook(left, always_call=True) for m in names]
    try:
        with evaluating(model), ops.observing(observed), Shuffles():
            model(as_input(model, example))
    except Exception:
        return None  # the example is checked (one line) before anything is written
    finally:
        for h in hooks:
            h.remove()
        tags.clear()
    return run


# ---------------------------------------------------------------------------
# tracing: which convolution feeds which shuffle, which flatten feeds which dense
# ---------------------------------------------------------------------------


def _shuffle_module(m: nn.Module) -> Shuffle | None:
    """``(op, order, factor)`` if ``m`` is a pixel shuffle or unshuffle module."""
    if isinstance(m, torch_layers.PixelShuffle):  # and PixelUnshuffle, a subclass
        return m.op, m.order, m.factor
    if isinstance(m, nn.PixelShuffle):
        return "shuffle", "CRD", (m.upscale_factor,) * 2
    if isinstance(m, nn.PixelUnshuffle):
        return "unshuffle", "CRD", (m.downscale_factor,) * 2
    return None


def _function_shuffle(func: Any, args: Any, kwargs: dict) -> tuple[Shuffle, Any] | None:
    """``((op, order, factor), input)`` if ``func(*args, **kwargs)`` is a pixel
    shuffle or unshuffle called as a function."""

    def arg(i: int, *keys: str) -> Any:
        return args[i] if len(args) > i else next((kwargs[k] for k in keys if k in kwargs), None)

    if func in (F.pixel_shuffle, torch.pixel_shuffle, F.pixel_unshuffle, torch.pixel_unshuffle):
        op = "shuffle" if func in (F.pixel_shuffle, torch.pixel_shuffle) else "unshuffle"
        r = arg(1, "upscale_factor", "downscale_factor")
        return (op, "CRD", (int(r),) * 2), arg(0, "input")
    if func in _OPS:
        x, factor = arg(0, "x"), arg(1, "factor")
        if isinstance(factor, (tuple, list)):
            r = tuple(int(f) for f in factor)
        else:  # one factor for every spatial axis
            dims = kwargs.get("spatial_dims") or max(getattr(x, "ndim", 4) - 2, 1)
            r = (int(factor),) * dims
        return (_OPS[func], kwargs.get("order", "CRD"), r), x
    return None


def _shuffle_of(node: Any, modules: dict[str, nn.Module]) -> Shuffle | None:
    """``(op, order, factor)`` if ``node`` is a pixel shuffle or unshuffle."""
    if node.op == "call_module":
        return _shuffle_module(modules[node.target])
    if node.op == "call_function":
        call = _function_shuffle(node.target, node.args, node.kwargs)
        return None if call is None else call[0]
    return None


def _shuffle_input(node: Any) -> Any:
    """The node a shuffle node takes its input from (passed by position or keyword)."""
    return node.args[0] if node.args else node.kwargs.get("input", node.kwargs.get("x"))


def _passes_channels(node: Any, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], _PASS_MODULES)
    if node.op == "call_function":
        return node.target in _PASS_FUNCTIONS
    return node.op == "call_method" and node.target in ("relu", "tanh", "sigmoid", "contiguous")


def _is(node: Any, by_name: dict[str, Record]) -> bool:
    """Whether ``node`` calls one of the recorded (parameterised) modules."""
    return node.op == "call_module" and node.target in by_name


def _trace(model: nn.Module, records: list[Record], example: Any, run: _Run | None) -> None:
    by_name = {r.name: r for r in records}
    modules = dict(model.named_modules())
    if next(model.children(), None) is None:
        return  # one layer: nothing around it to trace
    try:
        graph = torch.fx.symbolic_trace(model)
    except Exception as e:  # not traceable (data-dependent control flow): module order
        warnings.warn(
            f"torch.fx cannot trace {type(model).__name__} ({type(e).__name__}); "
            + (
                "the order its modules run in on `example` tells which convolution a "
                "shuffle module follows, and a shuffle called as a function (F.pixel_shuffle, "
                "subpixel.shuffle) is followed to the convolution whose channels it takes"
                if run is not None
                else "the order its modules are defined in tells which convolution feeds a "
                "shuffle module, and shuffles called as functions (F.pixel_shuffle) are not "
                "seen: pass `example=`"
            ),
            stacklevel=4,
        )
        _trace_by_order(model, records, run)
        return
    if example is not None:
        _propagate_shapes(model, graph, example)
    for node in graph.graph.nodes:
        found = _shuffle_of(node, modules)
        if found is not None:
            op, order, factor = found
            if op == "shuffle":  # back to the convolution that produced its input
                between, src, through, unsupported = [], _shuffle_input(node), False, False
                while isinstance(src, torch.fx.Node) and not (
                    _is(src, by_name) and by_name[src.target].kind == "conv"
                ):
                    earlier = _shuffle_of(src, modules)
                    if _is(src, by_name) and by_name[src.target].kind in PER_CHANNEL:
                        between.append(by_name[src.target])
                    elif earlier is not None and earlier[0] == "shuffle" and not through:
                        through = True  # a shuffle of a shuffle's output
                        unsupported, between = bool(between), []
                    elif not _passes_channels(src, modules):
                        src = None
                        break
                    src = src.args[0] if src.args else None
                    if not isinstance(src, torch.fx.Node):
                        src = None
                if isinstance(src, torch.fx.Node):
                    mark_shuffle(by_name[src.target], between, (order, factor), through)
                    if through and unsupported:
                        by_name[src.target].extra["chain_unsupported"] = True
            else:  # forward to the convolution that reads its output
                between, users = [], list(node.users)
                while len(users) == 1 and not (
                    _is(users[0], by_name) and by_name[users[0].target].kind == "conv"
                ):
                    user = users[0]
                    if _is(user, by_name) and by_name[user.target].kind in PER_CHANNEL:
                        between.append(by_name[user.target])
                    elif not _passes_channels(user, modules):
                        break
                    users = list(user.users)
                if (
                    len(users) == 1
                    and _is(users[0], by_name)
                    and by_name[users[0].target].kind == "conv"
                ):
                    for r in (by_name[users[0].target], *between):
                        r.extra["unshuffle"] = (order, factor)
        if _is(node, by_name) and by_name[node.target].kind == "dense":
            _mark_flatten(node, by_name, modules)


def _mark_flatten(dense: Any, by_name: dict[str, Record], modules: dict[str, nn.Module]) -> None:
    """Record the features' shape of a flatten feeding ``dense`` (through dropouts and
    activations); where the shape is unknown (no example), say so unless the dense
    layer's inputs are exactly the channels of the convolution before (spatial 1 x 1)."""
    src = dense.args[0]
    while isinstance(src, torch.fx.Node) and _passes_channels(src, modules) and src.args:
        src = src.args[0]
    if not isinstance(src, torch.fx.Node) or not (
        (src.op == "call_module" and isinstance(modules[src.target], nn.Flatten))
        or (src.op == "call_function" and src.target in _FLATTENS)
        or (src.op == "call_method" and src.target in ("flatten", "view", "reshape"))
    ):
        return
    before = src.args[0]
    while isinstance(before, torch.fx.Node) and before.target == "contiguous":
        before = before.args[0]
    record = by_name[dense.target]
    data = "channels_first"
    permuted = _permutation(before)
    if permuted is not None:  # x.permute(0, 2, 3, 1) first: flattened as channels_last
        n = len(permuted)
        if permuted != (0, *range(2, n), 1):
            record.extra["flatten_unknown"] = True  # some other order: not converted
            return
        before, data = before.args[0], "channels_last"
        record.layout = data  # what it flattens is channels_last data
    meta = getattr(before, "meta", {}).get("tensor_meta")
    if meta is not None:
        if len(meta.shape) > 2:  # the features (C, *spatial), flattened in ``data`` order
            record.flatten = flatten_features(tuple(meta.shape[1:]), data)
        return
    channels = None
    for _ in range(64):  # the nearest convolution or batch norm upstream
        if not isinstance(before, torch.fx.Node):
            break
        if _is(before, by_name) and by_name[before.target].kind in ("conv", "batch_norm"):
            r = by_name[before.target]
            channels = r.params.get("weight") if r.kind == "conv" else r.params["running_mean"]
            channels = None if channels is None else channels.shape[0]
            break
        before = before.args[0] if before.args else None
    weight = record.params["weight"]
    if weight is None or channels != weight.shape[1]:
        record.extra["flatten_unknown"] = True


def _permutation(node: Any) -> tuple[int, ...] | None:
    """The axes of a ``permute`` node (method or function), else None."""
    if not isinstance(node, torch.fx.Node) or node.target not in ("permute", torch.permute):
        return None
    dims = node.args[1:] if len(node.args) > 2 else node.args[1] if len(node.args) > 1 else None
    dims = node.kwargs.get("dims", dims)
    return tuple(int(d) for d in dims) if dims is not None else None


def _propagate_shapes(model: nn.Module, graph: Any, example: Any) -> None:
    """Every node's output shape, from running ``example`` through the traced graph in
    eval mode without gradients (so no batch-norm statistics change)."""
    import contextlib
    import io

    from torch.fx.passes.shape_prop import ShapeProp

    try:
        with (
            evaluating(model),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            ShapeProp(graph).propagate(as_input(model, example))
    except Exception:
        pass  # shapes stay unknown: a flatten before a dense layer is then reported


def _trace_by_order(model: nn.Module, records: list[Record], run: _Run | None) -> None:
    """For a model ``torch.fx`` cannot trace: the order its modules ran in on the
    example (a module called twice counts twice; else their definition order) tells
    which convolution a shuffle module follows; a shuffle called as a function was
    followed by the data (:func:`_run_order`)."""
    by_name = {r.name: r for r in records}
    modules = dict(model.named_modules())
    sequence: list[Record | Shuffle] = []
    for name in list(modules) if run is None else run.called:
        if name in by_name:
            sequence.append(by_name[name])
        else:
            found = _shuffle_module(modules[name])
            if found is not None:
                sequence.append(found)
    mark_in_order(sequence)
    for fed in [] if run is None else run.fed:
        conv, between = by_name[fed[1]], [by_name[n] for n in fed[3]]
        _, order, factor = fed[2]
        if fed[0] == "shuffle":
            mark_shuffle(conv, between, (order, factor), fed[4])
        else:
            for r in (conv, *between):
                r.extra["unshuffle"] = (order, factor)


# ---------------------------------------------------------------------------
# writing and running
# ---------------------------------------------------------------------------


def write(model: nn.Module, records: list[Record], converted: list[dict]) -> None:
    modules = dict(model.named_modules())
    copies = []  # every value converted first: the copying itself cannot fail half way
    for record, params in zip(records, converted):
        m = modules[record.name]
        for key, value in params.items():
            t = getattr(m, key, None)
            if value is not None and t is not None:
                copies.append((t, torch.as_tensor(value).to(dtype=t.dtype, device=t.device)))
    with torch.no_grad():
        for t, value in copies:
            t.copy_(value)


def run(model: nn.Module, example: Any, names: list[str]) -> dict[str, Any]:
    """The model's output on ``example`` (eval mode, restored after) and each named
    layer's output."""
    outputs: dict[str, Any] = {}
    modules = dict(model.named_modules())
    hooks = [
        modules[n].register_forward_hook(lambda m, i, o, n=n: outputs.__setitem__(n, _numpy(o)))
        for n in names
    ]
    try:
        with evaluating(model):
            outputs["__output__"] = _numpy(model(as_input(model, example)))
    finally:
        for h in hooks:
            h.remove()
    return outputs
