"""Pairing in the order layers run: models whose code defines them in another order,
independent layers that run in another order in each model (level by level, by
their shapes, and the outputs decide between the ways that fit)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import subpixel

from zoo import (
    FlaxGated,
    FlaxGateLast,
    FlaxRunsInOrder,
    KerasGated,
    KerasRunsOutOfOrder,
    TorchGated,
    TorchGateFirst,
    TorchRunsOutOfOrder,
    keras_runs_in_order,
    nhwc,
    ported,
    run_torch,
    torch_model,
)


def test_layers_pair_in_the_order_they_run():
    """With `example`, layers pair in the order they run in each model, whatever order
    the code defines them in: a Flax model rebuilt by nnx.split/merge (attributes
    sorted), a PyTorch model and a subclassed Keras model defined out of order."""
    x = np.random.default_rng(0).standard_normal((1, 3, 5, 6)).astype(np.float32)
    source = torch_model(TorchRunsOutOfOrder)
    want = nhwc(run_torch(source, x))
    rebuilt = nnx.merge(*nnx.split(FlaxRunsInOrder()))
    assert [k for k in vars(rebuilt) if not k.startswith("_")] == sorted(
        ["head", "mid_b", "mid_a", "up", "shuffle"]
    )
    report = subpixel.port_weights(source, rebuilt, example=x)
    assert report.pairs == [("head", "head"), ("mid_b", "mid_b"), ("mid_a", "mid_a"), ("up", "up")]
    assert report.max_diff is not None and report.max_diff <= 1e-5, str(report)
    np.testing.assert_allclose(np.asarray(rebuilt(jnp.asarray(nhwc(x)))), want, atol=1e-5)
    # and back, from the rebuilt Flax model into a fresh PyTorch one
    back = TorchRunsOutOfOrder()
    report = ported(rebuilt, back, example=nhwc(x))
    np.testing.assert_allclose(nhwc(run_torch(back, x)), want, atol=1e-5)
    # without an example, one is made from the first layer: the traces still tell the
    # order the layers run in (no attribute order is trusted)
    rebuilt = nnx.merge(*nnx.split(FlaxRunsInOrder()))
    report = subpixel.port_weights(source, rebuilt)
    assert report.pairs == [("head", "head"), ("mid_b", "mid_b"), ("mid_a", "mid_a"), ("up", "up")]
    # a layer the example leaves unused: where its channels go cannot be traced
    spare = FlaxRunsInOrder()
    spare.spare = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"^the source's layer spare does not run on the example"):
        subpixel.port_weights(spare, nnx.clone(spare), example=nhwc(x))
    # the functional Keras model, with its declared input or the example
    functional = keras_runs_in_order()
    subpixel.port_weights(source, functional)
    report = ported(source, functional, example=x)
    # a subclassed Keras model created out of order, and back into PyTorch
    sub = KerasRunsOutOfOrder()
    sub(nhwc(x))
    report = ported(source, sub, example=x)
    np.testing.assert_allclose(np.asarray(sub(nhwc(x))), want, atol=1e-5)
    assert "call" not in vars(sub.up)  # each layer's own `call` is back
    back = TorchRunsOutOfOrder()
    subpixel.port_weights(sub, back, example=nhwc(x))
    np.testing.assert_allclose(nhwc(run_torch(back, x)), want, atol=1e-5)


def test_orders_that_only_one_model_knows_or_that_differ_still_pair_right():
    x = np.random.default_rng(0).standard_normal((1, 3, 5, 6)).astype(np.float32)
    source = torch_model(TorchGated)
    want = nhwc(run_torch(source, x))
    # Flax: its layers' runs cannot all be noted (nnx.remat), and a, b run in another
    # order than in PyTorch: definition order, on both sides
    target = FlaxGated()
    state = (int(target.calls[...]), int(target.noise.noise.count[...]))
    ported(source, target, example=x)
    assert (int(target.calls[...]), int(target.noise.noise.count[...])) == state  # untouched
    np.testing.assert_allclose(np.asarray(target(jnp.asarray(nhwc(x)))), want, atol=1e-5)
    # rebuilt (attributes sorted): the trace still tells the order
    rebuilt = nnx.merge(*nnx.split(FlaxGated()))
    ported(source, rebuilt, example=x)
    # Keras: a `call` that is a tf.function traced before is traced through
    keras_model = KerasGated()
    want = np.asarray(keras_model(nhwc(x)))
    back = TorchGated()
    ported(keras_model, back, example=nhwc(x))
    np.testing.assert_allclose(nhwc(run_torch(back, x)), want, atol=1e-5)
    # built inside its tf.function, it never reads its weights: nothing to port
    baked = KerasGated(built=False)
    baked(nhwc(x))
    with pytest.raises(ValueError, match=r"^the source's layer .* does not run on the example"):
        subpixel.port_weights(baked, TorchGated(), example=nhwc(x))
    with pytest.raises(ValueError, match=r"^the target's layer .* does not run on the example"):
        subpixel.port_weights(source, baked, example=x)


def test_outputs_decide_between_two_fitting_orders_even_with_nan_pixels():
    """Both orders fit (a and b run in another order in each model): the outputs
    decide, comparing a NaN in both outputs as agreement (a missing pixel); the pairs
    are reported in the source's run order."""
    x = np.random.default_rng(0).standard_normal((1, 3, 12, 12)).astype(np.float32)
    x[0, :, 0, 0] = np.nan
    source = torch_model(TorchGateFirst)
    target = FlaxGateLast()
    report = subpixel.port_weights(source, target, example=x)
    assert report.pairs == [("stem", "stem"), ("b", "b"), ("a", "a"), ("up", "up")]
    assert report.max_diff is not None and report.max_diff <= 1e-5, str(report)
    clean = np.nan_to_num(x)
    np.testing.assert_allclose(
        np.asarray(target(jnp.asarray(nhwc(clean)))), nhwc(run_torch(source, clean)), atol=1e-5
    )
