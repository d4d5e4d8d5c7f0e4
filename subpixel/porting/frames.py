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
    # where the trace reads its kernel through a gather of its channels (subpixel's
    # Keras layer folds a CRD order into a DCR op so): the layer's channel each of the
    # op's output channels holds
    out_map: np.ndarray | None = None
    # the channel axis of its output where it differs from its input's (features last:
    # an embedding of ids, a dense layer whose region reshapes its output back)
    out_axis: int | None = None


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


def _kernel_channels(
    graph: Graph, region: list[Node], path: str, out_axis: int
) -> np.ndarray | None:
    """Where a layer's kernel (the parameter at ``path``, its output channels on
    ``out_axis``) reaches its op through data movement (a gather of its channels),
    the kernel channel each of the op's output channels holds: the movement probed on
    an index array.  None where the kernel reaches the op as it is, or otherwise."""
    value = next((v for v in graph.values.values() if v.param == path), None)
    if value is None or value.probe_shape is None:
        return None
    readers = graph.consumers()
    inside = {id(n) for n in region}
    chain: list[Node] = []
    current = value.name
    while True:
        users = readers.get(current, [])
        if any(id(u) in inside for u in users):
            break
        moving = [
            u
            for u in users
            if u.kind == "move"
            and u.step is not None
            and u.many is None
            and u.data_input == current
        ]
        if len(moving) != 1:
            return None
        chain.append(moving[0])
        current = moving[0].outputs[0]
    if not chain:
        return None
    shape = value.probe_shape
    index: np.ndarray = np.arange(math.prod(shape), dtype=np.int64).reshape(shape)
    try:
        for node in chain:
            assert node.step is not None
            index = np.asarray(node.step(index))
    except Exception:
        return None
    if index.shape != tuple(shape):
        return None
    axis = out_axis % len(shape)
    channel = np.unravel_index(index, shape)[axis]
    per = np.moveaxis(channel, axis, 0).reshape(shape[axis], -1)
    if not np.all(per == per[:, :1]):
        return None
    out = per[:, 0]
    return None if np.array_equal(out, np.arange(len(out))) else out


def _with_padding(region: list[Node], graph: Graph, data: set[str]) -> list[Node]:
    """A layer whose input is padded by an op of its own (subpixel's Keras layer pads
    explicitly, a convolution with reflect padding in PyTorch) reads the unpadded data:
    the padding is part of it (its mode and sizes are settings, compared apart)."""
    producers = graph.producers()
    readers = graph.consumers()
    first = region[0]
    for value in [i for i in first.inputs if i in data]:
        pad = producers.get(value)
        if (
            pad is not None
            and "pad" in base_op(pad.op).lower()
            and pad.kind == "compute"
            and all(r is first for r in readers.get(value, []))
        ):
            return [pad, *region]
    return region


def base_op(op: str) -> str:
    """``aten.constant_pad_nd.default`` -> ``constant_pad_nd``; ``Pad`` -> ``Pad``."""
    parts = op.split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "aten" else parts[0]


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
    entry = set(_external(region, data))
    for node in graph.nodes[start:]:
        if len(open_outputs()) <= 1:
            break
        if id(node) in inside:
            continue
        values = {o for n in region for o in n.outputs} | (entry if len(entry) == 1 else set())
        ins = [i for i in node.inputs if i in data]
        if ins and all(i in values for i in ins):
            region.append(node)
            inside.add(id(node))
    region.sort(key=lambda n: graph.nodes.index(n))
    return region


def _external(region: list[Node], data: set[str]) -> list[str]:
    """The data values a region reads that it does not compute."""
    inside = {o for n in region for o in n.outputs}
    return list(dict.fromkeys(x for n in region for x in n.inputs if x in data and x not in inside))


