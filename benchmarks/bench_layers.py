"""SubPixelConv forward: PyTorch layer vs its bare LR conv2d; NumPy vs PyTorch.

    python benchmarks/bench_layers.py

(8, 64, 64, 64) float32 -> 64 channels, k=3, r=2, forward without autograd.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from subpixel.backends import numpy as np_backend
from subpixel.layers.torch import SubPixelConv2d, to_agnostic

from _timing import best_time, machine_line, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(
        f"machine: {machine_line()}; torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"numpy {np.__version__} (subpixel threads {np_backend.get_num_threads()})"
    )
    torch.manual_seed(0)
    rows = []
    with torch.no_grad():
        x = torch.randn(8, 64, 64, 64)
        for order in ("CRD", "DCR"):
            layer = SubPixelConv2d(64, 64, 3, 2, order=order)
            w, b = layer.weight.detach(), layer.bias.detach()
            t_conv = best_time(lambda: F.conv2d(x, w, b, padding=1), args.repeat)
            w_cl = w.contiguous(memory_format=torch.channels_last)
            x_cl = x.contiguous(memory_format=torch.channels_last)
            t_conv_cl = best_time(lambda: F.conv2d(x_cl, w_cl, b, padding=1), args.repeat)
            t_naive = (
                best_time(lambda: F.pixel_shuffle(F.conv2d(x, w, b, padding=1), 2), args.repeat)
                if order == "CRD"
                else float("nan")
            )
            t_layer = best_time(lambda: layer(x), args.repeat)
            agnostic = to_agnostic(layer)
            xn = x.numpy()
            np.testing.assert_allclose(agnostic(xn), layer(x).numpy(), rtol=1e-3, atol=1e-3)
            t_numpy = best_time(lambda: agnostic(xn), max(2, args.repeat // 2), warmup=1)
            rows.append(
                [
                    order,
                    f"{t_conv * 1e3:.1f}",
                    f"{t_conv_cl / t_conv:.2f}",
                    "-" if order == "DCR" else f"{t_naive / t_conv:.2f}",
                    f"{t_layer * 1e3:.1f}",
                    f"{t_layer / t_conv:.2f}",
                    f"{t_numpy * 1e3:.0f}",
                    f"{t_numpy / t_layer:.2f}",
                ]
            )
    print(
        table(
            rows,
            [
                "order",
                "bare conv2d ms (NCHW)",
                "conv2d channels_last / NCHW",
                "conv2d + F.pixel_shuffle / conv2d",
                "SubPixelConv2d ms",
                "SubPixelConv2d / conv2d",
                "NumPy SubPixelConv ms",
                "NumPy / SubPixelConv2d",
            ],
        )
    )


if __name__ == "__main__":
    main()
