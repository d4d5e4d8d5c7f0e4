"""Where each element of each tensor comes from, in two models, and the channel
reorders that make the target compute what the source does.

Every tensor of a traced model (:mod:`subpixel.movement`) gets a position array: for
each element, the id of the element it is, counted in its *origin*: a model input,
the output of a parameterised layer, or the output of an op this analysis does not
look into (pooling, concatenation, a sum of two branches...).  Data movement moves
positions exactly as it moves data (each op's own semantics run on the ids);
elementwise ops and per-channel layers (batch norm, PReLU) keep them.  Where a
layer reads its input, where an opaque op reads one, and at the model's outputs,
the two models' positions are compared ("observation points").

What makes them agree is solved for, never guessed: a permutation of a producing
layer's output channels (``out_perm``: what a shuffle of another order needs), a
permutation of a consuming layer's input channels or features (``in_perm``: what an
unshuffle of another order, or a flatten of another layout, needs), a permutation
of a per-channel layer's parameters (``param_perm``).  Where no such permutation
makes every observation point agree, :class:`FramesError` names the place.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..movement import Graph, Node
from ..movement.chains import is_selection

__all__ = ["Frames", "FramesError", "Placed", "place", "positions", "solve"]

# a layer that produces fresh channels and reads its input through its weights
PRODUCERS = ("conv", "conv_transpose", "dense", "embedding")
# a layer that keeps every element where it is and scales it per channel
PER_CHANNEL = ("batch_norm", "prelu", "layer_norm")


class FramesError(ValueError):
    """The data movement between two layers differs between the models in a way no
    reorder of weights can make up for."""


@dataclass
class Placed:
    """A parameterised layer's place in a graph: the nodes that read its parameters,
    the value it reads (``input``; None for a layer that reads none, an embedding's
    ids aside) and the value it gives (``output``)."""

    index: int  # the record's index in its model's list
    kind: str
    nodes: list[Node]
    input: str | None
    output: str
    first: int  # the position of its first node in the graph
    channel_axis: int = 1  # of its input and output (native axes), where it has one
    # the axes its parameters span in its input (native), for per-channel layers
    param_axes: tuple[int, ...] = (1,)


def _constant_params(graph: Graph, data: set[str]) -> dict[str, set[str]]:
    """For each value computed from parameters only: the parameter paths it reads."""
    params: dict[str, set[str]] = {}
    for name, v in graph.values.items():
        if v.param:
            params[name] = {v.param}
    for node in graph.nodes:
        if any(i in data for i in node.inputs if i):
            continue
        read = (
            set().union(*(params.get(i, set()) for i in node.inputs if i)) if node.inputs else set()
        )
        if read:
            for o in node.outputs:
                params[o] = read
    return params


def _grown(region: list[Node], graph: Graph, data: set[str]) -> list[Node]:
    """A layer's nodes, grown until they give one output: a layer that computes in
    parts (one convolution per output phase, say) ends where its parts join."""
    inside = {id(n) for n in region}
    readers = graph.consumers()

    def open_outputs() -> list[str]:
        produced = [n.outputs[0] for n in region if n.outputs]
        return [
            v
            for v in produced
            if any(id(r) not in inside for r in readers.get(v, [])) or v in graph.outputs
        ]

    start = graph.nodes.index(region[0])
    for node in graph.nodes[start:]:
        if len(open_outputs()) <= 1:
            break
        if id(node) in inside:
            continue
        values = {o for n in region for o in n.outputs}
        ins = [i for i in node.inputs if i in data]
        if ins and all(i in values for i in ins):
            region.append(node)
            inside.add(id(node))
    region.sort(key=lambda n: graph.nodes.index(n))
    return region


def data_values(graph: Graph) -> set[str]:
    data = set(graph.inputs)
    for node in graph.nodes:
        if node.kind != "shape" and any(i in data for i in node.inputs if i):
            data.update(o for o in node.outputs if o)
    return data


def place(
    graph: Graph,
    records: Sequence[tuple[str, Sequence[str]]],
    layouts: Sequence[str],
    kinds: Sequence[str],
    param_axes: Sequence[tuple[int, ...] | None] | None = None,
) -> list[Placed | None]:
    """Each record (``(name, parameter paths)``) placed in ``graph`` (None for one
    whose parameters no op of the run reads)."""
    data = data_values(graph)
    params = _constant_params(graph, data)
    owners: dict[str, list[int]] = {}
    for i, (_, paths) in enumerate(records):
        for p in dict.fromkeys(paths):
            owners.setdefault(p, []).append(i)
    nodes_of: dict[int, list[tuple[int, Node]]] = {}
    for k, node in enumerate(graph.nodes):
        if not any(i in data for i in node.inputs if i):
            continue
        read = set().union(*(params.get(i, set()) for i in node.inputs if i))
        # the layer whose parameters the node reads most (tied weights are read by two)
        count: dict[int, int] = {}
        for p in read:
            for i in owners.get(p, []):
                count[i] = count.get(i, 0) + 1
        if count:
            best = max(count.values())
            for i in [i for i, c in count.items() if c == best][:1]:
                nodes_of.setdefault(i, []).append((k, node))
    out: list[Placed | None] = []
    for i, (_name, _) in enumerate(records):
        found = nodes_of.get(i)
        if not found:
            out.append(None)
            continue
        region = _grown([n for _, n in found], graph, data)
        inside = {o for n in region for o in n.outputs}
        ins = [x for n in region for x in n.inputs if x in data and x not in inside]
        last = region[-1].outputs[0]
        layout = layouts[i]
        first_value = graph.values.get(ins[0]) if ins else None
        rank = (
            len(first_value.probe_shape or ())
            if first_value is not None
            else len(graph.values[last].probe_shape or ())
        )
        axis = 1 if layout == "channels_first" or rank < 3 else rank - 1
        if kinds[i] == "dense":
            axis = max(rank - 1, 1)
        axes = param_axes[i] if param_axes is not None and param_axes[i] is not None else (axis,)
        out.append(
            Placed(i, kinds[i], region, ins[0] if ins else None, last, found[0][0], axis, axes)
        )
    return out


@dataclass
class _Origin:
    kind: str  # "input", "layer", "opaque"
    key: int  # input index, record index, opaque count
    shape: tuple[int, ...]
    base: int
    channel_axis: int  # native


@dataclass
class Point:
    """Where positions are compared: ``kind`` "layer" (a producing layer's input: its
    input channels may be permuted), "per_channel" (a per-channel layer's input: its
    parameters may be permuted), "rigid" (an opaque op's input, exactly as is up to
    layout) or "output" (a model output, in the standard layout)."""

    kind: str
    key: int  # record index, opaque count, output index
    value: str
    positions: np.ndarray
    axes: tuple[int, ...] = ()  # native axes a permutation may act on
    slot: int = 0  # which input of an opaque op

    def __post_init__(self) -> None:
        self.positions = np.atleast_1d(self.positions)  # a scalar as one element


@dataclass
class Positions:
    """One model's origins and observation points."""

    graph: Graph
    origins: list[_Origin] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    bases: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    layer_origin: dict[int, int] = field(default_factory=dict)  # record index -> origin
    opaque: list[int] = field(default_factory=list)  # origin index of each opaque output
    kept: dict[str, np.ndarray] = field(default_factory=dict)  # positions of layer outputs

    def origin(self, kind: str, key: int, shape: tuple[int, ...], axis: int) -> np.ndarray:
        base = (
            (self.origins[-1].base + max(math.prod(self.origins[-1].shape), 1))
            if self.origins
            else 0
        )
        self.origins.append(
            _Origin(kind, key, shape or (1,), base, axis)
        )  # (a scalar as one element)
        self.bases = np.array([o.base for o in self.origins], np.int64)
        return base + np.arange(math.prod(shape), dtype=np.int64).reshape(shape)


