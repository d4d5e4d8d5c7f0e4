"""The full-integer export of the bundled ESPCN: the rewritten graph computes ESPCN,
every lowering gives the same int8 numbers, the input and output sit on the 8-bit
grid, and an integer-io file agrees with the float-io one through its quantization
parameters.  ``Quantization`` itself needs NumPy only."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest

from subpixel import deploy

from adapters import requested_backends

GRID = [deploy.Quantization("uint8", 1 / 255, 0), deploy.Quantization("int8", 1 / 255, -128)]


@pytest.mark.parametrize("q", GRID, ids=["uint8", "int8"])
def test_quantization_round_trips(q):
    info = np.iinfo(q.dtype)
    codes = np.arange(info.min, info.max + 1).astype(q.dtype)
    assert np.array_equal(q.quantize(q.dequantize(codes)), codes)  # every code back
    x = np.random.default_rng(0).uniform(0, 1, 10000).astype(np.float32)
    back = q.dequantize(q.quantize(x))
    assert back.dtype == np.float32 and np.abs(back - x).max() <= q.scale / 2 * (1 + 1e-6)
    assert q.dequantize(q.quantize([-5.0, 5.0])).tolist() == [0.0, 1.0]  # clipped to the range
    k = np.arange(256)
    assert np.array_equal(q.quantize(k / 255), (k + q.zero_point).astype(q.dtype))  # 8-bit exact


def test_quantization_of_other_tensors():
    q = deploy.Quantization("int8", 0.5, 3)
    assert q.quantize([0.0, 1.0, 1.25, 1.75, -100.0]).tolist() == [3, 5, 5, 7, -128]  # half to even
    assert q.dequantize(np.array([3, 5], np.int8)).tolist() == [0.0, 1.0]


if "tensorflow" not in requested_backends() or os.environ.get("KERAS_BACKEND") != "tensorflow":
    pytest.skip("needs tensorflow and KERAS_BACKEND=tensorflow", allow_module_level=True)

from subpixel.models import ESPCN
from subpixel.models import calibration as cal
from subpixel.models.keras import espcn_int8

LOWERINGS = ["native", "reshape", "flat", "conv"]


@pytest.fixture(scope="module")
def espcn3():
    model = ESPCN.pretrained(3)
    return model, cal.calibrate(model, cal.synthetic(12))


def _lr(shape=(1, 21, 26, 1), seed=0):
    return np.random.default_rng(seed).uniform(0, 1, shape).astype(np.float32)


@pytest.mark.parametrize("lowering", LOWERINGS)
def test_the_int8_graph_is_espcn_in_float(espcn3, lowering):
    """Mean folded into the biases (border padded with it), channels split into groups
    and concatenated in another order, DCR head: the same function as the model."""
    model, c = espcn3
    rewritten = espcn_int8(
        model.params, 3, model.mean, c.conv1, c.conv2, lowering=lowering, quantize=False
    )
    x = _lr()
    expected = np.moveaxis(model(np.moveaxis(x, -1, 1)), 1, -1)
    np.testing.assert_allclose(np.asarray(rewritten(x)), expected, rtol=0, atol=2e-6)


def _int8(espcn3, lowering="native", io="float32"):
    model, c = espcn3
    k = espcn_int8(model.params, 3, model.mean, c.conv1, c.conv2, lowering=lowering)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "int8.tflite")
        deploy.keras_to_tflite(k, path, mode="int8", representative=[_lr(seed=1)], io=io)
        with open(path, "rb") as f:
            return f.read()


def test_every_lowering_gives_the_same_int8_numbers(espcn3):
    x = _lr(seed=2)
    blobs = {lowering: _int8(espcn3, lowering) for lowering in LOWERINGS}
    outs = {}
    for lowering, blob in blobs.items():
        ops = deploy.tflite_ops(blob)
        assert "FLEX" not in " ".join(ops) and "TANH" in ops, ops
        if lowering == "native":
            assert "ADD" not in ops, ops  # the mean is folded into the biases
        assert deploy.tflite_quantization(blob) == (None, None)  # float input and output
        outs[lowering] = deploy.run_litert(blob, x)
        ranks = deploy.tensor_ranks(blob, x)
        if lowering != "reshape":
            assert max(ranks) <= 4, (lowering, ranks)
    assert "DEPTH_TO_SPACE" in deploy.tflite_ops(blobs["native"])
    assert "GATHER" not in deploy.tflite_ops(blobs["native"])
    for lowering in LOWERINGS[1:]:  # a shuffle only moves int8 values
        np.testing.assert_array_equal(outs[lowering], outs["native"], err_msg=lowering)
    # the output is on the 8-bit grid: every value k / 255
    k = outs["native"] * 255
    np.testing.assert_allclose(k, np.round(k), atol=1e-4)


def test_input_and_output_are_on_the_8_bit_grid(espcn3):
    """An 8-bit luminance reaches the network unchanged: inputs k / 255 and the
    neighbouring values that round to them give the same output; 0 and 1 (a black
    or white image) are inside the range, not clipped (the float model's output)."""
    model, _ = espcn3
    blob = _int8(espcn3)
    k = np.random.default_rng(3).integers(0, 256, (1, 16, 16, 1))
    on_grid = deploy.run_litert(blob, (k / 255).astype(np.float32))
    nudged = deploy.run_litert(blob, ((k + 0.3) / 255).astype(np.float32))
    np.testing.assert_array_equal(on_grid, nudged)
    for level in (0.0, 1.0):
        x = np.full((1, 16, 16, 1), level, np.float32)
        got = deploy.run_litert(blob, x)
        expected = np.clip(model(np.moveaxis(x, -1, 1)), 0, 1)
        # away from the border (where the network meets its padding, mean grey)
        error = np.abs(np.moveaxis(got, -1, 1) - expected)[..., 12:-12, 12:-12]
        assert error.max() <= 3 / 255, level


@pytest.mark.parametrize("io", ["uint8", "int8"])
def test_integer_io_agrees_with_float_io_through_its_parameters(espcn3, io):
    float_io, int_io = _int8(espcn3), _int8(espcn3, io=io)
    q_in, q_out = deploy.tflite_quantization(int_io)
    scale = float(np.float32(1 / 255))  # LiteRT stores float32 scales
    assert q_in == q_out == deploy.Quantization(io, scale, 0 if io == "uint8" else -128)
    it = deploy.tflite_interpreter(int_io, delegates=False)
    x = _lr(seed=4)
    inp = it.get_input_details()[0]
    assert inp["dtype"] == np.dtype(io) and it.get_output_details()[0]["dtype"] == np.dtype(io)
    it.resize_tensor_input(inp["index"], list(x.shape))
    it.allocate_tensors()
    it.set_tensor(inp["index"], q_in.quantize(x))
    it.invoke()
    codes = it.get_tensor(it.get_output_details()[0]["index"])
    expected = deploy.run_litert(float_io, x)
    np.testing.assert_allclose(q_out.dequantize(codes), expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(q_out.quantize(expected), codes)


def test_io_needs_int8(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="needs mode='int8'"):
        deploy.keras_to_tflite(model, tmp_path / "m.tflite", io="uint8")
    with pytest.raises(ValueError, match="`io` must be"):
        deploy.keras_to_tflite(
            model, tmp_path / "m.tflite", mode="int8", representative=[], io="int16"
        )
