"""What tracing must see: which convolution feeds a shuffle (through per-channel
layers, keras.ops calls, shuffles in a row, calls in untraceable code) and which
flatten feeds a dense layer, in which order."""

from __future__ import annotations

import jax.numpy as jnp
import keras
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax import nnx
from torch import nn

import subpixel
from subpixel.layers import keras as keras_layers
from subpixel.layers import torch as torch_layers

from zoo import (
    FlaxFlattenHead,
    FlaxNormedShuffles,
    FlaxSubPixelThenShuffle,
    FlaxTokens,
    TorchFlattenHead,
    TorchNHWCHead,
    TorchNormedShuffles,
    TorchUntraceable,
    TorchUntraceableAfter,
    TorchUntraceableCalls,
    TorchUntraceableFeedsByData,
    keras_after,
    keras_feeds_by_data,
    keras_normed_shuffles,
    nhwc,
    ported,
    randomise_prelu,
    run_torch,
    torch_model,
)

L = keras.layers


def test_norms_between_conv_and_shuffle_are_reordered():
    source = torch_model(TorchNormedShuffles)
    randomise_prelu(source)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    target = keras_normed_shuffles()
    ported(source, target, example=x)
    back = TorchNormedShuffles().eval()
    subpixel.port_weights(target, back, example=nhwc(x))
    np.testing.assert_allclose(run_torch(back, x), run_torch(source, x), rtol=1e-5, atol=1e-5)


def test_norms_between_conv_and_shuffle_are_reordered_in_flax_module_order():
    """Flax (module order): the same model with a ReLU."""
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    relu = torch_model(lambda: TorchNormedShuffles(prelu=False))
    ported(relu, FlaxNormedShuffles(), example=x)


@pytest.mark.parametrize("flatten_format", ["channels_last", "channels_first"])
def test_flatten_orders(flatten_format):
    """Keras's Flatten(data_format="channels_first") moves axis 1 last before
    flattening: on NHWC data that is a (W, C, H) order, ported all the same."""
    inputs = keras.Input((4, 5, 3))
    h = L.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    target = keras.Model(inputs, L.Dense(7)(L.Flatten(data_format=flatten_format)(h)))
    source = torch_model(TorchFlattenHead)
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    ported(source, target, example=x)
    back = TorchFlattenHead().eval()
    subpixel.port_weights(target, back)
    np.testing.assert_allclose(run_torch(back, x), run_torch(source, x), rtol=1e-5, atol=1e-5)


def test_flattens_are_found_through_dropouts():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    source = torch_model(
        lambda: nn.Sequential(
            nn.Conv2d(3, 2, 3, padding=1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(32, 5)
        )
    )
    target = keras.Sequential(
        [keras.Input((4, 4, 3)), L.Conv2D(2, 3, padding="same"), L.Flatten(), L.Dropout(0.5),
         L.Dense(5)]
    )  # fmt: skip
    subpixel.port_weights(source, target)  # Keras knows its shapes: no example needed
    np.testing.assert_allclose(
        np.asarray(target(nhwc(x))), run_torch(source, x), rtol=1e-5, atol=1e-5
    )


def test_a_flatten_of_unknown_size_needs_an_example():
    """Neither model declares its input's size, and the one made from the source's first
    layer does not fit the dense layer: refused, nothing copied; ported with one."""
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    source = torch_model(
        lambda: nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.Flatten(), nn.Linear(32, 5))
    )
    flax_target = FlaxFlattenHead()
    kernel = np.asarray(flax_target.fc.kernel[...]).copy()
    with pytest.raises(ValueError, match=r"^`example` is needed: no input made from the source"):
        subpixel.port_weights(source, flax_target)
    np.testing.assert_array_equal(np.asarray(flax_target.fc.kernel[...]), kernel)
    ported(source, flax_target, example=x.astype(np.float64))


def test_a_pooled_head_has_one_order_and_needs_no_example():
    """1 x 1 features flatten in one order."""
    pooled = torch_model(
        lambda: nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 5)
        )
    )
    subpixel.port_weights(pooled, keras.Sequential(
        [keras.Input((4, 4, 3)), L.Conv2D(32, 3, padding="same"), L.GlobalAveragePooling2D(),
         L.Dense(5)]))  # fmt: skip


def test_an_untraceable_model_is_read_in_the_order_its_modules_run():
    inputs = keras.Input((4, 4, 3))
    h = keras.ops.depth_to_space(L.Conv2D(12, 3, padding="same")(inputs), 2)
    target = keras.Model(inputs, keras.ops.depth_to_space(L.Conv2D(12, 3, padding="same")(h), 2))
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 4)).astype(np.float32)
    ported(torch_model(TorchUntraceable), target, example=x)  # (traced as it runs)


