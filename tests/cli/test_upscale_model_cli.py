"""`subpixel upscale --model FILE`: every model that cannot run on the image, or that
gives no image, is refused in one line naming the file and what was expected (exit 2),
and nothing is written."""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest

from adapters import requested_backends

if "torch" not in requested_backends():
    pytest.skip("torch is not in SUBPIXEL_TEST_BACKENDS", allow_module_level=True)
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import model_files
import torch
from torch import nn

from subpixel import image

import commands


class FourChannels(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 16, 3, padding=1)

    def forward(self, x):
        return torch.pixel_shuffle(self.conv(x), 2)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    rgb = np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    image.write_image(d / "in.png", rgb)
    white = rgb.copy()
    white[10, 20] = 255
    image.write_image(d / "white.png", white)
    m = model_files
    m.to_onnx(FourChannels(), d / "four.onnx", channels=4)
    m.to_onnx(m.ToGrey(), d / "grey.onnx")
    m.to_onnx(m.Cropping(), d / "crop.onnx")
    m.to_onnx(m.Nearest(2), d / "fixed.onnx", dynamic=False, size=16)
    m.to_onnx(m.Nearest(3), d / "x3.onnx")
    m.to_onnx(m.Log(), d / "nan.onnx")
    m.to_pt2(m.Log(), d / "nan.pt2")
    m.to_onnx(m.Reciprocal(), d / "inf.onnx")
    m.to_pt2(m.Nearest(2), d / "x2.pt2")
    (d / "broken.onnx").write_bytes((d / "x3.onnx").read_bytes()[:200])
    (d / "junk.tflite").write_bytes(b"TFL3" + bytes(100))
    torch.save({"weight": torch.zeros(3)}, d / "net.pth")
    (d / "net.bin").write_bytes(b"\0" * 10)
    return d


@pytest.mark.parametrize(
    "model, extra, expected",
    [
        ("four.onnx", [], r"takes input \(\?, 4, \?, \?\): 4 channels \(NCHW\); expected C = 1"),
        ("grey.onnx", [], r"3 channel\(s\) in, 1 out; expected the same count"),
        ("crop.onnx", [], r"not the input enlarged by one whole factor"),
        (
            "fixed.onnx",
            [],
            r"takes only inputs of 16x16 pixels \(a fixed size\); the image is 48x40",
        ),
        ("x3.onnx", ["--scale", "2"], r"--scale 2: .*x3.onnx is a x3 model"),
        ("nan.onnx", [], r"NaN or infinite values"),
        ("nan.pt2", ["--allow-pickle"], r"NaN or infinite values"),
        ("x2.pt2", [], r"loaded with pickle .* pass --allow-pickle"),
        ("broken.onnx", [], r"not a model ONNX Runtime opens"),
        ("junk.tflite", [], r"not a model LiteRT opens"),
        ("net.bin", [], r"unknown model format"),
        ("missing.onnx", [], r"missing.onnx: no such file"),
    ],
)
def test_models_that_cannot_run_are_one_line(folder, tmp_path, capsys, model, extra, expected):
    out = tmp_path / "out.png"
    line = commands.one_line(
        capsys, "upscale", folder / "in.png", out, "--model", folder / model, *extra
    )
    assert re.search(expected, line), line
    if model != "x3.onnx":
        assert str(folder / model) in line
    assert list(tmp_path.iterdir()) == []


def test_non_finite_output_on_the_image_itself(folder, tmp_path, capsys):
    """A model finite on the probes but infinite on a white pixel of the image: refused
    where the block runs, named, nothing written (NaN would have become black)."""
    out = tmp_path / "out.png"
    code, _, err = commands.main(
        capsys, "upscale", folder / "in.png", out, "--model", folder / "inf.onnx"
    )
    assert code == 0, err  # no white pixel: finite
    out.unlink()
    line = commands.one_line(
        capsys, "upscale", folder / "white.png", out, "--model", folder / "inf.onnx"
    )
    assert "inf.onnx: its output holds NaN or infinite values" in line
    assert list(tmp_path.iterdir()) == []


def test_checkpoints_go_through_one_seam(folder, tmp_path, capsys):
    """A .pth goes to subpixel.models.checkpoints (spandrel, the subpixel[models] extra);
    without it, one line says so; either way this one holds no network."""
    out = tmp_path / "out.png"
    line = commands.one_line(
        capsys, "upscale", folder / "in.png", out, "--model", folder / "net.pth"
    )
    assert str(folder / "net.pth") in line
    if importlib.util.find_spec("subpixel.models.checkpoints") is None:
        assert "needs subpixel[models]" in line
    assert list(tmp_path.iterdir()) == []


def test_the_scale_that_agrees_and_the_report(folder, tmp_path, capsys):
    out = tmp_path / "out.png"
    code, text, err = commands.main(
        capsys, "upscale", folder / "in.png", out, "--model", folder / "x3.onnx", "--scale", "3"
    )
    assert code == 0, err
    assert "RGB model x3 in ONNX Runtime" in text
    assert image.read_image(out).shape == (120, 144, 3)
