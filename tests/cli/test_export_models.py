"""`subpixel export MODEL OUT`: PyTorch models with random weights (the architectures of
tests/_support/architectures.py, as torch.export programs) to ONNX, checked in ONNX
Runtime against PyTorch at another size than the export's; hostile and wrong model
files refused in one line with nothing written.

The checkpoint route (spandrel) runs the same export code after loading: its tests are
tests/models/test_checkpoints.py (tox -e models)."""

from __future__ import annotations

import re
import zipfile

import numpy as np
import pytest

from adapters import requested_backends

if "torch" not in requested_backends():
    pytest.skip("torch not requested", allow_module_level=True)
torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import architectures

import subpixel
from subpixel import deploy
from subpixel._core.files import write_tensors
from subpixel.models import checkpoints

import commands
import hostile

CASES = {  # small configurations: what matters is how each writes its shuffles
    "RRDBNet": {"scale": 2},  # pixel unshuffle by 2 at the entry (a function call)
    "SRVGGNetCompact": {"scale": 4},
    "RCAN": {"scale": 4, "feat": 8},  # two PixelShuffle(2) modules, channel attention
    "EDSR": {"scale": 3},
    "SPAN": {"scale": 4},
}


def program(tmp_path, name, **config):
    """``name`` with random weights saved by torch.export (batch and sizes dynamic)."""
    model = architectures.build(name, **{**CASES.get(name, {}), **config})
    x = torch.rand(2, 3, 16, 16)
    auto = torch.export.Dim.AUTO
    ep = torch.export.export(model, (x,), dynamic_shapes=({0: auto, 2: auto, 3: auto},))
    path = tmp_path / f"{name}.pt2"
    torch.export.save(ep, path)
    return model, path


