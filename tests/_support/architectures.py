"""Super-resolution architectures in PyTorch, written here from their papers'
descriptions (no code taken from other projects), for tests that need real networks
with random weights: the audit fixtures, weight porting, upscaling.

Each keeps its published structure and the way its upsampler is written (that is what
the tests are about) with the width and depth as parameters, so that tests run them
small.  Shuffle sites, in data-flow order, are listed by :func:`expected_sites`.

- :class:`RRDBNet`: ESRGAN (Wang et al. 2018, arXiv 1809.00219) with Real-ESRGAN's x2/x1
  entry (Wang et al. 2021, arXiv 2107.10833): the input is pixel-unshuffled by 2 (x2) or
  4 (x1), then the x4 network runs: residual-in-residual dense blocks, and upsampling by
  nearest interpolation + convolution (no pixel shuffle).
- :class:`SRVGGNetCompact`: Real-ESRGAN's "Compact" network: plain convs with PReLU, a
  pixel shuffle at the end, plus the nearest-upsampled input.
- :class:`RCAN`: residual channel attention network (Zhang et al. 2018, arXiv
  1807.02758): residual groups of residual blocks with channel attention (global average
  pooling -> 1x1 conv squeeze -> ReLU -> 1x1 conv -> sigmoid gate); the upsampler is
  conv + PixelShuffle(2) twice for x4, once with factor 3 for x3.
- :class:`EDSR`: EDSR-baseline (Lim et al. 2017, arXiv 1707.02921): residual blocks
  without batch norm, global residual, the same upsampler as RCAN.
- :class:`SPAN`: swift parameter-free attention network (Wan et al. 2024, arXiv
  2311.12770), in its inference form (each re-parameterizable conv block merged into
  one 3x3 conv): blocks whose attention is ``sigmoid(x) - 0.5`` of their own features,
  a 1x1 fusion of four feature maps, conv + pixel shuffle.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ARCHITECTURES",
    "EDSR",
    "RCAN",
    "SPAN",
    "RRDBNet",
    "SRVGGNetCompact",
    "build",
    "expected_sites",
]


def _conv(cin: int, cout: int, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2)


# ---------------------------------------------------------------------------
# ESRGAN / RRDBNet
# ---------------------------------------------------------------------------


class _DenseBlock(nn.Module):
    """Five 3x3 convs; each sees the block input and every earlier output (dense
    connections), LeakyReLU(0.2) after the first four; the fifth maps back to the
    block width and is added to the input scaled by 0.2."""

    def __init__(self, feat: int, grow: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            _conv(feat + i * grow, grow if i < 4 else feat) for i in range(5)
        )
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seen = [x]
        for i, conv in enumerate(self.convs):
            y = conv(torch.cat(seen, 1))
            if i < 4:
                seen.append(self.act(y))
        return x + 0.2 * y


class _RRDB(nn.Module):
    """Three dense blocks in sequence, the result scaled by 0.2 and added to the input."""

    def __init__(self, feat: int, grow: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(_DenseBlock(feat, grow) for _ in range(3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.blocks(x)


class RRDBNet(nn.Module):
    """ESRGAN's generator.  ``scale`` 4 runs on the input as it is; 2 and 1 first
    pixel-unshuffle the input (by 2 and 4, with ``torch.pixel_unshuffle`` as a
    function, as Real-ESRGAN writes it) so that the x4 body makes x2 or x1."""

    def __init__(
        self,
        in_ch: int = 3,
        out_ch: int = 3,
        scale: int = 2,
        feat: int = 8,
        blocks: int = 1,
        grow: int = 4,
    ) -> None:
        super().__init__()
        if scale not in (1, 2, 4):
            raise ValueError(f"scale must be 1, 2 or 4, got {scale}")
        self.scale = scale
        self.entry = {4: 1, 2: 2, 1: 4}[scale]
        self.conv_first = _conv(in_ch * self.entry**2, feat)
        self.trunk = nn.Sequential(*(_RRDB(feat, grow) for _ in range(blocks)))
        self.conv_trunk = _conv(feat, feat)
        self.conv_up1 = _conv(feat, feat)
        self.conv_up2 = _conv(feat, feat)
        self.conv_hr = _conv(feat, feat)
        self.conv_last = _conv(feat, out_ch)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.entry > 1:
            x = torch.pixel_unshuffle(x, self.entry)
        feat = self.conv_first(x)
        feat = feat + self.conv_trunk(self.trunk(feat))
        feat = self.act(self.conv_up1(F.interpolate(feat, scale_factor=2.0, mode="nearest")))
        feat = self.act(self.conv_up2(F.interpolate(feat, scale_factor=2.0, mode="nearest")))
        return self.conv_last(self.act(self.conv_hr(feat)))


# ---------------------------------------------------------------------------
# Real-ESRGAN Compact
# ---------------------------------------------------------------------------


class SRVGGNetCompact(nn.Module):
    """A VGG-style body of ``convs`` 3x3 convs with PReLU at LR, a last conv to
    ``out_ch * scale**2`` channels, ``nn.PixelShuffle(scale)``, plus the input upsampled
    by nearest interpolation (the network learns the residual)."""

    def __init__(
        self, in_ch: int = 3, out_ch: int = 3, feat: int = 8, convs: int = 2, scale: int = 4
    ) -> None:
        super().__init__()
        self.scale = scale
        layers: list[nn.Module] = [_conv(in_ch, feat), nn.PReLU(feat)]
        for _ in range(convs):
            layers += [_conv(feat, feat), nn.PReLU(feat)]
        layers.append(_conv(feat, out_ch * scale * scale))
        self.body = nn.Sequential(*layers)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.shuffle(self.body(x))
        return out + F.interpolate(x, scale_factor=float(self.scale), mode="nearest")


# ---------------------------------------------------------------------------
# RCAN and EDSR: the same upsampler
# ---------------------------------------------------------------------------


def _upsampler(feat: int, scale: int) -> nn.Sequential:
    """conv to 4x channels + PixelShuffle(2) per factor 2 (x2, x4, x8), or conv to 9x +
    PixelShuffle(3) (x3)."""
    layers: list[nn.Module] = []
    if scale & (scale - 1) == 0:
        for _ in range(scale.bit_length() - 1):
            layers += [_conv(feat, 4 * feat), nn.PixelShuffle(2)]
    elif scale == 3:
        layers += [_conv(feat, 9 * feat), nn.PixelShuffle(3)]
    else:
        raise ValueError(f"scale must be a power of 2 or 3, got {scale}")
    return nn.Sequential(*layers)


def _upsampler_sites(scale: int, feat: int) -> list[tuple[str, tuple[int, int], int]]:
    if scale == 3:
        return [("shuffle", (3, 3), feat)]
    return [("shuffle", (2, 2), feat)] * (scale.bit_length() - 1)


class _MeanShift(nn.Module):
    """Subtracts (``sign=-1``) or adds back (``+1``) a fixed RGB mean."""

    def __init__(self, channels: int, sign: float) -> None:
        super().__init__()
        mean = torch.tensor([0.4488, 0.4371, 0.4040][:channels] + [0.5] * max(0, channels - 3))
        self.register_buffer("shift", sign * mean.view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shift


class _ChannelAttention(nn.Module):
    """Global average pooling, squeeze to ``feat // reduction`` by a 1x1 conv, ReLU,
    expand back, sigmoid: a per-channel gate."""

    def __init__(self, feat: int, reduction: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(feat, max(1, feat // reduction), 1)
        self.expand = nn.Conv2d(max(1, feat // reduction), feat, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean(dim=(2, 3), keepdim=True)
        w = torch.sigmoid(self.expand(torch.relu(self.squeeze(w))))
        return x * w


class _RCAB(nn.Module):
    def __init__(self, feat: int, reduction: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(feat, feat), nn.ReLU(), _conv(feat, feat))
        self.attention = _ChannelAttention(feat, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attention(self.body(x))


class _ResidualGroup(nn.Module):
    def __init__(self, feat: int, blocks: int, reduction: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *(_RCAB(feat, reduction) for _ in range(blocks)), _conv(feat, feat)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class RCAN(nn.Module):
    def __init__(
        self,
        in_ch: int = 3,
        out_ch: int = 3,
        scale: int = 4,
        feat: int = 8,
        groups: int = 1,
        blocks: int = 1,
        reduction: int = 4,
    ) -> None:
        super().__init__()
        self.scale = scale
        self.sub_mean = _MeanShift(in_ch, -1.0)
        self.head = _conv(in_ch, feat)
        self.body = nn.Sequential(
            *(_ResidualGroup(feat, blocks, reduction) for _ in range(groups)), _conv(feat, feat)
        )
        self.tail = nn.Sequential(_upsampler(feat, scale), _conv(feat, out_ch))
        self.add_mean = _MeanShift(out_ch, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(self.sub_mean(x))
        h = h + self.body(h)
        return self.add_mean(self.tail(h))


class _ResBlock(nn.Module):
    def __init__(self, feat: int, res_scale: float) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv(feat, feat), nn.ReLU(), _conv(feat, feat))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.body(x)


class EDSR(nn.Module):
    """EDSR-baseline: ``blocks`` residual blocks (conv-ReLU-conv, no batch norm),
    a conv, the global residual, the upsampler, a last conv; RGB mean shifts at both
    ends."""

    def __init__(
        self,
        in_ch: int = 3,
        out_ch: int = 3,
        scale: int = 2,
        feat: int = 8,
        blocks: int = 2,
        res_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.scale = scale
        self.sub_mean = _MeanShift(in_ch, -1.0)
        self.head = _conv(in_ch, feat)
        self.body = nn.Sequential(
            *(_ResBlock(feat, res_scale) for _ in range(blocks)), _conv(feat, feat)
        )
        self.tail = nn.Sequential(_upsampler(feat, scale), _conv(feat, out_ch))
        self.add_mean = _MeanShift(out_ch, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(self.sub_mean(x))
        h = h + self.body(h)
        return self.add_mean(self.tail(h))


# ---------------------------------------------------------------------------
# SPAN
# ---------------------------------------------------------------------------


class _SPAB(nn.Module):
    """Three 3x3 convs (SiLU after the first two); the attention map is
    ``sigmoid(c3) - 0.5``, with no parameters of its own; the block returns
    ``(c3 + x) * attention`` and its first conv's output (the network fuses it later)."""

    def __init__(self, feat: int) -> None:
        super().__init__()
        self.c1, self.c2, self.c3 = _conv(feat, feat), _conv(feat, feat), _conv(feat, feat)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h1 = self.c1(x)
        h = self.c3(F.silu(self.c2(F.silu(h1))))
        attention = torch.sigmoid(h) - 0.5
        return (h + x) * attention, h1


