"""The neutral graph every reader builds: values (tensors) and the nodes between them.

A reader (an ONNX file, a LiteRT flatbuffer, a traced framework model) turns its
format's ops into :class:`Node` objects.  What the analysis needs of a node is
whether it only moves data and, if it may, a NumPy function of its data input
(``step``) with every other input fixed: the analysis runs that function on index
arrays to learn what the node does, so no list of ways to write a shuffle is kept
anywhere.  Sizes are concrete (``Value.probe_shape``): a reader resolves dynamic
dimensions for one probe input before it hands the graph over.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .._core.spec import Layout

__all__ = ["ExampleError", "Graph", "Node", "NodeKind", "Quant", "Step", "Value", "error_line"]

# what a node does to data, as far as its reader can tell:
# "move": it only moves data (reshape, transpose, depth-to-space, a gather of
#         constant indices, ...): ``step`` is its NumPy semantics;
# "maybe": arithmetic with constant parameters that may amount to moving data (a
#         convolution whose kernel is one-hot): ``step`` is its NumPy semantics and
#         the analysis probes it;
# "elementwise": each output element depends only on the elements at the same
#         position of its inputs (broadcast where an input is smaller): activations,
#         arithmetic, casts, a bias add; positions pass through it unchanged;
# "shape": reads only the sizes of its inputs (ONNX ``Shape``), never their data;
# "compute": anything else (never probed).
NodeKind = Literal["move", "maybe", "elementwise", "shape", "compute"]

Step = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Quant:
    """Integer quantization parameters of a tensor (``real = scale * (q - zero_point)``);
    one entry per channel along ``axis`` when quantized per channel."""

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int | None = None

    def describe(self) -> str:
        if len(self.scale) == 1:
            return f"scale {self.scale[0]:.6g}, zero point {self.zero_point[0]}"
        return f"{len(self.scale)} scales along axis {self.axis}"


@dataclass
class Value:
    """A tensor of the graph.  ``shape`` is what the file declares (``None`` for a
    dynamic dimension, or ``None`` altogether where nothing is declared);
    ``probe_shape`` its concrete size for the probe input the reader chose."""

    name: str
    shape: tuple[int | None, ...] | None = None
    dtype: str = "float32"
    probe_shape: tuple[int, ...] | None = None
    constant: bool = False
    quant: Quant | None = None
    param: str | None = None  # a framework's parameter path, where the value is one

    @property
    def dynamic(self) -> bool:
        """Whether the declared shape leaves a dimension open (an undeclared shape:
        unknown, not dynamic)."""
        return self.shape is not None and any(d is None for d in self.shape)


@dataclass
class Node:
    """One op: its ``inputs`` and ``outputs`` are value names (``""`` for an optional
    input left out).  ``data`` is the index of the input that ``step`` moves.  A
    node that moves several tensors (a split, a concatenation) has ``many`` set: its
    ``step`` then takes the list of its ``many`` inputs (``data_inputs``) and returns
    the list of its outputs."""

    name: str
    op: str
    inputs: list[str]
    outputs: list[str]
    kind: NodeKind = "compute"
    step: Step | None = None
    data: int = 0
    attrs: dict[str, object] = field(default_factory=dict)
    many: tuple[int, ...] | None = None  # the inputs a many-tensor step takes, by index

    @property
    def data_inputs(self) -> list[str]:
        return [self.inputs[i] for i in self.many] if self.many is not None else [self.data_input]

    @property
    def data_input(self) -> str:
        return self.inputs[self.data]


@dataclass
class Graph:
    """Values and nodes in an order where every node comes after the nodes that
    produce its inputs.  ``layout`` is the layout the format's image tensors are
    usually in (``channels_first`` for ONNX, ``channels_last`` for LiteRT), used to
    break ties where shapes fit both."""

    source: str
    layout: Layout = "channels_first"
    values: dict[str, Value] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    attrs: dict[str, object] = field(default_factory=dict)  # what a reader keeps for running

    def add(self, node: Node) -> Node:
        self.nodes.append(node)
        for name in (*node.inputs, *node.outputs):
            if name and name not in self.values:
                self.values[name] = Value(name)
        return node

    def value(self, name: str) -> Value:
        return self.values[name]

    def consumers(self) -> dict[str, list[Node]]:
        """For each value, the nodes that read it (a node reading it twice: once)."""
        readers: dict[str, list[Node]] = {}
        for node in self.nodes:
            for name in dict.fromkeys(node.inputs):
                if name:
                    readers.setdefault(name, []).append(node)
        return readers

    def producers(self) -> dict[str, Node]:
        return {name: node for node in self.nodes for name in node.outputs if name}

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)


def error_line(e: BaseException) -> str:
    """An error's message in one line: its first, or its last where the first only
    introduces a traceback (TensorFlow's "in user code:")."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()] or [""]
    if lines[0].startswith("Exception encountered when calling") and len(lines) > 1:
        lines = lines[1:]  # Keras's wrapper line; the error follows
    line = lines[-1] if lines[0].endswith(":") else lines[0]
    return line.removeprefix(f"{type(e).__name__}: ")[:300]


class ExampleError(ValueError):
    """A model that does not run (or trace) on the example it was given; ``reason`` is
    the framework's error in one line."""

    def __init__(self, what: str, error: BaseException, verb: str = "run") -> None:
        self.reason = f"{type(error).__name__}: {error_line(error)}"
        super().__init__(f"{what} does not {verb} on `example` ({self.reason})")
