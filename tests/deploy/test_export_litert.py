"""`subpixel export MODEL OUT.tflite`: a PyTorch model through litert-torch, its shuffles
rewritten (auto is flat there: no tensor above rank 4), run in LiteRT against PyTorch.
litert-torch lives in the audit environment (tox -e audit runs this file)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("litert_torch")
torch = pytest.importorskip("torch")

import architectures

from subpixel import deploy

import commands


@pytest.mark.parametrize("name,config", [("RRDBNet", {"scale": 2}), ("SPAN", {"scale": 2})])
def test_a_program_to_litert(tmp_path, capsys, name, config):
    model = architectures.build(name, **config)
    ep = torch.export.export(model, (torch.rand(1, 3, 16, 16),))
    torch.export.save(ep, tmp_path / "m.pt2")
    out = tmp_path / "m.tflite"
    code, text, err = commands.main(capsys, "export", tmp_path / "m.pt2", out, "--allow-pickle")
    assert code == 0, err
    assert "litert-torch" in text and "lowering auto (flat)" in text
    x = np.random.default_rng(1).random((1, 3, 16, 16), np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(deploy.run_litert(out, x), expected, atol=1e-4)
    assert max(deploy.tensor_ranks(out, x)) <= 4
    line = commands.one_line(
        capsys,
        "export",
        tmp_path / "m.pt2",
        tmp_path / "n.tflite",
        "--allow-pickle",
        "--lowering",
        "native",
    )
    assert "litert-torch" in line
