"""Index maps classified against the index formula (tests/reference.py: the oracle
written from SEED_NOTES, never from reshape/transpose), and movements that are not
depth-to-space: none of them may be called a site."""

from __future__ import annotations

import math

import numpy as np
import pytest

from subpixel.movement import classify

from reference import shuffle_gather, unshuffle_gather

FACTORS = [(2, 2), (3, 3), (4, 4), (2, 3), (3,), (2, 2, 2)]
LAYOUTS = ["channels_first", "channels_last"]


def _packed_shape(C, r, layout, N=2):
    S = (5, 7, 3)[: len(r)]
    R = math.prod(r)
    return (N, C * R, *S) if layout == "channels_first" else (N, *S, C * R)


@pytest.mark.parametrize("r", FACTORS, ids=str)
@pytest.mark.parametrize("C", [1, 3])
@pytest.mark.parametrize("order", ["CRD", "DCR"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_shuffle_is_named_with_its_factor_order_and_layout(r, C, order, layout):
    shape = _packed_shape(C, r, layout)
    index = shuffle_gather(
        np.arange(math.prod(shape)).reshape(shape), r, layout=layout, order=order
    )
    # (1-D data of one channel is ambiguous: the layout a graph's format uses decides)
    m = classify(index, shape, layout)
    assert (m.kind, m.factor, m.layout, m.other_layout) == ("shuffle", r, layout, layout)
    # with one channel the two orders move the data alike: either name is right
    assert m.order == order or (C == 1 and m.order == "CRD")
    assert m.is_site and m.blocks
    if len(r) == 2 and C > 1:  # images of several channels need no hint
        assert classify(index, shape) == m


@pytest.mark.parametrize("r", FACTORS, ids=str)
@pytest.mark.parametrize("order", ["CRD", "DCR"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_an_unshuffle_is_named_with_its_factor_order_and_layout(r, order, layout):
    packed = _packed_shape(3, r, layout)
    hr = shuffle_gather(np.zeros(packed), r, layout=layout, order=order).shape
    index = unshuffle_gather(np.arange(math.prod(hr)).reshape(hr), r, layout=layout, order=order)
    m = classify(index, hr, layout)
    assert (m.kind, m.factor, m.order, m.layout) == ("unshuffle", r, order, layout)


def test_the_layout_hint_breaks_a_tie_between_readings():
    # (2, 4, 4, 4) -> (2, 1, 8, 8) is no shuffle in NHWC; a square tensor that fits both
    shape = (1, 4, 4, 4)
    index = shuffle_gather(np.arange(64).reshape(shape), 2, order="DCR")
    assert classify(index, shape, "channels_last").kind == "shuffle"


def test_a_shuffle_that_also_changes_layout_keeps_both_layouts():
    shape = (2, 12, 5, 7)
    index = shuffle_gather(np.arange(math.prod(shape)).reshape(shape), 2, order="DCR")
    m = classify(np.moveaxis(index, 1, -1), shape)
    assert (m.kind, m.order, m.layout, m.other_layout) == (
        "shuffle",
        "DCR",
        "channels_first",
        "channels_last",
    )


def test_a_channel_permutation_before_a_shuffle_is_a_shuffle_of_another_order():
    shape = (2, 12, 5, 7)
    perm = np.random.default_rng(0).permutation(12)
    x = np.arange(math.prod(shape)).reshape(shape)[:, perm]
    m = classify(shuffle_gather(x, 2), shape)
    assert (m.kind, m.order, m.blocks) == ("shuffle", "other", True)
    # its table is T[c, b] = the input channel of output channel c at block position b
    assert m.table == tuple(int(t) for t in perm)


def test_shapes_of_a_shuffle_whose_elements_leave_their_blocks_is_no_known_order():
    shape = (2, 12, 5, 7)
    n = math.prod(shape)
    index = np.random.default_rng(1).permutation(n).reshape(2, 3, 10, 14)
    m = classify(index, shape)
    assert (m.kind, m.order, m.blocks) == ("shuffle", "other", False)


def _arange(shape):
    return np.arange(math.prod(shape)).reshape(shape)


@pytest.mark.parametrize(
    "what, index, in_shape, kind",
    [
        # ShuffleNet's channel shuffle: groups of channels interleaved, pixels kept
        (
            "channel shuffle",
            _arange((2, 3, 4, 5, 5)).transpose(0, 2, 1, 3, 4).reshape(2, 12, 5, 5),
            (2, 12, 5, 5),
            "channel_permutation",
        ),
        ("constant gather", _arange((2, 12, 5, 5))[:, ::-1], (2, 12, 5, 5), "channel_permutation"),
        ("NCHW flatten", _arange((2, 12, 5, 5)).reshape(2, -1), (2, 12, 5, 5), "flatten"),
        (
            "NHWC flatten",
            _arange((2, 12, 5, 5)).transpose(0, 2, 3, 1).reshape(2, -1),
            (2, 12, 5, 5),
            "flatten",
        ),
        ("unflatten", _arange((2, 300)).reshape(2, 12, 5, 5), (2, 300), "unflatten"),
        ("NCHW to NHWC", _arange((2, 12, 5, 7)).transpose(0, 2, 3, 1), (2, 12, 5, 7), "layout"),
        ("NHWC to NCHW", _arange((2, 5, 7, 12)).transpose(0, 3, 1, 2), (2, 5, 7, 12), "layout"),
        ("H/W swap", _arange((2, 12, 5, 7)).transpose(0, 1, 3, 2), (2, 12, 5, 7), "transpose"),
        ("identity", _arange((2, 12, 5, 7)), (2, 12, 5, 7), "identity"),
        ("reshape", _arange((2, 12, 5, 7)).reshape(2, 3, 4, 35), (2, 12, 5, 7), "reshape"),
        ("crop", _arange((2, 12, 5, 7))[:, :, 1:4, 1:6], (2, 12, 5, 7), "selection"),
        ("repeat", np.repeat(_arange((2, 12, 5, 7)), 2, axis=2), (2, 12, 5, 7), "selection"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_other_movements_are_named_and_are_no_site(what, index, in_shape, kind):
    m = classify(index, in_shape)
    assert m.kind == kind
    assert not m.is_site


def test_a_flatten_names_the_axis_order_it_flattens_in():
    x = _arange((2, 12, 5, 5))
    assert classify(x.reshape(2, -1), x.shape).axes == (1, 2, 3)
    assert classify(x.transpose(0, 2, 3, 1).reshape(2, -1), x.shape).axes == (2, 3, 1)


def test_a_layout_change_says_which_way():
    x = _arange((2, 12, 5, 7))
    m = classify(x.transpose(0, 2, 3, 1), x.shape)
    assert (m.layout, m.other_layout, m.axes) == ("channels_first", "channels_last", (0, 2, 3, 1))
