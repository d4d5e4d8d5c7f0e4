"""Pixel shuffles found by what they do (keras.ops calls, Lambdas), in the order the
backend really uses, and rewritten as subpixel's layers."""

from __future__ import annotations

import keras
import numpy as np

import subpixel
from subpixel.rewrite import keras as keras_rewrite

L = keras.layers


def test_keras_shuffles_are_found_by_what_they_do():
    inputs = keras.Input((None, None, 12))
    a = keras.ops.depth_to_space(inputs, 2)  # a graph operation, not a layer
    b = L.Lambda(lambda t: 2.0 * keras.ops.depth_to_space(t, 2))(inputs)  # not a shuffle
    c = L.Lambda(lambda t: keras.ops.space_to_depth(t, 2))(a)
    model = keras.Model(inputs, [a, b, c])
    found = [keras_rewrite.shuffle_op(op) for op in model.operations[1:]]
    assert found == [
        ("shuffle", "DCR", (2, 2), "channels_last"),
        None,
        ("unshuffle", "DCR", (2, 2), "channels_last"),
    ]
    rewritten = keras_rewrite.replace_pixel_shuffle(model, lowering="flat")
    kinds = [type(op).__name__ for op in rewritten.operations[1:]]
    assert kinds == ["PixelShuffle", "Lambda", "PixelUnshuffle"]
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 12)).astype(np.float32)
    for got, want in zip(rewritten(x), model(x)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_a_channels_first_depth_to_space_keeps_the_backends_order():
    """Keras's channels_first depth_to_space order depends on the backend: the probe
    reads what it does, and the rewrite gives the same numbers."""
    inputs = keras.Input((12, None, None))
    model = keras.Model(inputs, keras.ops.depth_to_space(inputs, 2, data_format="channels_first"))
    op, order, factor, data_format = keras_rewrite.shuffle_op(model.operations[-1])
    assert (op, factor, data_format) == ("shuffle", (2, 2), "channels_first")
    x = np.random.default_rng(0).standard_normal((1, 12, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(
        np.asarray(model(x)), subpixel.shuffle(x, 2, layout="channels_first", order=order)
    )
    rewritten = keras_rewrite.replace_pixel_shuffle(model)
    np.testing.assert_array_equal(np.asarray(rewritten(x)), np.asarray(model(x)))
