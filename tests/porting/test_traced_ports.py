"""Ports decided by the traces (PyTorch to PyTorch, so that every model style is
written in one framework): each reorder comes from how the data moves, whatever code
moves it; every port is checked on the example, and a refused one leaves the target
exactly as it was."""

from __future__ import annotations

import threading

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F
from torch import nn

import subpixel
from subpixel.layers import torch as tl


def _randomized(m: nn.Module) -> nn.Module:
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
                mod.running_mean.normal_()
                mod.running_var.uniform_(0.5, 2)
                mod.weight.normal_()
                mod.bias.normal_()
    return m.eval()


def _state(m: nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in m.state_dict().values()]


def ported(src: nn.Module, tgt: nn.Module, x: torch.Tensor, **kw):
    src, tgt = _randomized(src), _randomized(tgt)
    report = subpixel.port_weights(src, tgt, example=x, **kw)
    with torch.no_grad():
        fresh = torch.randn_like(x) if x.is_floating_point() else x
        diff = float((src(fresh) - tgt(fresh)).abs().max())
    return report, diff


def refused(src: nn.Module, tgt: nn.Module, x: torch.Tensor, match: str) -> None:
    src, tgt = _randomized(src), _randomized(tgt)
    before = _state(tgt)
    with pytest.raises(ValueError, match=match):
        subpixel.port_weights(src, tgt, example=x)
    assert all(torch.equal(a, b) for a, b in zip(before, _state(tgt)))


def _einops_like(h, r, order):
    b, c, H, W = h.shape
    r1, r2 = r
    C = c // (r1 * r2)
    if order == "CRD":
        h = h.view(b, C, r1, r2, H, W).permute(0, 1, 4, 2, 5, 3)
    else:
        h = h.view(b, r1, r2, C, H, W).permute(0, 3, 4, 1, 5, 2)
    return h.reshape(b, C, H * r1, W * r2)


class Written(nn.Module):
    """conv -> batch norm -> PReLU -> a shuffle written ``how`` -> conv."""

    def __init__(self, how: str, r=(2, 2), c=3):
        super().__init__()
        R = r[0] * r[1]
        self.how, self.r = how, r
        self.a = nn.Conv2d(3, c * R, 3, padding=1)
        self.bn = nn.BatchNorm2d(c * R)
        self.act = nn.PReLU(c * R)
        self.b = nn.Conv2d(c, 2, 3, padding=1)
        if how.startswith("layer"):
            self.ps = tl.PixelShuffle(r, order=how.split()[1], lowering=how.split()[2])

    def forward(self, x):
        h = self.act(self.bn(self.a(x)))
        if self.how == "F.pixel_shuffle":
            h = F.pixel_shuffle(h, self.r[0])
        elif self.how.startswith("hand"):
            h = _einops_like(h, self.r, self.how.split()[1])
        elif self.how.startswith("subpixel.shuffle"):
            h = subpixel.shuffle(h, self.r, order=self.how.split()[1])
        elif self.how.startswith("scaled"):  # arithmetic between the norm and the shuffle
            h = subpixel.shuffle(h * 0.5 + 1.0, self.r, order=self.how.split()[1])
        else:
            h = self.ps(h)
        return self.b(h)


STYLES = [
    "F.pixel_shuffle",
    "hand CRD",
    "hand DCR",
    "subpixel.shuffle DCR",
    "layer DCR reshape",
    "layer DCR flat",
    "layer DCR conv",
    "layer CRD native",
]


@pytest.mark.parametrize("source", ["F.pixel_shuffle", "hand DCR"])
@pytest.mark.parametrize("target", STYLES)
def test_a_shuffle_ports_however_each_model_writes_it(source, target):
    report, diff = ported(Written(source), Written(target), torch.rand(2, 3, 5, 6))
    assert diff <= 1e-5 and report.max_diff <= report.tolerance
    assert all(d <= report.tolerance for d in report.layer_max_diff.values()), str(report)


