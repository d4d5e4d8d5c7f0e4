"""What the exporters write and how the runners answer: self-contained ONNX files (or a
graph and one data file under the final name), opsets checked, no chatter, inputs with
several batch axes in every lowering (ONNX Runtime and LiteRT against subpixel.shuffle),
one shape for the deploy API and its deprecated spellings.  Runs in the ``deploy`` tox
environment (the LiteRT parts need TensorFlow and KERAS_BACKEND=tensorflow)."""

from __future__ import annotations

import os
import shutil
import warnings

import numpy as np
import pytest

import subpixel
from subpixel import deploy

from adapters import requested_backends


def _torch():
    if "torch" not in requested_backends():
        pytest.skip("torch not requested")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    return pytest.importorskip("torch")


def _keras():
    if "tensorflow" not in requested_backends() or os.environ.get("KERAS_BACKEND") != "tensorflow":
        pytest.skip("needs tensorflow and KERAS_BACKEND=tensorflow")
    return pytest.importorskip("keras")


def _head():
    torch = _torch()
    from subpixel.layers.torch import SubPixelConv2d

    torch.manual_seed(0)
    return SubPixelConv2d(4, 2, 3, factor=2).eval(), torch.randn(1, 4, 6, 6)


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_onnx_files_are_self_contained(tmp_path, dynamo):
    module, x = _head()
    onnx = pytest.importorskip("onnx")
    path = tmp_path / "m.onnx"
    for _ in range(2):  # an export over an earlier one leaves nothing else either
        deploy.torch_to_onnx(module, x, path, dynamo=dynamo)
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]
    model = onnx.load(path, load_external_data=False)
    assert not any(t.external_data for t in model.graph.initializer)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(path, elsewhere / "copy.onnx")
    expected = module(x).detach().numpy()
    np.testing.assert_allclose(
        deploy.run_onnx(elsewhere / "copy.onnx", x.numpy()), expected, atol=1e-5
    )


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_big_weights_go_to_one_data_file_named_after_the_graph(tmp_path, monkeypatch, dynamo):
    """Past ONNX_INLINE_LIMIT (protobuf's 2 GiB; lowered here) the weights go to
    ``<name>.data`` beside the graph, which names it so: the pair moves together."""
    module, x = _head()
    onnx = pytest.importorskip("onnx")
    path = tmp_path / "big.onnx"
    monkeypatch.setattr(deploy, "ONNX_INLINE_LIMIT", 0)
    deploy.torch_to_onnx(module, x, path, dynamo=dynamo)
    assert sorted(os.listdir(tmp_path)) == ["big.onnx", "big.onnx.data"]
    model = onnx.load(path, load_external_data=False)
    locations = {
        e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"
    }
    assert locations == {"big.onnx.data"}
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("big.onnx", "big.onnx.data"):
        shutil.copy(tmp_path / name, moved / name)
    expected = module(x).detach().numpy()
    np.testing.assert_allclose(deploy.run_onnx(moved / "big.onnx", x.numpy()), expected, atol=1e-5)
    monkeypatch.setattr(deploy, "ONNX_INLINE_LIMIT", 1 << 40)
    deploy.torch_to_onnx(module, x, path, dynamo=dynamo)  # inline again: the old data goes
    assert sorted(os.listdir(tmp_path)) == ["big.onnx", "moved"]
    np.testing.assert_allclose(deploy.run_onnx(path, x.numpy()), expected, atol=1e-5)


def test_opsets_are_checked_and_the_default_export_is_quiet(tmp_path, capfd):
    module, x = _head()
    for opset, dynamo in ((7, True), (9, False), (10, False), (99, True), (99, False)):
        with pytest.raises(
            ValueError, match=rf"^opset {opset}: the .* exporter writes opsets 11 to"
        ):
            deploy.check_opset(opset, dynamo=dynamo)
        with pytest.raises(ValueError, match=rf"^opset {opset}"):
            deploy.torch_to_onnx(module, x, tmp_path / "m.onnx", dynamo=dynamo, opset=opset)
    assert not os.listdir(tmp_path)
    capfd.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        deploy.torch_to_onnx(module, x, tmp_path / "m.onnx")
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # no opset warning, no progress lines
    assert deploy.onnx_ops(tmp_path / "m.onnx") >= {"Conv", "DepthToSpace"}


