"""The conformance matrix: every requested backend against the index-formula oracle.

Values, never shapes alone: every case compares all elements with the oracle in
``reference.py``; data are permutations of distinct values (modulo the dtype's
range) so a misplaced element cannot go unnoticed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import subpixel

from cases import BATCHES, FACTORS, LAYOUTS, ORDERS, factor_tuple, hr_shape, lr_shape, make_data
from reference import reference


def case_id(factor, spatial):
    return f"r{factor}-s{'x'.join(map(str, spatial))}"


def run_case(adapter, op, factor, spatial, batch, layout, order, channels=3, dtype="float32"):
    d = len(spatial)
    r = factor_tuple(factor, d)
    R = math.prod(r)
    if op == "shuffle":
        shape = lr_shape(batch, channels * R, spatial, layout)
    else:
        shape = hr_shape(batch, channels, spatial, r, layout)
    a = make_data(shape, dtype)
    kw = dict(spatial_dims=d, layout=layout, order=order)
    expected = reference(op, a, factor, **kw)
    x = adapter.asarray(a, dtype)
    y = getattr(subpixel, op)(x, factor, **kw)
    got = adapter.to_numpy(y)
    assert got.shape == expected.shape
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
    assert adapter.same_device(y)
    return x, y


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"b{len(b)}")
@pytest.mark.parametrize("factor,spatial", FACTORS, ids=[case_id(*c) for c in FACTORS])
@pytest.mark.parametrize("op", ["shuffle", "unshuffle"])
def test_values(adapter, op, factor, spatial, batch, layout, order):
    run_case(adapter, op, factor, spatial, batch, layout, order)


@pytest.mark.parametrize("channels", [1, 2, 4])
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("op", ["shuffle", "unshuffle"])
def test_channel_counts(adapter, op, layout, order, channels):
    run_case(adapter, op, (2, 3), (2, 3), (2,), layout, order, channels=channels)


DTYPE_CASES = [
    (2, (3, 4), "channels_first", "CRD"),
    ((2, 3), (2, 2), "channels_last", "DCR"),
    ((1, 2, 3), (2, 1, 2), "channels_first", "DCR"),
    (3, (4,), "channels_last", "CRD"),
]


@pytest.mark.parametrize("op", ["shuffle", "unshuffle"])
@pytest.mark.parametrize("factor,spatial,layout,order", DTYPE_CASES)
def test_dtypes(adapter, op, factor, spatial, layout, order):
    for dtype in adapter.dtypes:
        run_case(adapter, op, factor, spatial, (2,), layout, order, dtype=dtype)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("op", ["shuffle", "unshuffle"])
def test_noncontiguous_input(adapter, op, layout, order):
    factor, spatial = (2, 3), (2, 2)
    r = factor
    shape = (
        lr_shape((2,), 2 * 6, spatial, layout)
        if op == "shuffle"
        else hr_shape((2,), 2, spatial, r, layout)
    )
    a = make_data(shape, "float32")
    kw = dict(layout=layout, order=order)
    x = adapter.noncontiguous(a, "float32")
    got = adapter.to_numpy(getattr(subpixel, op)(x, factor, **kw))
    np.testing.assert_array_equal(got, reference(op, a, factor, **kw))


def test_transposed_input(adapter):
    """A permuted view (not just a slice) as input."""
    a = make_data((4, 3, 8, 2), "float32")  # will be transposed to (2, 8, 3, 4)...
    xt = adapter.transpose(adapter.asarray(a), (3, 0, 2, 1))
    at = a.transpose(3, 0, 2, 1)  # (2, 4, 8, 3): channels 4, spatial (8, 3)
    for order in ORDERS:
        got = adapter.to_numpy(subpixel.shuffle(xt, (2, 1), order=order))
        np.testing.assert_array_equal(got, reference("shuffle", at, (2, 1), order=order))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    "shape_cf", [(0, 8, 2, 2), (2, 8, 0, 4), (2, 0, 2, 2), (0, 0, 0, 0)], ids=str
)
def test_zero_size(adapter, shape_cf, layout):
    shape = shape_cf if layout == "channels_first" else (shape_cf[0], *shape_cf[2:], shape_cf[1])
    a = np.zeros(shape, np.float32)
    for order in ORDERS:
        for op in ("shuffle", "unshuffle"):
            expected = reference(op, a, 2, layout=layout, order=order)
            got = adapter.to_numpy(
                getattr(subpixel, op)(adapter.asarray(a), 2, layout=layout, order=order)
            )
            assert got.shape == expected.shape


@pytest.mark.parametrize("factor", [1, 2, (1, 1)])
def test_result_is_new_array(adapter, factor):
    """Never an alias of the input, also when nothing moves (factor 1)."""
    if not adapter.supports_out:
        pytest.skip(f"{adapter.name} arrays are immutable: aliasing cannot be observed")
    a = make_data((1, 4, 2, 2), "float32")
    x = adapter.asarray(a)
    y = subpixel.shuffle(x, factor)
    before = adapter.to_numpy(y).copy()
    x[...] = -1
    np.testing.assert_array_equal(adapter.to_numpy(y), before)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("op", ["shuffle", "unshuffle"])
def test_out(adapter, op, layout, order):
    if not adapter.supports_out:
        pytest.skip(f"{adapter.name} has no mutable arrays; test_out_refused covers it")
    factor, spatial = (3, 2), (2, 3)
    shape = (
        lr_shape((2,), 2 * 6, spatial, layout)
        if op == "shuffle"
        else hr_shape((2,), 2, spatial, factor, layout)
    )
    a = make_data(shape, "float64")
    expected = reference(op, a, factor, layout=layout, order=order)
    out = adapter.empty(expected.shape, "float64")
    ret = getattr(subpixel, op)(adapter.asarray(a), factor, layout=layout, order=order, out=out)
    assert ret is out
    np.testing.assert_array_equal(adapter.to_numpy(out), expected)


def test_out_noncontiguous(adapter):
    if not adapter.supports_out:
        pytest.skip(f"{adapter.name} has no mutable arrays")
    a = make_data((2, 8, 3, 2), "float32")
    expected = reference("shuffle", a, 2)
    big = adapter.empty((2, 2, 6, 8), "float32")
    out = big[..., ::2]
    subpixel.shuffle(adapter.asarray(a), 2, out=out)
    np.testing.assert_array_equal(adapter.to_numpy(out), expected)


def test_out_refused(adapter):
    if adapter.supports_out:
        pytest.skip(f"{adapter.name} accepts out=")
    x = adapter.asarray(make_data((1, 4, 2, 2), "float32"))
    with pytest.raises(TypeError, match=rf"^`out` is not supported by the {adapter.name} backend"):
        subpixel.shuffle(x, 2, out=subpixel.shuffle(x, 2))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("order", ORDERS)
def test_round_trips(adapter, layout, order):
    factor, spatial = (2, 3, 1), (2, 1, 3)
    kw = dict(layout=layout, order=order)
    a = make_data(lr_shape((2,), 2 * 6, spatial, layout), "float32")
    x = adapter.asarray(a)
    back = subpixel.unshuffle(subpixel.shuffle(x, factor, **kw), factor, **kw)
    np.testing.assert_array_equal(adapter.to_numpy(back), a)
    b = make_data(hr_shape((2,), 2, spatial, factor, layout), "float32")
    y = adapter.asarray(b)
    back = subpixel.shuffle(subpixel.unshuffle(y, factor, **kw), factor, **kw)
    np.testing.assert_array_equal(adapter.to_numpy(back), b)


def test_large_blocked_copy(adapter):
    """Large enough for the NumPy backend's blocked, threaded path."""
    a = make_data((2, 36, 96, 84), "float32")  # 2.2 MiB
    for layout in LAYOUTS:
        x_np = a if layout == "channels_first" else np.ascontiguousarray(a.transpose(0, 2, 3, 1))
        x = adapter.asarray(x_np)
        for order in ORDERS:
            for factor in (2, 3, (3, 2)):
                for op in ("shuffle", "unshuffle"):
                    got = adapter.to_numpy(
                        getattr(subpixel, op)(x, factor, layout=layout, order=order)
                    )
                    np.testing.assert_array_equal(
                        got, reference(op, x_np, factor, layout=layout, order=order)
                    )


