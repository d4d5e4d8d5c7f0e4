"""The rewrites' modes: checked arguments, and mode="fastest" timing each layer on
the input it gets from the example, keeping outputs and the original model."""

from __future__ import annotations

import jax.numpy as jnp
import keras
import numpy as np
import pytest
from flax import nnx

from subpixel.layers import flax as flax_layers
from subpixel.layers import keras as keras_layers
from subpixel.rewrite import flax as flax_rewrite
from subpixel.rewrite import keras as keras_rewrite
from subpixel.rewrite import torch as torch_rewrite

from zoo import (
    FlaxDCGAN,
    FlaxUpOutOfOrder,
    keras_dcgan,
)

L = keras.layers


def test_fastest_mode_in_keras_and_flax_keeps_outputs_and_the_original():
    dcgan = keras_dcgan()
    z = np.random.default_rng(0).standard_normal((2, 1, 1, 8)).astype(np.float32)
    expected = np.asarray(dcgan(z))
    nodes = [len(layer._inbound_nodes) for layer in dcgan.layers]
    fastest = keras_rewrite.replace_conv_transpose(dcgan, mode="fastest", example=z)
    assert [len(layer._inbound_nodes) for layer in dcgan.layers] == nodes  # untouched
    assert sum(isinstance(layer, keras_layers.SubPixelConv) for layer in fastest.layers) <= 3
    np.testing.assert_allclose(np.asarray(fastest(z)), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(dcgan(z)), expected)

    model = FlaxDCGAN()
    zj = jnp.asarray(z)
    expected = np.asarray(model(zj))
    flax_rewrite.replace_conv_transpose(model, mode="fastest", example=z)
    assert all(isinstance(m, (nnx.ConvTranspose, flax_layers.SubPixelConv, nnx.BatchNorm))
               for m in model.layers)  # fmt: skip
    np.testing.assert_allclose(np.asarray(model(zj)), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rewrite", [keras_rewrite.replace_conv_transpose,
                                     flax_rewrite.replace_conv_transpose,
                                     torch_rewrite.replace_conv_transpose])  # fmt: skip
def test_rewrite_modes_are_checked(rewrite):
    with pytest.raises(
        ValueError, match=r"^`mode` must be 'subpixel'.* or 'fastest'. Received: mode='fast'$"
    ):
        rewrite(object(), mode="fast")
    with pytest.raises(ValueError, match=r"^`mode='fastest'` needs an `example` input"):
        rewrite(object(), mode="fastest")


def test_flax_fastest_mode_on_a_module_out_of_order_and_a_wrong_example():
    model = FlaxUpOutOfOrder()
    x = np.random.default_rng(0).standard_normal((1, 4, 4, 4)).astype(np.float32)
    expected = model(jnp.asarray(x))
    with pytest.raises(
        ValueError,
        match=r"^`example` does not run through the model \(.*Received: example of shape \(1, 4, 4, 3\)$",
    ):
        flax_rewrite.replace_conv_transpose(model, mode="fastest", example=x[..., :3])
    assert isinstance(model.up1, nnx.ConvTranspose)  # unchanged
    flax_rewrite.replace_conv_transpose(model, mode="fastest", example=x)
    np.testing.assert_allclose(
        np.asarray(model(jnp.asarray(x))), np.asarray(expected), rtol=1e-5, atol=1e-5
    )


def test_a_bfloat16_flax_module_keeps_its_parameters_dtype():
    half = FlaxUpOutOfOrder(jnp.bfloat16)
    flax_rewrite.replace_conv_transpose(half)
    assert half.up1.kernel[...].dtype == jnp.bfloat16


def test_keras_fastest_mode_refuses_an_example_that_does_not_run():
    with pytest.raises(ValueError, match=r"^`example` does not run through the model"):
        keras_rewrite.replace_conv_transpose(
            keras_dcgan(), mode="fastest", example=np.zeros((1, 2, 2, 3))
        )


def test_each_framework_refuses_what_is_not_its_model():
    dcgan = keras_dcgan()
    with pytest.raises(
        TypeError, match=r"^`model` must be a PyTorch nn.Module. Received: model of type keras"
    ):
        torch_rewrite.replace_conv_transpose(dcgan)
    with pytest.raises(TypeError, match=r"^`module` must be a Flax NNX module"):
        flax_rewrite.replace_conv_transpose(dcgan)
    with pytest.raises(ValueError, match=r"^`model` must be built"):
        keras_rewrite.replace_conv_transpose(keras.Sequential([L.Conv2DTranspose(2, 4, strides=2)]))


def test_keras_fastest_times_the_layers_of_nested_models(monkeypatch):
    """`fastest` times a nested model's transposed convolution on the input it gets
    there (timing made to pick the sub-pixel form, and to check what it runs)."""
    from subpixel._core import timing as _timing

    timed = []

    def pick_sub_pixel(runs, **_):
        timed.append([np.asarray(run()).shape for run in runs])  # both forms run
        return 1

    monkeypatch.setattr(_timing, "fastest", pick_sub_pixel)
    inner_in = keras.Input((6, 6, 5))
    inner = keras.Model(inner_in, L.Conv2DTranspose(2, 4, strides=2, padding="same")(inner_in))
    outer_in = keras.Input((3, 3, 3))
    h = L.Conv2DTranspose(5, 4, strides=2, padding="same")(outer_in)
    outer = keras.Model(outer_in, L.ReLU()(inner(h)))
    x = np.random.default_rng(0).standard_normal((2, 3, 3, 3)).astype(np.float32)
    rewritten = keras_rewrite.replace_conv_transpose(outer, mode="fastest", example=x)
    assert timed == [[(2, 6, 6, 5)] * 2, [(2, 12, 12, 2)] * 2]
    assert isinstance(rewritten.layers[1], keras_layers.SubPixelConv)
    kinds = [type(layer).__name__ for layer in rewritten.layers[2].layers]
    assert "SubPixelConv" in kinds, kinds
    np.testing.assert_allclose(np.asarray(rewritten(x)), np.asarray(outer(x)), rtol=1e-5, atol=1e-5)
    assert all("call" not in vars(layer) for layer in (*outer.layers, *inner.layers))
