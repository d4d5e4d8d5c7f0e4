"""`subpixel audit` on the command line: exit status 0 / 1 / 2, one JSON object with
--json, and hostile files refused in one line (exit 2) with bounded work."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from torch import nn

from audit.test_audit_files import _Net, export


def subpixel(*args):
    return subprocess.run(
        [sys.executable, "-m", "subpixel", *map(str, args)], capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    good = _Net(nn.PixelShuffle(2), 12, 3, 4)
    export(good, folder / "good.onnx", dynamic=True)
    swapped = _Net(nn.Identity(), 12, 12, 4)  # no site at all: the source's has no counterpart
    export(swapped, folder / "nosite.onnx")
    return folder


def test_exit_0_and_a_table(models):
    out = subpixel("audit", models / "good.onnx")
    assert out.returncode == 0, out.stderr
    assert "shuffle" in out.stdout and "CRD" in out.stdout and "channels_first" in out.stdout


def test_json_is_one_object_for_machines(models):
    out = subpixel("audit", models / "good.onnx", "--json", "--shape", "1,3,16,16")
    data = json.loads(out.stdout)
    assert data["sites"][0]["order"] == "CRD" and data["probe_shapes"]["x"] == [1, 3, 16, 16]


def test_exit_1_when_against_finds_a_difference(models):
    out = subpixel("audit", models / "nosite.onnx", "--against", models / "good.onnx")
    assert out.returncode == 1, out.stderr
    assert "MISSING" in out.stdout


HOSTILE = {
    "random.onnx": bytes(range(256)) * 40,
    "random.tflite": bytes(range(256)) * 40,
    "empty.onnx": b"",
    "text.tflite": b"not a model at all",
    # a protobuf field of the graph claiming 2 GB that the file does not hold
    "claim.onnx": b"\x3a\xff\xff\xff\xff\x07" + b"\x00" * 64,
    # a flatbuffer whose root table lies 2 GB beyond the end of the file
    "claim.tflite": b"\xff\xff\xff\x7fTFL3" + b"\x00" * 64,
    "model.txt": b"x",
}


def test_hostile_files_are_one_line_and_exit_2(tmp_path, models):
    paths = []
    for name, data in HOSTILE.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    (tmp_path / "truncated.onnx").write_bytes((models / "good.onnx").read_bytes()[:300])
    (tmp_path / "a folder.onnx").mkdir()
    paths += [tmp_path / "truncated.onnx", tmp_path / "a folder.onnx", tmp_path / "missing.onnx"]
    for path in paths:
        out = subpixel("audit", path)
        assert out.returncode == 2, (path.name, out.stdout, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert (
            len(lines) == 1 and lines[0].startswith("subpixel: error: ") and str(path) in lines[0]
        ), (path.name, out.stderr)
        assert out.stdout == ""


def test_a_graph_of_ten_thousand_ops_is_audited(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    nodes, prev = [], "x"
    for i in range(10_000):  # transposes and activations in turn: one long movement chain each
        op = "Transpose" if i % 2 else "Relu"
        kw = {"perm": [0, 1, 3, 2]} if op == "Transpose" else {}
        nodes.append(helper.make_node(op, [prev], [f"v{i}"], **kw))
        prev = f"v{i}"
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, None)],
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
        str(tmp_path / "big.onnx"),
    )
    out = subpixel("audit", tmp_path / "big.onnx", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["sites"] == [] and len(data["movements"]) == 5000