@st.composite
def random_case(draw):
    d = draw(st.integers(1, 3))
    factor = tuple(draw(st.lists(st.integers(1, 4), min_size=d, max_size=d)))
    spatial = tuple(draw(st.lists(st.integers(0, 3), min_size=d, max_size=d)))
    batch = tuple(draw(st.lists(st.integers(0, 3), min_size=0, max_size=2)))
    channels = draw(st.integers(0, 3))
    layout = draw(st.sampled_from(LAYOUTS))
    order = draw(st.sampled_from(ORDERS))
    return factor, spatial, batch, channels, layout, order


@settings(max_examples=60, deadline=None)
@given(case=random_case())
def test_property_random_shapes(adapter, case):
    factor, spatial, batch, channels, layout, order = case
    R = math.prod(factor)
    kw = dict(spatial_dims=len(factor), layout=layout, order=order)
    a = make_data(lr_shape(batch, channels * R, spatial, layout), "float32", seed=1)
    y = subpixel.shuffle(adapter.asarray(a), factor, **kw)
    expected = reference("shuffle", a, factor, **kw)
    np.testing.assert_array_equal(adapter.to_numpy(y), expected)
    back = subpixel.unshuffle(y, factor, **kw)
    np.testing.assert_array_equal(adapter.to_numpy(back), a)


