"""Train the bundled ESPCN models (PyTorch on the CPU, a few minutes per scale).

    pip install torch==2.13.0 scikit-image
    python examples/train_espcn.py [--scales 2 3 4] [--seconds 300] [--out subpixel/models]

Data: sample images that scikit-image ships inside its wheel, all public domain or
CC0 (see the licence column of ``IMAGES``); ``HELD_OUT`` ones are never trained on
and give the PSNR table.  LR images are made with subpixel's own bicubic
(``subpixel.image.resize_bicubic``), the network sees luminance (BT.601 Y) only.
Writes ``espcn_x{scale}.safetensors`` with the training facts as metadata, and
prints the PSNR table recorded in docs/models.md.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import skimage
import skimage.data
import torch
import torch.nn.functional as F
from torch import nn

from subpixel import image
from subpixel._core import files as _files
from subpixel.layers.torch import SubPixelConv2d

# name -> licence, as scikit-image's docstrings state them
IMAGES = {
    "astronaut": "public domain (NASA)",
    "camera": "CC0 (Lav Varshney)",
    "coins": "no known copyright restrictions (Walters Art Museum)",
    "hubble_deep_field": "public domain (NASA)",
    "retina": "CC0 (Mikael Häggström)",
    "grass": "CC0 (CC0Textures)",
    "gravel": "CC0 (CC0Textures)",
    "brick": "CC0 (CC0Textures)",
    "immunohistochemistry": "no known copyright restrictions",
    "text": "public domain",
    "cell": "CC0",
    "microaneurysms": "CC0 (Andreas Maier)",
    "chelsea": "CC0 (Stefan van der Walt)",
    "coffee": "CC0 (Rachel Michetti)",
    "rocket": "public domain (SpaceX)",
}
HELD_OUT = ("chelsea", "coffee", "rocket")
LR_PATCH = 17  # the ESPCN paper's LR patch size
PEAK_LR = 3e-3
MEAN = 0.5  # the network sees and predicts luminance minus MEAN (centred for tanh)
BATCH = 64


def luma(name: str) -> np.ndarray:
    """Y in [0, 1] (BT.601 studio swing / 255), grey images treated as R = G = B."""
    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    img = img[..., :3].astype(np.float64)
    if img.max() <= 1.0:
        img = img * 255.0
    return image.rgb_to_ycbcr(img)[..., 0] / 255.0


def pair(y: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = (y.shape[0] // r) * r, (y.shape[1] // r) * r
    hr = y[:h, :w]
    return image.resize_bicubic(hr, h // r, w // r), hr


class Net(nn.Module):
    def __init__(self, r: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 64, 5, padding=2)
        self.conv2 = nn.Conv2d(64, 32, 3, padding=1)
        self.conv3 = SubPixelConv2d(32, 1, 3, r)  # ICNR-initialised, CRD

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(torch.tanh(self.conv2(torch.tanh(self.conv1(x)))))


def evaluate(net: Net, r: int, names) -> list[tuple[str, float, float]]:
    rows = []
    with torch.no_grad():
        for name in names:
            lr, hr = pair(luma(name), r)
            sr = (
                net(torch.from_numpy(lr[None, None].astype(np.float32)) - MEAN)[0, 0].numpy() + MEAN
            )
            bic = image.resize_bicubic(lr, *hr.shape)
            q = lambda a: np.clip(np.round(a * 255.0), 0, 255)  # noqa: E731 - 8-bit, as saved
            rows.append(
                (name, image.psnr(q(bic), q(hr), shave=r), image.psnr(q(sr), q(hr), shave=r))
            )
    return rows


def train(r: int, seconds: float, seed: int) -> tuple[Net, dict]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data = [pair(luma(n), r) for n in IMAGES if n not in HELD_OUT]
    net = Net(r)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    batch = BATCH
    steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        frac = (time.perf_counter() - start) / seconds
        for group in opt.param_groups:  # cosine decay from PEAK_LR to 1e-5
            group["lr"] = 1e-5 + (PEAK_LR - 1e-5) * 0.5 * (1 + math.cos(math.pi * frac))
        xs, ys = [], []
        for k in rng.integers(0, len(data), batch):
            lr, hr = data[k]
            i = rng.integers(0, lr.shape[0] - LR_PATCH + 1)
            j = rng.integers(0, lr.shape[1] - LR_PATCH + 1)
            a = lr[i : i + LR_PATCH, j : j + LR_PATCH]
            b = hr[i * r : (i + LR_PATCH) * r, j * r : (j + LR_PATCH) * r]
            t = rng.integers(0, 8)  # the 8 flips/rotations of the square
            if t & 4:
                a, b = a.T, b.T
            xs.append(np.rot90(a, t & 3))
            ys.append(np.rot90(b, t & 3))
        x = torch.from_numpy(np.stack(xs)[:, None].astype(np.float32))
        y = torch.from_numpy(np.stack(ys)[:, None].astype(np.float32))
        opt.zero_grad()
        loss = F.mse_loss(net(x - MEAN), y - MEAN)
        loss.backward()
        opt.step()
        steps += 1
    facts = {
        "steps": steps,
        "batch": batch,
        "seconds": round(time.perf_counter() - start, 1),
        "seed": seed,
    }
    return net, facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent.parent / "subpixel" / "models"
    )
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(
        f"torch {torch.__version__}, scikit-image {skimage.__version__}, {torch.get_num_threads()} threads"
    )
    print("\n| scale | held-out image | bicubic PSNR (dB) | ESPCN PSNR (dB) | gain (dB) |")
    print("|---|---|---|---|---|")
    for r in args.scales:
        net, facts = train(r, args.seconds, args.seed)
        rows = evaluate(net, r, HELD_OUT)
        for name, bic, sr in rows:
            print(f"| x{r} | {name} | {bic:.2f} | {sr:.2f} | {sr - bic:+.2f} |")
        mean_gain = float(np.mean([sr - bic for _, bic, sr in rows]))
        print(
            f"| x{r} | **mean** | {np.mean([b for _, b, _ in rows]):.2f} | {np.mean([s for _, _, s in rows]):.2f} "
            f"| **{mean_gain:+.2f}** |"
        )
        tensors = {
            "conv1.weight": net.conv1.weight,
            "conv1.bias": net.conv1.bias,
            "conv2.weight": net.conv2.weight,
            "conv2.bias": net.conv2.bias,
            "conv3.weight": net.conv3.weight,
            "conv3.bias": net.conv3.bias,
        }
        tensors = {k: v.detach().numpy().astype(np.float32) for k, v in tensors.items()}
        meta = {
            "model": "ESPCN (Shi et al. 2016), Y channel, CRD shuffle",
            "input_mean": str(MEAN),
            "scale": str(r),
            "trained_on": json.dumps([n for n in IMAGES if n not in HELD_OUT]),
            "held_out": json.dumps(list(HELD_OUT)),
            "licences": json.dumps(IMAGES),
            "training": json.dumps(facts),
            "held_out_psnr": json.dumps(
                {n: {"bicubic": round(b, 3), "espcn": round(s, 3)} for n, b, s in rows}
            ),
            "source": "scikit-image "
            + skimage.__version__
            + " sample data; examples/train_espcn.py",
        }
        _files.write_tensors(args.out / f"espcn_x{r}.safetensors", tensors, meta)


if __name__ == "__main__":
    main()
