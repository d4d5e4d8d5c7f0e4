"""Each kind of layer converts with what it carries: PReLU axes, eps and groups
compared, extension dtypes, depthwise and shared layers, subclassed and nested
models, layer norms over images, subpixel's own layers and strides."""

from __future__ import annotations

import jax.numpy as jnp
import keras
import numpy as np
import pytest
import torch
from flax import nnx
from torch import nn

import subpixel
from subpixel.layers import flax as flax_layers
from subpixel.layers import keras as keras_layers
from subpixel.layers import torch as torch_layers

from zoo import (
    FlaxShared,
    KerasSubclassed,
    nhwc,
    ported,
    randomise_prelu,
    run_torch,
    torch_model,
)

L = keras.layers


def _prelu_model():
    source = torch_model(lambda: nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.PReLU(4)))
    randomise_prelu(source)
    return source


def test_a_channels_first_prelu_ports_both_ways():
    """A channels_first Keras PReLU keeps alpha as (C, 1, 1)."""
    x = np.random.default_rng(0).standard_normal((1, 4, 6, 6)).astype(np.float32)
    source = _prelu_model()
    cf = keras.Sequential(
        [keras.Input((4, 6, 6)), L.Conv2D(4, 3, padding="same", data_format="channels_first"),
         L.PReLU(shared_axes=[2, 3])]
    )  # fmt: skip
    subpixel.port_weights(source, cf)
    np.testing.assert_allclose(np.asarray(cf(x)), run_torch(source, x), rtol=1e-5, atol=1e-5)
    back = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.PReLU(4)).eval()
    subpixel.port_weights(cf, back)
    torch.testing.assert_close(back[1].weight, source[1].weight, rtol=0, atol=0)


def test_a_prelu_with_one_alpha_per_position_is_refused():
    per_position = keras.Sequential(
        [keras.Input((6, 6, 4)), L.Conv2D(4, 3, padding="same"), L.PReLU()]
    )
    with pytest.raises(
        ValueError, match=r"PReLU .* alpha of shape \(6, 6, 4\) \(one per position\)"
    ):
        subpixel.port_weights(_prelu_model(), per_position)


def test_settings_that_change_the_numbers_are_compared():
    bn = torch_model(lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)))
    default_eps = keras.Sequential(
        [keras.Input((8, 8, 3)), L.Conv2D(4, 3, padding="same"), L.BatchNormalization()]
    )
    with pytest.raises(ValueError, match=r"`eps` \(epsilon\) is 1e-05 in the source and 0.001"):
        subpixel.port_weights(bn, default_eps)
    with pytest.raises(ValueError, match=r"`groups` is 1 in the source and 2 in the target"):
        # the same weight shape (4, 2, 3, 3): 2 input channels, or 4 in two groups
        subpixel.port_weights(nn.Conv2d(2, 4, 3), nn.Conv2d(4, 4, 3, groups=2))


def test_bfloat16_parameters_convert_and_a_float16_target_takes_them():
    """bfloat16 parameters (ml_dtypes in NumPy) convert; a float16 target takes them."""
    bf16 = keras.Sequential(
        [keras.Input((6, 6, 4)), L.Conv2D(4, 3, padding="same", dtype="bfloat16")]
    )
    conv = nn.Conv2d(4, 4, 3, padding=1)
    subpixel.port_weights(bf16, conv)
    want = np.asarray(keras.ops.cast(bf16.layers[0].kernel, "float32"))
    np.testing.assert_array_equal(conv.weight.detach().numpy(), want.transpose(3, 2, 0, 1))
    half = nn.Conv2d(4, 4, 3, padding=1).half()
    subpixel.port_weights(bf16, half)
    assert half.weight.dtype == torch.float16


def test_keras_depthwise_convolutions_are_grouped_convolutions():
    """Keras DepthwiseConv2D is a grouped conv, groups = channels (any multiplier)."""
    x = np.random.default_rng(0).standard_normal((1, 4, 6, 6)).astype(np.float32)
    for multiplier in (1, 2):
        source = torch_model(lambda m=multiplier: nn.Conv2d(4, 4 * m, 3, padding=1, groups=4))
        target = keras.Sequential(
            [
                keras.Input((6, 6, 4)),
                L.DepthwiseConv2D(3, padding="same", depth_multiplier=multiplier),
            ]
        )
        subpixel.port_weights(source, target)
        np.testing.assert_allclose(
            np.asarray(target(nhwc(x))), nhwc(run_torch(source, x)), rtol=1e-5, atol=1e-5
        )
        back = nn.Conv2d(4, 4 * multiplier, 3, padding=1, groups=4)
        subpixel.port_weights(target, back)
        torch.testing.assert_close(back.weight, source.weight, rtol=0, atol=0)