class SPAN(nn.Module):
    def __init__(
        self, in_ch: int = 3, out_ch: int = 3, feat: int = 8, blocks: int = 2, scale: int = 4
    ) -> None:
        super().__init__()
        if blocks < 2:
            raise ValueError("SPAN fuses the outputs of its first and last blocks: blocks >= 2")
        self.scale = scale
        self.conv_first = _conv(in_ch, feat)
        self.blocks = nn.ModuleList(_SPAB(feat) for _ in range(blocks))
        self.conv_after = _conv(feat, feat)
        self.fuse = nn.Conv2d(4 * feat, feat, 1)
        self.up = _conv(feat, out_ch * scale * scale)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.conv_first(x)
        h, first_block = self.blocks[0](first)
        last_inner = first_block
        for block in self.blocks[1:]:
            h, last_inner = block(h)
        h = self.conv_after(h)
        h = self.fuse(torch.cat([first, h, first_block, last_inner], 1))
        return self.shuffle(self.up(h))


# ---------------------------------------------------------------------------

ARCHITECTURES = {
    "RRDBNet": RRDBNet,
    "SRVGGNetCompact": SRVGGNetCompact,
    "RCAN": RCAN,
    "EDSR": EDSR,
    "SPAN": SPAN,
}


def build(name: str, seed: int = 0, **config) -> nn.Module:
    """The architecture ``name`` with random weights from ``seed``, in eval mode."""
    torch.manual_seed(seed)
    model = ARCHITECTURES[name](**config).eval()
    with torch.no_grad():  # PReLU's default 0.25 everywhere would hide a channel swap
        for m in model.modules():
            if isinstance(m, nn.PReLU):
                m.weight.uniform_(0.05, 0.5)
    return model


def expected_sites(model: nn.Module) -> list[tuple[str, tuple[int, int], int]]:
    """``(kind, factor, channels)`` of each shuffle site of ``model`` in data-flow order
    (all CRD, channels-first, as the PyTorch ops are); ``channels`` is C, the count on
    the high-resolution side."""
    if isinstance(model, RRDBNet):
        if model.entry == 1:
            return []
        return [
            (
                "unshuffle",
                (model.entry, model.entry),
                model.conv_first.in_channels // model.entry**2,
            )
        ]
    if isinstance(model, SRVGGNetCompact):
        return [
            ("shuffle", (model.scale, model.scale), model.body[-1].out_channels // model.scale**2)
        ]
    if isinstance(model, SPAN):
        return [("shuffle", (model.scale, model.scale), model.up.out_channels // model.scale**2)]
    if isinstance(model, (RCAN, EDSR)):
        return _upsampler_sites(model.scale, model.head.out_channels)
    raise TypeError(f"not one of this module's architectures: {type(model).__name__}")
