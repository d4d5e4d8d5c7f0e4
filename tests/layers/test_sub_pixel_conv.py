"""``subpixel.sub_pixel_conv`` and ``subpixel.SubPixelConv`` on every requested
backend against the reference convolution + shuffle (tests/_support/reference.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import subpixel
from subpixel._core import spec as _spec

from reference import blur_ref, conv_transpose_ref, sub_pixel_conv_ref

CASES = [
    # (batch, C_in, spatial, C_out, kernel, factor, padding)
    ((2,), 3, (5, 6), 2, (3, 2), (2, 3), "same"),
    ((2,), 2, (7,), 3, (3,), 2, "valid"),
    ((1,), 2, (3, 4, 3), 2, (3, 3, 2), (1, 2, 2), 1),
    ((2, 2), 3, (5, 6), 2, (1, 3), 2, ((0, 2), (1, 0))),
    ((), 2, (4, 4), 3, (2, 2), 3, "same"),
]


def _data(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("order", ["CRD", "DCR"])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("case", CASES, ids=[f"d{len(c[2])}-{c[6]}" for c in CASES])
def test_sub_pixel_conv_values(adapter, case, layout, order):
    batch, c_in, spatial, c_out, kernel, factor, padding = case
    d = len(spatial)
    R = math.prod(factor if isinstance(factor, tuple) else (factor,) * d)
    x_cf = _data((*batch, c_in, *spatial), 0)
    x = x_cf if layout == "channels_first" else np.ascontiguousarray(np.moveaxis(x_cf, -d - 1, -1))
    w = _data((c_out * R, c_in, *kernel), 1)
    b = _data((c_out * R,), 2)
    pads = _spec.normalize_padding(padding, kernel)
    expected = sub_pixel_conv_ref(
        x.astype(np.float64),
        w.astype(np.float64),
        b.astype(np.float64),
        factor,
        pads,
        layout,
        order,
    )
    xb = adapter.asarray(x)
    for wb, bb in ((w, b), (adapter.asarray(w), adapter.asarray(b))):  # NumPy or native params
        y = subpixel.sub_pixel_conv(
            xb, wb, bb, factor=factor, padding=padding, layout=layout, order=order
        )
        np.testing.assert_allclose(adapter.to_numpy(y), expected, rtol=2e-4, atol=2e-4)
        assert adapter.same_device(y)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_blur_and_crop(adapter, layout):
    x_cf = _data((2, 3, 4, 5), 3)
    x = x_cf if layout == "channels_first" else np.ascontiguousarray(np.moveaxis(x_cf, 1, -1))
    w = _data((2 * 4, 3, 3, 3), 4)
    crop = ((1, 0), (2, 1))
    expected = sub_pixel_conv_ref(
        x, w, None, 2, ((1, 1), (1, 1)), layout, "CRD", crop=crop, blur=True
    )
    y = subpixel.sub_pixel_conv(
        adapter.asarray(x), w, factor=2, layout=layout, blur=True, crop=crop
    )
    np.testing.assert_allclose(adapter.to_numpy(y), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        adapter.to_numpy(subpixel.blur(adapter.asarray(x), layout=layout)),
        blur_ref(x, 2, layout),
        rtol=1e-6,
        atol=1e-6,  # float32 values of about 1, added in another order (separable)
    )


BAD = [
    (
        dict(factor=2, padding="full"),
        r"^`padding` must be 'same', 'valid'.*Received: padding='full'$",
    ),
    (
        dict(factor=3),
        r"^`weight` has 8 output channels, which is not divisible by prod\(factor\)=9",
    ),
    (dict(factor=2, crop=-1), r"^`crop` must be None, a non-negative int.*Received: crop=-1$"),
    (
        dict(factor=2, crop=((4, 4), (0, 0))),
        r"^`crop` removes 8 of the 8 output pixels on spatial axis 0",
    ),
    (
        dict(factor=2, spatial_dims=3),
        r"^`weight` must have shape \(C_out \* prod\(factor\), C_in, \*kernel\) with 3 kernel",
    ),
    (dict(factor=2, padding="valid", w_shape=(8, 3, 5, 5)), r"^`x` is too small for the kernel"),
    (
        dict(factor=2, w_shape=(8, 2, 3, 3)),
        r"^`x` has 3 channels \(axis 1\) but `weight` expects 2 input channels",
    ),
    (
        dict(factor=2, b_shape=(3,)),
        r"^`bias` must have shape \(8,\), one value per LR output channel",
    ),
]


@pytest.mark.parametrize("kwargs,pattern", BAD, ids=[str(i) for i in range(len(BAD))])
def test_errors_are_the_same_everywhere(adapter, kwargs, pattern):
    kwargs = dict(kwargs)
    w = np.zeros(kwargs.pop("w_shape", (8, 3, 3, 3)), np.float32)
    b_shape = kwargs.pop("b_shape", None)
    b = None if b_shape is None else np.zeros(b_shape, np.float32)
    x = np.zeros((1, 3, 4, 4), np.float32)
    with pytest.raises(ValueError, match=pattern) as on_numpy:
        subpixel.sub_pixel_conv(x, w, b, **kwargs)
    with pytest.raises(ValueError) as on_backend:
        subpixel.sub_pixel_conv(adapter.asarray(x), w, b, **kwargs)
    assert str(on_backend.value) == str(on_numpy.value)


def test_weight_of_another_library_is_refused(adapter):
    x = adapter.asarray(np.zeros((1, 3, 4, 4), np.float32))
    with pytest.raises(TypeError, match=r"^`weight` must be an array of the input's library"):
        subpixel.sub_pixel_conv(x, [[0.0]], factor=2)


# ---------------------------------------------------------------------------
# the framework-agnostic layer
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["CRD", "DCR"])
def test_layer_runs_on_every_backend(adapter, order):
    layer = subpixel.SubPixelConv(3, 2, (3, 3), (2, 3), order=order, seed=0)
    layer.bias = np.arange(12, dtype=np.float32)
    x = _data((2, 3, 4, 5), 5)
    expected = sub_pixel_conv_ref(
        x, layer.weight, layer.bias, (2, 3), ((1, 1), (1, 1)), order=order
    )
    xb = adapter.asarray(x)
    np.testing.assert_allclose(adapter.to_numpy(layer(xb)), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        adapter.to_numpy(layer(xb)), expected, rtol=1e-4, atol=1e-4
    )  # cached params
    layer.weight = layer.weight * 2  # new parameters invalidate the cache
    expected2 = sub_pixel_conv_ref(
        x, layer.weight, layer.bias, (2, 3), ((1, 1), (1, 1)), order=order
    )
    np.testing.assert_allclose(adapter.to_numpy(layer(xb)), expected2, rtol=1e-4, atol=1e-4)


@pytest.mark.exact  # same parameters, same arithmetic on both sides
@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_layer_save_load(tmp_path, suffix):
    pytest.importorskip("safetensors") if suffix == ".safetensors" else None
    layer = subpixel.SubPixelConv(
        2,
        3,
        (3, 1, 2),
        (1, 2, 3),
        order="DCR",
        layout="channels_last",
        padding=((1, 1), (0, 0), (0, 1)),
        crop=((0, 0), (1, 0), (0, 2)),
        seed=1,
    )
    layer.bias = np.random.default_rng(0).standard_normal(18).astype(np.float32)
    path = tmp_path / f"layer{suffix}"
    layer.save(path)
    loaded = subpixel.SubPixelConv.load(path)
    assert loaded.config() == layer.config()
    np.testing.assert_array_equal(loaded.weight, layer.weight)
    np.testing.assert_array_equal(loaded.bias, layer.bias)
    x = _data((1, 4, 3, 5, 2), 7)
    np.testing.assert_array_equal(loaded(x), layer(x))


def test_load_refuses_other_files(tmp_path):
    bad = tmp_path / "x.npz"
    np.savez(bad, weight=np.zeros((4, 1, 1, 1)))
    with pytest.raises(ValueError, match="not a subpixel SubPixelConv file"):
        subpixel.SubPixelConv.load(bad)
    pickled = tmp_path / "p.npz"
    np.savez(pickled, config=np.array([{"a": 1}], dtype=object), weight=np.zeros(1))
    with pytest.raises(ValueError):
        subpixel.SubPixelConv.load(pickled)
    with pytest.raises(ValueError, match=r"a SubPixelConv is saved as \.safetensors or \.npz"):
        subpixel.SubPixelConv.load(tmp_path / "model.pt")


@pytest.mark.parametrize(
    "k,s,p,op", [(4, 2, 1, 0), (3, 2, 1, 1), (9, 3, 3, 0), (5, 3, 0, 2), (6, 2, 2, 0)]
)
def test_layer_from_conv_transpose_is_exact(k, s, p, op):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 2, k, k))
    b = rng.standard_normal(2)
    x = rng.standard_normal((2, 3, 5, 4))
    layer = subpixel.SubPixelConv.from_conv_transpose(w, b, stride=s, padding=p, output_padding=op)
    np.testing.assert_allclose(
        layer(x), conv_transpose_ref(x, w, b, s, p, op), rtol=1e-10, atol=1e-10
    )
    ct = layer.to_conv_transpose()
    np.testing.assert_allclose(
        conv_transpose_ref(x, ct.weight, ct.bias, ct.stride, ct.padding, ct.output_padding),
        conv_transpose_ref(x, w, b, s, p, op),
        rtol=1e-10,
        atol=1e-10,
    )


def test_safetensors_files_interoperate_with_the_reference_library(tmp_path):
    """Files we write, the `safetensors` library reads, and the other way round."""
    import safetensors.numpy as st

    from subpixel._core import files as _files

    tensors = {
        "w": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
        "b": np.array([1, -2], np.int64),
        "h": np.ones(3, np.float16),
        "m": np.array([True, False]),
        "big_endian": np.arange(3, dtype=">f8"),
    }
    ours = tmp_path / "ours.safetensors"
    _files.write_tensors(ours, tensors, {"k": "v"})
    loaded = st.load_file(str(ours))
    for k, v in tensors.items():
        np.testing.assert_array_equal(loaded[k], v)
    theirs = tmp_path / "theirs.safetensors"
    st.save_file(
        {k: v for k, v in tensors.items() if k != "big_endian"}, str(theirs), metadata={"k": "v"}
    )
    back, meta = _files.read_all(theirs)
    assert meta == {"k": "v"}
    for k, v in back.items():
        np.testing.assert_array_equal(v, tensors[k])
        assert v.dtype == tensors[k].dtype


def test_layer_never_computes_with_stale_parameters(adapter):
    """Parameters are read-only: an in-place edit is refused, an assignment is used
    on every backend at once (the per-backend copies are rebuilt)."""
    layer = subpixel.SubPixelConv(4, 3, 3, 2, seed=0)
    x = np.ones((1, 4, 5, 5), np.float32)
    xb = adapter.asarray(x)
    layer(xb)  # fills the backend's cache
    with pytest.raises(ValueError, match="read-only"):
        layer.weight[...] = 0
    with pytest.raises(ValueError, match="read-only"):
        np.copyto(layer.bias, 1)
    layer.weight = np.zeros_like(layer.weight)
    layer.bias = np.ones_like(layer.bias)
    np.testing.assert_array_equal(adapter.to_numpy(layer(xb)), np.ones((1, 3, 10, 10)))


LENIENT = [
    (lambda: subpixel.SubPixelConv(2.5, 3, 3, 2), r"^`in_channels` must be an integer from 1"),
    (lambda: subpixel.SubPixelConv(True, 3, 3, 2), r"^`in_channels` must be an integer"),
    (lambda: subpixel.SubPixelConv(-1, 3, 3, 2), r"^`in_channels` must be an integer"),
    (lambda: subpixel.SubPixelConv(4, None, 3, 2), r"^`out_channels` must be an integer"),
    (lambda: subpixel.SubPixelConv(4, 3, 3, 2, blur="False"), r"^`blur` must be True or False"),
    (
        lambda: subpixel.SubPixelConv(4, 3, 3, 2, dtype=np.int8),
        r"^`dtype` must be float16, float32",
    ),
    (lambda: subpixel.SubPixelConv(4, 3, 3, 2, dtype="bfloat16"), r"^`dtype` must be float16"),
    (lambda: subpixel.SubPixelConv(4, 3, 3, 2, seed="abc"), r"^`seed` must be None"),
    (lambda: subpixel.SubPixelConv(4, 3, 3, 2, seed=-1), r"^`seed` must be None"),
    (lambda: subpixel.SubPixelConv(4, 3, 3, 2, padding=10**6), r"^`padding` must be at most"),
    (lambda: subpixel.SubPixelConv.from_weights(np.zeros((4, 1, 1, 1))), r"^`factor` is needed"),
    (lambda: subpixel.weights.icnr((8, 3, 3, 3), 2, dtype=int), r"^`dtype` must be a floating"),
    (lambda: subpixel.weights.icnr((8, 3.7, 3, 3), 2), r"^`shape` must be a tuple of positive"),
    (
        lambda: subpixel.weights.reorder_channels(np.zeros((8, 1, 1, 1)), 2, axis=True),
        r"^`axis` must be an axis of `w`",
    ),
    (
        lambda: subpixel.weights.reorder_channels(np.zeros((8, 1, 1, 1)), 2, axis=1.0),
        r"^`axis` must be an axis of `w`",
    ),
    (
        lambda: subpixel.weights.conv_transpose_to_sub_pixel(np.zeros((1, 1, 3, 3)), stride=10**6),
        r"^`stride` must be an integer between 1 and 1024",
    ),
    (
        lambda: subpixel.weights.sub_pixel_to_conv_transpose(
            np.zeros((12, 2, 3, 3)), factor=2, groups=4
        ),
        r"^`groups` must divide the 3 output channels of the transposed convolution",
    ),
]


@pytest.mark.parametrize("make,pattern", LENIENT, ids=[str(i) for i in range(len(LENIENT))])
def test_lenient_inputs_are_the_contract_error(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


def test_icnr_init_errors_are_not_swallowed():
    def init(shape, rng):
        raise TypeError("a bug inside the user's initializer")

    with pytest.raises(TypeError, match="a bug inside the user's initializer"):
        subpixel.weights.icnr((8, 3, 3, 3), 2, init=init)
    w = subpixel.weights.icnr((8, 3, 3, 3), 2, init=lambda shape: np.ones(shape))
    assert w.shape == (8, 3, 3, 3) and w.dtype == np.float32


def test_nan_bias_converts_to_a_transposed_conv():
    w = np.zeros((4, 1, 2, 2))
    ct = subpixel.weights.sub_pixel_to_conv_transpose(w, np.full(4, np.nan), factor=2, padding=0)
    assert np.isnan(ct.bias).all() and ct.bias.shape == (1,)


def test_to_conv_transpose_keeps_the_crop():
    """A cropped layer back to a transposed conv for Keras has no equivalent: refused,
    not silently uncropped; for PyTorch the crop folds into padding."""
    from reference import conv_transpose_ref

    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(2)
    layer = subpixel.SubPixelConv.from_conv_transpose(w, b, stride=2, padding=1, output_padding=1)
    ct = layer.to_conv_transpose()
    x = rng.standard_normal((1, 3, 4, 5))
    np.testing.assert_allclose(
        conv_transpose_ref(x, ct.weight, ct.bias, ct.stride, ct.padding, ct.output_padding),
        conv_transpose_ref(x, w, b, 2, 1, 1),
        rtol=1e-10,
        atol=1e-10,
    )
    if layer.spec.has_crop:
        with pytest.raises(ValueError, match="`crop` has no Keras"):
            layer.to_conv_transpose("tensorflow")


@pytest.mark.parametrize("bad", ["object", "str", "complex"])
def test_weights_hold_real_numbers_on_every_backend(adapter, bad):
    w = {
        "object": np.array([[[[1.0]]]] * 4, dtype=object),
        "str": np.full((4, 1, 1, 1), "1"),
        "complex": np.ones((4, 1, 1, 1), np.complex64),
    }[bad]
    x = adapter.asarray(np.ones((1, 1, 3, 3), np.float32))
    with pytest.raises(TypeError, match=r"^`weight` must hold real numbers"):
        subpixel.sub_pixel_conv(x, w, factor=2, padding=0)


def test_big_endian_numpy_parameters(adapter):
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((4, 2, 3, 3)).astype(">f4")
    b = np.arange(4, dtype=">f8")
    expected = sub_pixel_conv_ref(x, w.astype(np.float64), b, 2, ((1, 1), (1, 1)))
    got = adapter.to_numpy(subpixel.sub_pixel_conv(adapter.asarray(x), w, b, factor=2))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_numpy_bool_is_a_bool():
    assert subpixel.SubPixelConv(2, 1, 3, 2, blur=np.True_).blur is True
    with pytest.raises(ValueError, match="cannot set WRITEABLE flag"):
        subpixel.SubPixelConv(2, 1, 3, 2).weight.flags.writeable = True
    with pytest.raises(ValueError, match=r"kernel parameters \(more than 2\*\*31\)"):
        subpixel.SubPixelConv(2**24, 2**24, 3, 2)
