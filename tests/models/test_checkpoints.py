"""Checkpoints of architectures spandrel recognises (`load_checkpoint`, `subpixel export
CHECKPOINT OUT`): spandrel's own ESRGAN (Real-ESRGAN x2 with its pixel unshuffle) and
Compact networks with random weights, saved as .safetensors and .pth, loaded, exported
to ONNX with the shuffles rewritten and checked in ONNX Runtime against PyTorch.

spandrel needs torchvision, which does not load beside the pinned CPU torch: these run
in `tox -e models` (torch 2.14.1 + torchvision 0.29.1) and skip elsewhere; the same
export code runs on torch.export programs in tests/cli/test_export_models.py."""

from __future__ import annotations

import numpy as np
import pytest

spandrel = pytest.importorskip("spandrel")
torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import subpixel
from subpixel import deploy
from subpixel.models.checkpoints import load_checkpoint, load_model

import commands
import hostile


def _esrgan_x2():
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    return ESRGAN(in_nc=12, out_nc=3, num_filters=8, num_blocks=1, scale=4, shuffle_factor=2).eval()


def _compact_x4():
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(0)
    return Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=4).eval()


MODELS = {"ESRGAN": (_esrgan_x2, 2, "unshuffle"), "Compact": (_compact_x4, 4, "shuffle")}


def _save(model, path):
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, path)
    else:
        torch.save({"params_ema": state}, path)  # as BasicSR writes them
    return path


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
@pytest.mark.parametrize("name", list(MODELS))
def test_load_checkpoint(tmp_path, name, suffix):
    make, scale, _ = MODELS[name]
    model = make()
    path = _save(model, tmp_path / f"m{suffix}")
    loaded = load_model(path, allow_pickle=True)
    assert loaded.scale == scale and loaded.in_channels == 3
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        np.testing.assert_array_equal(loaded.module(x).numpy(), model(x).numpy())
    if suffix == ".pth":
        with pytest.raises(ValueError, match="--allow-pickle"):
            load_checkpoint(path)


@pytest.mark.parametrize("lowering", ["flat", "auto"])
@pytest.mark.parametrize("name", list(MODELS))
def test_export_a_checkpoint_to_onnx(tmp_path, capsys, name, lowering):
    make, scale, kind = MODELS[name]
    model = make()
    path = _save(model, tmp_path / "m.safetensors")
    out = tmp_path / "m.onnx"
    code, text, err = commands.main(capsys, "export", path, out, "--lowering", lowering)
    assert code == 0, err
    assert f" x{scale}," in text
    x = np.random.default_rng(1).random((2, 3, 20, 24), np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(deploy.run_onnx(out, x), expected, atol=1e-4)
    report = subpixel.audit(out, shapes=(1, 3, 20, 24))
    assert [(s.kind, s.order) for s in report.sites] == [(kind, "CRD")]
    if lowering == "flat":
        assert max(deploy.tensor_ranks(out, x)) <= 4


def test_hostile_checkpoints_are_one_line(tmp_path, capsys):
    marker = tmp_path / "ran"
    evil = hostile.evil_pickle(tmp_path / "evil.pth", marker)
    for args, words in (
        ([evil, tmp_path / "o.onnx"], "--allow-pickle"),
        ([evil, tmp_path / "o.onnx", "--allow-pickle"], "safely"),
    ):
        assert words in commands.one_line(capsys, "export", *args)
    assert not marker.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.pth"]
