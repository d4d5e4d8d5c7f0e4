"""`subpixel export` and `subpixel upscale --model`: deploy and check in two commands."""

from __future__ import annotations

import os
import re

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
