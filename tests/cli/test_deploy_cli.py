"""`subpixel export` and `subpixel upscale --model`: deploy and check in two commands."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from subpixel import cli, image

import commands
from adapters import requested_backends
from tolerances import espcn_allowance


def main(capsys, *args):
    code, out, err = commands.main(capsys, *args)
    assert code == 0, err
    return out


def _numbers(text):
    diff = float(re.search(r"source framework on the sample: ([\d.e+-]+)", text).group(1))
    loss = float(re.search(r"\(([+-][\d.]+) dB\)", text).group(1))
    return diff, loss


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_export_onnx_then_upscale_with_it(tmp_path, capsys, exporter):
    if "torch" not in requested_backends():
        pytest.skip("torch not requested")
    pytest.importorskip("onnxruntime")
    path = tmp_path / "espcn.onnx"
    text = main(capsys, "export", path, "--scale", "2", "--exporter", exporter)
    assert "DepthToSpace" in text
    diff, loss = _numbers(text)
    assert diff < espcn_allowance(2) and abs(loss) < 0.01
    main(capsys, "upscale", "sample", tmp_path / "x2.png", "--model", path, "--tile", "64")
    assert image.read_image(tmp_path / "x2.png").shape == (300, 444, 3)


@pytest.mark.parametrize("int8", [False, True])
def test_export_tflite_then_upscale_with_it(tmp_path, capsys, int8):
    if "tensorflow" not in requested_backends() or os.environ.get("KERAS_BACKEND") != "tensorflow":
        pytest.skip("needs tensorflow and KERAS_BACKEND=tensorflow")
    path = tmp_path / "espcn.tflite"
    text = main(capsys, "export", path, "--scale", "3", *(["--int8"] if int8 else []))
    assert "DEPTH_TO_SPACE" in text and "FLEX" not in text
    diff, loss = _numbers(text)
    if int8:
        assert loss >= -0.3  # the target: int8 loses at most 0.3 dB of Y-PSNR
    else:
        assert diff < espcn_allowance(3)
    out = main(capsys, "upscale", "sample", tmp_path / "x3.png", "--model", path)
    assert "luminance model x3 in LiteRT" in out
    assert image.read_image(tmp_path / "x3.png").shape == (300, 444, 3)


def test_export_and_model_errors_are_one_line(tmp_path, capsys):
    for args in (
        ["export", tmp_path / "m.txt"],
        ["export", tmp_path / "m.onnx", "--int8"],
        ["export", tmp_path / "m.tflite", "--opset", "13"],
        ["upscale", "sample", tmp_path / "o.png", "--model", tmp_path / "none.onnx"],
    ):
        code = cli.main([str(a) for a in args])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("subpixel: error: "), err
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    code = cli.main(["upscale", "sample", str(tmp_path / "o.png"), "--model", str(bad)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(bad) in err[0], err


def _torch_onnx():
    if "torch" not in requested_backends():
        pytest.skip("torch not requested")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")


def test_an_exported_onnx_file_travels_alone(tmp_path, capsys):
    """The file holds its weights: no sidecar named after a temporary file, none added
    by a re-export, and a copy elsewhere runs."""
    _torch_onnx()
    path = tmp_path / "m.onnx"
    main(capsys, "export", path, "--scale", "2")
    main(capsys, "export", path, "--scale", "2", "--force")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "m.onnx").write_bytes(path.read_bytes())
    main(capsys, "upscale", "sample", tmp_path / "x2.png", "--model", elsewhere / "m.onnx")


def test_opsets_that_cannot_hold_the_shuffle_are_one_line(tmp_path, capsys):
    _torch_onnx()
    for args in (
        ["--opset", "7"],
        ["--opset", "9", "--exporter", "torchscript"],
        ["--opset", "99", "--exporter", "torchscript"],
        ["--opset", "99"],
        ["--opset", "-3"],
    ):
        line = commands.one_line(capsys, "export", tmp_path / "q.onnx", *args)
        assert "--opset" in line and "opsets 11 to" in line, line
    assert not list(tmp_path.iterdir())


def test_a_file_that_does_not_run_or_differs_is_not_written(tmp_path, capsys, monkeypatch):
    _torch_onnx()
    from subpixel import deploy

    def broken(path, x):
        raise RuntimeError("[ONNXRuntimeError] : 10 : INVALID_GRAPH : simulated")

    monkeypatch.setattr(deploy, "run_onnx", broken)
    line = commands.one_line(capsys, "export", tmp_path / "m.onnx")
    assert "does not run in its runtime" in line and "not written" in line
    monkeypatch.setattr(deploy, "run_onnx", lambda path, x: np.zeros((1, 1, 300, 444), np.float32))
    line = commands.one_line(capsys, "export", tmp_path / "m.onnx")
    assert "differs from its source" in line
    assert not list(tmp_path.iterdir())  # neither the file nor a temporary one


def test_ctrl_c_during_an_export_is_an_interruption(tmp_path, capsys, monkeypatch):
    """An interrupt that the exporter turns into another exception (PyTorch's dynamo,
    interrupted in a lazy import, raises AttributeError) is still "interrupted"."""
    _torch_onnx()
    import signal

    from subpixel import deploy

    real = deploy.torch_to_onnx

    def interrupted(module, example, path, **kw):
        real(module, example, path, **kw)
        try:
            os.kill(os.getpid(), signal.SIGINT)
        except KeyboardInterrupt:
            raise AttributeError("module 'torch._dynamo' has no attribute 'exc'") from None

    monkeypatch.setattr(deploy, "torch_to_onnx", interrupted)
    code, _, err = commands.main(capsys, "export", tmp_path / "m.onnx")
    assert code == 130 and err.strip() == "subpixel: interrupted", err
    assert not list(tmp_path.iterdir())