def _channel_axis(shape: tuple[int, ...], layout: str) -> int:
    return 1 if layout == "channels_first" or len(shape) < 3 else len(shape) - 1


def positions(graph: Graph, placed: Sequence[Placed | None], kinds: Sequence[str]) -> Positions:
    """Propagate positions through ``graph`` (see the module's docstring)."""
    pos = Positions(graph)
    data = data_values(graph)
    P: dict[str, np.ndarray] = {}
    for i, name in enumerate(graph.inputs):
        shape = graph.values[name].probe_shape or ()
        P[name] = pos.origin("input", i, shape, _channel_axis(shape, graph.layout))
    region_of: dict[int, Placed] = {}
    for p in placed:
        if p is not None:
            for n in p.nodes:
                region_of[id(n)] = p
    done: set[int] = set()
    uses: dict[str, int] = {}
    for node in graph.nodes:
        for i in node.inputs:
            if i:
                uses[i] = uses.get(i, 0) + 1
    moving: dict[int, bool] = {}

    def release(node: Node) -> None:
        for i in node.inputs:
            if i:
                uses[i] -= 1
                if uses[i] == 0 and i not in graph.outputs:
                    P.pop(i, None)

    for node in graph.nodes:
        ins = [i for i in node.inputs if i in data and i in P]
        if not any(i in data for i in node.inputs if i):
            release(node)
            continue
        p = region_of.get(id(node))
        if p is not None:
            if p.index not in done and p.input is not None and p.input in P:
                done.add(p.index)
                kind = "per_channel" if kinds[p.index] in PER_CHANNEL else "layer"
                axes = p.param_axes if kind == "per_channel" else (p.channel_axis,)
                pos.points.append(Point(kind, p.index, p.input, P[p.input], axes))
            if p.output in node.outputs:
                shape = graph.values[p.output].probe_shape or ()
                if kinds[p.index] in PER_CHANNEL and p.input in P and P[p.input].shape == shape:
                    P[p.output] = P[p.input]
                else:
                    pos.layer_origin[p.index] = len(pos.origins)
                    P[p.output] = pos.origin("layer", p.index, shape, p.channel_axis)
                pos.kept[p.output] = P[p.output]
            release(node)
            continue
        out = node.outputs[0] if node.outputs else ""
        shape = graph.values[out].probe_shape if out else None
        if node.kind == "move" and node.many is not None and node.step is not None:
            if all(i in P for i in node.data_inputs):  # a split, concatenation, stack
                joint: Any = node.step  # (a step of lists)
                for o, y in zip(node.outputs, joint([P[i] for i in node.data_inputs])):
                    P[o] = np.asarray(y).astype(np.int64)
                release(node)
                continue
        elif (
            node.kind in ("move", "maybe")
            and node.step is not None
            and node.data_input in P
            and shape is not None
        ):
            if node.kind == "maybe" and id(node) not in moving:
                src = graph.values[node.data_input].probe_shape
                moving[id(node)] = src is not None and is_selection(node, src)
            if node.kind == "move" or moving[id(node)]:
                x = P[node.data_input]
                y = node.step(x if node.kind == "move" else x.astype(np.float64))
                P[out] = np.asarray(y).astype(np.int64)
                release(node)
                continue
        if node.kind == "elementwise" and shape is not None and ins:
            arrays = []
            for i in dict.fromkeys(ins):
                try:
                    arrays.append(np.broadcast_to(P[i], shape))
                except ValueError:
                    arrays = []
                    break
            if arrays and all(np.array_equal(a, arrays[0]) for a in arrays[1:]):
                P[out] = np.ascontiguousarray(arrays[0])
                release(node)
                continue
        if node.kind == "shape":
            release(node)
            continue
        # opaque: its inputs must agree as they are; its outputs are new origins
        key = len(pos.opaque)
        for slot, i in enumerate(dict.fromkeys(ins)):
            pos.points.append(Point("rigid", key, i, P[i], slot=slot))
        for o in node.outputs:
            oshape = graph.values[o].probe_shape if o else None
            if o and oshape is not None:
                pos.opaque.append(len(pos.origins))
                P[o] = pos.origin("opaque", key, oshape, _channel_axis(oshape, graph.layout))
        release(node)
    for k, name in enumerate(graph.outputs):
        if name in P:
            pos.points.append(Point("output", k, name, P[name]))
    return pos


