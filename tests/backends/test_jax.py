"""JAX specifics: jit, vmap, grad/vjp adjoint, sharding.  Runs when ``jax`` is in
SUBPIXEL_TEST_BACKENDS (with XLA_FLAGS=--xla_force_host_platform_device_count=2)."""

from __future__ import annotations

import numpy as np
import pytest

from adapters import requested_backends

if "jax" not in requested_backends():
    pytest.skip("jax is not in SUBPIXEL_TEST_BACKENDS", allow_module_level=True)

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import subpixel

from cases import GEOMETRIES, LAYOUTS, ORDERS, lr_shape, shuffle_case
from reference import reference


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_jit(layout, order):
    factor = (2, 3)
    f = jax.jit(lambda x: subpixel.shuffle(x, factor, layout=layout, order=order))
    for n in (1, 2):
        a = (
            np.random.default_rng(n)
            .standard_normal(lr_shape((n,), 12, (3, 4), layout))
            .astype(np.float32)
        )
        np.testing.assert_array_equal(
            np.asarray(f(jnp.asarray(a))),
            reference("shuffle", a, factor, layout=layout, order=order),
        )


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_vmap(layout, order):
    """vmap over an extra leading axis equals a batch axis."""
    a = (
        np.random.default_rng(0)
        .standard_normal(lr_shape((4, 2), 8, (3, 2), layout))
        .astype(np.float32)
    )
    f = jax.vmap(lambda x: subpixel.shuffle(x, 2, layout=layout, order=order))
    np.testing.assert_array_equal(
        np.asarray(f(jnp.asarray(a))), reference("shuffle", a, 2, layout=layout, order=order)
    )
    g = jax.vmap(
        lambda x: subpixel.unshuffle(x, 2, layout=layout, order=order), in_axes=1, out_axes=1
    )
    y = reference("shuffle", a, 2, layout=layout, order=order)
    np.testing.assert_array_equal(np.asarray(g(jnp.asarray(y))), a)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("factor,spatial", GEOMETRIES)
def test_vjp_is_the_adjoint(factor, spatial, layout, order):
    shape, kw = shuffle_case(factor, spatial, layout, order)
    x = jax.random.normal(jax.random.key(0), shape)
    y, vjp = jax.vjp(lambda t: subpixel.shuffle(t, factor, **kw), x)
    g = jax.random.normal(jax.random.key(1), y.shape)
    (grad,) = vjp(g)
    np.testing.assert_array_equal(np.asarray(grad), np.asarray(subpixel.unshuffle(g, factor, **kw)))


def test_grad_of_scalar_loss():
    x = jax.random.normal(jax.random.key(0), (2, 12, 3, 2))
    w = jax.random.normal(jax.random.key(1), (2, 3, 6, 4))
    grad = jax.grad(lambda t: jnp.sum(subpixel.shuffle(t, (2, 2), order="DCR")[:, :3] * w))(x)
    np.testing.assert_array_equal(
        np.asarray(grad), np.asarray(subpixel.unshuffle(w, 2, order="DCR"))
    )


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("op", ["shuffle", "unshuffle"])
def test_batch_sharding_is_kept(op, layout, order):
    devices = jax.devices()
    if len(devices) < 2:
        pytest.fail(
            "needs XLA_FLAGS=--xla_force_host_platform_device_count=2 (set by conftest/tox)"
        )
    mesh = Mesh(np.array(devices[:2]), ("batch",))
    shape = (
        lr_shape((4,), 12, (2, 6), layout) if op == "shuffle" else lr_shape((4,), 3, (4, 6), layout)
    )
    a = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    sharding = NamedSharding(mesh, P("batch"))
    x = jax.device_put(a, sharding)
    y = jax.jit(lambda t: getattr(subpixel, op)(t, 2, layout=layout, order=order))(x)
    np.testing.assert_array_equal(np.asarray(y), reference(op, a, 2, layout=layout, order=order))
    assert y.sharding.is_equivalent_to(NamedSharding(mesh, P("batch")), y.ndim), y.sharding
    for shard in y.addressable_shards:
        assert shard.data.shape[0] == 2  # half of the batch on each device


def test_result_on_input_device():
    dev = jax.devices()[-1]
    x = jax.device_put(jnp.zeros((1, 8, 2, 2)), dev)
    assert subpixel.shuffle(x, 2).devices() == {dev}


def test_out_refused():
    x = jnp.zeros((1, 8, 2, 2))
    with pytest.raises(TypeError, match=r"^`out` is not supported by the jax backend"):
        subpixel.shuffle(x, 2, out=jnp.zeros((1, 2, 4, 4)))