# -- several batch axes -----------------------------------------------------------------


@pytest.mark.parametrize("op", ["shuffle", "unshuffle"])
@pytest.mark.parametrize("lowering", ["native", "conv", "flat", "reshape", "auto"])
@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_torch_lowerings_export_two_batch_axes(tmp_path, op, lowering, dynamo):
    torch = _torch()
    from subpixel.layers.torch import PixelShuffle, PixelUnshuffle

    shape = (2, 3, 8, 4, 6) if op == "shuffle" else (2, 3, 2, 8, 12)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    layer = (PixelShuffle if op == "shuffle" else PixelUnshuffle)(2, lowering=lowering)
    path = tmp_path / "m.onnx"
    deploy.torch_to_onnx(layer, torch.from_numpy(x), path, dynamo=dynamo)
    expected = getattr(subpixel, op)(x, 2)
    np.testing.assert_array_equal(deploy.run_onnx(path, x), expected)
    ops = deploy.onnx_ops(path)
    if lowering == "native":
        assert ops & {"DepthToSpace", "SpaceToDepth"}, ops
    if lowering == "conv":
        assert ops & {"Conv", "ConvTranspose"}, ops


@pytest.mark.parametrize("op", ["shuffle", "unshuffle"])
@pytest.mark.parametrize("lowering", ["native", "conv", "flat", "reshape", "auto"])
def test_keras_lowerings_run_and_convert_two_batch_axes(tmp_path, op, lowering):
    keras = _keras()
    from subpixel.layers import keras as kl

    shape = (2, 3, 4, 6, 8) if op == "shuffle" else (2, 3, 8, 12, 2)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    make = kl.PixelShuffle if op == "shuffle" else kl.PixelUnshuffle
    expected = getattr(subpixel, op)(x, 2, layout="channels_last")
    np.testing.assert_array_equal(np.asarray(make(2, lowering=lowering)(x)), expected)
    inputs = keras.Input((None, None, None, shape[-1]))
    model = keras.Model(inputs, make(2, lowering=lowering)(inputs))
    path = tmp_path / "m.tflite"
    deploy.keras_to_tflite(model, path)
    np.testing.assert_array_equal(deploy.run_litert(path, x), expected)
    ops = deploy.tflite_ops(path)
    if lowering == "native":
        assert ops & {"DEPTH_TO_SPACE", "SPACE_TO_DEPTH"}, ops
    if lowering == "conv":
        assert ops & {"CONV_2D", "TRANSPOSE_CONV"}, ops


# -- one shape for the API, and the spellings of 0.3 --------------------------------------


def test_exporters_write_and_runners_return_arrays(tmp_path, capfd):
    keras = _keras()
    from subpixel.layers import keras as kl

    inputs = keras.Input((None, None, 8))
    model = keras.Model(inputs, kl.PixelShuffle(2, lowering="native")(inputs))
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 8)).astype(np.float32)
    path = tmp_path / "m.tflite"
    assert deploy.keras_to_tflite(model, path) is None
    got = deploy.run_litert(path, x)
    assert isinstance(got, np.ndarray)
    np.testing.assert_array_equal(got, deploy.run_litert(path.read_bytes(), x))
    np.testing.assert_array_equal(got, subpixel.shuffle(x, 2, layout="channels_last"))
    assert max(deploy.tensor_ranks(path, x)) == 4
    with pytest.warns(DeprecationWarning, match="keras_to_tflite\\(model, path\\)"):
        blob = deploy.keras_to_tflite(model)
    with pytest.warns(DeprecationWarning, match="run_litert"):
        old, ranks = deploy.run_tflite(blob, x)
    np.testing.assert_array_equal(old, got)
    assert ranks == deploy.tensor_ranks(blob, x)
    # int8: what TensorFlow's converter prints from C++ stays out of the output
    samples = [x[:1] for _ in range(4)]
    capfd.readouterr()
    deploy.keras_to_tflite(model, tmp_path / "q.tflite", mode="int8", representative=samples)
    out, err = capfd.readouterr()
    assert "fully_quantize" not in out + err and out == ""
