"""LiteRT/TFLite from Keras (TensorFlow backend): every layer x order x lowering converts
with builtin ops only (no Flex/SELECT_TF_OPS), runs in the LiteRT interpreter at two
input sizes with Keras's numbers; the op list and tensor ranks are checked per
lowering; float32, float16 and full-integer int8.  Runs in the ``deploy`` environment."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

from adapters import requested_backends

if "tensorflow" not in requested_backends() or os.environ.get("KERAS_BACKEND") != "tensorflow":
    pytest.skip("needs tensorflow and KERAS_BACKEND=tensorflow", allow_module_level=True)

import keras

from subpixel import deploy
from subpixel.layers.keras import PixelShuffle, PixelUnshuffle, SubPixelConv

LOWERINGS = ["native", "reshape", "flat", "conv", "auto"]
LAYERS = [
    ("PixelShuffle", lambda o, low: PixelShuffle(2, order=o, lowering=low), (3, 4, 12), False),
    ("PixelShuffle-r3", lambda o, low: PixelShuffle(3, order=o, lowering=low), (2, 3, 18), False),
    ("PixelUnshuffle", lambda o, low: PixelUnshuffle(2, order=o, lowering=low), (6, 8, 3), False),
    (
        "SubPixelConv",
        lambda o, low: SubPixelConv(
            3, 3, 3, order=o, lowering=low, bias_initializer="random_normal"
        ),
        (5, 6, 4),
        True,
    ),
]


def model_of(make, order, lowering, shape):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, shape[-1]))
    return keras.Model(inputs, make(order, lowering)(inputs))


def tflite(model, **kw) -> bytes:
    """``model`` written as a LiteRT file, and its bytes."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "m.tflite")
        deploy.keras_to_tflite(model, path, **kw)
        with open(path, "rb") as f:
            return f.read()


@pytest.mark.parametrize("order", ["CRD", "DCR"])
@pytest.mark.parametrize("lowering", LOWERINGS)
@pytest.mark.parametrize("name,make,shape,is_conv", LAYERS, ids=[c[0] for c in LAYERS])
def test_float32_every_layer_order_lowering(name, make, shape, is_conv, lowering, order):
    model = model_of(make, order, lowering, shape)
    blob = tflite(model)
    ops = deploy.tflite_ops(blob)
    assert "FLEX" not in " ".join(ops)
    if lowering == "native" or (lowering == "auto"):
        assert ops & {"DEPTH_TO_SPACE", "SPACE_TO_DEPTH"}, ops
        assert "TRANSPOSE" not in ops, ops
        if is_conv:
            assert "GATHER" not in ops, ops  # CRD folded into the kernel: no extra op
    if lowering == "conv":
        assert "TRANSPOSE" not in ops and ops & {"TRANSPOSE_CONV", "CONV_2D"}, ops
    for size in ((1, *shape), (2, 2 * shape[0], 2 * shape[1], shape[2])):
        a = np.random.default_rng(1).standard_normal(size).astype(np.float32)
        got, ranks = deploy.run_litert(blob, a), deploy.tensor_ranks(blob, a)
        expected = np.asarray(model(a))
        if lowering in ("native", "flat", "conv", "auto"):
            assert max(ranks) <= 4, ranks
        if is_conv:
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
        else:
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("order", ["CRD", "DCR"])
@pytest.mark.parametrize("lowering", ["native", "flat", "conv"])
def test_float16_weights(lowering, order):
    _, make, shape, _ = LAYERS[3]
    model = model_of(make, order, lowering, shape)
    blob = tflite(model, mode="float16")
    a = np.random.default_rng(2).standard_normal((1, *shape)).astype(np.float32)
    got = deploy.run_litert(blob, a)
    np.testing.assert_allclose(got, np.asarray(model(a)), rtol=1e-2, atol=1e-2)  # fp16 kernels


@pytest.mark.parametrize("order", ["CRD", "DCR"])
@pytest.mark.parametrize("lowering", ["native", "flat", "conv"])
@pytest.mark.parametrize("name,make,shape,is_conv", LAYERS, ids=[c[0] for c in LAYERS])
def test_int8_full_integer(name, make, shape, is_conv, lowering, order):
    model = model_of(make, order, lowering, shape)
    rng = np.random.default_rng(3)
    samples = [rng.uniform(-1, 1, (1, *shape)).astype(np.float32) for _ in range(16)]
    blob = tflite(model, mode="int8", representative=samples)
    ops = deploy.tflite_ops(blob)
    assert "FLEX" not in " ".join(ops)
    a = samples[0]
    got = deploy.run_litert(blob, a)
    expected = np.asarray(model(a))
    # a shuffle only moves quantized values; a convolution adds one rounding of its output
    scale = float(np.abs(expected).max()) / 127
    np.testing.assert_allclose(got, expected, rtol=0, atol=(3 if is_conv else 1.01) * scale)


def test_native_needs_channels_last():
    with pytest.raises(ValueError, match=r"needs data_format='channels_last'"):
        PixelShuffle(2, data_format="channels_first", lowering="native")


def test_lowering_survives_serialisation(tmp_path):
    model = model_of(LAYERS[3][1], "CRD", "flat", LAYERS[3][2])
    model.save(tmp_path / "m.keras")
    back = keras.models.load_model(tmp_path / "m.keras")
    assert back.layers[-1].lowering == "flat"
    a = np.random.default_rng(4).standard_normal((1, 5, 6, 4)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(back(a)), np.asarray(model(a)), rtol=1e-6, atol=1e-6)
