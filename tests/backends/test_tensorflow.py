"""TensorFlow specifics: native-op oracle, GradientTape adjoint, tf.function with
unknown dimensions and XLA.  Runs when ``tensorflow`` is in SUBPIXEL_TEST_BACKENDS."""

from __future__ import annotations

import numpy as np
import pytest

from adapters import requested_backends

if "tensorflow" not in requested_backends():
    pytest.skip("tensorflow is not in SUBPIXEL_TEST_BACKENDS", allow_module_level=True)

import tensorflow as tf

import subpixel

from cases import GEOMETRIES, LAYOUTS, ORDERS, shuffle_case
from reference import reference


@pytest.mark.parametrize("r", [2, 3])
def test_equals_depth_to_space(r):
    x = tf.random.normal((2, 4, 5, 3 * r * r))
    np.testing.assert_array_equal(
        subpixel.shuffle(x, r, layout="channels_last", order="DCR").numpy(),
        tf.nn.depth_to_space(x, r).numpy(),
    )
    y = tf.random.normal((2, 4 * r, 5 * r, 3))
    np.testing.assert_array_equal(
        subpixel.unshuffle(y, r, layout="channels_last", order="DCR").numpy(),
        tf.nn.space_to_depth(y, r).numpy(),
    )


@pytest.mark.parametrize("r", [2, 3])
def test_channels_first_dcr_equals_transposed_depth_to_space(r):
    """channels_first is the NHWC op between transposes, without data_format='NCHW'."""
    x = tf.random.normal((2, 3 * r * r, 4, 5))
    expected = tf.transpose(tf.nn.depth_to_space(tf.transpose(x, (0, 2, 3, 1)), r), (0, 3, 1, 2))
    np.testing.assert_array_equal(subpixel.shuffle(x, r, order="DCR").numpy(), expected.numpy())


def test_native_op_dtypes():
    """Every dtype through the native path (NHWC DCR) equals the reference."""
    for dtype in (
        tf.bool,
        tf.int8,
        tf.uint8,
        tf.int16,
        tf.uint16,
        tf.int32,
        tf.int64,
        tf.float16,
        tf.bfloat16,
        tf.float32,
        tf.float64,
        tf.complex64,
        tf.complex128,
        tf.uint32,
        tf.uint64,
    ):
        a = (np.arange(2 * 2 * 3 * 8) % 7).reshape(2, 2, 3, 8)
        x = tf.cast(tf.constant(a), dtype)
        y = subpixel.shuffle(x, 2, layout="channels_last", order="DCR")
        assert y.dtype == dtype
        got = tf.cast(y, tf.float64).numpy() if dtype != tf.bool else y.numpy()
        expected = reference("shuffle", a, 2, layout="channels_last", order="DCR")
        np.testing.assert_array_equal(got, expected.astype(got.dtype))


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("factor,spatial", GEOMETRIES)
def test_gradient_is_the_adjoint(factor, spatial, layout, order):
    shape, kw = shuffle_case(factor, spatial, layout, order)
    x = tf.Variable(tf.random.normal(shape, dtype=tf.float64))
    with tf.GradientTape() as tape:
        y = subpixel.shuffle(x, factor, **kw)
        g = tf.random.normal(y.shape, dtype=tf.float64)
        loss = tf.reduce_sum(y * g)
    grad = tape.gradient(loss, x)
    np.testing.assert_array_equal(grad.numpy(), subpixel.unshuffle(g, factor, **kw).numpy())


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("jit", [False, True], ids=["graph", "xla"])
def test_function_with_none_batch(layout, order, jit):
    factor = (2, 3)
    spec_shape = (None, 12, 3, 4) if layout == "channels_first" else (None, 3, 4, 12)

    @tf.function(input_signature=[tf.TensorSpec(spec_shape, tf.float32)], jit_compile=jit)
    def f(x):
        y = subpixel.shuffle(x, factor, layout=layout, order=order)
        return subpixel.unshuffle(y + 1.0, factor, layout=layout, order=order)

    concrete = f.get_concrete_function()
    assert concrete.output_shapes.as_list() == list(spec_shape)
    for n in (1, 3):
        a = np.random.default_rng(n).standard_normal((n, *spec_shape[1:])).astype(np.float32)
        expected = reference(
            "unshuffle",
            reference("shuffle", a, factor, layout=layout, order=order) + 1.0,
            factor,
            layout=layout,
            order=order,
        )
        np.testing.assert_allclose(f(tf.constant(a)).numpy(), expected, rtol=0, atol=0)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_function_with_unknown_spatial_size(layout, order):
    spec_shape = (None, 12, None, None) if layout == "channels_first" else (None, None, None, 12)

    @tf.function(input_signature=[tf.TensorSpec(spec_shape, tf.float32)])
    def f(x):
        return subpixel.shuffle(x, 2, layout=layout, order=order)

    out_shape = f.get_concrete_function().output_shapes.as_list()
    assert out_shape == (
        [None, 3, None, None] if layout == "channels_first" else [None, None, None, 3]
    )
    a = (
        np.random.default_rng(0)
        .standard_normal((2, 12, 3, 5) if layout == "channels_first" else (2, 3, 5, 12))
        .astype(np.float32)
    )
    np.testing.assert_array_equal(
        f(tf.constant(a)).numpy(), reference("shuffle", a, 2, layout=layout, order=order)
    )