def test_shuffles_called_as_functions_in_an_untraceable_model_are_seen():
    """The F.pixel_shuffle/pixel_unshuffle calls of a model torch.fx cannot trace are
    ops of its recorded run like any other (those inside subpixel's and PyTorch's shuffle
    layers too, counted once); without an example, the target's declared input shape
    makes one."""
    inputs = keras.Input((4, 4, 3))
    h = keras.ops.depth_to_space(L.Conv2D(12, 3, padding="same")(inputs), 2)
    h = keras.ops.space_to_depth(keras_layers.SubPixelConv(3, 3, 2, order="DCR")(h), 2)
    h = keras.ops.space_to_depth(L.Conv2D(12, 3, padding="same")(h), 2)
    target = keras.Model(inputs, keras.ops.depth_to_space(L.Conv2D(12, 3, padding="same")(h), 2))
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 4)).astype(np.float32)
    source = torch_model(TorchUntraceableCalls)
    ported(source, target, example=x)
    again = keras.models.clone_model(target)
    report = subpixel.port_weights(source, again)
    assert report.example == "an example made from the input shape"
    np.testing.assert_allclose(
        np.asarray(again(nhwc(x))), nhwc(run_torch(source, x)), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("example", [False, True])
def test_a_flatten_after_a_permute_is_channels_last(example):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    source = torch_model(TorchNHWCHead)
    target = keras.Sequential(
        [keras.Input((4, 4, 3)), L.Conv2D(4, 3, padding="same"), L.Flatten(), L.Dense(5)]
    )
    subpixel.port_weights(source, target, example=x if example else None)
    np.testing.assert_allclose(
        np.asarray(target(nhwc(x))), run_torch(source, x), rtol=1e-5, atol=1e-5
    )
    flax_target = FlaxFlattenHead()
    flax_target.conv = nnx.Conv(3, 4, (3, 3), padding="SAME", rngs=nnx.Rngs(0))
    flax_target.fc = nnx.Linear(64, 5, rngs=nnx.Rngs(0))
    if not example:  # neither declares its input's size: the made-up one does not fit
        with pytest.raises(ValueError, match=r"^`example` is needed"):
            subpixel.port_weights(source, flax_target)
        return
    subpixel.port_weights(source, flax_target, example=x)
    np.testing.assert_allclose(
        np.asarray(flax_target(jnp.asarray(nhwc(x)))), run_torch(source, x), rtol=1e-5, atol=1e-5
    )


def test_models_without_images_keep_their_flatten_order():
    """(N, L, E) with L == E: no channels move, in any framework."""
    tokens = np.random.default_rng(0).integers(0, 10, (2, 4))
    source = torch_model(lambda: nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(16, 3)))
    want = source(torch.from_numpy(tokens)).detach().numpy()
    k_tokens = keras.Sequential(
        [keras.Input((4,), dtype="int32"), L.Embedding(10, 4), L.Flatten(), L.Dense(3)]
    )
    for target, run in (
        (k_tokens, lambda: np.asarray(k_tokens(tokens))),
        (FlaxTokens(), None),
    ):
        for example in (None, tokens) if run else (tokens,):
            subpixel.port_weights(source, target, example=example)
            got = run() if run else np.asarray(target(jnp.asarray(tokens)))
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # neither model tells the sequence's length: the inputs made from the layers do
    # not run (ids of 8 steps, 16 features), and an example is asked for
    with pytest.raises(
        ValueError,
        match=r"^`example` is needed: no input made from the source model's "
        r"layers \(shapes \(2, 8\), \(2, 16\)\) runs through it$",
    ):
        subpixel.port_weights(source, FlaxTokens())
    x = np.random.default_rng(0).standard_normal((2, 4, 4)).astype(np.float32)
    mlp = torch_model(lambda: nn.Sequential(nn.Flatten(), nn.Linear(16, 3)))
    k_mlp = keras.Sequential([keras.Input((4, 4)), L.Flatten(), L.Dense(3)])
    ported(mlp, k_mlp, example=x)