def exported_diff(text):
    return float(re.search(r"input of shape \([\d, ]+\): ([\d.e+-]+)", text).group(1))


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("lowering", ["flat", "auto"])
def test_every_architecture_to_onnx(tmp_path, capsys, name, lowering):
    model, source = program(tmp_path, name)
    out = tmp_path / f"{name}.onnx"
    code, text, err = commands.main(
        capsys, "export", source, out, "--lowering", lowering, "--allow-pickle"
    )
    assert code == 0, err
    assert exported_diff(text) < 1e-4
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(out.name)] == [out.name]
    # the oracle: ONNX Runtime at another batch and size than the check's, against PyTorch
    x = np.random.default_rng(1).random((2, 3, 24, 20), np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    got = deploy.run_onnx(out, x)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    report = subpixel.audit(out, shapes=(1, 3, 24, 20))
    sites = architectures.expected_sites(model)
    assert [(s.kind, s.factor, s.order) for s in report.sites] == [
        (k, f, "CRD") for k, f, _ in sites
    ]
    ops = deploy.onnx_ops(out)
    if lowering == "flat":  # no tensor above rank 4, by shape inference and by the audit
        assert max(deploy.tensor_ranks(out, x)) <= 4
        assert not any("rank" in h for s in report.sites for h in s.hazards)
        assert not ops & {"DepthToSpace", "SpaceToDepth"}
    elif sites:  # auto: the runtime's own op
        assert ops & {"DepthToSpace", "SpaceToDepth"}, ops
    assert f"ops: {', '.join(sorted(ops))}" in text
    assert "sites (subpixel audit):" in text


def test_torchscript_exporter_and_reshape_rank(tmp_path, capsys):
    _, source = program(tmp_path, "SRVGGNetCompact")
    out = tmp_path / "c.onnx"
    code, text, err = commands.main(
        capsys,
        "export",
        source,
        out,
        "--allow-pickle",
        "--exporter",
        "torchscript",
        "--opset",
        "13",
        "--lowering",
        "reshape",
    )
    assert code == 0, err
    assert exported_diff(text) < 1e-4
    rank = max(deploy.tensor_ranks(out, np.zeros((1, 3, 8, 8), np.float32)))
    assert rank >= 5  # the textbook lowering's higher-rank tensor, which flat avoids
    assert f"max tensor rank: {rank}" in text


def test_a_program_with_fixed_sizes_keeps_them(tmp_path, capsys):
    model = architectures.build("EDSR", scale=2)
    ep = torch.export.export(model, (torch.rand(1, 3, 12, 10),))
    torch.export.save(ep, tmp_path / "fixed.pt2")
    code, text, err = commands.main(
        capsys, "export", tmp_path / "fixed.pt2", tmp_path / "f.onnx", "--allow-pickle"
    )
    assert code == 0, err
    assert "(1, 3, 12, 10)" in text and " x2," in text


def test_what_cannot_be_exported_is_one_line_and_nothing_is_written(tmp_path, capsys):
    _, good = program(tmp_path, "SPAN")
    marker = tmp_path / "ran"
    evil = hostile.evil_pickle(tmp_path / "evil.pth", marker)
    truncated = tmp_path / "cut.pt2"
    truncated.write_bytes(good.read_bytes()[:4000])
    notzip = tmp_path / "text.pt2"
    notzip.write_text("not a program")
    broken = hostile.safetensors_file(tmp_path / "broken.safetensors")
    weights = tmp_path / "w.safetensors"
    write_tensors(weights, {"foo.weight": np.zeros((2, 2), np.float32)})
    out = tmp_path / "m.onnx"
    cases = [
        ([good, out], "--allow-pickle"),  # a .pt2 is a pickle
        ([evil, out], "--allow-pickle"),
        ([evil, out, "--allow-pickle"], "torch.load can read safely"),
        ([truncated, out, "--allow-pickle"], "not a torch.export program"),
        ([notzip, out, "--allow-pickle"], "not a torch.export program"),
        ([tmp_path / "none.pt2", out], "no such file"),
        ([broken, out], "not a valid safetensors file"),
        ([weights, out], "spandrel"),  # not a known architecture, or spandrel missing
        ([tmp_path / "m.txt", out], "no such file"),
        ([good, out, "--allow-pickle", "--scale", "2"], "--scale"),
        ([good, out, "--allow-pickle", "--int8"], "--int8"),
        ([good, out, "--allow-pickle", "--shape", "1,3,8"], "--shape"),
        ([good, out, "--allow-pickle", "--shape", "1,5,16,16"], "does not run on an input"),
        ([good, out, "--allow-pickle", "--opset", "7"], "opset"),
        ([good, good.with_suffix(".pt2"), "--allow-pickle", "--force"], ""),
        ([out], ""),  # the bundled ESPCN: fine; then an existing output
        ([out], "exists"),
    ]
    for args, words in cases:
        if args == [out] and words == "":
            assert commands.main(capsys, "export", out)[0] == 0
            continue
        line = commands.one_line(capsys, "export", *args)
        assert words in line, line
    assert not marker.exists()  # the pickle's code never ran
    names = sorted(p.name for p in tmp_path.iterdir())
    assert not any(n.startswith(".") for n in names), names  # no temporary leftovers
    assert "m.onnx" in names and not any(n.endswith(".onnx.data") for n in names)


def test_a_program_calling_more_than_operators_is_refused(tmp_path):
    class Saves(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.pixel_shuffle(x, 2) * 2

    ep = torch.export.export(Saves(), (torch.rand(1, 4, 4, 4),))
    path = tmp_path / "p.pt2"
    torch.export.save(ep, path)
    loaded = checkpoints.load_model(path, allow_pickle=True)
    assert loaded.in_channels == 4 and loaded.shape == (1, 4, 4, 4)
    # the same archive with a node's target renamed to a function of torch that is not
    # an operator: refused before anything runs
    data = {}
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            data[info.filename] = z.read(info.filename)
    name = next(n for n in data if n.endswith("models/model.json"))
    text = data[name].decode()
    assert "torch.ops.aten.mul.Tensor" in text
    data[name] = text.replace("torch.ops.aten.mul.Tensor", "torch.manual_seed").encode()
    evil = tmp_path / "evil.pt2"
    with zipfile.ZipFile(evil, "w") as z:
        for n, b in data.items():
            z.writestr(n, b)
    with pytest.raises(ValueError, match=r"evil\.pt2: ") as e:
        checkpoints.load_model(evil, allow_pickle=True)
    assert "\n" not in str(e.value)


def test_loaded_programs_keep_pickles_to_tensors(tmp_path, monkeypatch):
    _, path = program(tmp_path, "SPAN")
    calls = []
    original = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return original(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    checkpoints.load_model(path, allow_pickle=True)
    assert torch.load is spy  # restored
    assert all(c is True for c in calls)
