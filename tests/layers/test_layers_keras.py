"""subpixel.layers.keras on the Keras backend named by KERAS_BACKEND (each tox
environment sets it to its framework): values, serialisation, training."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from adapters import requested_backends

KERAS_BACKEND = os.environ.get("KERAS_BACKEND")
if KERAS_BACKEND not in ("tensorflow", "jax", "torch") or KERAS_BACKEND not in requested_backends():
    pytest.skip(
        f"KERAS_BACKEND={KERAS_BACKEND!r} is not a requested backend", allow_module_level=True
    )

import keras

import subpixel
from subpixel._core import spec as _spec
from subpixel.layers import keras as keras_layers
from subpixel.layers.keras import ICNR, PixelShuffle, PixelUnshuffle, SubPixelConv

from cases import LAYER_GEOMETRIES, LAYOUTS, ORDERS
from reference import sub_pixel_conv_ref


def to_np(t):
    return np.asarray(keras.ops.convert_to_numpy(t))


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("data_format", LAYOUTS)
@pytest.mark.parametrize("kernel,factor,padding", LAYER_GEOMETRIES)
def test_values_match_the_reference(kernel, factor, padding, data_format, order):
    d = len(kernel)
    layer = SubPixelConv(
        2,
        kernel,
        factor,
        padding=padding,
        order=order,
        data_format=data_format,
        kernel_initializer="glorot_uniform",
        bias_initializer="random_normal",
    )
    spatial = (5, 4, 3)[:d]
    x_cf = np.random.default_rng(0).standard_normal((2, 3, *spatial)).astype(np.float32)
    x = x_cf if data_format == "channels_first" else np.moveaxis(x_cf, 1, -1)
    y = to_np(layer(x))
    w = subpixel.weights.convert_layout(to_np(layer.kernel), src="keras", dst="torch")
    expected = sub_pixel_conv_ref(
        x_cf, w, to_np(layer.bias), factor, _spec.normalize_padding(padding, kernel), order=order
    )
    if data_format == "channels_last":
        expected = np.moveaxis(expected, 1, -1)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
    assert layer.compute_output_shape((None, *x.shape[1:])) == (None, *y.shape[1:])


@pytest.mark.parametrize("order", ["CRD", "DCR"])
def test_icnr_is_nearest_neighbour_at_init(order):
    layer = SubPixelConv(3, 3, 2, order=order)
    y = to_np(layer(np.random.default_rng(1).standard_normal((1, 4, 4, 5)).astype("float32")))
    np.testing.assert_allclose(y[:, 1::2, 1::2], y[:, ::2, ::2], rtol=1e-6, atol=1e-6)
    kernel = ICNR((2, 2), order)((3, 3, 5, 12))
    assert tuple(kernel.shape) == (3, 3, 5, 12)


def test_shuffle_layers_and_model_save_reload(tmp_path):
    inputs = keras.Input((6, 4, 12))
    h = SubPixelConv(3, 3, (2, 1), order="DCR", blur=True, crop=((1, 0), (0, 0)))(inputs)
    h = PixelUnshuffle((1, 2))(h)
    outputs = PixelShuffle((1, 2), order="CRD")(h)
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(2).standard_normal((2, 6, 4, 12)).astype("float32")
    y = to_np(model(x))
    assert y.shape == (2, 11, 4, 3)
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(to_np(reloaded(x)), y, rtol=1e-6, atol=1e-6)
    layer = model.layers[1]
    clone = SubPixelConv.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def test_fit_decreases_the_loss():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            SubPixelConv(1, 3, 2),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    rng = np.random.default_rng(0)
    x, y = rng.random((8, 8, 8, 1)).astype("float32"), rng.random((8, 16, 16, 1)).astype("float32")
    history = model.fit(x, y, epochs=5, batch_size=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_from_conv_transpose_equals_conv2d_transpose():
    deconv = keras.layers.Conv2DTranspose(
        3, 4, strides=2, padding="same", bias_initializer="random_normal"
    )
    x = np.random.default_rng(3).standard_normal((2, 5, 6, 4)).astype("float32")
    expected = to_np(deconv(x))
    kernel, bias = (to_np(v) for v in deconv.weights)
    layer = subpixel.SubPixelConv.from_conv_transpose(
        kernel,
        bias,
        stride=2,
        padding="same",
        source="tensorflow",
        order="DCR",
        layout="channels_last",
    )
    np.testing.assert_allclose(layer(x), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        to_np(keras_layers.from_agnostic(layer)(x)), expected, rtol=1e-4, atol=1e-4
    )


def test_round_trip_through_the_agnostic_layer():
    layer = SubPixelConv(2, (3, 3), (3, 2), order="DCR", bias_initializer="random_normal")
    x = np.random.default_rng(4).standard_normal((1, 4, 5, 3)).astype("float32")
    y = to_np(layer(x))
    agnostic = keras_layers.to_agnostic(layer)
    np.testing.assert_allclose(agnostic(x), y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        to_np(keras_layers.from_agnostic(agnostic)(x)), y, rtol=1e-5, atol=1e-5
    )
    assert math.prod(agnostic.factor) == 6


def test_from_keras_plain_conv2d_with_factor_and_order():
    conv = keras.layers.Conv2D(12, 3, padding="same", bias_initializer="random_normal")
    x = np.random.default_rng(5).standard_normal((1, 5, 4, 3)).astype("float32")
    lr = to_np(conv(x))
    layer = keras_layers.to_agnostic(conv, factor=2, order="DCR")
    expected = to_np(keras.ops.depth_to_space(lr, 2, data_format="channels_last"))
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="`factor` is needed"):
        keras_layers.to_agnostic(conv)
    relu = keras.layers.Conv2D(12, 3, activation="relu")
    relu.build((None, 5, 4, 3))
    with pytest.raises(ValueError, match="applies activation 'relu'"):
        keras_layers.to_agnostic(relu, factor=2)
    with pytest.raises(
        ValueError, match=r"must be a subpixel\.layers\.keras\.SubPixelConv or a keras"
    ):
        keras_layers.to_agnostic(keras.layers.Dense(3), factor=2)


def test_activation_like_keras_conv_layers():
    x = np.random.default_rng(6).standard_normal((1, 4, 4, 3)).astype("float32")
    plain = SubPixelConv(2, 3, 2, bias_initializer="random_normal")
    y = to_np(plain(x))
    relu = SubPixelConv(2, 3, 2, activation="relu")
    relu(x)
    relu.set_weights(plain.get_weights())
    np.testing.assert_allclose(to_np(relu(x)), np.maximum(y, 0), rtol=1e-6, atol=1e-6)
    assert SubPixelConv.from_config(relu.get_config()).activation is keras.activations.relu
