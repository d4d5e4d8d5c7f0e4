"""Runs of data movement in a :class:`~.graph.Graph`, each evaluated on an index array
and classified (:func:`find_chains`).

A chain starts at a value that no movement node produced (a graph input, a
convolution's output), follows nodes that only move data, and ends where the data
next meets arithmetic or leaves the graph.  Where branches part, each path is a
chain of its own.  A chain that is no single movement (a shuffle then a flatten,
two shuffles in a row) is split into the fewest consecutive parts that each are one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from .classify import Movement, classify
from .graph import Graph, Node

__all__ = ["Chain", "find_chains", "index_map", "is_selection"]

# an index array larger than this is not built: its chain is reported unprobed
MAX_ELEMENTS = 2**25


@dataclass(frozen=True)
class Chain:
    """Consecutive movement nodes and what they do: ``values`` are the chain's input
    and each node's output, in turn."""

    nodes: tuple[Node, ...]
    values: tuple[str, ...]
    movement: Movement | None  # None: too large to probe or of unknown size
    problem: str = ""

    @property
    def input(self) -> str:
        return self.values[0]

    @property
    def output(self) -> str:
        return self.values[-1]


@dataclass
class _Probe:
    """Which nodes move data: those a reader says do, and the "maybe" ones that turn
    out to (cached per node); only data that comes from the graph's inputs counts,
    not the shape arithmetic exporters write for dynamic sizes."""

    graph: Graph
    moving: dict[int, bool] = field(default_factory=dict)
    data: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.data = set(self.graph.inputs)
        for node in self.graph.nodes:
            if node.kind != "shape" and any(i in self.data for i in node.inputs if i):
                self.data.update(o for o in node.outputs if o)

    def moves(self, node: Node) -> bool:
        if node.step is None or not all(i in self.data for i in node.data_inputs):
            return False
        if node.kind == "move":
            return True
        if node.kind != "maybe":
            return False
        if id(node) not in self.moving:
            shape = self.graph.values[node.data_input].probe_shape
            self.moving[id(node)] = shape is not None and is_selection(node, shape)
        return self.moving[id(node)]


def is_selection(node: Node, shape: tuple[int, ...]) -> bool:
    """Whether ``node`` (with its constant parameters) gives every output element one
    input element unchanged: run on ``arange`` its outputs are indices, and run on a
    shuffled ``arange`` they are the same indices' values."""
    n = math.prod(shape)
    if node.step is None or n > MAX_ELEMENTS or n == 0:
        return False
    base = np.arange(n, dtype=np.float64).reshape(shape)
    with np.errstate(all="ignore"):
        first = np.asarray(node.step(base))
        if not (np.all(np.isfinite(first)) and np.all(first == np.round(first))):
            return False
        if first.size and (first.min() < 0 or first.max() >= n):
            return False
        values = np.random.default_rng(0).permutation(n).astype(np.float64)
        second = np.asarray(node.step(values.reshape(shape)))
    return bool(np.array_equal(second, values[first.astype(np.int64)]))


def index_map(graph: Graph, nodes: tuple[Node, ...], start: str) -> np.ndarray | None:
    """The chain ``nodes`` run on ``arange`` of its input's size (None if that size
    is unknown or too large)."""
    shape = graph.values[start].probe_shape
    if shape is None or math.prod(shape) > MAX_ELEMENTS:
        return None
    x: np.ndarray = np.arange(math.prod(shape), dtype=np.int64).reshape(shape)
    for node in nodes:
        assert node.step is not None
        y = node.step(x if node.kind == "move" else x.astype(np.float64))
        x = np.asarray(y).astype(np.int64, copy=False)
    return x


def find_chains(graph: Graph) -> list[Chain]:
    """Every chain of ``graph``, in the order their last node comes in the graph."""
    probe = _Probe(graph)
    readers = graph.consumers()
    produced_by_move = {
        out for node in graph.nodes if probe.moves(node) for out in node.outputs[:1]
    }
    paths: list[tuple[tuple[Node, ...], tuple[str, ...]]] = []

    def follow(start: str) -> None:
        # depth first, without recursion: a graph may hold thousands of ops in a row
        stack: list[tuple[tuple[Node, ...], tuple[str, ...]]] = [((), (start,))]
        while stack:
            nodes, values = stack.pop()
            last = values[-1]
            users = [n for n in readers.get(last, []) if n.kind != "shape"]
            nxt = [n for n in users if probe.moves(n) and n.many is None and n.data_input == last]
            # a chain ends where its data leaves the graph, meets arithmetic or forks
            ends = last in graph.outputs or len(users) != 1 or len(nxt) != 1
            if nodes and ends:
                paths.append((nodes, values))
            for node in reversed(nxt):
                prefix = ((), (last,)) if ends else (nodes, values)
                stack.append(((*prefix[0], node), (*prefix[1], node.outputs[0])))

    started: set[str] = set()
    for node in graph.nodes:
        if probe.moves(node) and node.data_input not in produced_by_move:
            start = node.data_input
            if start not in started:
                started.add(start)
                follow(start)
    seen: set[tuple[int, ...]] = set()
    chains: list[Chain] = []
    for nodes, values in paths:
        for part in _split(graph, nodes, values):
            key = tuple(id(n) for n in part.nodes)
            if key not in seen:
                seen.add(key)
                chains.append(part)
    for region in _regions(graph, probe, readers):
        inside = {id(n) for n in region.nodes}
        chains = [c for c in chains if not all(id(n) in inside for n in c.nodes)]
        chains.append(region)
    order = {id(n): i for i, n in enumerate(graph.nodes)}
    chains.sort(key=lambda c: order[id(c.nodes[-1])])
    return chains


