"""Whole models: copy a network's weights between PyTorch, Keras 3 and Flax NNX models
of the same architecture, every conversion done (:func:`port_weights`).

Each model is read twice: its parameterised layers from its modules (parameters,
settings; :mod:`.torch`, :mod:`.keras`, :mod:`.flax`), and its data flow from a
trace of one run (:mod:`subpixel.movement`).  Layers pair in the order they run;
where a shuffle, a flatten or any other data movement between two layers differs
between the models, the channel reorders that make up for it are derived from the
traces (:mod:`.frames`), never from a list of ways to write a shuffle.  The ported
target is then run on the example and compared with the source: outputs that differ
beyond the tolerance raise one ``ValueError`` and leave the target as it was.
"""

from __future__ import annotations

import importlib
import itertools
import math
from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from .._core.compare import differences, max_difference
from ..movement.graph import ExampleError, error_line
from . import frames as frames_module
from .frames import FramesError, Placed
from .records import PortReport, ReadError, Record, check_settings, convert_pair, framework_of

__all__ = ["PortReport", "Record", "port_weights"]


def _module(framework: str) -> Any:
    return importlib.import_module(f"subpixel.porting.{framework}")


def port_weights(
    source: Any, target: Any, *, example: Any = None, atol: float | None = None
) -> PortReport:
    """Copy ``source``'s weights into ``target``: two models of the same architecture in
    PyTorch (``nn.Module``), Keras 3 (``keras.Model``) or Flax NNX (``nnx.Module``), in
    any pair and direction.

    Both models are traced on ``example`` (an input for ``source``, in its layout; it
    is moved to the target's layout).  Parameterised layers (convolutions 1-3-D,
    transposed convolutions, dense/linear, batch and layer norms, PReLU, embeddings,
    subpixel's layers) pair in the order they run and are converted: kernel layouts,
    channels first or last, and every channel reorder the data movement between the
    layers requires (a pixel shuffle of another order, a flatten of another layout,
    written in any way).  Then the target runs on ``example`` (and on a random input of
    its shape where the example cannot tell: all values equal) and must give the
    source's output within ``atol`` (default: from the dtypes, relative to the
    output's scale); otherwise one ``ValueError`` names the first layer whose output
    differs and the target keeps its weights.  Without ``example``, one is made from
    the models' declared input shapes or their layers' input sizes (the first the
    source runs on), and the same check runs; else ``ValueError``.

    Returns a :class:`PortReport`: the pairs, the reorders, each layer's and the
    output's max difference.
    """
    src_fw, tgt_fw = framework_of(source, "source"), framework_of(target, "target")
    src_mod, tgt_mod = _module(src_fw), _module(tgt_fw)
    src_records = _read(src_mod, source, "source", target=False)
    tgt_records = _read(tgt_mod, target, "target", target=True)
    if len(src_records) != len(tgt_records):
        first = _first_unpaired(src_records, tgt_records)
        raise ValueError(
            f"`source` has {len(src_records)} parameterised layers and `target` "
            f"{len(tgt_records)}: they are not the same architecture ({first})"
        )
    _check_kinds(src_records, tgt_records)
    xs, made = _example(example, source, target, src_mod, tgt_mod, src_records)
    args = (source, target, src_mod, tgt_mod, src_records, tgt_records, atol)
    small = None if made else _reduced(xs[0], src_mod.layout(source))
    # a forward that moves the model's state (statistics of every batch, a counter)
    # would be moved by the runs here: the source is put back as it was
    before = None if source is target else _unshared(src_mod.snapshot(source), target, tgt_mod)
    try:
        if small is not None:  # the analysis on a crop of the example, the outputs on all
            try:
                return _ported(*args, [small], made, full=xs[0])
            except ValueError:
                pass  # the target is as it was: the whole example decides, and names why
        return _ported(*args, xs, made, full=None)
    finally:
        if before is not None:
            src_mod.restore(source, before)


def _unshared(snapshot: Any, target: Any, tgt_mod: Any) -> Any:
    """The source's snapshot without the tensors the target holds too (those are the
    target's: the port writes them)."""
    if not isinstance(snapshot, list):  # (Flax: a state, and its runs are on a copy)
        return snapshot
    held = tgt_mod.snapshot(target)
    ids = {id(pair[0]) for pair in held} if isinstance(held, list) else set()
    return [pair for pair in snapshot if id(pair[0]) not in ids]


