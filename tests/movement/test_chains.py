"""Chains in graphs written by hand: which nodes a chain follows, where it ends, how
a path that is several movements is cut, what is probed."""

from __future__ import annotations

import numpy as np

from subpixel.movement import Graph, Node, find_chains, steps
from subpixel.movement import chains as chains_module


def _graph(
    shapes: dict[str, tuple[int, ...]], nodes: list[Node], inputs=("x",), outputs=()
) -> Graph:
    g = Graph("test", "channels_first")
    for n in nodes:
        g.add(n)
    g.inputs, g.outputs = list(inputs), list(outputs)
    for name, shape in shapes.items():
        g.values[name].probe_shape = shape
    return g


def _conv(name: str, x: str, y: str) -> Node:
    return Node(name, "Conv", [x, f"{name}.w"], [y])  # arithmetic: never probed


def _describe(chains):
    return [(c.movement.describe(), [n.name for n in c.nodes]) for c in chains]


def test_a_reshape_transpose_reshape_between_two_convolutions_is_one_site():
    N, C, H, W = 2, 3, 4, 5
    nodes = [
        _conv("c1", "x", "a"),
        Node("r1", "Reshape", ["a"], ["b"], "move", steps.reshape((N, C, 2, 2, H, W))),
        Node("t", "Transpose", ["b"], ["c"], "move", steps.transpose((0, 1, 4, 2, 5, 3))),
        Node("r2", "Reshape", ["c"], ["d"], "move", steps.reshape((N, C, 2 * H, 2 * W))),
        _conv("c2", "d", "y"),
    ]
    shapes = {
        "x": (N, 3, H, W),
        "a": (N, C * 4, H, W),
        "b": (N, C, 2, 2, H, W),
        "c": (N, C, H, 2, W, 2),
        "d": (N, C, 2 * H, 2 * W),
    }
    assert _describe(find_chains(_graph(shapes, nodes))) == [
        ("shuffle x2x2 CRD channels_first", ["r1", "t", "r2"])
    ]


def test_a_path_of_two_movements_is_cut_in_two():
    # a shuffle, then a flatten before a dense layer
    nodes = [
        _conv("c1", "x", "a"),
        Node(
            "ps",
            "DepthToSpace",
            ["a"],
            ["b"],
            "move",
            steps.depth_to_space((2, 2), "DCR", "channels_first"),
        ),
        Node("fl", "Flatten", ["b"], ["c"], "move", steps.reshape((2, 3 * 8 * 10))),
        Node("dense", "Gemm", ["c", "w"], ["y"]),
    ]
    shapes = {"x": (2, 3, 4, 5), "a": (2, 12, 4, 5), "b": (2, 3, 8, 10), "c": (2, 240)}
    assert _describe(find_chains(_graph(shapes, nodes))) == [
        ("shuffle x2x2 DCR channels_first", ["ps"]),
        ("flatten (1, 2, 3)", ["fl"]),
    ]


def test_two_shuffles_in_a_row_are_two_sites_even_where_they_cancel():
    d2s = steps.depth_to_space((2, 2), "CRD", "channels_first")
    s2d = steps.space_to_depth((2, 2), "CRD", "channels_first")
    nodes = [
        _conv("c1", "x", "a"),
        Node("ps", "DepthToSpace", ["a"], ["b"], "move", d2s),
        Node("pu", "SpaceToDepth", ["b"], ["c"], "move", s2d),
        _conv("c2", "c", "y"),
    ]
    shapes = {"x": (2, 3, 4, 5), "a": (2, 12, 4, 5), "b": (2, 3, 8, 10), "c": (2, 12, 4, 5)}
    kinds = [c.movement.kind for c in find_chains(_graph(shapes, nodes))]
    assert kinds == ["shuffle", "unshuffle"]