def _entered(region: list[Node], graph: Graph, data: set[str], others: set[int]) -> list[Node]:
    """A layer whose parameters are read after statistics of its input (a layer norm
    written as ops: its mean and variance first) reads that one input: the ops
    computing the statistics, read by the layer only, are part of it.  Unchanged
    where they do not lead back to one value."""
    if len(_external(region, data)) <= 1:
        return region
    producers, readers = graph.producers(), graph.consumers()
    order = {id(n): k for k, n in enumerate(graph.nodes)}
    grown = list(region)
    for _ in range(64):
        ext = _external(grown, data)
        if len(ext) == 1:
            return sorted(grown, key=lambda n: order[id(n)])
        last = max(ext, key=lambda v: order.get(id(producers[v]), -1) if v in producers else -1)
        node = producers.get(last)
        inside = {id(n) for n in grown}
        if (
            node is None
            or id(node) in others
            or node.kind == "shape"
            or any(id(r) not in inside for o in node.outputs for r in readers.get(o, []))
        ):
            return region
        grown.append(node)
    return region


def data_values(graph: Graph) -> set[str]:
    data = set(graph.inputs)
    for node in graph.nodes:
        if node.kind != "shape" and any(i in data for i in node.inputs if i):
            data.update(o for o in node.outputs if o)
    return data


def levels(graph: Graph, placed: Sequence[Placed | None]) -> dict[int, int]:
    """For each placed layer, how many layers its input has come through at most (0:
    it reads the model's input directly): where two models run independent layers
    in another order, this still matches them level by level."""
    out_of = {p.output: p for p in placed if p is not None}
    level: dict[str, int] = {}
    found: dict[int, int] = {}
    for node in graph.nodes:
        here = max((level.get(i, 0) for i in node.inputs if i), default=0)
        for o in node.outputs:
            p = out_of.get(o)
            if p is not None and p.index not in found:
                at = level.get(p.input, 0) if p.input is not None else here
                found[p.index] = at
                level[o] = at + 1
            else:
                level[o] = max(level.get(o, 0), here)
    return found