@pytest.mark.parametrize("nbytes", [4096, 6 << 20], ids=["small", "6MiB"])
@pytest.mark.parametrize("offset", [0, 3], ids=["same-start", "shifted"])
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("op", ["shuffle", "unshuffle"])
def test_out_overlapping_input(adapter, op, order, offset, nbytes):
    """An `out` sharing memory with `x` gets the non-aliased result (a rule of the
    contract, in ops, whatever the backend's copy strategy or the array's size)."""
    if not adapter.supports_out:
        pytest.skip(f"{adapter.name} has no mutable arrays")
    side = int((nbytes // 4 // 8) ** 0.5)
    shape = (1, 8, side, side) if op == "shuffle" else (1, 2, 2 * side, 2 * side)
    a = make_data(shape, "float32")
    kw = dict(order=order)
    expected = reference(op, a, 2, **kw)
    x, out = adapter.aliased(a, expected.shape, offset)
    ret = getattr(subpixel, op)(x, 2, out=out, **kw)
    assert ret is out
    np.testing.assert_array_equal(adapter.to_numpy(out), expected)


def test_unwritable_out_is_refused(adapter):
    """Outs the library can make but nothing may write (read-only, requiring grad, on
    another device, masked): the contract's error, and `out` is left untouched."""
    a = make_data((1, 8, 2, 2), "float32")
    x = adapter.asarray(a)
    cases = adapter.unwritable_outs((1, 2, 4, 4), "float32")
    if not cases:
        pytest.skip(f"{adapter.name} has no such arrays")
    for _, out, exc, pattern in cases:
        with pytest.raises(exc, match=pattern):
            subpixel.shuffle(x, 2, out=out)


@settings(max_examples=80, deadline=None)
@given(case=random_case())
def test_property_result_never_aliases_the_input(adapter, case):
    """Whatever the shape (size-1 axes included), the result is a new array."""
    if not adapter.supports_out:
        pytest.skip(f"{adapter.name} arrays are immutable: aliasing cannot be observed")
    factor, spatial, batch, channels, layout, order = case
    kw = dict(spatial_dims=len(factor), layout=layout, order=order)
    a = make_data(lr_shape(batch, channels * math.prod(factor), spatial, layout), "float32", seed=2)
    for op, data in (("shuffle", a), ("unshuffle", reference("shuffle", a, factor, **kw))):
        x = adapter.asarray(data)
        y = getattr(subpixel, op)(x, factor, **kw)
        before = adapter.to_numpy(y).copy()
        x[...] = -1
        np.testing.assert_array_equal(adapter.to_numpy(y), before)