def test_a_chain_ends_where_its_data_forks_and_shape_reads_do_not_count():
    nodes = [
        _conv("c1", "x", "a"),
        Node("size", "Shape", ["a"], ["s"], "shape"),
        Node(
            "ps",
            "DepthToSpace",
            ["a"],
            ["b"],
            "move",
            steps.depth_to_space((2, 2), "CRD", "channels_first"),
        ),
        _conv("c2", "b", "y1"),
        Node("t", "Transpose", ["b"], ["c"], "move", steps.transpose((0, 2, 3, 1))),
        Node("relu", "Relu", ["c"], ["y2"]),
    ]
    shapes = {"x": (2, 3, 4, 5), "a": (2, 12, 4, 5), "b": (2, 3, 8, 10), "c": (2, 8, 10, 3)}
    # the shuffle's output feeds a convolution and a transpose: two chains, the site once
    assert _describe(find_chains(_graph(shapes, nodes))) == [
        ("shuffle x2x2 CRD channels_first", ["ps"]),
        ("layout (0, 2, 3, 1)", ["t"]),
    ]


def test_movement_of_constants_and_shapes_is_no_chain():
    # exporters compute reshape targets from shapes: gathers and reshapes of shapes
    nodes = [
        Node("size", "Shape", ["x"], ["s"], "shape"),
        Node("g", "Gather", ["s"], ["s0"], "move", steps.take(np.array([0]), 0)),
        Node("k", "Reshape", ["w"], ["w2"], "move", steps.reshape((12,))),
        Node("mul", "Mul", ["x", "w2"], ["y"]),
    ]
    shapes = {"x": (2, 3, 4, 5), "s": (4,), "s0": (1,), "w": (3, 4), "w2": (12,)}
    assert find_chains(_graph(shapes, nodes)) == []


def test_a_one_hot_convolution_is_probed_and_found_to_move_data():
    C, r = 3, 2
    from subpixel._core.lowering import one_hot_kernel

    kernel, groups = one_hot_kernel(C, (r, r), "DCR")
    nodes = [
        _conv("c1", "x", "a"),
        Node(
            "ct",
            "ConvTranspose",
            ["a", "k"],
            ["b"],
            "maybe",
            steps.conv_transpose(kernel, None, (r, r), [(0, 0), (0, 0)], (1, 1), groups),
        ),
        _conv("c2", "b", "y"),
    ]
    shapes = {"x": (2, 3, 4, 5), "a": (2, C * 4, 4, 5), "b": (2, C, 8, 10)}
    assert _describe(find_chains(_graph(shapes, nodes))) == [
        ("shuffle x2x2 DCR channels_first", ["ct"])
    ]


def test_a_convolution_that_sums_is_not_a_movement():
    kernel = np.ones((3, 12, 1, 1))  # every output sums all inputs: zeros and ones, no selection
    nodes = [
        _conv("c1", "x", "a"),
        Node(
            "c",
            "Conv",
            ["a", "k"],
            ["b"],
            "maybe",
            steps.conv(kernel, None, (1, 1), [(0, 0), (0, 0)], (1, 1), 1),
        ),
    ]
    shapes = {"x": (2, 3, 4, 5), "a": (2, 12, 4, 5), "b": (2, 3, 4, 5)}
    assert find_chains(_graph(shapes, nodes)) == []


def test_a_chain_too_large_to_probe_is_reported_unprobed(monkeypatch):
    monkeypatch.setattr(chains_module, "MAX_ELEMENTS", 100)
    nodes = [
        _conv("c1", "x", "a"),
        Node(
            "ps",
            "DepthToSpace",
            ["a"],
            ["b"],
            "move",
            steps.depth_to_space((2, 2), "CRD", "channels_first"),
        ),
    ]
    shapes = {"x": (2, 3, 4, 5), "a": (2, 12, 4, 5), "b": (2, 3, 8, 10)}
    (chain,) = find_chains(_graph(shapes, nodes, outputs=("b",)))
    assert chain.movement is None and "too large" in chain.problem