def _reduced(x: np.ndarray, layout: str) -> np.ndarray | None:
    """A crop of an image example for the analysis (which is the same at every size of
    the same parity and divisibility): one image, each spatial size above 32 cut to 16
    plus its remainder modulo 16; None where nothing would be cut."""
    if x.ndim < 3 or x.dtype.kind != "f":
        return None
    spatial = range(2, x.ndim) if layout == "channels_first" else range(1, x.ndim - 1)
    sizes = [n if k not in spatial or n <= 32 else 16 + n % 16 for k, n in enumerate(x.shape)]
    sizes[0] = 1
    if sizes == list(x.shape):
        return None
    return np.ascontiguousarray(x[tuple(slice(0, n) for n in sizes)])


def _ported(
    source: Any,
    target: Any,
    src_mod: Any,
    tgt_mod: Any,
    src_records: list[Record],
    tgt_records: list[Record],
    atol: float | None,
    xs: list[np.ndarray],
    made: bool,
    full: np.ndarray | None,
) -> PortReport:
    """Port with the models traced on the first of ``xs`` the source runs on (and,
    with ``full``, the outputs compared on it too)."""
    mismatch = _definition_mismatch(src_records, tgt_records)
    layouts = (src_mod.layout(source), tgt_mod.layout(target))
    for k, x in enumerate(xs):  # (made ones: the first the source runs on)
        try:
            last = k == len(xs) - 1  # (a made input it does not run on: the layers differ?)
            src_graph, src_run = _trace(
                src_mod, source, x, "source", made, mismatch if made and last else None
            )
            break
        except ValueError as e:
            if k == len(xs) - 1:
                if len(xs) == 1 or not made or str(e).startswith("the architectures"):
                    raise
                shapes = ", ".join(str(a.shape) for a in xs)
                raise ValueError(
                    f"`example` is needed: no input made from the source model's layers "
                    f"(shapes {shapes}) runs through it"
                ) from None
    src_placed = _place(src_graph, src_records, "source")
    if not frames_module.reads_images(src_graph, src_placed, [r.kind for r in src_records]):
        layouts = (layouts[0], layouts[0])  # features last in every framework
    x_t = _example_for(x, layouts)
    tgt_graph, tgt_run = _trace(tgt_mod, target, x_t, "target", made, mismatch)
    tgt_placed = _place(tgt_graph, tgt_records, "target")
    kinds = [r.kind for r in src_records]
    src_pos = frames_module.positions(src_graph, src_placed, kinds)
    tgt_pos = frames_module.positions(tgt_graph, tgt_placed, [r.kind for r in tgt_records])
    ctx = _Context(
        source, target, src_mod, tgt_mod, src_records, tgt_records, src_placed, tgt_placed,
        src_pos, tgt_pos, src_run, tgt_run, x, x_t, layouts, made, atol, full,
    )  # fmt: skip
    refusal: ValueError | None = None
    for pairs in _pairings(ctx):
        try:
            return _port(ctx, pairs)
        except ValueError as e:  # the target is as it was: the next pairing, if any
            refusal = refusal or e
    assert refusal is not None
    raise refusal


class _Context:
    """What every pairing tried is ported and checked with."""

    def __init__(self, *values: Any) -> None:
        (
            self.source, self.target, self.src_mod, self.tgt_mod, self.src_records,
            self.tgt_records, self.src_placed, self.tgt_placed, self.src_pos, self.tgt_pos,
            self.src_run, self.tgt_run, self.x, self.x_t, self.layouts, self.made, self.atol,
            self.full,
        ) = values  # fmt: skip


