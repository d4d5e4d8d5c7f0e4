"""What a rewrite keeps: shared modules, tied weights, memory format, precision,
trainability, output sizes, nested models and what the rest of a graph does."""

from __future__ import annotations

import jax.numpy as jnp
import keras
import numpy as np
import pytest
import torch
from flax import nnx
from torch import nn

from subpixel.layers import flax as flax_layers
from subpixel.layers import torch as torch_layers
from subpixel.rewrite import flax as flax_rewrite
from subpixel.rewrite import keras as keras_rewrite
from subpixel.rewrite import torch as torch_rewrite

from zoo import (
    FlaxDCGAN,
    FlaxOddTransposes,
    KerasSubclassed,
    TorchDCGAN,
    bn_state,
    torch_model,
)

L = keras.layers


def test_torch_rewrites_keep_sharing_ties_and_memory_format():
    ct = nn.ConvTranspose2d(3, 3, 4, stride=2, padding=1)
    holder = nn.Module()
    holder.a, holder.b = ct, ct
    torch_rewrite.replace_conv_transpose(holder)
    assert holder.a is holder.b and isinstance(holder.a, torch_layers.SubPixelConv2d)
    enc = nn.Conv2d(3, 4, 4, stride=2, padding=1)
    dec = nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1)
    dec.weight = enc.weight  # tied (an autoencoder)
    model = nn.Sequential(enc, dec)
    torch_rewrite.replace_conv_transpose(model, mode="phases")
    assert model[1].weight is model[0].weight
    bare = nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1).double()
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    for mode in ("subpixel", "phases"):
        new = torch_rewrite.replace_conv_transpose(bare, mode=mode)
        assert not isinstance(new, nn.ConvTranspose2d)
        y = new(x)
        assert y.is_contiguous(memory_format=torch.channels_last), mode
        torch.testing.assert_close(y, bare(x), rtol=1e-12, atol=1e-12)


def test_torch_rewrites_keep_precision_and_trainability():
    torch.manual_seed(0)
    ct = nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1).double()
    with torch.no_grad():
        ct.weight.normal_()  # float64 values that float32 cannot hold
    ct.weight.requires_grad_(False)
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64)
    new = torch_rewrite.replace_conv_transpose(ct)
    torch.testing.assert_close(new(x), ct(x), rtol=1e-12, atol=1e-12)
    assert not new.weight.requires_grad and new.bias.requires_grad


def test_torch_rewrites_take_output_size_as_conv_transpose_does():
    """PhasedConvTranspose takes it as ConvTranspose does, SubPixelConv checks it."""
    torch.manual_seed(0)
    ct = nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1).double()
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64)
    new = torch_rewrite.sub_pixel_of(ct)
    phased = torch_layers.PhasedConvTranspose(ct)
    for size in ((10, 12), (11, 13)):
        torch.testing.assert_close(
            phased(x, output_size=size), ct(x, output_size=size), rtol=1e-12, atol=1e-12
        )
    with pytest.raises(
        ValueError, match=r"^`output_size` must be between \(10, 12\) and \(11, 13\)"
    ):
        phased(x, output_size=(12, 12))
    with pytest.raises(ValueError, match=r"^`output_size` must be this layer's output size"):
        new(x, output_size=(11, 13))


def test_torch_rewrites_keep_a_reparametrised_weight():
    """A weight norm computes the weight each call: the layer is kept as it is."""
    normed = nn.utils.parametrizations.weight_norm(nn.ConvTranspose2d(4, 3, 4, stride=2))
    model = nn.Sequential(normed)
    torch_rewrite.replace_conv_transpose(model, mode="phases")
    assert model[0] is normed


