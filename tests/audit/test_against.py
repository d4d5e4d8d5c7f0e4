"""`audit(model, against=source)`: both run on one probe input; each site verified or
its divergence diagnosed (order swap, channel permutation, elsewhere); float noise
gives no diagnosis."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from torch import nn

from audit.test_audit_files import _Net, export
from subpixel import audit, weights
from subpixel.layers import torch as tl


def _source(order="CRD", kind="shuffle", seed=0):
    torch.manual_seed(seed)
    site = (tl.PixelShuffle if kind == "shuffle" else tl.PixelUnshuffle)(
        2, order=order, lowering="native" if order == "CRD" else "reshape"
    )
    return _Net(site, 12 if kind == "shuffle" else 3, 3 if kind == "shuffle" else 12, 4).eval()


def _copy(src: nn.Module, order: str, reorder: bool) -> nn.Module:
    """The same weights in a model whose site has ``order``; ``reorder`` converts the
    channels next to the site as a correct port does."""
    kind = (
        "shuffle"
        if isinstance(src.site, tl.PixelShuffle) and not isinstance(src.site, tl.PixelUnshuffle)
        else "unshuffle"
    )
    dst = _source(order, kind)
    dst.load_state_dict(src.state_dict())
    if reorder:
        src_order = src.site.order
        with torch.no_grad():
            if kind == "shuffle":
                dst.a.weight.copy_(
                    torch.from_numpy(
                        weights.reorder_channels(
                            src.a.weight.numpy(), (2, 2), src=src_order, dst=order
                        )
                    )
                )
                dst.a.bias.copy_(
                    torch.from_numpy(
                        weights.reorder_channels(
                            src.a.bias.numpy(), (2, 2), src=src_order, dst=order, spatial_dims=2
                        )
                    )
                )
            else:
                dst.b.weight.copy_(
                    torch.from_numpy(
                        weights.reorder_channels(
                            src.b.weight.numpy(), (2, 2), src=src_order, dst=order, axis=1
                        )
                    )
                )
    return dst


@pytest.mark.parametrize("kind", ["shuffle", "unshuffle"])
def test_an_order_swap_is_diagnosed_at_its_site(tmp_path, kind):
    src = _source("CRD", kind)
    s = export(src, tmp_path / "src.onnx")
    t = export(_copy(src, "DCR", reorder=False), tmp_path / "tgt.onnx")
    report = audit(t, against=s)
    (site,) = report.sites
    assert site.comparison.status == "diverges"
    assert "CRD<->DCR swap" in site.comparison.diagnosis
    assert "reorder_channels" in site.comparison.fix
    assert report.first_divergence.startswith("site 0")
    assert report.exit_status == 1


@pytest.mark.parametrize("kind", ["shuffle", "unshuffle"])
def test_a_correct_port_in_the_other_order_is_verified(tmp_path, kind):
    src = _source("CRD", kind)
    s = export(src, tmp_path / "src.onnx")
    t = export(_copy(src, "DCR", reorder=True), tmp_path / "tgt.onnx", dynamic=True)
    report = audit(t, against=s)
    assert [site.comparison.status for site in report.sites] == ["verified"]
    assert report.agrees and report.exit_status == 0


def test_a_permutation_of_the_channels_is_diagnosed(tmp_path):
    src = _source("CRD")
    s = export(src, tmp_path / "src.onnx")
    bad = _copy(src, "CRD", reorder=False)
    perm = torch.from_numpy(np.random.default_rng(3).permutation(12))
    with torch.no_grad():  # the convolution's output channels shuffled at random
        bad.a.weight.copy_(src.a.weight[perm])
        bad.a.bias.copy_(src.a.bias[perm])
    report = audit(export(bad, tmp_path / "tgt.onnx"), against=s)
    (site,) = report.sites
    assert site.comparison.status == "diverges"
    assert "another order than the source's" in site.comparison.diagnosis


def test_a_difference_away_from_the_sites_is_not_blamed_on_them(tmp_path):
    src = _source("CRD")
    s = export(src, tmp_path / "src.onnx")
    bad = _copy(src, "CRD", reorder=False)
    with torch.no_grad():
        bad.b.weight.mul_(1.5)  # the convolution after the site
    report = audit(export(bad, tmp_path / "tgt.onnx"), against=s)
    assert report.sites[0].comparison.status == "verified"
    assert report.first_divergence.startswith("after the last site")
    assert report.exit_status == 1


def test_against_a_pytorch_module(tmp_path):
    src = _source("CRD")
    t = export(_copy(src, "DCR", reorder=False), tmp_path / "tgt.onnx", dynamic=True)
    report = audit(t, against=src, example=torch.rand(1, 3, 6, 10))
    assert "CRD<->DCR swap" in report.sites[0].comparison.diagnosis
    ok = audit(
        export(src, tmp_path / "ok.onnx", dynamic=True),
        against=src,
        example=torch.rand(1, 3, 6, 10),
    )
    assert ok.exit_status == 0 and ok.sites[0].comparison.max_diff < 1e-5


tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")


def _keras_copy(src, order_fix: bool):
    inp = keras.Input((8, 12, 3), batch_size=1)
    a = keras.layers.Conv2D(12, 3, padding="same")
    b = keras.layers.Conv2D(4, 1)
    h = keras.layers.Lambda(lambda t: tf.nn.depth_to_space(t, 2))(a(inp))
    model = keras.Model(inp, b(h))
    w, bias = src.a.weight.detach().numpy(), src.a.bias.detach().numpy()
    if order_fix:
        w = weights.reorder_channels(w, (2, 2), src="CRD", dst="DCR")
        bias = weights.reorder_channels(bias, (2, 2), src="CRD", dst="DCR", spatial_dims=2)
    a.set_weights([w.transpose(2, 3, 1, 0), bias])
    b.set_weights(
        [src.b.weight.detach().numpy().transpose(2, 3, 1, 0), src.b.bias.detach().numpy()]
    )
    return model


@pytest.mark.parametrize(
    "mode, order_fix, status",
    [("float32", False, "diverges"), ("float32", True, "verified"), ("float16", True, "verified")],
)
def test_an_nhwc_litert_file_against_its_nchw_onnx_source(tmp_path, mode, order_fix, status):
    from subpixel import deploy

    src = _source("CRD")
    s = export(src, tmp_path / "src.onnx", shape=(1, 3, 8, 12))
    deploy.keras_to_tflite(_keras_copy(src, order_fix), tmp_path / "t.tflite", mode=mode)
    report = audit(tmp_path / "t.tflite", against=s)
    (site,) = report.sites
    assert (site.order, site.layout) == ("DCR", "channels_last")
    assert site.comparison.status == status
    assert report.exit_status == (status != "verified")
