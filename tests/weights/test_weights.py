"""Weight conversion against convolutions written from their definitions (NumPy,
every environment) and against the frameworks' own ops (torch, tensorflow, jax)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import subpixel
from subpixel import weights
from subpixel._core import spec as _spec

from adapters import requested_backends
from reference import conv_ref, conv_transpose_ref, crop_ref, shuffle_gather

RNG = np.random.default_rng(0)


def apply_plan_ref(x, plan):
    """LR conv + shuffle + crop, with the reference conv and shuffle."""
    lr = conv_ref(x, plan.weight, plan.bias, plan.lr_padding, plan.groups)
    hr = shuffle_gather(lr, plan.factor, spatial_dims=plan.spatial_dims, order=plan.order)
    return crop_ref(hr, plan.crop)


@st.composite
def conv_transpose_config(draw, max_d=3):
    d = draw(st.integers(1, max_d))
    s = tuple(draw(st.integers(1, 3)) for _ in range(d))
    k = tuple(draw(st.integers(1, 7 if d < 3 else 4)) for _ in range(d))
    p = tuple(draw(st.integers(0, k[i] + 1)) for i in range(d))
    op = tuple(draw(st.integers(0, s[i] - 1)) for i in range(d))
    groups = draw(st.sampled_from([1, 1, 2]))
    c_in = groups * draw(st.integers(1, 2))
    c_out = groups * draw(st.integers(1, 2))
    L = tuple(draw(st.integers(1, 4)) for _ in range(d))
    order = "CRD" if groups > 1 else draw(st.sampled_from(["CRD", "DCR"]))
    has_bias = draw(st.booleans())
    # PyTorch needs a positive output length
    assume(all((L[i] - 1) * s[i] - 2 * p[i] + k[i] + op[i] > 0 for i in range(d)))
    return d, s, k, p, op, groups, c_in, c_out, L, order, has_bias


def make_conv_transpose(cfg, rng=RNG):
    _d, _s, k, _p, _op, groups, c_in, c_out, L, _order, has_bias = cfg
    w = rng.standard_normal((c_in, c_out // groups, *k))
    b = rng.standard_normal(c_out) if has_bias else None
    x = rng.standard_normal((2, c_in, *L))
    return x, w, b


@settings(max_examples=150, deadline=None)
@given(cfg=conv_transpose_config())
def test_conv_transpose_equals_sub_pixel_reference(cfg):
    d, s, k, p, op, groups, c_in, c_out, _L, order, _has_bias = cfg
    x, w, b = make_conv_transpose(cfg)
    plan = weights.conv_transpose_to_sub_pixel(
        w, b, stride=s, padding=p, output_padding=op, groups=groups, order=order
    )
    assert plan.weight.shape == (
        c_out * math.prod(s),
        c_in // groups,
        *(-(-k[i] // s[i]) for i in range(d)),
    )
    expected = conv_transpose_ref(x, w, b, s, p, op, groups)
    np.testing.assert_allclose(apply_plan_ref(x, plan), expected, rtol=1e-10, atol=1e-10)
    assert all(v >= 0 for pair in plan.lr_padding + plan.crop for v in pair)


def test_seed_worked_example():
    """(9, 32, 3, 3) LR kernel with r=3 and padding 1 <-> (1, 32, 9, 9) transposed kernel,
    i.e. (32, 1, 9, 9) in ConvTranspose2d layout."""
    lr = RNG.standard_normal((9, 32, 3, 3))
    ct = weights.sub_pixel_to_conv_transpose(lr, factor=3, padding=1)
    assert ct.weight.shape == (32, 1, 9, 9)
    assert ct.stride == (3, 3) and ct.padding == (3, 3) and ct.output_padding == (0, 0)
    x = RNG.standard_normal((1, 32, 5, 4))
    sub_pixel = shuffle_gather(conv_ref(x, lr, None, [(1, 1), (1, 1)]), 3)
    np.testing.assert_allclose(conv_transpose_ref(x, ct.weight, None, 3, 3), sub_pixel, atol=1e-10)
    plan = weights.conv_transpose_to_sub_pixel(ct.weight, stride=3, padding=3)
    np.testing.assert_array_equal(plan.weight, lr)
    assert plan.lr_padding == ((1, 1), (1, 1)) and plan.crop == ((0, 0), (0, 0))


def test_seed_1d_picture():
    """f = (1, 2, 3, 4), stride 2 -> LR filters (2, 4) and (1, 3), flipped for correlation."""
    f = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 4)
    plan = weights.conv_transpose_to_sub_pixel(f, stride=2)
    np.testing.assert_array_equal(plan.weight[:, 0], [[3.0, 1.0], [4.0, 2.0]])
    # kernel length 3, not a multiple of the stride: (1, 2, 3) -> (1, 3) and (2, 0)
    f3 = np.array([1.0, 2.0, 3.0]).reshape(1, 1, 3)
    plan3 = weights.conv_transpose_to_sub_pixel(f3, stride=2)
    np.testing.assert_array_equal(plan3.weight[:, 0], [[3.0, 1.0], [0.0, 2.0]])


@st.composite
def sub_pixel_config(draw):
    d = draw(st.integers(1, 3))
    s = tuple(draw(st.integers(1, 3)) for _ in range(d))
    k = tuple(draw(st.integers(1, 4)) for _ in range(d))
    padding = draw(
        st.one_of(
            st.just("same"),
            st.just("valid"),
            st.tuples(*(st.tuples(st.integers(0, 4), st.integers(0, 4)) for _ in range(d))),
        )
    )
    c_in, c_out = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    L = tuple(draw(st.integers(max(1, k[i]), 4 + k[i])) for i in range(d))
    order = draw(st.sampled_from(["CRD", "DCR"]))
    return d, s, k, padding, c_in, c_out, L, order


@settings(max_examples=150, deadline=None)
@given(cfg=sub_pixel_config())
def test_sub_pixel_equals_conv_transpose_reference(cfg):
    d, s, k, padding, c_in, c_out, L, order = cfg
    R = math.prod(s)
    lr = RNG.standard_normal((c_out * R, c_in, *k))
    bias = np.repeat(RNG.standard_normal(c_out), R)
    if order == "DCR":
        bias = weights.reorder_channels(bias, s, src="CRD", dst="DCR")
    pads = _spec.normalize_padding(padding, k)
    x = RNG.standard_normal((2, c_in, *L))
    expected = shuffle_gather(conv_ref(x, lr, bias, pads), s, spatial_dims=d, order=order)
    ct = weights.sub_pixel_to_conv_transpose(lr, bias, factor=s, order=order, padding=padding)
    got = conv_transpose_ref(x, ct.weight, ct.bias, ct.stride, ct.padding, ct.output_padding)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)
    # and back: the same LR kernel (up to the zero taps added for symmetry)
    plan = weights.conv_transpose_to_sub_pixel(
        ct.weight, ct.bias, stride=ct.stride, padding=ct.padding, order=order
    )
    np.testing.assert_allclose(apply_plan_ref(x, plan), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("order", ["CRD", "DCR"])
@pytest.mark.parametrize(
    "k,padding", [((3, 3), 1), ((5, 3), (2, 1)), ((1, 3), "same"), ((3,), "valid")]
)
def test_round_trip_is_exact(order, k, padding):
    s = (2, 3)[: len(k)]
    lr = RNG.standard_normal((2 * math.prod(s), 3, *k))
    ct = weights.sub_pixel_to_conv_transpose(lr, factor=s, order=order, padding=padding)
    plan = weights.conv_transpose_to_sub_pixel(
        ct.weight, stride=ct.stride, padding=ct.padding, order=order
    )
    np.testing.assert_array_equal(plan.weight, lr)
    assert plan.crop == ((0, 0),) * len(k)
    ct2 = weights.sub_pixel_to_conv_transpose(
        plan.weight, factor=plan.factor, order=order, padding=plan.lr_padding
    )
    np.testing.assert_array_equal(ct2.weight, ct.weight)
    assert (ct2.stride, ct2.padding) == (ct.stride, ct.padding)


def test_even_kernel_same_padding_gets_a_zero_tap():
    lr = RNG.standard_normal((4, 1, 2, 2))
    ct = weights.sub_pixel_to_conv_transpose(lr, factor=2, padding="same")
    assert ct.weight.shape == (1, 1, 6, 6) and ct.padding == (2, 2)
    x = RNG.standard_normal((1, 1, 3, 3))
    expected = shuffle_gather(conv_ref(x, lr, None, [(0, 1), (0, 1)]), 2)
    np.testing.assert_allclose(conv_transpose_ref(x, ct.weight, None, 2, 2), expected, atol=1e-12)


def test_phase_dependent_bias_is_refused():
    lr = RNG.standard_normal((8, 1, 3, 3))
    with pytest.raises(
        ValueError, match=r"^`bias` must be equal across the phases of each output channel"
    ):
        weights.sub_pixel_to_conv_transpose(lr, np.arange(8.0), factor=2, padding=1)


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        (dict(stride=0), r"^`stride` must be an integer between 1 and 1024.*Received: stride=0$"),
        (dict(stride=(2, 2, 2)), r"^`stride` must be.*Received: stride=\(2, 2, 2\)$"),
        (
            dict(stride=2, padding=-1),
            r"^`padding` must be an integer at least 0.*Received: padding=-1$",
        ),
        (
            dict(stride=2, output_padding=2),
            r"^`output_padding` must be smaller than `stride`.*output_padding=2",
        ),
        (
            dict(stride=2, groups=3),
            r"^`groups` must divide the 4 input channels\. Received: groups=3$",
        ),
        (dict(stride=2, groups=2, order="DCR"), r"^`order` must be 'CRD' when groups > 1"),
        (
            dict(stride=2, source="caffe"),
            r"^`source` must be one of 'torch', 'tensorflow'\. Received: source='caffe'$",
        ),
        (dict(stride=2, order="NCHW"), r"^`order` must be 'CRD'"),
        (
            dict(stride=2, source="tensorflow", padding=1),
            r"^`padding` must be one of 'same', 'valid'",
        ),
    ],
)
def test_conv_transpose_to_sub_pixel_errors(kwargs, pattern):
    w = np.zeros((4, 2, 3, 3))
    with pytest.raises(ValueError, match=pattern):
        weights.conv_transpose_to_sub_pixel(w, **kwargs)


def test_shape_errors():
    with pytest.raises(ValueError, match=r"^`weight` must be a convolution kernel"):
        weights.conv_transpose_to_sub_pixel(np.zeros((4, 2)), stride=2)
    with pytest.raises(ValueError, match=r"^`bias` must have shape \(2,\)"):
        weights.conv_transpose_to_sub_pixel(np.zeros((4, 2, 3, 3)), np.zeros(3), stride=2)
    with pytest.raises(
        ValueError,
        match=r"^`weight` has 6 output channels, which is not divisible by prod\(factor\)=4",
    ):
        weights.sub_pixel_to_conv_transpose(np.zeros((6, 2, 3, 3)), factor=2)
    with pytest.raises(ValueError, match=r"^`padding` must be 'same', 'valid'"):
        weights.sub_pixel_to_conv_transpose(np.zeros((4, 2, 3, 3)), factor=2, padding=-1)
    with pytest.raises(ValueError, match=r"^`w` has 6 channels on axis 0"):
        weights.reorder_channels(np.zeros((6, 1, 3, 3)), 2)
    with pytest.raises(ValueError, match=r"^`spatial_dims` is needed"):
        weights.reorder_channels(np.zeros(8), 2)


@pytest.mark.parametrize("factor", [2, (2, 3), (1, 2, 2)])
def test_reorder_channels_moves_models_between_orders(factor):
    """CRD kernel + CRD shuffle == DCR-reordered kernel + DCR shuffle."""
    d = len(factor) if isinstance(factor, tuple) else 2
    R = math.prod(factor) if isinstance(factor, tuple) else factor**d
    w = RNG.standard_normal((3 * R, 2, *(3,) * d))
    b = RNG.standard_normal(3 * R)
    x = RNG.standard_normal((1, 2, *(4,) * d))
    pads = [(1, 1)] * d
    crd = shuffle_gather(conv_ref(x, w, b, pads), factor, spatial_dims=d, order="CRD")
    w_dcr = weights.reorder_channels(w, factor, src="CRD", dst="DCR")
    b_dcr = weights.reorder_channels(b, factor, src="CRD", dst="DCR", spatial_dims=d)
    dcr = shuffle_gather(conv_ref(x, w_dcr, b_dcr, pads), factor, spatial_dims=d, order="DCR")
    np.testing.assert_allclose(dcr, crd, atol=1e-12)
    back = weights.reorder_channels(w_dcr, factor, src="DCR", dst="CRD")
    np.testing.assert_array_equal(back, w)


def test_reorder_input_channels_after_unshuffle():
    """unshuffle (DCR) + conv == unshuffle (CRD) + conv with reordered input channels."""
    w = RNG.standard_normal((5, 3 * 4, 3, 3))
    y = RNG.standard_normal((1, 3, 8, 6))
    crd = conv_ref(subpixel.unshuffle(y, 2, order="CRD"), w, None, [(1, 1), (1, 1)])
    w_dcr = weights.reorder_channels(w, 2, src="CRD", dst="DCR", axis=1)
    dcr = conv_ref(subpixel.unshuffle(y, 2, order="DCR"), w_dcr, None, [(1, 1), (1, 1)])
    np.testing.assert_allclose(dcr, crd, atol=1e-12)


@pytest.mark.parametrize("dst", ["tensorflow", "keras", "flax", "jax"])
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("d", [1, 2, 3])
def test_convert_layout_round_trips(dst, transposed, d):
    w = RNG.standard_normal((4, 3, *(2, 3, 5)[:d]))
    other = weights.convert_layout(w, src="torch", dst=dst, transposed=transposed)
    back = weights.convert_layout(other, src=dst, dst="torch", transposed=transposed)
    np.testing.assert_array_equal(back, w)
    if not transposed:
        assert other.shape == (*(2, 3, 5)[:d], 3, 4)


def test_convert_layout_errors():
    with pytest.raises(ValueError, match=r"^`dst` must be one of 'torch'"):
        weights.convert_layout(np.zeros((1, 1, 1)), dst="caffe")


@pytest.mark.parametrize("order", ["CRD", "DCR"])
@pytest.mark.parametrize("factor", [2, 3, (2, 3)])
def test_icnr_is_nearest_upsample_after_conv(order, factor):
    r = factor if isinstance(factor, tuple) else (factor, factor)
    R = math.prod(r)
    base = RNG.standard_normal((3, 2, 3, 3))
    w = weights.icnr((3 * R, 2, 3, 3), factor, order=order, init=base)
    x = RNG.standard_normal((1, 2, 5, 4))
    got = shuffle_gather(conv_ref(x, w, None, [(1, 1), (1, 1)]), factor, order=order)
    lr = conv_ref(x, base, None, [(1, 1), (1, 1)])
    nearest = np.repeat(np.repeat(lr, r[0], axis=2), r[1], axis=3)
    np.testing.assert_allclose(got, nearest.astype(np.float32), rtol=1e-5, atol=1e-5)


def test_icnr_initialisers():
    w = weights.icnr((8, 3, 3, 3), 2, seed=1)
    assert w.dtype == np.float32 and w.shape == (8, 3, 3, 3)
    np.testing.assert_array_equal(w, weights.icnr((8, 3, 3, 3), 2, seed=1))
    assert abs(w.std() - math.sqrt(2 / 27)) < 0.1
    ones = weights.icnr((8, 3, 3, 3), 2, init=lambda shape: np.ones(shape))
    assert (ones == 1).all()
    uni = weights.icnr(
        (8, 3, 3, 3), 2, order="DCR", init=lambda shape, rng: rng.uniform(size=shape), seed=0
    )
    np.testing.assert_array_equal(uni[:2], uni[2:4])  # DCR tiles the base (C_out = 2)
    with pytest.raises(
        ValueError, match=r"^`init` must give the base kernel of shape \(2, 3, 3, 3\)"
    ):
        weights.icnr((8, 3, 3, 3), 2, init=np.zeros((8, 3, 3, 3)))


# ---------------------------------------------------------------------------
# the frameworks as oracles
# ---------------------------------------------------------------------------

needs_torch = pytest.mark.skipif("torch" not in requested_backends(), reason="torch not requested")
needs_tf = pytest.mark.skipif(
    "tensorflow" not in requested_backends(), reason="tensorflow not requested"
)
needs_jax = pytest.mark.skipif("jax" not in requested_backends(), reason="jax not requested")


@needs_torch
@settings(max_examples=120, deadline=None)
@given(cfg=conv_transpose_config())
def test_against_torch_conv_transpose(cfg):
    import torch
    import torch.nn.functional as F

    d, s, _k, p, op, groups, _c_in, _c_out, _L, order, _has_bias = cfg
    x, w, b = make_conv_transpose(cfg)
    tx, tw = torch.from_numpy(x), torch.from_numpy(w)
    tb = None if b is None else torch.from_numpy(b)
    conv_t = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[d - 1]
    conv = (F.conv1d, F.conv2d, F.conv3d)[d - 1]
    expected = conv_t(tx, tw, tb, s, p, op, groups)
    plan = weights.conv_transpose_to_sub_pixel(
        w, b, stride=s, padding=p, output_padding=op, groups=groups, order=order
    )
    pad = [v for pair in reversed(plan.lr_padding) for v in pair]
    lr = conv(
        F.pad(tx, pad),
        torch.from_numpy(plan.weight),
        None if plan.bias is None else torch.from_numpy(plan.bias),
        groups=groups,
    )
    hr = subpixel.shuffle(lr, plan.factor, order=plan.order)
    got = crop_ref(hr, plan.crop)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


@needs_torch
def test_seed_example_with_torch_modules():
    import torch

    torch.manual_seed(0)
    deconv = torch.nn.ConvTranspose2d(32, 1, 9, stride=3, padding=3).double()
    plan = weights.conv_transpose_to_sub_pixel(
        deconv.weight.detach(), deconv.bias.detach(), stride=3, padding=3
    )
    conv = torch.nn.Conv2d(32, 9, 3, padding=1).double()
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(plan.weight))
        conv.bias.copy_(torch.from_numpy(plan.bias))
    x = torch.randn(2, 32, 7, 5, dtype=torch.float64)
    torch.testing.assert_close(subpixel.shuffle(conv(x), 3), deconv(x))


@needs_tf
@settings(max_examples=60, deadline=None)
@given(
    cfg=conv_transpose_config(max_d=2),
    padding=st.sampled_from(["same", "valid"]),
    use_op=st.booleans(),
)
def test_against_keras_conv_transpose(cfg, padding, use_op):
    import keras
    import tensorflow as tf

    d, s, k, _, op, _, c_in, c_out, L, order, _has_bias = cfg
    rng = np.random.default_rng(1)
    w_tf = rng.standard_normal((*k, c_out, c_in)).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32)
    x = rng.standard_normal((2, *L, c_in)).astype(np.float32)
    layer_cls = (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose)[d - 1]
    output_padding = op if use_op else None
    layer = layer_cls(c_out, k, strides=s, padding=padding, output_padding=output_padding)
    layer.build((None, *L, c_in))
    try:
        layer.set_weights([w_tf, b])
        expected = np.asarray(layer(x))
    except Exception:
        assume(False)
    assume(expected.size > 0)
    plan = weights.conv_transpose_to_sub_pixel(
        w_tf,
        b,
        stride=s,
        padding=padding,
        output_padding=output_padding,
        source="tensorflow",
        order=order,
    )
    x_cf = np.moveaxis(x, -1, 1).astype(np.float64)
    got = apply_plan_ref(x_cf, plan)
    np.testing.assert_allclose(np.moveaxis(got, 1, -1), expected, rtol=1e-4, atol=1e-4)
    # and with TensorFlow doing the LR conv and the shuffle (channels_last, DCR or CRD)
    w_lr = weights.convert_layout(plan.weight, src="torch", dst="tensorflow")
    pads = [[0, 0], *[list(pr) for pr in plan.lr_padding], [0, 0]]
    lr = tf.nn.convolution(
        tf.pad(tf.constant(x), pads), w_lr.astype(np.float32)
    ) + plan.bias.astype(np.float32)
    hr = subpixel.shuffle(lr, plan.factor, layout="channels_last", order=plan.order)
    got_tf = hr.numpy()[
        (slice(None), *(slice(a, hr.shape[1 + i] - bb) for i, (a, bb) in enumerate(plan.crop)))
    ]
    np.testing.assert_allclose(got_tf, expected, rtol=1e-4, atol=1e-4)


@needs_tf
@pytest.mark.parametrize("k,padding", [(3, "same"), (2, "same"), (3, 2), (2, (1, 1)), (1, "valid")])
def test_sub_pixel_to_keras_conv_transpose(k, padding):
    import keras

    s = 2
    lr = RNG.standard_normal((3 * 4, 2, k, k)).astype(np.float32)
    x = RNG.standard_normal((1, 2, 5, 5)).astype(np.float32)
    pads = _spec.normalize_padding(padding, (k, k))
    expected = shuffle_gather(conv_ref(x, lr, None, pads), s)
    ct = weights.sub_pixel_to_conv_transpose(lr, factor=s, padding=padding, target="tensorflow")
    layer = keras.layers.Conv2DTranspose(
        3, ct.weight.shape[:2], strides=ct.stride, padding=ct.padding, use_bias=False
    )
    layer.build((None, 5, 5, 2))
    layer.set_weights([ct.weight])
    got = np.moveaxis(np.asarray(layer(np.moveaxis(x, 1, -1))), -1, 1)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@needs_tf
def test_sub_pixel_to_keras_refuses_inexpressible_padding():
    with pytest.raises(ValueError, match=r"^No Keras transposed convolution"):
        weights.sub_pixel_to_conv_transpose(
            np.zeros((4, 1, 3, 3)), factor=2, padding="valid", target="tensorflow"
        )


@needs_tf
def test_tensorflow_layouts_against_keras_conv():
    import keras

    w = RNG.standard_normal((4, 3, 3, 5)).astype(np.float32)  # torch (O, I, kh, kw)
    x = RNG.standard_normal((1, 3, 6, 7)).astype(np.float32)
    layer = keras.layers.Conv2D(4, (3, 5), use_bias=False)
    layer.build((None, 6, 7, 3))
    layer.set_weights([weights.convert_layout(w, src="torch", dst="keras")])
    got = np.moveaxis(np.asarray(layer(np.moveaxis(x, 1, -1))), -1, 1)
    np.testing.assert_allclose(got, conv_ref(x, w), rtol=1e-4, atol=1e-4)


@needs_jax
@pytest.mark.parametrize("transpose_kernel", [False, True])
def test_flax_layouts_against_flax_modules(transpose_kernel):
    import jax
    import jax.numpy as jnp
    from flax import nnx

    c_in, c_out, k, s = 3, 2, (3, 4), (2, 2)
    w_t = RNG.standard_normal((c_in, c_out, *k)).astype(np.float32)  # torch ConvTranspose layout
    x = RNG.standard_normal((1, c_in, 4, 5)).astype(np.float32)
    expected = conv_transpose_ref(x, w_t, None, s, 0, 0)  # 'VALID' full output
    layer = nnx.ConvTranspose(
        c_in,
        c_out,
        k,
        strides=s,
        padding="VALID",
        use_bias=False,
        transpose_kernel=transpose_kernel,
        rngs=nnx.Rngs(0),
    )
    layer.kernel[...] = jnp.asarray(
        weights.convert_layout(
            w_t, src="torch", dst="flax", transposed=True, transpose_kernel=transpose_kernel
        )
    )
    got = np.moveaxis(np.asarray(layer(jnp.asarray(np.moveaxis(x, 1, -1)))), -1, 1)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    w = RNG.standard_normal((c_out, c_in, *k)).astype(np.float32)
    conv = nnx.Conv(c_in, c_out, k, padding="VALID", use_bias=False, rngs=nnx.Rngs(0))
    conv.kernel[...] = jnp.asarray(weights.convert_layout(w, src="torch", dst="flax"))
    got = np.moveaxis(np.asarray(conv(jnp.asarray(np.moveaxis(x, 1, -1)))), -1, 1)
    np.testing.assert_allclose(got, conv_ref(x, w), rtol=1e-4, atol=1e-4)
    del jax
