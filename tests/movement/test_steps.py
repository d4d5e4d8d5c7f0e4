"""The NumPy semantics readers attach to ops, against independent oracles: the
index formula (tests/reference.py), PyTorch's F.pixel_shuffle (CRD) and
convolutions, TensorFlow's depth_to_space (DCR)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from subpixel.movement import steps

from reference import shuffle_gather, unshuffle_gather

FACTORS = [(2, 2), (3, 3), (4, 4), (2, 3), (3,), (2, 1, 2)]


@pytest.mark.parametrize("r", FACTORS, ids=str)
@pytest.mark.parametrize("order", ["CRD", "DCR"])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_depth_to_space_and_back_follow_the_index_formula(r, order, layout):
    C, R = 3, math.prod(r)
    S = (4, 5, 3)[: len(r)]
    shape = (2, C * R, *S) if layout == "channels_first" else (2, *S, C * R)
    x = np.arange(math.prod(shape)).reshape(shape)
    y = steps.depth_to_space(r, order, layout)(x)
    assert np.array_equal(y, shuffle_gather(x, r, layout=layout, order=order))
    z = steps.space_to_depth(r, order, layout)(y)
    assert np.array_equal(z, x)
    assert np.array_equal(z, unshuffle_gather(y, r, layout=layout, order=order))


def test_the_frameworks_ops_agree():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).random((2, 27, 4, 5)).astype(np.float32)
    y = torch.nn.functional.pixel_shuffle(torch.from_numpy(x), 3).numpy()
    assert np.array_equal(steps.depth_to_space((3, 3), "CRD", "channels_first")(x), y)
    z = torch.nn.functional.pixel_unshuffle(torch.from_numpy(y), 3).numpy()
    assert np.array_equal(steps.space_to_depth((3, 3), "CRD", "channels_first")(y), z)


def test_tensorflow_depth_to_space_is_dcr_channels_last():
    tf = pytest.importorskip("tensorflow")
    x = np.random.default_rng(0).random((2, 4, 5, 12)).astype(np.float32)
    y = tf.nn.depth_to_space(x, 2).numpy()
    assert np.array_equal(steps.depth_to_space((2, 2), "DCR", "channels_last")(x), y)
    assert np.array_equal(steps.space_to_depth((2, 2), "DCR", "channels_last")(y), x)


@pytest.mark.parametrize(
    "stride, pads, dilation, groups",
    [
        ((1, 1), [(1, 1), (1, 1)], (1, 1), 1),
        ((2, 3), [(0, 1), (2, 0)], (1, 1), 2),
        ((1, 1), [(2, 2), (2, 2)], (2, 1), 1),
    ],
)
def test_convolutions_agree_with_pytorch(stride, pads, dilation, groups):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(1)
    x = rng.random((2, 4, 7, 9))
    w = rng.random((6, 4 // groups, 3, 2))
    b = rng.random(6)
    xp = np.pad(x, [(0, 0), (0, 0), *pads])
    want = F.conv2d(
        torch.from_numpy(xp), torch.from_numpy(w), torch.from_numpy(b), stride, 0, dilation, groups
    )
    got = steps.conv(w, b, stride, pads, dilation, groups)(x)
    assert np.allclose(got, want.numpy(), rtol=1e-12, atol=1e-12)  # float64 on both sides


@pytest.mark.parametrize(
    "stride, pad, extra, groups",
    [((2, 2), (0, 0), (0, 0), 1), ((2, 3), (1, 1), (1, 0), 2), ((3, 3), (1, 2), (0, 0), 1)],
)
def test_transposed_convolutions_agree_with_pytorch(stride, pad, extra, groups):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(2)
    x = rng.random((2, 4, 5, 6))
    w = rng.random((4, 6 // groups, 3, 4))
    want = F.conv_transpose2d(
        torch.from_numpy(x), torch.from_numpy(w), None, stride, pad, extra, groups
    )
    got = steps.conv_transpose(w, None, stride, [(p, p) for p in pad], (1, 1), groups, extra)(x)
    assert got.shape == tuple(want.shape)
    assert np.allclose(got, want.numpy(), rtol=1e-12, atol=1e-12)


def test_a_constant_gather_counts_negative_indices_back():
    x = np.arange(24).reshape(2, 12)
    assert np.array_equal(steps.take(np.array([-1, 0]), 1)(x), x[:, [11, 0]])