def _port(c: _Context, pairs: list[tuple[int, int]]) -> PortReport:
    """Port with one pairing of the layers: settings, reorders, conversions, the
    write, the check on the example; ``ValueError`` with the target restored."""
    src_records, tgt_records = c.src_records, c.tgt_records
    for s, t in pairs:  # settings that are not parameters, before any reorder
        check_settings(src_records[s], tgt_records[t])
        _check_pads(
            src_records[s],
            tgt_records[t],
            c.src_placed[s],
            c.tgt_placed[t],
            c.src_pos.graph,
            c.tgt_pos.graph,
        )
    kinds = [r.kind for r in src_records]
    names = [r.label for r in src_records]
    try:
        frames = frames_module.solve(c.src_pos, c.tgt_pos, pairs, kinds, names, c.tgt_placed)
    except FramesError as e:
        raise ValueError(f"cannot port: {e}") from None
    converted = []
    report = PortReport(pairs=[(src_records[s].label, tgt_records[t].label) for s, t in pairs])
    for s, t in pairs:
        converted.append(
            convert_pair(
                src_records[s],
                tgt_records[t],
                out_perm=frames.out_perm.get(s),
                in_perm=frames.in_perm.get(s),
                param_perm=frames.param_perm.get(s),
            )
        )
        what = [
            w
            for w, p in (
                ("output channels", frames.out_perm.get(s)),
                ("inputs", frames.in_perm.get(s)),
                ("parameters", frames.param_perm.get(s)),
            )
            if p is not None
        ]
        if what:
            report.reorders[f"{src_records[s].label} -> {tgt_records[t].label}"] = (
                " and ".join(what) + " reordered"
            )
    saved = c.tgt_mod.snapshot(c.target)
    try:
        c.tgt_mod.write(c.target, [tgt_records[t] for _, t in pairs], converted)
        written = c.tgt_mod.snapshot(c.target)  # (what the checks' runs may move)
        _verify(
            report,
            c.x,
            c.x_t,
            c.layouts,
            c.made,
            c.atol,
            c.src_mod,
            c.tgt_mod,
            c.source,
            c.target,
            pairs,
            src_records,
            tgt_records,
            c.src_placed,
            c.tgt_placed,
            c.src_pos,
            c.tgt_pos,
            frames,
            c.src_run,
            c.tgt_run,
        )
        _check_off_the_example(c, report)
        c.tgt_mod.restore(c.target, written)
    except BaseException:
        c.tgt_mod.restore(c.target, saved)
        raise
    return report


def _read(module: Any, model: Any, which: str, *, target: bool) -> list[Record]:
    try:
        return list(module.read(model, target=target))
    except ReadError as e:
        raise ValueError(f"`{which}` {e}") from None


def _example(
    example: Any,
    source: Any,
    target: Any,
    src_mod: Any,
    tgt_mod: Any,
    src_records: list[Record],
) -> tuple[list[np.ndarray], bool]:
    """The example (NumPy), or the examples to try, and whether they were made here:
    from an input shape a model declares, else from the source's layers: the port is
    checked on the one the source runs on all the same."""
    if example is not None:
        return [_to_numpy(example)], False
    rng = np.random.default_rng(0)
    for mod, model, layouts in (
        (src_mod, source, None),
        (tgt_mod, target, (tgt_mod.layout(target), src_mod.layout(source))),
    ):
        declared = getattr(mod, "input_shape", lambda m: None)(model)
        if declared is not None:
            shape, dtype = declared
            if np.dtype(dtype).kind in "iu":  # token ids: within every embedding's table
                tables = [
                    table.shape[0]
                    for r in src_records
                    if r.kind == "embedding" and (table := r.params.get("weight")) is not None
                ]
                x = rng.integers(0, min(tables, default=2), size=shape).astype(dtype)
            else:
                x = rng.standard_normal(shape).astype(np.float32)
            if layouts is None or x.ndim < 3:
                return [x], True
            return [_example_for(x, layouts), x], True  # (an image, or a sequence)
    made = _made_examples(src_records, rng)
    if not made:
        raise ValueError(
            "`example` is needed: an input for `source` (its input shape cannot be told from "
            "its layers), so that both models can be traced and the port checked"
        )
    return made, True


def _made_examples(records: list[Record], rng: np.random.Generator) -> list[np.ndarray]:
    """Inputs each layer that reads an image, features or token ids could take (its
    input channels or features, 32 pixels a side), in definition order, no shape
    twice: the first the source runs on is the example."""
    made: dict[tuple[Any, ...], np.ndarray] = {}
    for r in records:
        w = r.params.get("weight")
        if r.kind not in ("conv", "conv_transpose", "dense", "embedding") or w is None:
            continue
        if r.kind == "embedding":
            x: np.ndarray = rng.integers(0, w.shape[0], size=(2, 8))
        elif r.kind == "dense":
            x = rng.standard_normal((2, w.shape[1])).astype(np.float32)
        else:
            channels = w.shape[1] * max(r.groups, 1) if r.kind == "conv" else w.shape[0]
            d = r.spatial_dims or (w.ndim - 2)
            last = r.layout != "channels_first"
            shape = (2, *(32,) * d, channels) if last else (2, channels, *(32,) * d)
            x = rng.standard_normal(shape).astype(np.float32)
        made.setdefault((x.dtype.kind, *x.shape), x)
    return list(made.values())