@dataclass
class Frames:
    """The permutations that make the target compute what the source does, by the
    source's record index: ``out_perm[i][c]`` is the target's output channel that
    holds the source's channel ``c`` (likewise ``in_perm`` for input channels or
    features, ``param_perm`` for a per-channel layer's parameters: a flat index over
    their axes)."""

    out_perm: dict[int, np.ndarray] = field(default_factory=dict)
    in_perm: dict[int, np.ndarray] = field(default_factory=dict)
    param_perm: dict[int, np.ndarray] = field(default_factory=dict)


def _canonical_perm(ndim: int, axis: int) -> tuple[int, ...]:
    """Native axes -> (batch, channel, rest...) with ``axis`` as the channel axis."""
    if ndim < 2:
        return tuple(range(ndim))
    return (0, axis, *(a for a in range(1, ndim) if a != axis))


class _Mapper:
    """Source ids -> the target ids of the same elements, given the origin pairing
    and the output permutations chosen so far."""

    def __init__(
        self, src: Positions, tgt: Positions, pairs: dict[int, int], producers: set[int]
    ) -> None:
        self.src, self.tgt, self.pairs = src, tgt, pairs  # pairs: source record -> target record
        self.producers = producers
        self.out_perm: dict[int, np.ndarray] = {}
        self.partner: dict[int, int | None] = {}
        for k, o in enumerate(src.origins):
            self.partner[k] = self._partner(o)

    def _partner(self, o: _Origin) -> int | None:
        for k, t in enumerate(self.tgt.origins):
            if o.kind == "layer" and t.kind == "layer" and self.pairs.get(o.key) == t.key:
                return k
            if o.kind == t.kind and o.kind in ("input", "opaque") and o.key == t.key:
                return k
        return None

    def _canon(self, shape: tuple[int, ...], axis: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        perm = _canonical_perm(len(shape), axis)
        return perm, tuple(shape[a] for a in perm)

    def map(self, ids: np.ndarray) -> np.ndarray:
        """``ids`` (source) as target ids; -1 where no counterpart exists."""
        flat = ids.ravel()
        which = np.searchsorted(self.src.bases, flat, side="right") - 1
        out = np.full(flat.shape, -1, np.int64)
        for k in np.unique(which):
            sel = which == k
            o = self.src.origins[k]
            t_index = self.partner[int(k)]
            if t_index is None:
                continue
            t = self.tgt.origins[t_index]
            sp, s_canon = self._canon(o.shape, o.channel_axis)
            tp, t_canon = self._canon(t.shape, t.channel_axis)
            squeeze_s = [a for a, n in enumerate(s_canon) if n != 1]
            squeeze_t = [a for a, n in enumerate(t_canon) if n != 1]
            if [s_canon[a] for a in squeeze_s] != [t_canon[a] for a in squeeze_t]:
                continue  # not the same tensor in another layout
            coords = np.unravel_index(flat[sel] - o.base, o.shape)
            canon = [coords[a] for a in sp]
            kept = [canon[a] for a in squeeze_s]
            if o.kind == "layer" and o.key in self.out_perm and 1 in squeeze_s:
                c = squeeze_s.index(1)
                kept[c] = self.out_perm[o.key][kept[c]]
            t_coords: list[np.ndarray | int] = [0] * len(t_canon)
            for a, v in zip(squeeze_t, kept):
                t_coords[a] = v
            native = [t_coords[tp.index(a)] for a in range(len(t.shape))]
            out[sel] = t.base + np.ravel_multi_index(tuple(np.broadcast_arrays(*native)), t.shape)
        return out.reshape(ids.shape)


def _relation(mapped: np.ndarray, tgt: np.ndarray) -> np.ndarray | None:
    """For each source position (flat), the flat target position holding the element
    ``mapped`` says it is; None where one is missing."""
    order = np.argsort(tgt.ravel(), kind="stable")
    sorted_ids = tgt.ravel()[order]
    flat = mapped.ravel()
    at = np.searchsorted(sorted_ids, flat)
    at = np.clip(at, 0, len(sorted_ids) - 1)
    if flat.size and (np.any(flat < 0) or not np.array_equal(sorted_ids[at], flat)):
        return None
    return order[at]


def _axis_perm(
    src_shape: tuple[int, ...], tgt_shape: tuple[int, ...], rel: np.ndarray
) -> tuple[int, ...] | None:
    """The axis permutation (size-1 axes aside) under which ``rel`` (source flat ->
    target flat) is a transpose, if it is one."""
    s_axes = [a for a, n in enumerate(src_shape) if n != 1]
    t_axes = [a for a, n in enumerate(tgt_shape) if n != 1]
    if sorted(src_shape[a] for a in s_axes) != sorted(tgt_shape[a] for a in t_axes):
        return None
    s_coords = np.unravel_index(np.arange(rel.size), src_shape)
    t_coords = np.unravel_index(rel, tgt_shape)
    match: list[int] = []
    for ta in t_axes:
        found = next(
            (
                sa
                for sa in s_axes
                if sa not in match
                and src_shape[sa] == tgt_shape[ta]
                and np.array_equal(s_coords[sa], t_coords[ta])
            ),
            None,
        )
        if found is None:
            return None
        match.append(found)
    return tuple(match)


def _along(
    src_shape: tuple[int, ...],
    tgt_shape: tuple[int, ...],
    rel: np.ndarray,
    axes: tuple[int, ...],
    t_axes: tuple[int, ...],
) -> np.ndarray | None:
    """Where ``rel`` keeps every coordinate but those on ``axes`` (source) and
    ``t_axes`` (target), in their order, and maps those by one bijection: that
    bijection, as the target's flat index over ``t_axes`` of each source flat index
    over ``axes`` (each list of axes in the order the parameters are stored)."""
    s_coords = np.unravel_index(np.arange(rel.size), src_shape)
    t_coords = np.unravel_index(rel, tgt_shape)
    s_rest = [a for a in range(len(src_shape)) if a not in axes and src_shape[a] != 1]
    t_rest = [a for a in range(len(tgt_shape)) if a not in t_axes and tgt_shape[a] != 1]
    if [src_shape[a] for a in s_rest] != [tgt_shape[a] for a in t_rest]:
        return None
    if not all(np.array_equal(s_coords[sa], t_coords[ta]) for sa, ta in zip(s_rest, t_rest)):
        return None
    s_sizes = tuple(src_shape[a] for a in axes)
    t_sizes = tuple(tgt_shape[a] for a in t_axes)
    if math.prod(s_sizes) != math.prod(t_sizes):
        return None
    s_key = np.ravel_multi_index(tuple(s_coords[a] for a in axes), s_sizes)
    t_key = np.ravel_multi_index(tuple(t_coords[a] for a in t_axes), t_sizes)
    n = math.prod(s_sizes)
    table = np.full(n, -1, np.int64)
    table[s_key] = t_key
    if np.any(table < 0) or not np.array_equal(table[s_key], t_key) or len(np.unique(table)) != n:
        return None
    return table


def _derive_out_perm(mapper: _Mapper, point: Point, t_point: Point) -> dict[int, np.ndarray] | None:
    """Output permutations of the producing layers whose elements reach ``point``
    that make it agree with the value's positions corresponding by layout: each
    source element's counterpart must sit where the target has it."""
    src_ids, tgt_ids = point.positions, t_point.positions
    rel = _relation_by_layout(src_ids.shape, tgt_ids.shape, mapper, point, t_point)
    if rel is None:
        return None
    want = tgt_ids.ravel()[rel]  # the target id sitting where the source element is
    found: dict[int, np.ndarray] = {}
    which = np.searchsorted(mapper.src.bases, src_ids.ravel(), side="right") - 1
    for k in np.unique(which):
        o = mapper.src.origins[int(k)]
        if o.kind != "layer" or o.key not in mapper.producers:
            continue
        t_index = mapper.partner[int(k)]
        if t_index is None:
            return None
        t = mapper.tgt.origins[t_index]
        sel = which == k
        s_local = src_ids.ravel()[sel] - o.base
        t_local = want[sel] - t.base
        if np.any(t_local < 0) or np.any(t_local >= math.prod(t.shape)):
            return None
        s_coords = np.unravel_index(s_local, o.shape)
        t_coords = np.unravel_index(t_local, t.shape)
        sp = _canonical_perm(len(o.shape), o.channel_axis)
        tp = _canonical_perm(len(t.shape), t.channel_axis)
        s_kept = [i for i, a in enumerate(sp) if o.shape[a] != 1 or i == 1]
        t_kept = [i for i, a in enumerate(tp) if t.shape[a] != 1 or i == 1]
        if len(s_kept) != len(t_kept):
            return None
        perm = np.full(o.shape[o.channel_axis], -1, np.int64)
        for si, ti in zip(s_kept, t_kept):
            s_c, t_c = s_coords[sp[si]], t_coords[tp[ti]]
            if si == 1:
                perm[s_c] = t_c
                if np.any(perm[s_c] != t_c):  # one source channel, two target ones
                    return None
            elif not np.array_equal(s_c, t_c):
                return None
        if np.any(perm < 0):
            continue  # not every channel reaches this point: another point decides
        if len(np.unique(perm)) != len(perm):
            return None
        found[o.key] = perm
    return found


def _relation_by_layout(
    s_shape: tuple[int, ...],
    t_shape: tuple[int, ...],
    mapper: _Mapper,
    point: Point,
    t_point: Point,
) -> np.ndarray | None:
    """Source flat position -> target flat position of the same value, by the
    layouts: the channel axis (the graphs' own layout) moved where they differ, size-1
    axes dropped."""
    if point.kind in ("layer", "per_channel") and point.axes and t_point.axes:
        s_axis, t_axis = point.axes[0], t_point.axes[0]
    else:
        s_axis = _channel_axis(s_shape, mapper.src.graph.layout)
        t_axis = _channel_axis(t_shape, mapper.tgt.graph.layout)
    sp, tp = _canonical_perm(len(s_shape), s_axis), _canonical_perm(len(t_shape), t_axis)
    s_canon, t_canon = [s_shape[a] for a in sp], [t_shape[a] for a in tp]
    s_keep = [a for a, n in enumerate(s_canon) if n != 1]
    t_keep = [a for a, n in enumerate(t_canon) if n != 1]
    if [s_canon[a] for a in s_keep] != [t_canon[a] for a in t_keep]:
        return None
    coords = np.unravel_index(np.arange(math.prod(s_shape)), s_shape)
    canon = [coords[a] for a in sp]
    t_coords: list[np.ndarray | int] = [0] * len(t_canon)
    for sa, ta in zip(s_keep, t_keep):
        t_coords[ta] = canon[sa]
    native = [t_coords[tp.index(a)] for a in range(len(t_shape))]
    flat = np.ravel_multi_index(tuple(np.broadcast_arrays(*native)), t_shape)
    return np.broadcast_to(flat, (math.prod(s_shape),)).ravel()


def solve(
    src: Positions,
    tgt: Positions,
    pairs: Sequence[tuple[int, int]],
    kinds: Sequence[str],
    names: Sequence[str],
    t_placed: Sequence[Placed | None],
) -> Frames:
    """The permutations of :class:`Frames` (``pairs``: source record index -> target
    record index); :class:`FramesError` where none makes every point agree."""
    pair = dict(pairs)
    mapper = _Mapper(src, tgt, pair, {i for i, k in enumerate(kinds) if k in PRODUCERS})
    t_points = {(p.kind, p.key, p.slot): p for p in tgt.points}
    t_axes_of = {p.index: p for p in t_placed if p is not None}
    frames = Frames()
    for _round in range(len(kinds) + 2):
        changed = False
        for point in src.points:
            key = (
                point.kind,
                pair.get(point.key, -1) if point.kind in ("layer", "per_channel") else point.key,
                point.slot,
            )
            t_point = t_points.get(key)
            if t_point is None:
                raise FramesError(f"{_where(point, names)} has no counterpart in the target")
            mapped = mapper.map(point.positions)
            rel = _relation(mapped, t_point.positions)
            ok = rel is not None and _fits(point, t_point, rel, mapper, t_axes_of, frames, pair)
            if ok:
                continue
            derived = _derive_out_perm(mapper, point, t_point)
            new = {
                k: v
                for k, v in (derived or {}).items()
                if not np.array_equal(mapper.out_perm.get(k, np.arange(len(v))), v)
            }
            if not new:
                raise FramesError(
                    f"the data reaching {_where(point, names)} is arranged differently in the "
                    "two models, and no reorder of the channels of the layers before it makes "
                    "them agree"
                )
            for k, v in new.items():
                if k in frames.out_perm and not np.array_equal(frames.out_perm[k], v):
                    raise FramesError(
                        f"{names[k]} would need two different orders of its output channels "
                        "for the layers its output reaches"
                    )
                mapper.out_perm[k] = v
                frames.out_perm[k] = v
            changed = True
            break
        if not changed:
            break
    else:
        raise FramesError("the channel orders of the two models could not be matched")
    # final pass: the input and parameter permutations under the chosen output ones
    for point in src.points:
        if point.kind not in ("layer", "per_channel"):
            continue
        t_point = t_points[(point.kind, pair[point.key], 0)]
        rel = _relation(mapper.map(point.positions), t_point.positions)
        assert rel is not None
        _fits(point, t_point, rel, mapper, t_axes_of, frames, pair, record=True)
    return frames


def _fits(
    point: Point,
    t_point: Point,
    rel: np.ndarray,
    mapper: _Mapper,
    t_axes_of: dict[int, Placed],
    frames: Frames,
    pair: dict[int, int],
    record: bool = False,
) -> bool:
    s_shape, t_shape = point.positions.shape, t_point.positions.shape
    if point.kind == "output":
        std = _relation_by_layout(s_shape, t_shape, mapper, point, t_point)
        return std is not None and np.array_equal(std, rel)
    if point.kind == "rigid":
        return _axis_perm(s_shape, t_shape, rel) is not None
    table = _along(s_shape, t_shape, rel, point.axes, t_point.axes)
    if table is None:
        return False
    if record and not np.array_equal(table, np.arange(len(table))):
        if point.kind == "layer":
            frames.in_perm[point.key] = table
        else:
            frames.param_perm[point.key] = table
    return True


def _where(point: Point, names: Sequence[str]) -> str:
    if point.kind in ("layer", "per_channel"):
        return names[point.key]
    if point.kind == "output":
        return f"the model's output {point.key}"
    return f"an op between the layers (the {point.key + 1}th the analysis does not look into)"


def mapper(
    src: Positions,
    tgt: Positions,
    pairs: Sequence[tuple[int, int]],
    frames: Frames,
    kinds: Sequence[str],
) -> _Mapper:
    """Source ids -> target ids under the solved ``frames``."""
    m = _Mapper(src, tgt, dict(pairs), {i for i, k in enumerate(kinds) if k in PRODUCERS})
    m.out_perm = dict(frames.out_perm)
    return m


def compare(
    m: _Mapper,
    src: Positions,
    tgt: Positions,
    index: int,
    s_value: str,
    t_value: str,
    v_s: np.ndarray,
    v_t: np.ndarray,
) -> float | None:
    """The max difference of a layer's output in the two models, element by element
    as the positions pair them (same point of each model, same channel order); None
    where the positions do not pair them."""
    ps, pt = src.kept.get(s_value), tgt.kept.get(t_value)
    if ps is None or pt is None or ps.shape != v_s.shape or pt.shape != v_t.shape:
        return None
    rel = _relation(m.map(ps), pt)
    if rel is None:
        return None
    a = np.asarray(v_s, np.float64).ravel()
    b = np.asarray(v_t, np.float64).ravel()[rel]
    with np.errstate(invalid="ignore"):
        d = np.where((a == b) | (np.isnan(a) & np.isnan(b)), 0.0, np.abs(a - b))
    return float(d.max()) if d.size else 0.0