def test_a_subpixel_layer_then_a_shuffle():
    """A subpixel layer then a shuffle, or a shuffle of a shuffle: the convolution's
    channels go through both, reordered for each framework's orders (CRD in PyTorch,
    DCR in Keras's depth_to_space)."""
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 5)).astype(np.float32)
    source = torch_model(
        lambda: nn.Sequential(torch_layers.SubPixelConv2d(3, 8, 3, 2), nn.PixelShuffle(2))
    )
    inputs = keras.Input((4, 5, 3))
    target = keras.Model(
        inputs, keras.ops.depth_to_space(keras_layers.SubPixelConv(8, 3, 2)(inputs), 2)
    )
    ported(source, target, example=x)
    flax_target = FlaxSubPixelThenShuffle()
    ported(source, flax_target, example=x)


def test_a_shuffle_of_a_shuffle():
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 5)).astype(np.float32)
    inputs = keras.Input((4, 5, 3))
    twice = torch_model(
        lambda: nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.PixelShuffle(2), nn.PixelShuffle(2)
        )
    )
    h = keras.ops.depth_to_space(L.Conv2D(32, 3, padding="same")(inputs), 2)
    ported(twice, keras.Model(inputs, keras.ops.depth_to_space(h, 2)), example=x)


def test_a_batch_norm_between_two_shuffles():
    """Its channels are the first shuffle's output's: its parameters are reordered as
    the positions say (refused before the traces told)."""
    inputs = keras.Input((4, 5, 3))
    normed = torch_model(
        lambda: nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.PixelShuffle(2),
            nn.BatchNorm2d(8),
            nn.PixelShuffle(2),
        )
    )
    h = L.BatchNormalization(epsilon=1e-5)(
        keras.ops.depth_to_space(L.Conv2D(32, 3, padding="same")(inputs), 2)
    )
    target = keras.Model(inputs, keras.ops.depth_to_space(h, 2))
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 5)).astype(np.float32)
    ported(normed, target, example=x)
    np.testing.assert_allclose(
        np.asarray(target(nhwc(x))), nhwc(run_torch(normed, x)), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("order, size", [("CRD", 8), ("DCR", 8), ("CRD", 160)])
def test_shuffles_called_as_functions_are_seen_by_what_they_take(order, size):
    """In a model torch.fx cannot trace, a shuffle called as a function marks the
    convolution whose output it takes itself, not the last one that ran; subpixel.shuffle
    is seen in either order and at any size (not through the torch calls inside it)."""
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    source = torch_model(lambda: TorchUntraceableFeedsByData(order))
    ported(source, keras_feeds_by_data(order), example=x)


@pytest.mark.parametrize(
    "how",
    ["relu", "bn", "view", "scaled", "twice", "keyword", "unshuffle", "silu", "dcr", "type_as"],
)
def test_function_shuffles_are_followed_through_what_keeps_the_channels(how):
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    ported(torch_model(lambda: TorchUntraceableAfter(how)), keras_after(how), example=x)


def test_keyword_shuffles_and_scalar_outputs_in_traceable_models():
    class Traceable(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 12, 3, padding=1)

        def forward(self, x):
            return F.pixel_shuffle(input=self.conv(x), upscale_factor=2).mean()

    x = np.random.default_rng(0).standard_normal((1, 3, 6, 6)).astype(np.float32)
    report = subpixel.port_weights(torch_model(Traceable), Traceable(), example=x)
    assert report.max_diff == 0.0


def test_grouped_convolutions_next_to_a_shuffle_of_another_order_are_refused():
    """Reordering their channels for the shuffle's order would move channels between
    groups (silently wrong before): one line instead; the same order ports."""
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 4)).astype(np.float32)
    source = torch_model(
        lambda: nn.Sequential(nn.Conv2d(3, 12, 3, padding=1, groups=3), nn.PixelShuffle(2))
    )
    inputs = keras.Input((4, 4, 3))
    grouped = L.Conv2D(12, 3, padding="same", groups=3)(inputs)
    with pytest.raises(ValueError, match=r"^cannot port 0 -> .*grouped convolution \(groups=3\)"):
        subpixel.port_weights(source, keras.Model(inputs, keras.ops.depth_to_space(grouped, 2)))
    same = keras.Model(inputs, keras_layers.PixelShuffle(2, order="CRD")(grouped))
    ported(source, same, example=x)
    unshuffled = torch_model(
        lambda: nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(12, 6, 3, padding=1, groups=3))
    )
    h = L.Conv2D(6, 3, padding="same", groups=3)(keras.ops.space_to_depth(inputs, 2))
    with pytest.raises(ValueError, match=r"^cannot port 1 -> .*grouped convolution"):
        subpixel.port_weights(unshuffled, keras.Model(inputs, h))
