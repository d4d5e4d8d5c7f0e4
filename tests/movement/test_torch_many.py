"""The PyTorch reader's ops that move several tensors (``cat``, ``stack``, ``split``,
``chunk``, ``unbind``) are movement nodes of several tensors (``Node.many``), as in the
other readers: their steps reproduce what the ops did."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from subpixel.movement import find_chains
from subpixel.movement import torch as reader


class Joins(torch.nn.Module):
    def forward(self, x):
        a, b = torch.chunk(x * 2.0, 2, dim=1)
        c = torch.cat([b, a], dim=1)  # the halves swapped: a channel permutation
        d = torch.stack(torch.unbind(x + 1.0, dim=2), dim=3)  # a transpose
        e, f, g = torch.split(x - 1.0, [1, 2, 3], dim=1)
        return c * 1.0, d, torch.cat([g, e, f], 1) + 1.0


def test_joins_and_splits_are_moves_of_several_tensors():
    x = torch.from_numpy(np.random.default_rng(0).random((2, 6, 4, 5)).astype("float32"))
    t = reader.trace(Joins(), x)
    many = [n for n in t.graph.nodes if n.many is not None]
    ops = sorted({n.op.split(".")[1] for n in many})
    assert ops == ["cat", "split", "split_with_sizes", "stack", "unbind"]
    assert all(n.kind == "move" for n in many)
    names = sorted({v for n in many for v in (*n.data_inputs, *n.outputs)})
    got = reader.run(Joins(), [x.numpy()], names)
    for n in many:
        ys = n.step([got[i] for i in n.data_inputs])
        for y, o in zip(ys, n.outputs):
            np.testing.assert_array_equal(y, got[o], err_msg=n.name)
    kinds = [c.movement.kind for c in find_chains(t.graph) if c.movement is not None]
    assert kinds == ["channel_permutation", "transpose", "channel_permutation"]