def test_a_flax_module_shared_by_two_attributes_is_one_layer():
    """... and nnx.PReLU is ported; run twice, the shared module is another model than
    the source's (one convolution): the outputs tell, nothing is copied."""
    source = torch_model(lambda: nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.PReLU()))
    with torch.no_grad():
        source[1].weight.fill_(0.3)
    shared = FlaxShared()
    subpixel.port_weights(source, shared)
    assert float(shared.act.negative_slope[...]) == pytest.approx(0.3)
    twice = FlaxShared(twice=True)
    kernel = np.asarray(twice.conv.kernel[...]).copy()
    with pytest.raises(ValueError, match=r"^the ported target's output differs .* left as it was"):
        subpixel.port_weights(source, twice)
    np.testing.assert_array_equal(np.asarray(twice.conv.kernel[...]), kernel)


def _torch_shuffle():
    return torch_model(lambda: nn.Sequential(nn.Conv2d(4, 18, 3, padding=1), nn.PixelShuffle(3)))


def test_a_subclassed_keras_model_orders_its_shuffle_by_its_layers():
    """A subclassed Keras model: the order of its layers tells the shuffle's."""
    x = np.random.default_rng(0).standard_normal((1, 4, 6, 6)).astype(np.float32)
    torch_shuffle = _torch_shuffle()
    sub = KerasSubclassed()
    sub(nhwc(x))
    subpixel.port_weights(torch_shuffle, sub)
    np.testing.assert_allclose(
        np.asarray(sub(nhwc(x))), nhwc(run_torch(torch_shuffle, x)), rtol=1e-5, atol=1e-5
    )


def test_a_nested_keras_model_feeding_a_depth_to_space():
    x = np.random.default_rng(0).standard_normal((1, 4, 6, 6)).astype(np.float32)
    inner_in = keras.Input((6, 6, 4))
    inner = keras.Model(inner_in, L.Conv2D(18, 3, padding="same")(inner_in))
    outer_in = keras.Input((6, 6, 4))
    outer = keras.Model(outer_in, keras.ops.depth_to_space(inner(outer_in), 3))
    ported(_torch_shuffle(), outer, example=x)


def test_layer_norms_over_images_and_square_reports():
    for c, h, w in ((4, 4, 4), (2, 4, 5)):
        source = torch_model(
            lambda c=c, h=h, w=w: nn.Sequential(nn.Conv2d(3, c, 1), nn.LayerNorm([c, h, w]))
        )
        with torch.no_grad():
            source[1].weight.normal_()
            source[1].bias.normal_()
        target = keras.Sequential(
            [
                keras.Input((h, w, 3)),
                L.Conv2D(c, 1),
                L.LayerNormalization(axis=[1, 2, 3], epsilon=1e-5),
            ]
        )
        x = np.random.default_rng(0).standard_normal((2, 3, h, w)).astype(np.float32)
        report = subpixel.port_weights(source, target, example=x)  # square output: (4, 4, 4)
        assert report.max_diff is not None and report.max_diff <= 1e-5, str(report)
        assert all(d <= 1e-5 for d in report.layer_max_diff.values()), str(report)
        np.testing.assert_allclose(
            np.asarray(target(nhwc(x))), nhwc(run_torch(source, x)), rtol=1e-5, atol=1e-5
        )
        back = nn.Sequential(nn.Conv2d(3, c, 1), nn.LayerNorm([c, h, w]))
        subpixel.port_weights(target, back)
        torch.testing.assert_close(back[1].weight, source[1].weight, rtol=0, atol=0)


def test_settings_of_subpixel_layers_and_strides_must_agree():
    blurred = keras_layers.SubPixelConv(4, 3, 2, blur=True)
    blurred.build((None, 6, 6, 3))
    with pytest.raises(ValueError, match=r"`blur` is False in the source and True in the target"):
        subpixel.port_weights(torch_layers.SubPixelConv2d(3, 4, 3, 2), blurred)
    strided = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(4, 3, strides=2)])
    with pytest.raises(ValueError, match=r"the stride is \(1, 1\) in the source and \(2, 2\)"):
        subpixel.port_weights(nn.Sequential(nn.Conv2d(3, 4, 3)), strided)


def test_a_layer_passed_alone_is_a_model_of_one_layer():
    """In every framework."""
    x = np.random.default_rng(0).standard_normal((1, 3, 5, 6)).astype(np.float32)
    alone = torch_model(lambda: torch_layers.SubPixelConv2d(3, 4, 3, 2, order="DCR"))
    for target in (
        flax_layers.SubPixelConv(3, 4, 3, 2, rngs=nnx.Rngs(0)),
        nnx.Conv(3, 16, (3, 3), rngs=nnx.Rngs(0)),
    ):
        if isinstance(target, nnx.Conv):
            alone_src = torch_model(lambda: nn.Conv2d(3, 16, 3, padding=1))
            subpixel.port_weights(alone_src, target)
            want = nhwc(run_torch(alone_src, x))
        else:
            subpixel.port_weights(alone, target)
            want = nhwc(run_torch(alone, x))
        np.testing.assert_allclose(
            np.asarray(target(jnp.asarray(nhwc(x)))), want, rtol=1e-5, atol=1e-5
        )