def _trace(
    module: Any, model: Any, x: Any, which: str, made: bool, mismatch: ValueError | None
) -> tuple[Any, Any]:
    try:
        return module.trace(model, x)
    except Exception as e:
        if mismatch is not None:  # the layers differ: that says more than the run
            raise mismatch from None
        line = e.reason if isinstance(e, ExampleError) else error_line(e)
        a = np.asarray(x)
        if made:
            raise ValueError(
                f"`example` is needed: an input made from the {which} model's layers (shape "
                f"{a.shape}) does not run through it ({line})"
            ) from None
        raise ValueError(
            f"`example` does not run through the {which} model ({line}). "
            f"Received: example of shape {a.shape} and dtype {a.dtype}"
            + (" (moved to the target's layout)" if which == "target" else "")
        ) from None


def _definition_mismatch(src: list[Record], tgt: list[Record]) -> ValueError | None:
    """The first pair, in definition order, that cannot be converted (None if all can):
    reported where a model does not even run on the other's input."""
    for a, b in zip(src, tgt):
        try:
            convert_pair(a, b)
        except ValueError as e:
            return e
    return None


def _place(graph: Any, records: list[Record], which: str) -> list[Placed | None]:
    placed = frames_module.place(
        graph,
        [(r.name, list(r.paths.values())) for r in records],
        [r.layout for r in records],
        [r.kind for r in records],
        [_param_axes(r, graph) for r in records],
        [
            (r.paths["weight"], r.kernel_out_axis)
            if r.kernel_out_axis is not None and "weight" in r.paths
            else None
            for r in records
        ],
    )
    return placed


def _param_axes(r: Record, graph: Any) -> tuple[int, ...] | None:
    if r.kind == "layer_norm" and r.param_axes is not None:
        return r.param_axes
    return None


_MAX_PAIRINGS = 8


def _pairings(c: _Context) -> list[list[tuple[int, int]]]:
    """The pairings to try, best first: layers pair level by level (how many layers
    their input came through), within a level by their parameters' shapes, then in
    the order they run; where several layers of a level could swap places (same
    shapes), the other ways follow (up to 8 in all), and the target's outputs on the
    example decide.  ``ValueError`` if a layer does not run on the example, or if no
    pairing has the same kinds of layers."""
    src, tgt = c.src_records, c.tgt_records
    missing = [src[i].label for i, p in enumerate(c.src_placed) if p is None]
    missing_t = [tgt[i].label for i, p in enumerate(c.tgt_placed) if p is None]
    if missing or missing_t:
        which, names = ("source", missing) if missing else ("target", missing_t)
        raise ValueError(
            f"the {which}'s layer {names[0]} does not run on the example, so where its "
            "channels go cannot be traced: pass an example that reaches every layer"
        )
    s_groups = _grouped(c.src_pos.graph, c.src_placed, src)
    t_groups = _grouped(c.tgt_pos.graph, c.tgt_placed, tgt)
    ran = list(zip(_run_order(c.src_placed), _run_order(c.tgt_placed)))
    found: list[list[tuple[int, int]]] = []
    if [len(g) for g in s_groups] == [len(g) for g in t_groups] and all(
        sorted(k for k, _ in a) == sorted(k for k, _ in b) for a, b in zip(s_groups, t_groups)
    ):
        # per (level, shapes): the source's layers and the target's, in run order
        buckets: list[tuple[list[int], list[int]]] = []
        for a, b in zip(s_groups, t_groups):
            for key in dict.fromkeys(k for k, _ in a):
                buckets.append(([i for k, i in a if k == key], [i for k, i in b if k == key]))
        ways: list[list[tuple[int, int]]] = [[]]
        for s_ids, t_ids in buckets:
            orders = [t_ids]
            if len(t_ids) > 1:
                orders += [list(p) for p in itertools.permutations(t_ids)][1:]
            ways = [w + list(zip(s_ids, o)) for w in ways for o in orders][:_MAX_PAIRINGS]
        at = {s: k for k, (s, _) in enumerate(ran)}
        found = [sorted(w, key=lambda st: at[st[0]]) for w in ways]
    if ran not in found:
        found.insert(1 if found else 0, ran)
    fitting = [p for p in found if all(src[s].kind == tgt[t].kind for s, t in p)]
    if not fitting:
        s, t = next((s, t) for s, t in ran if src[s].kind != tgt[t].kind)
        raise ValueError(
            f"the architectures differ: {src[s].describe()} vs {tgt[t].describe()} "
            "(layers paired in the order they run)"
        )
    return fitting[:_MAX_PAIRINGS]


def _run_order(placed: list[Placed | None]) -> list[int]:
    return [i for _, i in sorted((p.first, p.index) for p in placed if p is not None)]


