"""`subpixel.audit` on files written by the real exporters: the sites found, their
order and layout as constructed, the hazards, the JSON form."""

from __future__ import annotations

import contextlib
import io
import json
import warnings

import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import torch.nn.functional as F
from torch import nn

from subpixel import audit
from subpixel.layers import torch as tl


class _Net(nn.Module):
    """conv -> site -> conv (a shuffle) or the reverse around an unshuffle."""

    def __init__(self, site, c_in, c_mid, c_out):
        super().__init__()
        self.a, self.site, self.b = (
            nn.Conv2d(3, c_in, 3, padding=1),
            site,
            nn.Conv2d(c_mid, c_out, 1),
        )

    def forward(self, x):
        return self.b(self.site(self.a(x)))


class _Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def _basicsr_unshuffle(x, scale=2):  # written as BasicSR writes it
    b, c, hh, hw = x.size()
    h, w = hh // scale, hw // scale
    return x.view(b, c, h, scale, w, scale).permute(0, 1, 3, 5, 2, 4).reshape(b, c * scale**2, h, w)


def export(model, path, *, dynamo=True, dynamic=False, shape=(2, 3, 8, 12)):
    x = torch.rand(*shape)
    kw = {}
    if dynamic and dynamo:
        kw["dynamic_shapes"] = (
            {0: torch.export.Dim.AUTO, 2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO},
        )
    elif dynamic:
        kw["dynamic_axes"] = {"x": {0: "n", 2: "h", 3: "w"}}
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (x,), str(path), dynamo=dynamo, input_names=["x"], **kw)
    return path


STYLES = {
    # name: (site module, C*R channels before, channels after, expected (kind, factor, order))
    "nn.PixelShuffle": (lambda: nn.PixelShuffle(2), 12, 3, ("shuffle", (2, 2), "CRD")),
    "F.pixel_shuffle x3": (
        lambda: _Fn(lambda h: F.pixel_shuffle(h, 3)),
        27,
        3,
        ("shuffle", (3, 3), "CRD"),
    ),
    "torch.pixel_unshuffle": (
        lambda: _Fn(lambda h: torch.pixel_unshuffle(h, 2)),
        3,
        12,
        ("unshuffle", (2, 2), "CRD"),
    ),
    "BasicSR unshuffle": (lambda: _Fn(_basicsr_unshuffle), 3, 12, ("unshuffle", (2, 2), "CRD")),
    "subpixel DCR reshape x4": (
        lambda: tl.PixelShuffle(4, order="DCR", lowering="reshape"),
        48,
        3,
        ("shuffle", (4, 4), "DCR"),
    ),
    "subpixel CRD flat (2,3)": (
        lambda: tl.PixelShuffle((2, 3), order="CRD", lowering="flat"),
        18,
        3,
        ("shuffle", (2, 3), "CRD"),
    ),
    "subpixel DCR conv": (
        lambda: tl.PixelShuffle(2, order="DCR", lowering="conv"),
        12,
        3,
        ("shuffle", (2, 2), "DCR"),
    ),
    "subpixel CRD native unshuffle": (
        lambda: tl.PixelUnshuffle(2, order="CRD", lowering="native"),
        3,
        12,
        ("unshuffle", (2, 2), "CRD"),
    ),
}


@pytest.mark.parametrize("style", list(STYLES))
@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_each_way_of_writing_a_site_is_found_and_named(tmp_path, style, dynamo, dynamic):
    make, c_in, c_mid, (kind, factor, order) = STYLES[style]
    path = export(_Net(make(), c_in, c_mid, 4), tmp_path / "m.onnx", dynamo=dynamo, dynamic=dynamic)
    report = audit(path)
    assert [(s.kind, s.factor, s.order, s.layout) for s in report.sites] == [
        (kind, factor, order, "channels_first")
    ]
    assert report.exit_status == 0
    if dynamic:
        assert any("dynamic sizes" in h for h in report.sites[0].hazards)


