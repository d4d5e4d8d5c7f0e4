"""Exact rewrites of the reference architectures' upsampling layers, in each
framework: the same outputs, and in PyTorch the same gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch import nn

from subpixel.layers import flax as flax_layers
from subpixel.layers import keras as keras_layers
from subpixel.layers import torch as torch_layers
from subpixel.rewrite import flax as flax_rewrite
from subpixel.rewrite import keras as keras_rewrite
from subpixel.rewrite import torch as torch_rewrite

from zoo import (
    CASES,
    FlaxDCGAN,
    TorchDCGAN,
    TorchESPCN,
    keras_dcgan,
    keras_espcn,
    run_torch,
    torch_model,
)


@pytest.mark.parametrize("name", ["dcgan", "unet"])
def test_torch_replace_conv_transpose_is_exact_and_trains_alike(name):
    make, _, _, shape = CASES[name]
    original = torch_model(make).double()
    rewritten = torch_model(make).double()
    rewritten.load_state_dict(original.state_dict())
    torch_rewrite.replace_conv_transpose(rewritten)
    assert not any(
        isinstance(m, nn.ConvTranspose2d) and m.stride[0] > 1 for m in rewritten.modules()
    )
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(shape))
    with torch.no_grad():
        torch.testing.assert_close(rewritten(x), original(x), rtol=1e-12, atol=1e-12)
    original.train()
    rewritten.train()
    original(x).square().sum().backward()
    rewritten(x).square().sum().backward()
    g_old = [p.grad for n, p in original.named_parameters() if "main.0" in n or "enc" in n]
    g_new = [p.grad for n, p in rewritten.named_parameters() if "main.0" in n or "enc" in n]
    for a, b in zip(g_old, g_new):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_torch_replace_pixel_shuffle_and_fastest_mode():
    model = torch_model(TorchESPCN)
    x = np.random.default_rng(0).standard_normal((1, 3, 6, 7)).astype(np.float32)
    expected = run_torch(model, x)
    torch_rewrite.replace_pixel_shuffle(model, lowering="flat")
    assert isinstance(model.pixel_shuffle, torch_layers.PixelShuffle)
    np.testing.assert_array_equal(run_torch(model, x), expected)
    dcgan = torch_model(TorchDCGAN)
    z = np.random.default_rng(1).standard_normal((2, 8, 1, 1)).astype(np.float32)
    before = run_torch(dcgan, z)
    torch_rewrite.replace_conv_transpose(dcgan, mode="fastest", example=torch.from_numpy(z))
    np.testing.assert_allclose(run_torch(dcgan, z), before, rtol=1e-5, atol=1e-5)


def test_keras_rewrites_are_exact():
    dcgan = keras_dcgan(dtype="float64")
    z = np.random.default_rng(0).standard_normal((2, 1, 1, 8))
    rewritten = keras_rewrite.replace_conv_transpose(dcgan)
    assert sum(isinstance(layer, keras_layers.SubPixelConv) for layer in rewritten.layers) == 3
    np.testing.assert_allclose(
        np.asarray(rewritten(z)), np.asarray(dcgan(z)), rtol=1e-12, atol=1e-12
    )
    espcn = keras_espcn()
    x = np.random.default_rng(1).standard_normal((1, 5, 6, 3)).astype(np.float32)
    shuffled = keras_rewrite.replace_pixel_shuffle(espcn, lowering="flat")
    assert isinstance(shuffled.layers[-1], keras_layers.PixelShuffle)
    np.testing.assert_array_equal(np.asarray(shuffled(x)), np.asarray(espcn(x)))


def test_flax_replace_conv_transpose_is_exact():

    with jax.enable_x64(True):
        model = FlaxDCGAN(dtype=jnp.float64)
        z = jnp.asarray(np.random.default_rng(0).standard_normal((2, 1, 1, 8)))
        expected = np.asarray(model(z))
        flax_rewrite.replace_conv_transpose(model)
        assert sum(isinstance(m, flax_layers.SubPixelConv) for m in model.layers) == 3
        got = np.asarray(model(z))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