def _grouped(
    graph: Any, placed: list[Placed | None], records: list[Record]
) -> list[list[tuple[Any, int]]]:
    """The layers level by level, each as (its kind and parameters' shapes, index),
    in run order within a level."""
    level = frames_module.levels(graph, placed)
    groups: dict[int, list[tuple[Any, int]]] = {}
    for i in _run_order(placed):
        r = records[i]
        key = (
            r.kind,
            tuple((k, None if v is None else v.shape) for k, v in sorted(r.params.items())),
        )
        groups.setdefault(level.get(i, 0), []).append((key, i))
    return [groups[k] for k in sorted(groups)]


def _check_kinds(a: list[Record], b: list[Record]) -> None:
    """The same layers, whatever their order (which the traces tell)."""
    if sorted(r.kind for r in a) != sorted(r.kind for r in b):
        raise ValueError(f"the architectures differ ({_first_unpaired(a, b)})")


def _first_unpaired(a: list[Record], b: list[Record]) -> str:
    for i, (s, t) in enumerate(zip(a, b)):
        if s.kind != t.kind:
            return f"pair {i}: {s.describe()} vs {t.describe()}"
    i = min(len(a), len(b))
    extra = a[i] if len(a) > len(b) else b[i]
    return f"pair {i}: {extra.describe()} has no counterpart"


def _example_for(example: Any, layouts: tuple[str, str] | None) -> np.ndarray:
    """The source's example as the target's input (NumPy; an image moved from the
    source's layout to the target's)."""
    a = _to_numpy(example)
    if layouts is not None and a.ndim >= 3 and layouts[0] != layouts[1]:
        a = np.moveaxis(a, 1, -1) if layouts[0] == "channels_first" else np.moveaxis(a, -1, 1)
    return np.ascontiguousarray(a)


def _to_numpy(a: Any) -> np.ndarray:
    from ..backends import to_numpy

    return to_numpy(a, "example")


def _spatial(shape: Sequence[int] | None, layout: str) -> tuple[int, ...]:
    if shape is None or len(shape) < 3:
        return ()
    return tuple(shape[2:]) if layout == "channels_first" else tuple(shape[1:-1])