def place(
    graph: Graph,
    records: Sequence[tuple[str, Sequence[str]]],
    layouts: Sequence[str],
    kinds: Sequence[str],
    param_axes: Sequence[tuple[int, ...] | None] | None = None,
    kernels: Sequence[tuple[str, int] | None] | None = None,
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
    order = {id(n): k for k, n in enumerate(graph.nodes)}
    for i, (_name, _) in enumerate(records):
        found = nodes_of.get(i)
        if not found:
            out.append(None)
            continue
        region = _grown([n for _, n in found], graph, data)
        others = {id(n) for j, f in nodes_of.items() if j != i for _, n in f}
        region = _grown(_entered(region, graph, data, others), graph, data)
        region = _with_padding(region, graph, data)
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
        declared = param_axes[i] if param_axes is not None else None
        axes = declared if declared is not None else (axis,)
        first = min(found[0][0], *(order[id(n)] for n in region))
        placed = Placed(i, kinds[i], region, ins[0] if ins else None, last, first, axis, axes)
        out_rank = len(graph.values[last].probe_shape or ())
        if kinds[i] in ("dense", "embedding") or (layout != "channels_first" and out_rank >= 3):
            placed.out_axis = max(out_rank - 1, 1) if out_rank >= 2 else None
        elif out_rank >= 2:
            placed.out_axis = 1
        if kernels is not None and kernels[i] is not None:
            placed.out_map = _kernel_channels(graph, region, *kernels[i])  # type: ignore[misc]
        out.append(placed)
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
    parameters may be permuted), "ids" (an embedding's token ids: in the same order
    in both models), "rigid" (an opaque op's input, exactly as is up to
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


def _live_nodes(graph: Graph) -> set[int]:
    """The nodes whose outputs reach the graph's outputs."""
    producers = graph.producers()
    live: set[int] = set()
    stack = list(graph.outputs)
    seen: set[str] = set()
    while stack:
        v = stack.pop()
        if v in seen or v not in producers:
            continue
        seen.add(v)
        node = producers[v]
        live.add(id(node))
        stack.extend(i for i in node.inputs if i)
    return live


def reads_images(graph: Graph, placed: Sequence[Placed | None], kinds: Sequence[str]) -> bool:
    """Whether the model's input is an image (its channel axis where the framework's
    layout says) rather than features or a sequence of them (last in every
    framework): the layers that read it, through moves only (a flatten), tell."""
    near = set(graph.inputs)
    for node in graph.nodes:
        if node.kind == "move" and node.many is None and node.data_input in near:
            near.update(node.outputs)
    readers = [p for p in placed if p is not None and p.input in near]
    return not readers or any(kinds[p.index] not in ("dense", "embedding") for p in readers)


def positions(graph: Graph, placed: Sequence[Placed | None], kinds: Sequence[str]) -> Positions:
    """Propagate positions through ``graph`` (see the module's docstring)."""
    pos = Positions(graph)
    data = data_values(graph)
    P: dict[str, np.ndarray] = {}
    images = reads_images(graph, placed, kinds)
    for k, name in enumerate(graph.inputs):
        in_shape = graph.values[name].probe_shape or ()
        axis = _channel_axis(in_shape, graph.layout) if images else max(len(in_shape) - 1, 0)
        P[name] = pos.origin("input", k, in_shape, axis)
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

    live = _live_nodes(graph)
    entering: dict[int, np.ndarray] = {}  # the positions each layer read
    for node in graph.nodes:
        if id(node) not in live:  # (a value only tested by control flow: x.mean() > 100)
            release(node)
            continue
        ins = [i for i in node.inputs if i in data and i in P]
        if not any(i in data for i in node.inputs if i):
            release(node)
            continue
        p = region_of.get(id(node))
        if p is not None:
            if p.index not in done and p.input is not None and p.input in P:
                done.add(p.index)
                kind = "per_channel" if kinds[p.index] in PER_CHANNEL else "layer"
                if kinds[p.index] == "embedding":
                    kind = "ids"  # token ids: no channels, the same order in both
                axes = p.param_axes if kind == "per_channel" else (p.channel_axis,)
                pos.points.append(Point(kind, p.index, p.input, P[p.input], axes))
                entering[p.index] = P[p.input]  # (a layer of several ops reads it first)
            if p.output in node.outputs:
                shape = graph.values[p.output].probe_shape or ()
                seen = entering.get(p.index)
                if kinds[p.index] in PER_CHANNEL and seen is not None and seen.shape == shape:
                    P[p.output] = seen
                else:
                    pos.layer_origin[p.index] = len(pos.origins)
                    axis = p.out_axis if p.out_axis is not None else p.channel_axis
                    P[p.output] = pos.origin("layer", p.index, shape, axis)
                    if p.out_map is not None and len(shape) > axis:
                        # its op's channel j holds the layer's channel out_map[j]
                        P[p.output] = np.take(P[p.output], p.out_map, axis=axis)
                pos.kept[p.output] = P[p.output]
            release(node)
            continue
        out = node.outputs[0] if node.outputs else ""
        out_shape = graph.values[out].probe_shape if out else None
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
            and out_shape is not None
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
        if node.kind == "elementwise" and out_shape is not None and ins:
            arrays = []
            for i in dict.fromkeys(ins):
                try:
                    arrays.append(np.broadcast_to(P[i], out_shape))
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


def _split_axes(shape: tuple[int, ...], axis: int | None) -> tuple[int | None, tuple[int, ...]]:
    """(the channel axis, the other axes) of a tensor of ``shape`` (no channel axis
    below two dimensions)."""
    if len(shape) < 2 or axis is None:
        return None, tuple(range(len(shape)))
    axis %= len(shape)
    return axis, tuple(a for a in range(len(shape)) if a != axis)


def _to_cr(
    flat: np.ndarray, shape: tuple[int, ...], axis: int | None
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Flat positions as (channel, rest, channels, rest size): an element is its channel
    and its index over the other axes in their order (batch, then rows, columns, ...
    or steps), so a channels-first tensor, its channels-last copy and a flattened
    (N*L, C) view of either hold the same elements at the same (channel, rest)."""
    c_axis, _ = _split_axes(shape, axis)
    if c_axis is None:
        return np.zeros_like(flat), flat, 1, math.prod(shape)
    # flat = (outer * C + c) * inner + i, and the other axes in order: r = outer * inner + i
    n_c, inner = shape[c_axis], math.prod(shape[c_axis + 1 :])
    outer, rem = np.divmod(flat, n_c * inner)
    c, i = np.divmod(rem, inner)
    return c, outer * inner + i, n_c, math.prod(shape) // max(n_c, 1)


def _from_cr(c: np.ndarray, r: np.ndarray, shape: tuple[int, ...], axis: int | None) -> np.ndarray:
    """The inverse of :func:`_to_cr`: flat positions in ``shape``."""
    c_axis, _ = _split_axes(shape, axis)
    if not shape:
        return np.zeros_like(r)
    if c_axis is None:
        return r
    n_c, inner = shape[c_axis], math.prod(shape[c_axis + 1 :])
    outer, i = np.divmod(r, inner)
    return (outer * n_c + c) * inner + i


def _runs(bases: np.ndarray, flat: np.ndarray) -> list[tuple[int, np.ndarray | slice]]:
    """The origins ``flat`` ids belong to, each with the selection of its ids (a whole
    slice where all belong to one origin, the usual case, found without a search)."""
    if flat.size == 0:
        return []
    lo, hi = int(flat.min()), int(flat.max())
    k = int(np.searchsorted(bases, lo, side="right")) - 1
    if k == int(np.searchsorted(bases, hi, side="right")) - 1:
        return [(k, slice(None))]
    which = np.searchsorted(bases, flat, side="right") - 1
    return [(int(j), which == j) for j in np.unique(which)]


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

    def map(self, ids: np.ndarray) -> np.ndarray:
        """``ids`` (source) as target ids; -1 where no counterpart exists."""
        flat = ids.ravel()
        out = np.full(flat.shape, -1, np.int64)
        for k, sel in _runs(self.src.bases, flat):
            o = self.src.origins[k]
            t_index = self.partner[k]
            if t_index is None:
                continue
            t = self.tgt.origins[t_index]
            c, r, n_c, n_r = _to_cr(flat[sel] - o.base, o.shape, o.channel_axis)
            if (n_c, n_r) != _sizes(t.shape, t.channel_axis):
                continue  # not the same tensor in another layout
            if o.kind == "layer" and o.key in self.out_perm and len(o.shape) >= 2:
                c = self.out_perm[o.key][c]
            out[sel] = t.base + _from_cr(c, r, t.shape, t.channel_axis)
        return out.reshape(ids.shape)


def _sizes(shape: tuple[int, ...], axis: int | None) -> tuple[int, int]:
    c_axis, _ = _split_axes(shape, axis)
    n_c = shape[c_axis] if c_axis is not None else 1
    return n_c, math.prod(shape) // max(n_c, 1)


def _relation(mapped: np.ndarray, tgt: np.ndarray) -> np.ndarray | None:
    """For each source position (flat), the flat target position holding the element
    ``mapped`` says it is; None where one is missing.  An element held several times
    (copies) pairs its copies in the order they lie in each."""
    t_flat, flat = tgt.ravel(), mapped.ravel()
    if t_flat.size and flat.size:
        lo, hi = int(t_flat.min()), int(t_flat.max())
        if hi - lo < 4 * t_flat.size:  # ids in a compact range: an inverse table, O(n)
            if int(flat.min()) < max(lo, 0) or int(flat.max()) > hi:
                return None
            where = np.full(hi - lo + 1, -1, np.int64)
            where[t_flat - lo] = np.arange(t_flat.size)
            if np.count_nonzero(where >= 0) == t_flat.size:  # (else an id held twice)
                at = where[flat - lo]
                return None if np.any(at < 0) else at
    order = np.argsort(t_flat, kind="stable")
    sorted_ids = t_flat[order]
    if flat.size == t_flat.size:  # copies (nearest upsampling, a tile): the k-th to the k-th
        s_order = np.argsort(flat, kind="stable")
        if flat.size and (flat[s_order[0]] < 0 or not np.array_equal(flat[s_order], sorted_ids)):
            return None
        rel = np.empty_like(order)
        rel[s_order] = order
        return rel
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
    axes = tuple(a % len(src_shape) for a in axes)
    t_axes = tuple(a % len(tgt_shape) for a in t_axes)
    s_rest = [a for a in range(len(src_shape)) if a not in axes and src_shape[a] != 1]
    t_rest = [a for a in range(len(tgt_shape)) if a not in t_axes and tgt_shape[a] != 1]
    if [src_shape[a] for a in s_rest] != [tgt_shape[a] for a in t_rest]:
        return None
    s_sizes = tuple(src_shape[a] for a in axes)
    t_sizes = tuple(tgt_shape[a] for a in t_axes)
    if math.prod(s_sizes) != math.prod(t_sizes):
        return None
    if len(axes) == len(t_axes) == 1:  # one axis each (channels): by arithmetic
        s_key, s_r, *_ = _to_cr(np.arange(rel.size), src_shape, axes[0])
        t_key, t_r, *_ = _to_cr(rel, tgt_shape, t_axes[0])
        if not np.array_equal(s_r, t_r):  # (the other axes, size-1 ones aside, in order)
            return None
    else:
        s_coords = np.unravel_index(np.arange(rel.size), src_shape)
        t_coords = np.unravel_index(rel, tgt_shape)
        if not all(np.array_equal(s_coords[sa], t_coords[ta]) for sa, ta in zip(s_rest, t_rest)):
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
    rel = _relation_by_layout(mapper, point, t_point)
    if rel is None:
        return None
    want = tgt_ids.ravel()[rel]  # the target id sitting where the source element is
    found: dict[int, np.ndarray] = {}
    for k, sel in _runs(mapper.src.bases, src_ids.ravel()):
        o = mapper.src.origins[k]
        if o.kind != "layer" or o.key not in mapper.producers:
            continue
        t_index = mapper.partner[k]
        if t_index is None:
            return None
        t = mapper.tgt.origins[t_index]
        s_local = src_ids.ravel()[sel] - o.base
        t_local = want[sel] - t.base
        if np.any(t_local < 0) or np.any(t_local >= math.prod(t.shape)):
            return None
        s_c, s_r, n_c, n_r = _to_cr(s_local, o.shape, o.channel_axis)
        t_c, t_r, *t_sizes = _to_cr(t_local, t.shape, t.channel_axis)
        if (n_c, n_r) != tuple(t_sizes) or not np.array_equal(s_r, t_r):
            return None
        perm = np.full(n_c, -1, np.int64)
        perm[s_c] = t_c
        if np.any(perm[s_c] != t_c):  # one source channel, two target ones
            return None
        if np.any(perm < 0):
            continue  # not every channel reaches this point: another point decides
        if len(np.unique(perm)) != len(perm):
            return None
        found[o.key] = perm
    return found


def _relation_by_layout(mapper: _Mapper, point: Point, t_point: Point) -> np.ndarray | None:
    """Source flat position -> target flat position of the same value, by the
    layouts: the channel axis (the graphs' own layout) moved where they differ, size-1
    axes dropped."""
    s_axis: int | None
    t_axis: int | None
    if point.kind in ("layer", "per_channel") and point.axes and t_point.axes:
        s_axis, t_axis = point.axes[0], t_point.axes[0]
    else:
        s_axis, t_axis = _value_axes(mapper.src, mapper.tgt, point, t_point)
    return layout_relation(point.positions.shape, t_point.positions.shape, s_axis, t_axis)


def _value_axes(
    src: Positions, tgt: Positions, point: Point, t_point: Point
) -> tuple[int | None, int | None]:
    """The channel axes of a value in each model: where the channels of what reaches
    it lie, else the graphs' layouts."""
    s_axis = _observed_axis(point.positions, src)
    t_axis = _observed_axis(t_point.positions, tgt)
    if s_axis is None or t_axis is None:
        return (
            _channel_axis(point.positions.shape, src.graph.layout),
            _channel_axis(t_point.positions.shape, tgt.graph.layout),
        )
    return s_axis, t_axis


def layout_relation(
    s_shape: tuple[int, ...], t_shape: tuple[int, ...], s_axis: int | None, t_axis: int | None
) -> np.ndarray | None:
    """Source flat position -> target flat position of the same element, the channel
    axis ``s_axis`` of the source's being ``t_axis`` of the target's (the other axes
    in their order, size-1 ones aside); None where the shapes do not pair so."""
    c, r, n_c, n_r = _to_cr(np.arange(math.prod(s_shape)), s_shape, s_axis)
    if (n_c, n_r) != _sizes(t_shape, t_axis):
        return None
    return _from_cr(c, r, t_shape, t_axis)


def output_axes(src: Positions, tgt: Positions) -> tuple[int | None, int | None] | None:
    """The channel axes of the two models' first outputs (for outputs of other sizes:
    an axis is an axis whatever the sizes); None without outputs."""
    outputs = _first_outputs(src, tgt)
    return None if outputs is None else _value_axes(src, tgt, *outputs)


def _first_outputs(src: Positions, tgt: Positions) -> tuple[Point, Point] | None:
    """The points of the two models' first outputs; None without them."""
    s_point = next((p for p in src.points if p.kind == "output" and p.key == 0), None)
    t_point = next((p for p in tgt.points if p.kind == "output" and p.key == 0), None)
    return None if s_point is None or t_point is None else (s_point, t_point)


def _observed_axis(ids: np.ndarray, pos: Positions) -> int | None:
    """The one axis of ``ids`` along which the channel of the elements it holds
    changes, if there is one (a sequence's features last, where its rank alone does
    not tell them from a 1-D image's channels)."""
    if ids.ndim < 2:
        return None
    flat = ids.ravel()
    flat_c = np.zeros(flat.shape, np.int64)
    for k, sel in _runs(pos.bases, flat):
        o = pos.origins[k]
        flat_c[sel] = _to_cr(flat[sel] - o.base, o.shape, o.channel_axis)[0]
    c = flat_c.reshape(ids.shape)
    for a in range(ids.ndim):
        if ids.shape[a] < 2:
            continue
        first = c[tuple(slice(None) if b == a else slice(0, 1) for b in range(ids.ndim))]
        if np.array_equal(np.broadcast_to(first, c.shape), c) and np.ptp(first) > 0:
            return a
    return None


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
        # a per-channel layer takes any order of its channels (its parameters follow):
        # the points after it decide first, it decides only where none does
        points = [p for p in src.points if p.kind != "per_channel"]
        points += [p for p in src.points if p.kind == "per_channel"]
        for point in points:
            key = (
                point.kind,
                pair.get(point.key, -1)
                if point.kind in ("layer", "per_channel", "ids")
                else point.key,
                point.slot,
            )
            t_point = t_points.get(key)
            if t_point is None:
                raise FramesError(f"{_where(point, names)} has no counterpart in the target")
            mapped = mapper.map(point.positions)
            if point.kind in ("rigid", "output") and _same_by_layout(
                mapped, point, t_point, mapper
            ):
                continue  # (duplicated positions, as after a repeat, compared as they lie)
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


def _same_by_layout(mapped: np.ndarray, point: Point, t_point: Point, mapper: _Mapper) -> bool:
    """Whether the target holds, at the position the layouts pair with each of the
    source's, the counterpart of the source's element there."""
    std = _relation_by_layout(mapper, point, t_point)
    return std is not None and bool(np.array_equal(mapped.ravel(), t_point.positions.ravel()[std]))


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
    if point.kind == "ids":  # the same ids in the same order, whatever size-1 axes
        return rel.size == t_point.positions.size and bool(np.array_equal(rel, np.arange(rel.size)))
    if point.kind == "output":
        std = _relation_by_layout(mapper, point, t_point)
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
    if point.kind in ("layer", "per_channel", "ids"):
        return names[point.key]
    if point.kind == "output":
        return f"the model's output {point.key}"
    return f"an op between the layers (number {point.key + 1} of those the analysis does not look into)"


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


def output_relation(m: _Mapper, src: Positions, tgt: Positions) -> np.ndarray | None:
    """For each element of the source's first output (flat), the flat position of the
    target's output that holds it by the layouts (the channel axis where what reaches
    the output puts its channels, else where each framework's layout says); None
    where the shapes do not pair."""
    outputs = _first_outputs(src, tgt)
    return None if outputs is None else _relation_by_layout(m, *outputs)


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
