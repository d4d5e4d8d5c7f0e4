"""Whole models, original vs rewritten (docs/benchmarks.md): the DCGAN generator
(pytorch/examples, nz=100, ngf=64, 64 x 64 images) and a U-Net-style decoder (three
ConvTranspose2d k2 s2 stages), forward time of the original and of the model whose
transposed convolutions `replace_conv_transpose` swapped, in PyTorch ("subpixel",
"phases" and "fastest" modes), Keras (TensorFlow backend) and Flax ("subpixel" and
"fastest").  "kept" counts the stride > 1 transposed convolutions a mode left as
they were.

    python benchmarks/bench_models.py      # the parts whose frameworks import
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from _timing import best_times, machine_line, table

ROUNDS, REPEAT = 8, 3  # the original and its rewrites alternate: 8 rounds of best of 3
BATCH = 16


def row(
    framework: str, model: str, mode: str, t0: float, t: float, kept: int, diff: float
) -> list[str]:
    return [framework, model, mode, f"{t0 * 1e3:.1f}", f"{t * 1e3:.1f}", f"{t / t0:.2f}",
            str(kept), f"{diff:.1e}"]  # fmt: skip


def torch_rows() -> list[list[str]]:
    import torch
    from torch import nn

    from subpixel.rewrite import torch as torch_rewrite

    def dcgan() -> nn.Module:
        nz, ngf, nc = 100, 64, 3
        return nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh(),
        )  # fmt: skip

    def decoder() -> nn.Module:
        return nn.Sequential(
            nn.ConvTranspose2d(256, 128, 2, 2), nn.ReLU(), nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(128, 64, 2, 2), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 2, 2), nn.ReLU(), nn.Conv2d(32, 3, 3, padding=1),
        )  # fmt: skip

    rows = []
    for name, make, shape in (
        ("DCGAN generator", dcgan, (BATCH, 100, 1, 1)),
        ("U-Net decoder", decoder, (BATCH, 256, 16, 16)),
    ):
        torch.manual_seed(0)
        original = make().eval()
        x = torch.randn(*shape)
        modes = ("subpixel", "phases", "fastest")
        variants = []
        with torch.no_grad():
            for mode in modes:
                rewritten = make().eval()
                rewritten.load_state_dict(original.state_dict())
                torch_rewrite.replace_conv_transpose(rewritten, mode=mode, example=x)
                variants.append(rewritten)
            times = best_times([lambda m=m: m(x) for m in (original, *variants)], ROUNDS, REPEAT)
            for mode, rewritten, t in zip(modes, variants, times[1:]):
                diff = float((rewritten(x) - original(x)).abs().max())
                kept = sum(
                    isinstance(m, nn.ConvTranspose2d) and m.stride[0] > 1
                    for m in rewritten.modules()
                )
                rows.append(
                    row(f"PyTorch {torch.__version__}", name, mode, times[0], t, kept, diff)
                )
    return rows


def keras_rows() -> list[list[str]]:
    import keras

    from subpixel.rewrite import keras as keras_rewrite

    L = keras.layers

    def dcgan() -> keras.Model:
        nz, ngf, nc = 100, 64, 3
        layers: list = [
            keras.Input((1, 1, nz)),
            L.Conv2DTranspose(ngf * 8, 4, 1, "valid", use_bias=False),
        ]
        for f in (ngf * 4, ngf * 2, ngf):
            layers += [
                L.BatchNormalization(),
                L.ReLU(),
                L.Conv2DTranspose(f, 4, 2, "same", use_bias=False),
            ]
        layers += [
            L.BatchNormalization(),
            L.ReLU(),
            L.Conv2DTranspose(nc, 4, 2, "same", use_bias=False, activation="tanh"),
        ]
        return keras.Sequential(layers)

    def decoder() -> keras.Model:
        layers: list = [keras.Input((16, 16, 256))]
        for f in (128, 64, 32):
            layers += [
                L.Conv2DTranspose(f, 2, 2, activation="relu"),
                L.Conv2D(f if f > 32 else 3, 3, padding="same"),
            ]
        return keras.Sequential(layers)

    rows = []
    for name, make, shape in (
        ("DCGAN generator", dcgan, (BATCH, 1, 1, 100)),
        ("U-Net decoder", decoder, (BATCH, 16, 16, 256)),
    ):
        keras.utils.set_random_seed(0)
        original = make()
        x = np.random.default_rng(0).standard_normal(shape).astype("float32")
        modes = ("subpixel", "fastest")
        variants = [
            keras_rewrite.replace_conv_transpose(original, mode=mode, example=x) for mode in modes
        ]
        fns = [m.predict_on_batch for m in (original, *variants)]
        times = best_times([lambda f=f: f(x) for f in fns], ROUNDS, REPEAT)
        for mode, rewritten, t in zip(modes, variants, times[1:]):
            diff = float(np.abs(rewritten.predict_on_batch(x) - original.predict_on_batch(x)).max())
            kept = sum(isinstance(layer, L.Conv2DTranspose) and layer.strides[0] > 1
                       for layer in rewritten.layers)  # fmt: skip
            rows.append(
                row(f"Keras {keras.__version__} (TensorFlow)", name, mode, times[0], t, kept, diff)
            )
    return rows


def flax_rows() -> list[list[str]]:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from subpixel.rewrite import flax as flax_rewrite

    class Decoder(nnx.Module):
        def __init__(self) -> None:
            rngs = nnx.Rngs(0)
            self.ups = nnx.List(
                [
                    nnx.ConvTranspose(c, c // 2, (2, 2), (2, 2), padding="VALID", rngs=rngs)
                    for c in (256, 128, 64)
                ]
            )
            self.convs = nnx.List(
                [
                    nnx.Conv(c // 2, c // 2 if c > 64 else 3, (3, 3), rngs=rngs)
                    for c in (256, 128, 64)
                ]
            )

        def __call__(self, x: jax.Array) -> jax.Array:
            for up, conv in zip(self.ups, self.convs):
                x = conv(nnx.relu(up(x)))
            return x

    class DCGAN(nnx.Module):
        def __init__(self) -> None:
            rngs = nnx.Rngs(0)
            nz, ngf, nc = 100, 64, 3
            pad = ((2, 2), (2, 2))  # PyTorch's padding 1 of a 4-tap kernel
            chans = (ngf * 8, ngf * 4, ngf * 2, ngf)
            ups = [
                nnx.ConvTranspose(nz, chans[0], (4, 4), padding="VALID", use_bias=False, rngs=rngs)
            ]
            ups += [nnx.ConvTranspose(a, b, (4, 4), (2, 2), padding=pad, use_bias=False, rngs=rngs)
                    for a, b in zip(chans, (*chans[1:], nc))]  # fmt: skip
            self.ups = nnx.List(ups)
            self.norms = nnx.List(
                [nnx.BatchNorm(c, use_running_average=True, rngs=rngs) for c in chans]
            )

        def __call__(self, x: jax.Array) -> jax.Array:
            for up, norm in zip(self.ups, self.norms):
                x = nnx.relu(norm(up(x)))
            return jnp.tanh(self.ups[-1](x))

    rng = np.random.default_rng(0)
    rows = []
    for name, make, shape in (
        ("DCGAN generator", DCGAN, (BATCH, 1, 1, 100)),
        ("U-Net decoder", Decoder, (BATCH, 16, 16, 256)),
    ):
        x = jnp.asarray(rng.standard_normal(shape).astype("float32"))
        original = make()
        run = nnx.jit(lambda m, v: m(v))
        expected = run(original, x)
        modes = ("subpixel", "fastest")
        variants = []
        for mode in modes:
            rewritten = make()
            flax_rewrite.replace_conv_transpose(rewritten, mode=mode, example=x)
            variants.append(rewritten)
        fns = [lambda m=m: run(m, x).block_until_ready() for m in (original, *variants)]
        times = best_times(fns, ROUNDS, REPEAT)
        for mode, rewritten, t in zip(modes, variants, times[1:]):
            diff = float(jnp.abs(run(rewritten, x) - expected).max())
            kept = sum(isinstance(m, nnx.ConvTranspose) and m.strides not in (None, 1, (1, 1))
                       for m in rewritten.ups)  # fmt: skip
            rows.append(
                row(f"Flax NNX (JAX {jax.__version__}, jit)", name, mode, times[0], t, kept, diff)
            )
    return rows


def main() -> int:
    rows: list[list[str]] = []
    if importlib.util.find_spec("torch"):
        rows += torch_rows()
    if importlib.util.find_spec("tensorflow") and importlib.util.find_spec("keras"):
        rows += keras_rows()
    if importlib.util.find_spec("flax"):
        rows += flax_rows()
    print(
        f"forward pass, batch {BATCH}, side by side: {ROUNDS} rounds of best of {REPEAT}; {machine_line()}"
    )
    header = [
        "framework",
        "model",
        "mode",
        "original ms",
        "rewritten ms",
        "ratio",
        "kept",
        "max diff",
    ]
    print(table(rows, header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
