"""RuntimeModel: what a model file takes is read from the file and a probe run (channels,
layout, fixed or dynamic sizes, scale), and the image is fed accordingly.  The oracle is
a nearest-neighbour enlarger: its upscale must be ``np.repeat`` of the image, exactly,
whatever the file's layout and runtime; a channel swapped, a layout misread or an RGB
image fed as luminance would show."""

from __future__ import annotations

import os

import numpy as np
import pytest

from subpixel.models import ESPCN
from subpixel.models.runtime import RuntimeModel
from subpixel.models.tiling import upscale_image

from adapters import requested_backends

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (37, 45, 3), dtype=np.uint8)


def nearest(img: np.ndarray, r: int) -> np.ndarray:
    return np.repeat(np.repeat(img, r, axis=0), r, axis=1)


def needs_torch():
    if "torch" not in requested_backends():
        pytest.skip("torch is not in SUBPIXEL_TEST_BACKENDS")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import model_files

    return model_files


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
    model_files = needs_torch()
    folder = tmp_path_factory.mktemp("nearest")
    return {
        "nchw3": model_files.to_onnx(model_files.Nearest(3), folder / "n3.onnx"),
        "nhwc3": model_files.to_onnx(
            model_files.Nearest(2, nhwc=True), folder / "h2.onnx", nhwc=True
        ),
        "luma": model_files.to_onnx(model_files.Nearest(2), folder / "y2.onnx", channels=1),
        "pt2": model_files.to_pt2(model_files.Nearest(4), folder / "n4.pt2"),
        "fixed": model_files.to_onnx(
            model_files.Nearest(2), folder / "f32.onnx", dynamic=False, size=32
        ),
    }


def test_rgb_models_get_rgb(onnx_models):
    """NCHW ONNX, ONNX whose input is NHWC, a torch.export program: exactly nearest, for
    RGB; for grey, 16-bit grey and grey + alpha the grey goes in as R = G = B and comes
    back (exactly); alpha is bicubic as with the bundled model."""
    for key, r, layout in (("nchw3", 3, "NCHW"), ("nhwc3", 2, "NHWC"), ("pt2", 4, "NCHW")):
        model = RuntimeModel(onnx_models[key], allow_pickle=True)
        assert (model.channels, model.scale, model.layout, model.fixed) == (
            3,
            r,
            layout,
            (None, None),
        )
        np.testing.assert_array_equal(upscale_image(RGB, model), nearest(RGB, r))
    model = RuntimeModel(onnx_models["nchw3"])
    grey = RGB[..., 0]
    np.testing.assert_array_equal(upscale_image(grey, model), nearest(grey, 3))
    deep = RGB[..., 0].astype(np.uint16) * 257 + 3
    np.testing.assert_array_equal(upscale_image(deep, model), nearest(deep, 3))
    rgba = np.concatenate([RGB, RGB[..., :1]], -1)
    got = upscale_image(rgba, model)
    np.testing.assert_array_equal(got[..., :3], nearest(RGB, 3))
    np.testing.assert_array_equal(got[..., 3], upscale_image(rgba, ESPCN.pretrained(3))[..., 3])
    floats = RNG.random((20, 30), dtype=np.float32) * 3 - 1
    np.testing.assert_allclose(upscale_image(floats, model), nearest(floats, 3), rtol=0, atol=1e-6)


def test_luminance_models_get_y(onnx_models):
    """A one-channel model gets luminance: grey images exactly; an RGB image whose
    pixels are grey (R = G = B: chroma 128 everywhere, bicubic keeps it) comes back
    grey and nearest, within one level (YCbCr there and back in float64)."""
    model = RuntimeModel(onnx_models["luma"])
    assert (model.channels, model.scale) == (1, 2)
    grey = RGB[..., 1]
    np.testing.assert_array_equal(upscale_image(grey, model), nearest(grey, 2))
    greyish = np.repeat(grey[..., None], 3, axis=2)
    got = upscale_image(greyish, model).astype(int)
    assert np.abs(got - nearest(greyish, 2)).max() <= 1


def test_a_fixed_size_runs_on_that_size_only(onnx_models):
    model = RuntimeModel(onnx_models["fixed"])
    assert model.fixed == (32, 32) and model.grid is None
    img = RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(upscale_image(img, model), nearest(img, 2))
    with pytest.raises(ValueError, match=r"takes only inputs of 32x32 pixels.*the image is 40x32"):
        upscale_image(np.zeros((32, 40, 3), np.uint8), model)
    with pytest.raises(ValueError, match="cannot be tiled"):
        upscale_image(img, model, tile=16)


@pytest.fixture(scope="module")
def litert_models(tmp_path_factory):
    if "tensorflow" not in requested_backends() or os.environ.get("KERAS_BACKEND") != "tensorflow":
        pytest.skip("needs tensorflow and KERAS_BACKEND=tensorflow")
    import keras
    import tensorflow as tf

    folder = tmp_path_factory.mktemp("litert")

    def convert(model, name):
        blob = tf.lite.TFLiteConverter.from_keras_model(model).convert()
        (folder / name).write_bytes(blob)
        return folder / name

    out = {}
    for channels, r in ((3, 2), (1, 3)):
        inputs = keras.Input((None, None, channels))
        up = keras.Model(inputs, keras.layers.UpSampling2D(r)(inputs))
        out[channels] = convert(up, f"up{channels}.tflite")
    inputs = keras.Input((None, None, 3))
    logs = keras.layers.Lambda(lambda t: keras.ops.log(t - 2.0))(inputs)
    out["nan"] = convert(keras.Model(inputs, keras.layers.UpSampling2D(2)(logs)), "nan.tflite")
    return out


def test_litert_models(litert_models):
    """LiteRT (NHWC, as the converter writes Keras models): RGB and luminance."""
    model = RuntimeModel(litert_models[3])
    assert (model.channels, model.scale, model.layout) == (3, 2, "NHWC")
    np.testing.assert_array_equal(upscale_image(RGB, model), nearest(RGB, 2))
    model = RuntimeModel(litert_models[1])
    assert (model.channels, model.scale) == (1, 3)
    np.testing.assert_array_equal(upscale_image(RGB[..., 2], model), nearest(RGB[..., 2], 3))
    with pytest.raises(ValueError, match="NaN or infinite"):
        RuntimeModel(litert_models["nan"])


def test_non_finite_output_of_the_bundled_kind_is_refused():
    """An ESPCN whose weights hold NaN: refused, not a black image."""
    model = ESPCN.pretrained(2)
    params = dict(model.params)
    params["conv3.bias"] = np.full_like(params["conv3.bias"], np.nan)
    broken = ESPCN(params, 2)
    with pytest.raises(ValueError, match=r"ESPCN x2: its output holds NaN or infinite values"):
        upscale_image(RGB, broken)