def test_arithmetic_between_a_convolution_and_its_shuffle():
    _report, diff = ported(Written("scaled CRD"), Written("scaled DCR"), torch.rand(2, 3, 4, 5))
    assert diff <= 1e-5


@pytest.mark.parametrize("r", [(3, 3), (4, 4), (2, 3)], ids=str)
def test_factors_three_four_and_non_square(r):
    report, diff = ported(Written("hand CRD", r), Written("hand DCR", r), torch.rand(2, 3, 4, 5))
    assert diff <= 1e-5
    assert "output channels reordered" in " ".join(report.reorders.values())


class Unshuffled(nn.Module):
    def __init__(self, order):
        super().__init__()
        self.pu = tl.PixelUnshuffle(2, order=order)
        self.a, self.b = nn.Conv2d(12, 4, 1), nn.Conv2d(12, 4, 3, padding=1)

    def forward(self, x):
        h = self.pu(F.relu(x))
        return self.a(h) + self.b(h)


def test_an_unshuffle_read_by_two_convolutions_reorders_both():
    report, diff = ported(Unshuffled("CRD"), Unshuffled("DCR"), torch.rand(2, 3, 8, 6))
    assert diff <= 1e-5
    assert sum("inputs reordered" in v for v in report.reorders.values()) == 2


class TwoReaders(nn.Module):
    """A convolution whose output feeds a shuffle and another convolution."""

    def __init__(self, order):
        super().__init__()
        self.c, self.aux = nn.Conv2d(3, 12, 3, padding=1), nn.Conv2d(12, 2, 1)
        self.ps = tl.PixelShuffle(2, order=order)

    def forward(self, x):
        h = self.c(x)
        return self.ps(h) + F.interpolate(self.aux(h)[:, :1], scale_factor=2.0)


def test_a_convolution_feeding_a_shuffle_and_another_layer():
    _report, diff = ported(TwoReaders("CRD"), TwoReaders("DCR"), torch.rand(2, 3, 4, 5))
    assert diff <= 1e-5


class DenseThenImage(nn.Module):
    """A dense layer reshaped into an image (a DCGAN stem), NCHW or NHWC."""

    def __init__(self, nhwc):
        super().__init__()
        self.nhwc = nhwc
        self.fc, self.bn = nn.Linear(8, 96), nn.BatchNorm1d(96)
        self.up = nn.ConvTranspose2d(6, 3, 4, 2, 1)

    def forward(self, z):
        h = self.bn(self.fc(z))
        h = h.view(-1, 4, 4, 6).permute(0, 3, 1, 2) if self.nhwc else h.view(-1, 6, 4, 4)
        return self.up(h)


def test_a_dense_layer_reshaped_into_an_image():
    _report, diff = ported(DenseThenImage(False), DenseThenImage(True), torch.rand(2, 8))
    assert diff <= 1e-5


class FlattenHead(nn.Module):
    def __init__(self, nhwc):
        super().__init__()
        self.nhwc = nhwc
        self.c, self.bn, self.fc = (
            nn.Conv2d(3, 4, 3, padding=1),
            nn.BatchNorm1d(144),
            nn.Linear(144, 5),
        )

    def forward(self, x):
        h = self.c(x)
        h = h.permute(0, 2, 3, 1) if self.nhwc else h
        return self.fc(F.dropout(self.bn(h.flatten(1)), 0.5, self.training))


def test_a_flatten_of_either_layout_through_a_norm_and_a_dropout():
    _report, diff = ported(FlattenHead(False), FlattenHead(True), torch.rand(2, 3, 6, 6))
    assert diff <= 1e-5


def test_a_constant_example_is_checked_on_a_random_input_too():
    _report, diff = ported(Written("F.pixel_shuffle"), Written("hand DCR"), torch.zeros(2, 3, 4, 5))
    assert diff <= 1e-5