@pytest.mark.parametrize("layout", LAYOUTS)
def test_unknown_spatial_size_not_divisible_fails_at_run_time(layout):
    """The contract's message, raised when the graph runs (as eager and jax.jit raise it
    at call time)."""
    spec = (None, 2, None, 4) if layout == "channels_first" else (None, None, 4, 2)
    shape = (1, 2, 5, 4) if layout == "channels_first" else (1, 5, 4, 2)
    axis = 2 if layout == "channels_first" else 1

    @tf.function(input_signature=[tf.TensorSpec(spec, tf.float32)])
    def f(x):
        return subpixel.unshuffle(x, 2, layout=layout)

    with pytest.raises(ValueError) as eager:
        subpixel.unshuffle(tf.zeros(shape), 2, layout=layout)
    with pytest.raises(tf.errors.InvalidArgumentError) as graph:
        f(tf.zeros(shape))
    assert str(eager.value) in str(graph.value)
    assert f"spatial size 5 on axis {axis}, which is not divisible by its factor 2" in str(
        eager.value
    )
    good = (2, 2, 6, 4) if layout == "channels_first" else (2, 6, 4, 2)
    a = np.arange(np.prod(good), dtype=np.float32).reshape(good)
    np.testing.assert_array_equal(
        f(tf.constant(a)).numpy(), reference("unshuffle", a, 2, layout=layout)
    )


def test_unknown_rank_is_the_contract_error():
    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32)])
    def f(x):
        return subpixel.shuffle(x, 2)

    with pytest.raises(
        ValueError,  # tf.function prefixes the user-code trace
        match=r"`x` must have a known number of dimensions \(rank\)\. Received: x of unknown rank",
    ):
        f.get_concrete_function()


@pytest.mark.parametrize("dtype", ["qint8", "quint8", "qint16", "quint16", "qint32"])
def test_quantized_dtypes(dtype):
    """Quantized tensors have no transpose kernel: they move as integers of their width."""
    qt = getattr(tf, dtype)
    plain = {1: "int8", 2: "int16", 4: "int32"}[qt.size]
    if dtype.startswith("qu"):
        plain = "u" + plain
    for layout, shape in (("channels_first", (2, 8, 3, 2)), ("channels_last", (2, 3, 2, 8))):
        for order in ORDERS:
            a = (np.arange(np.prod(shape)) % 100).astype(plain).reshape(shape)
            x = tf.bitcast(tf.constant(a), qt)
            y = subpixel.shuffle(x, 2, layout=layout, order=order)
            assert y.dtype == qt
            np.testing.assert_array_equal(
                tf.bitcast(y, plain).numpy(), reference("shuffle", a, 2, layout=layout, order=order)
            )


def test_variable_input():
    v = tf.Variable(tf.reshape(tf.range(2 * 8 * 2 * 2, dtype=tf.float32), (2, 8, 2, 2)))
    assert subpixel.backend_name(v) == "tensorflow"
    np.testing.assert_array_equal(
        subpixel.shuffle(v, 2).numpy(), reference("shuffle", v.numpy(), 2)
    )


def test_result_on_input_device():
    with tf.device("/CPU:0"):
        x = tf.zeros((1, 8, 2, 2))
    assert "CPU" in subpixel.shuffle(x, 2, order="DCR").device