def test_a_six_dimensional_reshape_is_a_hazard_and_flat_has_none(tmp_path):
    six = audit(export(_Net(tl.PixelShuffle(2, lowering="reshape"), 12, 3, 4), tmp_path / "a.onnx"))
    flat = audit(export(_Net(tl.PixelShuffle(2, lowering="flat"), 12, 3, 4), tmp_path / "b.onnx"))
    assert any("rank 6" in h or "rank 5" in h for h in six.sites[0].hazards)
    assert not any("rank" in h for h in flat.sites[0].hazards)


def test_no_false_sites(tmp_path):
    class Negatives(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 12, 3, padding=1), nn.Conv2d(12, 12, 1)
            self.head = nn.Linear(12 * 8 * 12, 5)

        def forward(self, x):
            h = self.a(x)
            b, c, hh, ww = h.shape  # ShuffleNet's channel shuffle (3 groups)
            h = h.view(b, 3, c // 3, hh, ww).transpose(1, 2).reshape(b, c, hh, ww)
            h = self.b(h)
            h = h.permute(0, 2, 3, 1)  # a layout change, then an NHWC flatten
            return self.head(torch.relu(h).reshape(b, -1))

    report = audit(export(Negatives(), tmp_path / "n.onnx"))
    assert report.sites == []
    assert {c.movement.kind for c in report.movements} >= {"channel_permutation", "layout"}


def test_weights_kept_beside_the_file_are_read_to_probe_a_one_hot_kernel(tmp_path):
    path = export(
        _Net(tl.PixelShuffle(3, order="DCR", lowering="conv"), 27, 3, 4), tmp_path / "m.onnx"
    )
    model = onnx.load(str(path), load_external_data=False)
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    (site,) = audit(path).sites
    assert (site.factor, site.order, site.ops) == ((3, 3), "DCR", ["ConvTranspose"])


def test_the_json_form_holds_every_field(tmp_path):
    path = export(_Net(nn.PixelShuffle(2), 12, 3, 4), tmp_path / "m.onnx")
    data = json.loads(audit(path).to_json())
    (site,) = data["sites"]
    assert site["kind"] == "shuffle" and site["factor"] == [2, 2] and site["order"] == "CRD"
    assert (
        site["layout"] == "channels_first" and site["nodes"] and isinstance(site["hazards"], list)
    )
    assert isinstance(data["hazards"], list) and data["classified"] is True


def test_a_custom_op_is_a_hazard(tmp_path):
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2, mode="CRD"),
        helper.make_node("Mystery", ["y"], ["z"], domain="com.example"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 3, 3])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    )
    onnx.save(model, str(tmp_path / "c.onnx"))
    report = audit(tmp_path / "c.onnx")
    assert [(s.kind, s.order) for s in report.sites] == [("shuffle", "CRD")]
    assert any("Mystery" in h for h in report.hazards)


def test_a_site_written_with_one_channel_says_its_orders_agree(tmp_path):
    path = export(_Net(nn.PixelShuffle(2), 4, 1, 4), tmp_path / "m.onnx")
    (site,) = audit(path).sites
    assert site.orders_agree and site.channels == 1


def test_a_pytorch_module_is_audited_as_traced():
    class Einops(nn.Module):
        def forward(self, x):  # a DCR depth-to-space written with view/permute
            b, c, h, w = x.shape
            return (
                x.view(b, 2, 2, c // 4, h, w)
                .permute(0, 3, 4, 1, 5, 2)
                .reshape(b, c // 4, 2 * h, 2 * w)
            )

    report = audit(_Net(Einops(), 12, 3, 4), example=torch.rand(2, 3, 5, 7))
    assert [(s.kind, s.order) for s in report.sites] == [("shuffle", "DCR")]
    assert report.graph.values[report.sites[0].chain.input].probe_shape == (2, 12, 5, 7)