def _effective(
    pads: Any,
    sizes: tuple[int, ...],
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
) -> tuple | None:
    """Per-axis (low, high) padding for inputs of ``sizes``."""
    if pads is None:
        return None
    kind = pads[0]
    if kind == "explicit":
        return tuple(tuple(p) for p in pads[1])
    if kind == "valid":
        return tuple((0, 0) for _ in sizes)
    out = []
    for n, k, s, d in zip(sizes, kernel, stride, dilation):
        span = (k - 1) * d + 1
        if kind == "same_torch":  # PyTorch's 'same' (stride 1): the extra pad at the end
            total = span - 1
        else:  # TensorFlow's and Flax's SAME
            total = max((-(-n // s) - 1) * s + span - n, 0)
        out.append((total // 2, total - total // 2))
    return tuple(out)


def _check_pads(
    src: Record, tgt: Record, sp: Placed | None, tp: Placed | None, sg: Any, tg: Any
) -> None:
    """Convolutions pad alike for the example's sizes and every other size modulo the
    stride (TensorFlow's 'same' pads one more at the end where PyTorch pads both sides,
    for even sizes and stride 2: a port checked on odd sizes only would be wrong on
    even ones)."""
    if (
        src.kind != "conv"
        or "pads" not in src.settings
        or "pads" not in tgt.settings
        or sp is None
        or tp is None
    ):
        return
    w = src.params.get("weight")
    if w is None or sp.input is None or tp.input is None:
        return
    kernel = w.shape[2:]
    d = len(kernel)
    stride = cast("Sequence[int]", src.settings.get("stride", (1,) * d))
    dilation = cast("Sequence[int]", src.settings.get("dilation", (1,) * d))
    s_sizes = _spatial(sg.values[sp.input].probe_shape, src.layout)
    t_sizes = _spatial(tg.values[tp.input].probe_shape, tgt.layout)
    for j in range(max(stride, default=1)):  # every size modulo the stride, not only this one
        a, b = (
            _effective(r.settings["pads"], tuple(n + j for n in n_sizes), kernel, stride, dilation)
            for r, n_sizes in ((src, s_sizes), (tgt, t_sizes))
        )
        if a is not None and b is not None and a != b:
            at = "for this input" if j == 0 else f"for inputs {j} larger than this one"
            raise ValueError(
                f"the architectures differ at {src.label} -> {tgt.label}: the padding is {a} "
                f"(low, high per axis) in the source and {b} in the target {at} "
                "(TensorFlow's and Flax's 'same' pad one more at the end on even sizes with "
                "stride 2, where PyTorch pads both sides alike)"
            )


def tolerance(reference: np.ndarray, dtypes: Sequence[str]) -> float:
    """What float arithmetic of these dtypes allows two frameworks' outputs to differ:
    relative to the output's scale, 1e-9 in float64, 1e-4 in float32, 2e-2 in float16
    or bfloat16 (the layers' sums run in another order and, for float32, through
    other kernels: far below what a wrong reorder gives, about the signal itself)."""
    scale = float(_finite_magnitudes(reference).max()) if np.size(reference) else 0.0
    return _rtol(dtypes) * scale


def _finite_magnitudes(a: np.ndarray) -> np.ndarray:
    """``|a|``, 0 where ``a`` is not finite (what a scale is read from)."""
    a = np.asarray(a, np.float64)
    return np.where(np.isfinite(a), np.abs(a), 0.0)


def _rtol(dtypes: Sequence[str]) -> float:
    names = {str(d) for d in dtypes}
    if names & {"float16", "bfloat16"}:
        return 2e-2
    return 1e-9 if names <= {"float64", "int64", "int32"} else 1e-4


def _channel_excess(
    y_s: np.ndarray,
    y_t: np.ndarray,
    dtypes: Sequence[str],
    axis: int | None,
    atol: float | None,
) -> tuple[int, float, float] | None:
    """The first output channel (along ``axis``) whose difference exceeds the tolerance
    of its own scale, ``(channel, difference, tolerance)``: outputs whose channels
    have different scales (box coordinates beside probabilities) are held to each
    channel's; None where every channel agrees, there are no channels or the user set
    ``atol``."""
    if atol is not None or axis is None or y_s.ndim < 2 or y_s.shape != y_t.shape:
        return None
    if y_s.size == 0:
        return None
    a = np.moveaxis(np.asarray(y_s), axis, 0).reshape(y_s.shape[axis], -1)
    d = differences(a, np.moveaxis(np.asarray(y_t), axis, 0).reshape(a.shape)).max(axis=1)
    tol = _rtol(dtypes) * _finite_magnitudes(a).max(axis=1)
    over = np.flatnonzero(~(d <= tol))
    return None if over.size == 0 else (int(over[0]), float(d[over[0]]), float(tol[over[0]]))


def _verify(
    report,
    x,
    x_t,
    layouts,
    made,
    atol,
    src_mod,
    tgt_mod,
    source,
    target,
    pairs,
    src_records,
    tgt_records,
    src_placed,
    tgt_placed,
    src_pos,
    tgt_pos,
    frames,
    src_run,
    tgt_run,
) -> None:
    """Run both on the example (and a random input of its shape where the example is
    constant), compare every paired layer's output like with like and the outputs;
    raise where they differ beyond the tolerance."""
    mapper = frames_module.mapper(src_pos, tgt_pos, pairs, frames, [r.kind for r in src_records])
    inputs = [x]
    a = np.asarray(x)
    if (
        a.size == 0
        or (a.dtype.kind in "fc" and (not np.all(np.isfinite(a)) or np.ptp(a) == 0))
        or (a.dtype.kind in "iu" and np.ptp(a) == 0)
    ):
        inputs.append(_random_like(a))
    dtypes = _dtypes([src_records, tgt_records], [src_pos.graph, tgt_pos.graph])
    s_names = [p.output for p in src_placed if p is not None]
    t_names = [p.output for p in tgt_placed if p is not None]
    by_layout = frames_module.output_relation(mapper, src_pos, tgt_pos)
    out_axes = frames_module.output_axes(src_pos, tgt_pos)
    for k, xi in enumerate(inputs):
        xt = x_t if k == 0 else _example_for(xi, layouts)
        s_vals = src_run([xi], [*s_names, *src_pos.graph.outputs[:1]])
        t_vals = tgt_run([xt], [*t_names, *tgt_pos.graph.outputs[:1]])
        y_s = s_vals[src_pos.graph.outputs[0]]
        y_t = t_vals[tgt_pos.graph.outputs[0]]
        if (
            by_layout is not None
            and by_layout.size == y_s.size == y_t.size
            and src_pos.points
            and y_s.shape == _output_shape(src_pos)
        ):
            y_t = y_t.ravel()[by_layout].reshape(y_s.shape)
        elif y_s.ndim >= 3 and layouts[0] != layouts[1]:
            y_t = (
                np.moveaxis(y_t, -1, 1)
                if layouts[0] == "channels_first"
                else np.moveaxis(y_t, 1, -1)
            )
        out_dtypes = [*dtypes, str(y_s.dtype), str(y_t.dtype)]
        tol = atol if atol is not None else tolerance(y_s, out_dtypes)
        on = "`example`" if k == 0 else "a random input of the example's shape"
        out_diff = max_difference(y_s, y_t)
        layer = {}
        for s, t in pairs:
            sp, tp = src_placed[s], tgt_placed[t]
            assert sp is not None and tp is not None
            if sp.output in s_vals and tp.output in t_vals:
                d = frames_module.compare(
                    mapper,
                    src_pos,
                    tgt_pos,
                    s,
                    sp.output,
                    tp.output,
                    s_vals[sp.output],
                    t_vals[tp.output],
                )
                if d is not None:
                    layer[f"{src_records[s].label} -> {tgt_records[t].label}"] = d
        if k == 0:
            report.layer_max_diff = layer
            report.max_diff, report.tolerance = out_diff, tol
            report.example = "an example made from the input shape" if made else "`example`"
        if not out_diff <= tol:
            first = next(((name, d) for name, d in layer.items() if not d <= tol), None)
            where = (
                f"the first layer whose output differs is {first[0]} (by {first[1]:.3g})"
                if first is not None
                else "every paired layer agrees, so the difference is in what lies between them"
            )
            raise ValueError(
                f"the ported target's output differs from the source's by {out_diff:.3g} "
                f"(tolerance {tol:.3g}) on {on}: {where}; the target was left as it was"
            )
        axis = None if out_axes is None else out_axes[0]
        excess = _channel_excess(y_s, y_t, out_dtypes, axis, atol)
        if excess is not None:
            raise ValueError(_channel_message(excess, on))


def _channel_message(excess: tuple[int, float, float], on: str) -> str:
    channel, diff, tol = excess
    return (
        f"the ported target's output channel {channel} differs from the source's by "
        f"{diff:.3g} (tolerance {tol:.3g}, from that channel's own scale) on {on}; the "
        "target was left as it was"
    )


def _check_off_the_example(c: _Context, report: PortReport) -> None:
    """The outputs agree off the example too: on random inputs ten and (not in float16,
    which overflows there) a hundred times its scale, and (only where float32 or 64
    computes) on one of every magnitude up to 1e4 times it (an activation that clips,
    a ``ReLU6`` against a ``relu``, shows; the latter of the whole example's shape
    where the analysis ran on a crop, so what a model does only at that size or batch
    shows; its tolerance is relative to its largest output, which the uniform probes'
    are not) and, for images, on one about twice as large, of the other parity on each spatial
    axis and one image more (a padding, pooling, fixed-size upsampling, arrangement or
    batch dependence that agrees only at the example's size shows).  A probe either
    model does not run on is left out (it cannot give wrong numbers there); outputs of
    other shapes, or that differ beyond the tolerance, are a ``ValueError``."""
    a = np.asarray(c.x)  # (a crop of the example where c.full is the whole)
    whole = a if c.full is None else np.asarray(c.full)
    axes = frames_module.output_axes(c.src_pos, c.tgt_pos)
    if c.full is not None and axes is None:
        raise ValueError("the outputs cannot be compared on `example`")  # (the whole decides)
    if a.dtype.kind != "f" or a.size == 0 or axes is None:
        return  # token ids: no other values to try
    rng = np.random.default_rng(1)
    rms = float(np.sqrt(np.mean(np.square(whole, dtype=np.float64))))
    scale = 10 * (rms if math.isfinite(rms) and rms > 1 else 1.0)
    dtypes = _dtypes([c.src_records, c.tgt_records], [c.src_pos.graph, c.tgt_pos.graph])
    probes = [
        ("a random input ten times the example's scale", rng.standard_normal(a.shape) * scale)
    ]
    if set(dtypes) <= {"float32", "float64", "bfloat16"} and a.dtype in (np.float32, np.float64):
        # (float16 overflows there)
        probes.append((_HUNDREDFOLD, rng.standard_normal(a.shape) * scale * 10))
    if set(dtypes) <= {"float32", "float64"} and a.dtype in (np.float32, np.float64):
        # every magnitude up to 1e4 times the scale: a clip or threshold far out shows
        # (not where a 16-bit float computes: it overflows or rounds past the tolerance
        # there); the tolerance is relative to its largest output, so the tenfold probe
        # above stays for what is bounded
        spread = rng.standard_normal(whole.shape) * scale
        spread *= 10.0 ** rng.uniform(-1, 3, whole.shape)
        probes.append((_EVERY_MAGNITUDE, spread))
    kinds = [r.kind for r in c.src_records]
    if a.ndim >= 3 and frames_module.reads_images(c.src_pos.graph, c.src_placed, kinds):
        spatial = range(2, a.ndim) if c.layouts[0] == "channels_first" else range(1, a.ndim - 1)
        pixels = math.prod(a.shape[k] for k in spatial)
        # about twice the size and of the other parity (every size after a pooling or a
        # stride differs too), or one pixel more where the example is already large
        grown = [n + 1 if pixels > 256 * 256 else 2 * n + 1 - n % 2 for n in a.shape]
        shape = tuple(grown[k] if k in spatial else n for k, n in enumerate(a.shape))
        shape = (shape[0] + 1, *shape[1:])  # and one image more
        what = "one pixel larger" if pixels > 256 * 256 else "about twice as large"
        probe = rng.standard_normal(shape) * scale
        probes.append((f"a random input {what} on each axis", probe))
    if c.full is not None:  # the analysis ran on a crop: the whole example decides
        done = _outputs_agree(c, c.full, "`example`", axes, dtypes, report)
        assert done is not None
        report.max_diff, report.tolerance = done
        report.example = f"`example` (the layers compared on a {_shape_text(a.shape)} crop of it)"
    for what, probe in probes:
        _outputs_agree(c, probe.astype(a.dtype), what, axes, dtypes, report)


_EVERY_MAGNITUDE = "a random input of every magnitude up to 1e4 times the example's"
_HUNDREDFOLD = "a random input a hundred times the example's scale"


def _outputs_agree(
    c: _Context,
    xp: np.ndarray,
    what: str,
    axes: tuple[int | None, int | None],
    dtypes: list[str],
    report: PortReport,
) -> tuple[float, float] | None:
    """(difference, tolerance) of the two models' outputs on ``xp`` (the source's
    layout), ``ValueError`` beyond the tolerance; None where either does not run."""
    try:
        y_s = c.src_mod.output(c.source, xp)
        y_t = c.tgt_mod.output(c.target, _example_for(xp, c.layouts))
    except Exception:
        if what == "`example`":
            raise
        return None  # (a fixed input size, say: it cannot give wrong numbers there)
    rel = frames_module.layout_relation(y_s.shape, y_t.shape, *axes)
    if rel is None:
        raise ValueError(
            f"the ported target's output has shape {y_t.shape} and the source's "
            f"{y_s.shape} on {what}: the models differ off the example; the target was "
            "left as it was"
        )
    y_t = y_t.ravel()[rel].reshape(y_s.shape)
    outputs = [str(y_s.dtype), str(y_t.dtype)]
    if what == _EVERY_MAGNITUDE and not set(outputs) <= {"float32", "float64"}:
        return None  # (computed in 16-bit floats: mixed precision)
    if what == _HUNDREDFOLD and "float16" in outputs:
        return None
    tol = c.atol if c.atol is not None else tolerance(y_s, [*dtypes, *outputs])
    diff = max_difference(y_s, y_t)
    excess = _channel_excess(y_s, y_t, [*dtypes, *outputs], axes[0], c.atol)
    if excess is not None and diff <= tol:
        raise ValueError(_channel_message(excess, what))
    if not diff <= tol:
        raise ValueError(
            f"the ported target's output differs from the source's by {diff:.3g} "
            f"(tolerance {tol:.3g}) on {what}, while on the example it agrees to "
            f"{report.max_diff:.3g}: the models compute differently off the example (a "
            "padding, pooling, activation or arrangement that shows only at other sizes "
            "or values); the target was left as it was"
        )
    return diff, tol


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in shape)


def _dtypes(records: Sequence[list[Record]], graphs: Sequence[Any]) -> list[str]:
    """What the tolerance allows for: the dtypes of the models' parameters and the
    float dtypes their traces compute in (mixed precision: float32 weights, 16-bit
    arithmetic)."""
    held = [
        r.dtype or str(np.asarray(v).dtype)
        for rs in records
        for r in rs
        for v in r.params.values()
        if v is not None
    ]
    floats = {"float16", "bfloat16", "float32", "float64"}
    computed = {v.dtype for g in graphs for v in g.values.values() if v.dtype in floats}
    return [*held, *sorted(computed)]


def _output_shape(pos: Any) -> tuple[int, ...] | None:
    point = next((p for p in pos.points if p.kind == "output" and p.key == 0), None)
    return None if point is None else tuple(point.positions.shape)


def _random_like(a: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(0)
    if a.dtype.kind in "iu":
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 1)
        return rng.integers(lo, max(hi, lo + 1) + 1, size=a.shape).astype(a.dtype)
    return rng.standard_normal(a.shape).astype(a.dtype if a.dtype.kind == "f" else np.float32)
