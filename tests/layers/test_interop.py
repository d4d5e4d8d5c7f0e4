"""Weights travel between frameworks: a layer built in one, ported to each other
(directly and through a safetensors file), gives the same output on the same input.
Runs in the ``interop`` tox environment, where every framework is installed."""

from __future__ import annotations

import numpy as np
import pytest

from adapters import requested_backends

NEEDED = {"torch", "tensorflow", "jax"}
if not NEEDED <= set(requested_backends()):
    pytest.skip(
        "needs torch, tensorflow and jax in SUBPIXEL_TEST_BACKENDS", allow_module_level=True
    )

import jax.numpy as jnp
import keras
import torch
from flax import nnx

import subpixel
from subpixel.layers import flax as flax_layers
from subpixel.layers import keras as keras_layers
from subpixel.layers import torch as torch_layers
from subpixel.layers.flax import SubPixelConv as FlaxSubPixelConv
from subpixel.layers.keras import SubPixelConv as KerasSubPixelConv
from subpixel.layers.torch import SUB_PIXEL_CONV

GEOMETRIES = [((3,), 3), ((3, 2), (2, 3)), ((3, 1, 2), (1, 2, 2))]


def _cf_to_cl(a):
    return np.ascontiguousarray(np.moveaxis(a, 1, -1))


def _outputs(agnostic, x_cf):
    """The same layer in every framework, all on the same channels_first input."""
    x_cl = _cf_to_cl(x_cf)
    outs = {
        "numpy": agnostic(x_cf)
        if agnostic.layout == "channels_first"
        else np.moveaxis(agnostic(x_cl), -1, 1)
    }
    t = torch_layers.from_agnostic(agnostic)
    outs["torch"] = t(torch.from_numpy(x_cf)).detach().numpy()
    k = keras_layers.from_agnostic(agnostic, "channels_last")  # TensorFlow has no NCHW conv on CPU
    outs["keras"] = np.moveaxis(np.asarray(k(x_cl)), -1, 1)
    f = flax_layers.from_agnostic(agnostic, "channels_last")
    outs["flax"] = np.moveaxis(np.asarray(f(jnp.asarray(x_cl))), -1, 1)
    outs["tensorflow"] = keras_layers.to_agnostic(k)(keras.ops.convert_to_tensor(x_cl)).numpy()
    outs["tensorflow"] = np.moveaxis(outs["tensorflow"], -1, 1)
    outs["jax"] = np.moveaxis(np.asarray(flax_layers.to_agnostic(f)(jnp.asarray(x_cl))), -1, 1)
    outs["torch->agnostic"] = torch_layers.to_agnostic(t)(x_cf)
    return outs


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("order", ["CRD", "DCR"])
@pytest.mark.parametrize("kernel,factor", GEOMETRIES, ids=["1d", "2d", "3d"])
def test_built_in_torch_runs_everywhere(kernel, factor, order, layout, tmp_path):
    torch.manual_seed(0)
    d = len(kernel)
    module = SUB_PIXEL_CONV[d](3, 2, kernel, factor, order=order, init="default")
    agnostic = torch_layers.to_agnostic(module, layout=layout)
    path = tmp_path / "layer.safetensors"
    agnostic.save(path)
    loaded = subpixel.SubPixelConv.load(path)
    x = np.random.default_rng(0).standard_normal((2, 3, *(5, 4, 3)[:d])).astype(np.float32)
    reference = module(torch.from_numpy(x)).detach().numpy()
    for name, out in _outputs(loaded, x).items():
        np.testing.assert_allclose(out, reference, rtol=1e-4, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("order", ["CRD", "DCR"])
def test_built_in_keras_and_flax_run_in_torch(order):
    x = np.random.default_rng(1).standard_normal((2, 4, 5, 3)).astype(np.float32)  # NHWC
    k = KerasSubPixelConv(2, (3, 2), (2, 3), order=order, bias_initializer="random_normal")
    y_keras = np.asarray(k(x))
    t = torch_layers.from_agnostic(keras_layers.to_agnostic(k))
    y_torch = t(torch.from_numpy(np.moveaxis(x, -1, 1))).detach().numpy()
    np.testing.assert_allclose(np.moveaxis(y_torch, 1, -1), y_keras, rtol=1e-4, atol=1e-4)
    f = FlaxSubPixelConv(
        3, 2, (3, 2), (2, 3), order=order, bias_init=nnx.initializers.normal(1.0), rngs=nnx.Rngs(0)
    )
    y_flax = np.asarray(f(jnp.asarray(x)))
    y_torch = torch_layers.from_agnostic(flax_layers.to_agnostic(f))(
        torch.from_numpy(np.moveaxis(x, -1, 1))
    )
    np.testing.assert_allclose(
        np.moveaxis(y_torch.detach().numpy(), 1, -1), y_flax, rtol=1e-4, atol=1e-4
    )


def test_crd_kernel_with_dcr_shuffle_is_the_porting_bug():
    """With several output channels, pairing a CRD kernel with a DCR shuffle changes
    the numbers; reorder_channels repairs it."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 3 * 4, 3, padding=1)
    x = torch.randn(1, 4, 5, 5)
    crd = subpixel.shuffle(conv(x), 2, order="CRD").detach().numpy()
    wrong = subpixel.shuffle(conv(x), 2, order="DCR").detach().numpy()
    assert not np.allclose(crd, wrong)
    w = subpixel.weights.reorder_channels(conv.weight.detach().numpy(), 2, src="CRD", dst="DCR")
    b = subpixel.weights.reorder_channels(conv.bias.detach().numpy(), (2, 2), src="CRD", dst="DCR")
    fixed = subpixel.sub_pixel_conv(x.numpy(), w, b, factor=2, order="DCR")
    np.testing.assert_allclose(fixed, crd, rtol=1e-5, atol=1e-5)