def test_data_dependent_control_flow_is_traced_as_it_runs():
    class Branchy(Written):
        def forward(self, x):
            if x.mean() > 100:  # torch.fx and torch.export cannot trace this
                x = x * 0.5
            return super().forward(x)

    _report, diff = ported(
        Branchy("F.pixel_shuffle"), Branchy("layer DCR reshape"), torch.rand(2, 3, 4, 5)
    )
    assert diff <= 1e-5


@pytest.mark.parametrize(
    "src, tgt, match",
    [
        (
            nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"),
            nn.Conv2d(3, 4, 3, padding=1),
            "padding mode",
        ),
        (nn.Conv2d(3, 4, 3, padding=2, dilation=2), nn.Conv2d(3, 4, 3, padding=2), "dilation"),
        (nn.Conv2d(3, 4, 3), nn.utils.weight_norm(nn.Conv2d(3, 4, 3)), "re-parametrised"),
        (
            nn.Conv2d(4, 16, 3, padding=1, groups=4),
            nn.Conv2d(4, 16, 3, padding=1, groups=2),
            "groups",
        ),
    ],
    ids=["padding mode", "dilation", "weight norm target", "groups"],
)
def test_settings_and_targets_that_would_lose_the_port_are_refused(src, tgt, match):
    refused(src, tgt, torch.rand(2, src.in_channels, 6, 6), match)


def test_a_grouped_convolution_next_to_a_shuffle_of_another_order_is_refused():
    class G(nn.Module):
        def __init__(self, order):
            super().__init__()
            self.c, self.ps = (
                nn.Conv2d(4, 16, 3, padding=1, groups=4),
                tl.PixelShuffle(2, order=order),
            )

        def forward(self, x):
            return self.ps(self.c(x))

    refused(G("CRD"), G("DCR"), torch.rand(2, 4, 4, 4), "grouped convolution")


def test_tied_target_weights_that_would_receive_two_values_are_refused():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(6, 6), nn.Linear(6, 6)

        def forward(self, x):
            return self.b(torch.tanh(self.a(x)))

    tied = Two()
    tied.b.weight = tied.a.weight
    refused(Two(), tied, torch.rand(2, 6), "ties")


def test_a_spectral_normed_source_is_read_without_changing_it():
    src = nn.utils.spectral_norm(nn.Conv2d(3, 4, 3))
    u = src.weight_u.clone()
    _report, diff = ported(src, nn.Conv2d(3, 4, 3), torch.rand(2, 3, 6, 6))
    assert diff <= 1e-5  # the weight it computes now is the one ported
    assert torch.equal(u, src.weight_u)  # its power iteration did not move


def test_a_wrong_port_raises_naming_the_layer_and_restores_the_target(monkeypatch):
    from subpixel.porting import frames

    real = frames.solve

    def forgetful(*args, **kwargs):  # the reorder the shuffle needs is dropped
        result = real(*args, **kwargs)
        result.out_perm.clear()
        return result

    monkeypatch.setattr(frames, "solve", forgetful)
    refused(
        Written("F.pixel_shuffle"),
        Written("hand DCR"),
        torch.rand(2, 3, 4, 5),
        r"the first layer whose output differs is bn -> bn",
    )


def test_ports_from_two_threads_at_once():
    pairs = [(Written("F.pixel_shuffle"), Written("hand DCR")) for _ in range(4)]
    errors, diffs = [], []

    def port(src, tgt):
        try:
            diffs.append(ported(src, tgt, torch.rand(2, 3, 4, 5))[1])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=port, args=p) for p in pairs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(diffs) == 4 and max(diffs) <= 1e-5
    assert subpixel.shuffle is subpixel.ops.shuffle  # nothing was patched


def test_the_report_compares_like_with_like():
    report, _ = ported(
        Written("F.pixel_shuffle"), Written("layer DCR flat"), torch.rand(2, 3, 5, 6)
    )
    # the convolution feeding the shuffle is compared channel for channel: float noise only
    assert max(report.layer_max_diff.values()) <= report.tolerance
    assert str(report).startswith("4 layers ported")