def test_flax_rewrite_takes_what_is_exact_and_keeps_the_rest():
    model = FlaxOddTransposes()
    x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 5, 5, 3)).astype(np.float32))
    expected = model(x)
    flax_rewrite.replace_conv_transpose(model)
    assert isinstance(model.int_pad, flax_layers.SubPixelConv)
    assert isinstance(model.circular, nnx.ConvTranspose)  # no zero-padding equivalent
    assert isinstance(model.too_wide, nnx.ConvTranspose)
    assert isinstance(model.half, flax_layers.SubPixelConv) and model.half is model.again
    got = model(x)
    for a, b in zip(got[:3], expected[:3]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
    assert got[3].dtype == expected[3].dtype == jnp.bfloat16  # the compute dtype is kept


def test_keras_rewrite_reaches_nested_models_and_refuses_subclassed_ones():
    inner_in = keras.Input((4, 4, 3))
    inner = keras.Model(inner_in, L.Conv2DTranspose(2, 4, strides=2, padding="same")(inner_in))
    outer_in = keras.Input((4, 4, 3))
    outer = keras.Model(outer_in, L.ReLU()(inner(outer_in)))
    x = np.random.default_rng(0).standard_normal((1, 4, 4, 3)).astype(np.float32)
    rewritten = keras_rewrite.replace_conv_transpose(outer)
    kinds = [type(layer).__name__ for layer in rewritten.layers[1].layers]
    assert "SubPixelConv" in kinds, kinds
    np.testing.assert_allclose(np.asarray(rewritten(x)), np.asarray(outer(x)), rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match=r"^`model` must be a functional or Sequential Keras model"):
        keras_rewrite.replace_conv_transpose(KerasSubclassed())


def test_keras_shuffle_rewrite_keeps_what_follows_and_what_a_lambda_adds():
    inputs = keras.Input((4, 4, 12))
    h = keras.ops.depth_to_space(inputs, 2)
    h = L.Conv2D(3, 3, padding="same")(h)  # weights after a rewritten graph operation
    relu = L.Lambda(lambda t: keras.ops.relu(keras.ops.depth_to_space(t, 2)))(inputs)
    model = keras.Model(inputs, [h, relu])
    assert keras_rewrite.shuffle_op(model.operations[-1]) is None  # a shuffle and a relu
    rewritten = keras_rewrite.replace_pixel_shuffle(model)
    x = np.random.default_rng(0).standard_normal((1, 4, 4, 12)).astype(np.float32)
    for got, want in zip(rewritten(x), model(x)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def _d2s(t):
    return keras.ops.depth_to_space(t, 2)


LAMBDAS_THAT_DO_MORE = {
    "round": lambda t: keras.ops.round(_d2s(t)),  # (invisible on integer-valued probes)
    "floor": lambda t: keras.ops.floor(_d2s(t)),
    "clip": lambda t: keras.ops.clip(_d2s(t), -1e4, 1e4),
    "crop": lambda t: _d2s(t)[:, :64, :64],  # (invisible on small probes)
    "float16": lambda t: keras.ops.cast(keras.ops.cast(_d2s(t), "float16"), "float32"),
    "scale": lambda t: _d2s(t) * 1.0001,
}


@pytest.mark.parametrize("name", LAMBDAS_THAT_DO_MORE)
def test_keras_shuffle_rewrite_keeps_a_lambda_that_does_more_than_a_shuffle(name):
    inputs = keras.Input((None, None, 12))
    model = keras.Model(inputs, L.Lambda(LAMBDAS_THAT_DO_MORE[name])(inputs))
    assert keras_rewrite.shuffle_op(model.operations[-1]) is None
    rewritten = keras_rewrite.replace_pixel_shuffle(model)
    assert [type(layer).__name__ for layer in rewritten.layers] == ["InputLayer", "Lambda"]
    x = (np.random.default_rng(0).standard_normal((1, 70, 70, 12)) * 3e4).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(rewritten(x)), np.asarray(model(x)))
    plain = keras.Model(inputs, L.Lambda(_d2s)(inputs))  # the same without the extra work
    assert keras_rewrite.shuffle_op(plain.operations[-1]) == (
        "shuffle",
        "DCR",
        (2, 2),
        "channels_last",
    )


def test_keras_rewrite_keeps_a_frozen_layer_frozen():
    frozen = keras.Sequential(
        [
            keras.Input((4, 4, 3)),
            L.Conv2DTranspose(2, 4, strides=2, padding="same", trainable=False),
        ]
    )
    assert not keras_rewrite.replace_conv_transpose(frozen).layers[-1].trainable


def test_torch_fastest_mode_never_changes_a_models_state():
    """Batch norms in training mode: the run that times the forms uses eval mode, so
    no running statistics move and every mode is restored."""
    dcgan = torch_model(TorchDCGAN).train()
    before = bn_state(dcgan)
    z = np.random.default_rng(0).standard_normal((2, 8, 1, 1))  # float64, as NumPy makes it
    torch_rewrite.replace_conv_transpose(dcgan, mode="fastest", example=z)
    for k, v in bn_state(dcgan).items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    assert all(m.training for m in dcgan.modules())


def test_flax_fastest_mode_never_changes_a_models_state():
    z = np.random.default_rng(0).standard_normal((2, 8, 1, 1))
    model = FlaxDCGAN()
    for m in model.layers:
        if isinstance(m, nnx.BatchNorm):
            m.use_running_average = False
    means = [np.asarray(m.mean[...]) for m in model.layers if isinstance(m, nnx.BatchNorm)]
    flax_rewrite.replace_conv_transpose(model, mode="fastest", example=z.transpose(0, 2, 3, 1))
    after = [np.asarray(m.mean[...]) for m in model.layers if isinstance(m, nnx.BatchNorm)]
    for a, b in zip(means, after):
        np.testing.assert_array_equal(a, b)
