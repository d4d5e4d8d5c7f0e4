"""What cannot be ported is refused in one line, and nothing is copied then; a
port never changes a model's state."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import torch
from torch import nn

import subpixel

from zoo import (
    FlaxConvBN,
    bn_state,
    ported,
    torch_model,
)

L = keras.layers


def test_examples_are_checked_before_anything_is_copied():
    source = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1))
    target = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(4, 3, padding="same")])
    kernel = np.asarray(target.layers[0].kernel).copy()
    with pytest.raises(
        ValueError,
        match=r"^`example` does not run through the source model \(RuntimeError: .*"
        r"Received: example of shape \(1, 5, 8, 8\) and dtype float32$",
    ):
        subpixel.port_weights(source, target, example=np.zeros((1, 5, 8, 8), np.float32))
    np.testing.assert_array_equal(np.asarray(target.layers[0].kernel), kernel)


def test_an_example_of_token_ids_stays_integers():
    tokens = np.random.default_rng(0).integers(0, 10, (2, 5))
    embed = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2))
    k_embed = keras.Sequential([keras.Input((5,), dtype="int32"), L.Embedding(10, 4), L.Dense(2)])
    ported(embed, k_embed, example=tokens, tol=1e-6)


def test_an_example_of_a_sequence_of_features_keeps_its_axes():
    seq = np.random.default_rng(0).standard_normal((2, 5, 4)).astype(np.float32)
    report = subpixel.port_weights(
        nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8)),
        keras.Sequential([keras.Input((5, 4)), L.Dense(8), L.LayerNormalization(epsilon=1e-5)]),
        example=seq,
    )
    assert report.max_diff is not None and report.max_diff <= 1e-5, str(report)


def test_layers_it_cannot_convert_are_refused():
    source = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.GroupNorm(2, 4), nn.Conv2d(4, 2, 1))
    target = keras.Sequential(
        [keras.Input((8, 8, 3)), L.Conv2D(4, 3, padding="same"), L.GroupNormalization(2),
         L.Conv2D(2, 1)]
    )  # fmt: skip
    before = [w.copy() for w in target.get_weights()]
    with pytest.raises(
        ValueError, match=r"^`source` has parameters port_weights cannot convert: 1 \(GroupNorm\)"
    ):
        subpixel.port_weights(source, target)
    with pytest.raises(ValueError, match=r"^`source` .* \(GroupNormalization\) holds"):
        subpixel.port_weights(target, source)
    for a, b in zip(before, target.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_models_without_values_are_refused():
    meta = nn.Sequential(nn.Conv2d(3, 4, 3)).to("meta")
    with pytest.raises(ValueError, match=r"^`source` holds tensors on the meta device"):
        subpixel.port_weights(meta, nn.Sequential(nn.Conv2d(3, 4, 3)))
    unbuilt = keras.Sequential([L.Conv2D(4, 3)])
    with pytest.raises(ValueError, match=r"^`target` is not built"):
        subpixel.port_weights(nn.Sequential(nn.Conv2d(3, 4, 3)), unbuilt)


def test_porting_never_changes_a_models_state():
    """Batch norms in training mode: the runs that trace and compare use eval mode (on
    a copy in Flax), so no running statistics move and every mode is restored."""
    source = torch_model(lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)))
    source.train()
    before = bn_state(source)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    keras_target = keras.Sequential(
        [keras.Input((8, 8, 3)), L.Conv2D(4, 3, padding="same"), L.BatchNormalization(epsilon=1e-5)]
    )
    flax_target = FlaxConvBN()
    for target in (keras_target, flax_target):
        ported(source, target, example=x)
    for k, v in bn_state(source).items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    assert source.training and source[1].training
    want = before["1.running_mean"].numpy()
    np.testing.assert_array_equal(np.asarray(keras_target.layers[1].moving_mean), want)
    np.testing.assert_array_equal(np.asarray(flax_target.bn.mean[...]), want)
    assert not flax_target.bn.use_running_average  # still in training mode
