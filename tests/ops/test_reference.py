"""The oracles checked against each other and against worked examples by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from reference import shuffle_gather, shuffle_loops, unshuffle_gather, unshuffle_loops


def test_worked_example_two_output_channels():
    # 8 input channels, factor 2 -> 2 output channels; pixel value = input channel
    x = np.arange(8).reshape(1, 8, 1, 1)
    crd = shuffle_loops(x, 2)[0]
    dcr = shuffle_loops(x, 2, order="DCR")[0]
    # CRD: output channel c takes input channels 4c .. 4c+3 (block position low-order)
    np.testing.assert_array_equal(crd, [[[0, 1], [2, 3]], [[4, 5], [6, 7]]])
    # DCR: output channel c takes input channels c, c+2, c+4, c+6 (block position high-order)
    np.testing.assert_array_equal(dcr, [[[0, 2], [4, 6]], [[1, 3], [5, 7]]])


def test_orders_agree_for_one_channel():
    x = np.arange(2 * 6 * 2 * 3).reshape(2, 6, 2, 3)
    np.testing.assert_array_equal(shuffle_loops(x, (2, 3)), shuffle_loops(x, (2, 3), order="DCR"))


CASES = [
    ((2, 12, 2, 3), (2, 3), 2, "channels_first"),
    ((3, 2, 12), (2, 2), 2, "channels_last"),  # spatial (3, 2), 12 channels
    ((12, 1, 2, 2), (3, 2, 2), 3, "channels_first"),
    ((2, 3, 4), 2, 1, "channels_last"),
]


@pytest.mark.parametrize("shape,factor,d,layout", CASES)
@pytest.mark.parametrize("order", ["CRD", "DCR"])
def test_loops_equal_gather(shape, factor, d, layout, order):
    x = np.random.default_rng(0).permutation(np.prod(shape)).reshape(shape)
    kw = dict(spatial_dims=d, layout=layout, order=order)
    y = shuffle_loops(x, factor, **kw)
    np.testing.assert_array_equal(y, shuffle_gather(x, factor, **kw))
    np.testing.assert_array_equal(unshuffle_loops(y, factor, **kw), x)
    np.testing.assert_array_equal(unshuffle_gather(y, factor, **kw), x)


def test_loops_follow_the_formula_elementwise():
    """Spell the SEED_NOTES formula once more, element by element, for DCR channels_last."""
    C, r = 2, (2, 3)
    x = np.random.default_rng(1).permutation(3 * 2 * C * 6).reshape(3, 2, C * 6)
    y = shuffle_loops(x, r, layout="channels_last", order="DCR")
    for y1, y2, c in itertools.product(range(6), range(6), range(C)):
        b = (y1 % 2) * 3 + (y2 % 3)
        assert y[y1, y2, c] == x[y1 // 2, y2 // 3, b * C + c]
