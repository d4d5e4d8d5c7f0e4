"""What porting a whole model costs (docs/benchmarks.md): EDSR-baseline (64 features,
16 residual blocks, x2: conv -> PixelShuffle(2) -> conv) in PyTorch (``F.pixel_shuffle``,
CRD), Keras (functional, ``depth_to_space``, DCR) and Flax NNX (a hand-written NHWC
``depth_to_space``), random weights; ``port_weights(source, target, example=x)`` (both
models traced, each channel reorder derived, the outputs compared) timed against one
forward pass of the source plus one of the target on the same ``x``.

    python benchmarks/bench_port.py [--size 48]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax.numpy as jnp
import keras
import torch
import torch.nn.functional as F
from flax import nnx
from torch import nn

import subpixel

from _timing import best_time, machine_line, table

FEATS, BLOCKS, SCALE = 64, 16, 2


class TorchEDSR(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, FEATS, 3, padding=1)
        self.body = nn.ModuleList(
            nn.ModuleList([nn.Conv2d(FEATS, FEATS, 3, padding=1) for _ in range(2)])
            for _ in range(BLOCKS)
        )
        self.tail = nn.Conv2d(FEATS, FEATS, 3, padding=1)
        self.up = nn.Conv2d(FEATS, FEATS * SCALE**2, 3, padding=1)
        self.out = nn.Conv2d(FEATS, 3, 3, padding=1)

    def forward(self, x):
        h = self.head(x)
        r = h
        for a, b in self.body:
            r = r + b(F.relu(a(r)))
        h = h + self.tail(r)
        return self.out(F.pixel_shuffle(self.up(h), SCALE))


def keras_edsr():
    L = keras.layers
    x = keras.Input((None, None, 3))
    h = L.Conv2D(FEATS, 3, padding="same")(x)
    r = h
    for _ in range(BLOCKS):
        t = L.Conv2D(FEATS, 3, padding="same", activation="relu")(r)
        r = L.Add()([r, L.Conv2D(FEATS, 3, padding="same")(t)])
    h = L.Add()([h, L.Conv2D(FEATS, 3, padding="same")(r)])
    h = keras.ops.depth_to_space(L.Conv2D(FEATS * SCALE**2, 3, padding="same")(h), SCALE)
    return keras.Model(x, L.Conv2D(3, 3, padding="same")(h))


class FlaxEDSR(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        def conv(i, o):
            return nnx.Conv(i, o, (3, 3), padding="SAME", rngs=rngs)

        self.head = conv(3, FEATS)
        self.body = nnx.List(
            [nnx.List([conv(FEATS, FEATS), conv(FEATS, FEATS)]) for _ in range(BLOCKS)]
        )
        self.tail = conv(FEATS, FEATS)
        self.up = conv(FEATS, FEATS * SCALE**2)
        self.out = conv(FEATS, 3)

    def __call__(self, x):
        h = self.head(x)
        r = h
        for a, b in self.body:
            r = r + b(nnx.relu(a(r)))
        h = h + self.tail(r)
        u = self.up(h)
        n, H, W, c = u.shape
        u = u.reshape(n, H, W, SCALE, SCALE, c // SCALE**2).transpose(0, 1, 3, 2, 4, 5)
        return self.out(u.reshape(n, H * SCALE, W * SCALE, c // SCALE**2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=48, help="example height and width")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    s = args.size
    x = np.random.default_rng(0).standard_normal((1, 3, s, s)).astype(np.float32)
    x_last = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    t, k, f = TorchEDSR().eval(), keras_edsr(), FlaxEDSR(nnx.Rngs(0))
    xt = torch.from_numpy(x)

    def run_torch():
        with torch.no_grad():
            return t(xt)

    forward = {
        "PyTorch": run_torch,
        "Keras": lambda: k(x_last, training=False),
        "Flax": lambda: f(jnp.asarray(x_last)).block_until_ready(),
    }
    models = {"PyTorch": t, "Keras": k, "Flax": f}
    examples = {"PyTorch": x, "Keras": x_last, "Flax": x_last}
    rows = []
    for src, tgt in [
        ("PyTorch", "Keras"),
        ("Keras", "PyTorch"),
        ("PyTorch", "Flax"),
        ("Flax", "PyTorch"),
    ]:
        once = best_time(forward[src], args.repeat) + best_time(forward[tgt], args.repeat)
        reports = []

        def port(src=src, tgt=tgt, reports=reports):
            reports.append(subpixel.port_weights(models[src], models[tgt], example=examples[src]))

        cost = best_time(port, args.repeat, warmup=1)
        rows.append(
            [
                f"{src} -> {tgt}",
                f"{once * 1e3:.0f} ms",
                f"{cost * 1e3:.0f} ms",
                f"{cost / once:.2f}x",
                f"{reports[-1].max_diff:.1e}",
            ]
        )
    print(f"EDSR-baseline ({BLOCKS} blocks, {FEATS} features, x{SCALE}), example 1x3x{s}x{s}")
    print(machine_line())
    header = ["port", "forward (source + target)", "port_weights", "ratio", "output max diff"]
    print(table(rows, header))


if __name__ == "__main__":
    main()
