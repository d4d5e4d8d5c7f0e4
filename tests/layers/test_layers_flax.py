"""subpixel.layers.flax: values, jit, an optax step, batch sharding."""

from __future__ import annotations

import numpy as np
import pytest

from adapters import requested_backends

if "jax" not in requested_backends():
    pytest.skip("jax is not in SUBPIXEL_TEST_BACKENDS", allow_module_level=True)

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import subpixel
from subpixel._core import spec as _spec
from subpixel.layers import flax as flax_layers
from subpixel.layers.flax import PixelShuffle, PixelUnshuffle, SubPixelConv

from cases import LAYER_GEOMETRIES, LAYOUTS, ORDERS
from reference import sub_pixel_conv_ref


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kernel,factor,padding", LAYER_GEOMETRIES)
def test_values(kernel, factor, padding, layout, order):
    d = len(kernel)
    layer = SubPixelConv(
        3,
        2,
        kernel,
        factor,
        padding=padding,
        order=order,
        layout=layout,
        bias_init=nnx.initializers.normal(1.0),
        rngs=nnx.Rngs(0),
    )
    x_cf = np.random.default_rng(0).standard_normal((2, 3, *(5, 4, 3)[:d])).astype(np.float32)
    x = x_cf if layout == "channels_first" else np.moveaxis(x_cf, 1, -1)
    y = np.asarray(jax.jit(lambda m, t: m(t))(layer, jnp.asarray(x)))
    w = subpixel.weights.convert_layout(np.asarray(layer.kernel[...]), src="flax", dst="torch")
    expected = sub_pixel_conv_ref(
        x_cf,
        w,
        np.asarray(layer.bias[...]),
        factor,
        _spec.normalize_padding(padding, kernel),
        order=order,
    )
    if layout == "channels_last":
        expected = np.moveaxis(expected, 1, -1)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


def test_shuffle_modules():
    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 3, 4, 12)).astype(np.float32))
    y = PixelShuffle((2, 3), order="DCR")(x)
    assert y.shape == (2, 6, 12, 2)
    np.testing.assert_array_equal(np.asarray(PixelUnshuffle((2, 3), order="DCR")(y)), np.asarray(x))


def test_optax_step_decreases_loss():
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.conv = nnx.Conv(1, 8, (3, 3), rngs=rngs)
            self.up = SubPixelConv(8, 1, (3, 3), 2, rngs=rngs)

        def __call__(self, x):
            return self.up(nnx.relu(self.conv(x)))

    model = Net(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    rng = np.random.default_rng(0)
    x, target = (
        jnp.asarray(rng.random((4, 8, 8, 1)), jnp.float32),
        jnp.asarray(rng.random((4, 16, 16, 1)), jnp.float32),
    )

    @nnx.jit
    def step(model, optimizer):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - target) ** 2))(model)
        optimizer.update(model, grads)
        return loss

    losses = [float(step(model, optimizer)) for _ in range(5)]
    assert losses[-1] < losses[0]


def test_batch_sharded_over_two_devices():
    devices = jax.devices()
    assert len(devices) >= 2, "needs XLA_FLAGS=--xla_force_host_platform_device_count=2"
    mesh = Mesh(np.array(devices[:2]), ("batch",))
    layer = SubPixelConv(3, 2, (3, 3), 2, rngs=nnx.Rngs(0))
    x = np.random.default_rng(2).standard_normal((4, 5, 6, 3)).astype(np.float32)
    xs = jax.device_put(x, NamedSharding(mesh, P("batch")))
    y = jax.jit(lambda m, t: m(t))(layer, xs)
    assert y.sharding.is_equivalent_to(NamedSharding(mesh, P("batch")), y.ndim), y.sharding
    np.testing.assert_allclose(
        np.asarray(y), np.asarray(layer(jnp.asarray(x))), rtol=1e-5, atol=1e-5
    )


def test_round_trip_through_the_agnostic_layer():
    layer = SubPixelConv(
        3, 2, (3, 2), (2, 3), order="DCR", bias_init=nnx.initializers.normal(1.0), rngs=nnx.Rngs(1)
    )
    x = np.random.default_rng(3).standard_normal((1, 4, 5, 3)).astype(np.float32)
    y = np.asarray(layer(jnp.asarray(x)))
    agnostic = flax_layers.to_agnostic(layer)
    np.testing.assert_allclose(agnostic(x), y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(flax_layers.from_agnostic(agnostic)(jnp.asarray(x))), y, rtol=1e-5, atol=1e-5
    )