def _regions(graph: Graph, probe: _Probe, readers: dict[str, list[Node]]) -> list[Chain]:
    """Data movement that splits and joins (a split, per-part ops, a concatenation: a
    grouped one-hot convolution as one converter writes it), as one chain where it has
    one way in and one way out."""
    if not any(n.many is not None and probe.moves(n) for n in graph.nodes):
        return []
    out: list[Chain] = []
    starts = {n.data_input for n in graph.nodes if n.many is not None and probe.moves(n)}
    producers = graph.producers()
    for start in list(starts):  # walk back to where the data enters the movement
        v = start
        while v in producers and probe.moves(producers[v]) and producers[v].many is None:
            v = producers[v].data_input
        starts.discard(start)
        starts.add(v)
    for start in sorted(starts):
        nodes: list[Node] = []
        values = {start}
        for node in graph.nodes:
            if not probe.moves(node) or id(node) in {id(n) for n in nodes}:
                continue
            ins = [i for i in node.inputs if i in probe.data]
            if ins and all(i in values for i in ins):
                nodes.append(node)
                values.update(o for o in node.outputs if o)
        if not any(n.many is not None for n in nodes):
            continue
        inside = {id(n) for n in nodes}
        exits = [
            v
            for v in values - {start}
            if v in graph.outputs
            or any(id(r) not in inside and r.kind != "shape" for r in readers.get(v, []))
        ]
        if len(exits) != 1:
            continue
        chain = _region_chain(graph, nodes, start, exits[0])
        if chain is not None:
            out.append(chain)
    return out


def _region_chain(graph: Graph, nodes: list[Node], start: str, end: str) -> Chain | None:
    shape = graph.values[start].probe_shape
    if shape is None or math.prod(shape) > MAX_ELEMENTS:
        return None
    arrays: dict[str, np.ndarray] = {
        start: np.arange(math.prod(shape), dtype=np.int64).reshape(shape)
    }
    try:
        for node in nodes:
            assert node.step is not None
            if node.many is not None:
                joint = cast("Callable[[list[np.ndarray]], list[np.ndarray]]", node.step)
                outs = joint([arrays[i] for i in node.data_inputs])  # (a step of lists)
            else:
                x = arrays[node.data_input]
                outs = [node.step(x if node.kind == "move" else x.astype(np.float64))]
            for name, y in zip(node.outputs, outs):
                arrays[name] = np.asarray(y).astype(np.int64, copy=False)
    except Exception:
        return None
    if end not in arrays:
        return None
    return Chain(tuple(nodes), (start, end), classify(arrays[end], shape, graph.layout))


def _classified(graph: Graph, nodes: tuple[Node, ...], values: tuple[str, ...]) -> Chain:
    shape = graph.values[values[0]].probe_shape
    if shape is None:
        return Chain(nodes, values, None, "the size of its input is unknown")
    if math.prod(shape) > MAX_ELEMENTS:
        return Chain(nodes, values, None, f"{math.prod(shape)} elements: too large to probe")
    try:
        index = index_map(graph, nodes, values[0])
    except Exception as e:  # an op whose semantics do not fit its declared sizes
        return Chain(nodes, values, None, f"could not be evaluated ({type(e).__name__}: {e})")
    assert index is not None
    return Chain(nodes, values, classify(index, shape, graph.layout))


# a path longer than this is classified whole (splitting costs a probe per sub-path)
MAX_SPLIT = 16


def _split(graph: Graph, nodes: tuple[Node, ...], values: tuple[str, ...]) -> list[Chain]:
    """A path cut into consecutive parts.  A path that is one shuffle of a known order
    stays whole (a lowering may write one in several steps that are shuffles
    themselves).  Else: the fewest parts that are no known movement, then the fewest
    shuffles of no known order (a channel permutation then a DCR shuffle is that, not
    one shuffle of another order), then the most shuffles and unshuffles (two shuffles
    in a row are two sites even where together they cancel), then the fewest parts."""
    memo: dict[tuple[int, int], Chain] = {}

    def part(i: int, j: int) -> Chain:
        if (i, j) not in memo:
            memo[(i, j)] = _classified(graph, nodes[i:j], values[i : j + 1])
        return memo[(i, j)]

    def cost(c: Chain) -> tuple[int, int, int, int]:
        m = c.movement
        unknown = m is None or m.kind in ("other", "selection") or not m.blocks
        site = m is not None and m.is_site
        other = m is not None and m.is_site and m.order == "other"
        return (int(unknown), int(other), -int(site), 1)

    L = len(nodes)
    whole = part(0, L)
    m = whole.movement
    if L > MAX_SPLIT or (m is not None and m.is_site and m.order != "other"):
        return [whole]  # one shuffle of a known order: however many steps write it
    best: list[tuple[tuple[int, ...], list[Chain]]] = [((0, 0, 0, 0), [])]
    for j in range(1, L + 1):
        options = []
        for i in range(j):
            c = part(i, j)
            total = tuple(a + b for a, b in zip(best[i][0], cost(c)))
            options.append((total, [*best[i][1], c]))
        best.append(min(options, key=lambda o: o[0]))
    return best[L][1]
