"""A transposed convolution against its sub-pixel form, in PyTorch on the CPU.

    python benchmarks/bench_weights.py

For each case, the transposed conv is converted with
``subpixel.weights.conv_transpose_to_sub_pixel`` and run as LR conv + shuffle +
crop in several variants; the table gives each time over ``F.conv_transpose2d``'s
time on the same input (lower is better) and checks the outputs agree.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

import subpixel
from subpixel import weights

from _timing import best_time, machine_line, table

CASES = [
    # name, input (N, C_in, H, W), C_out, kernel, stride, padding
    ("(8, 64, 64, 64) -> 64, k6 s2 p2", (8, 64, 64, 64), 64, 6, 2, 2),
    ("ESPCN-like (1, 32, 256, 256) -> 3, k9 s3 p3", (1, 32, 256, 256), 3, 9, 3, 3),
]


def sub_pixel_forward(x, plan, weight, bias, memory_format, out=None):
    """LR conv (in ``memory_format``) + shuffle + crop, as a user would run it."""
    if all(a == b for a, b in plan.lr_padding):  # symmetric: let the conv pad
        conv_padding = tuple(a for a, _ in plan.lr_padding)
    else:
        x = F.pad(x, [v for pair in reversed(plan.lr_padding) for v in pair])
        conv_padding = 0
    if memory_format is torch.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    lr = F.conv2d(x, weight, bias, padding=conv_padding)
    hr = subpixel.shuffle(lr, plan.factor, order=plan.order, out=out)
    (top, bottom), (left, right) = plan.crop
    return hr[:, :, top : hr.shape[2] - bottom, left : hr.shape[3] - right]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(
        f"machine: {machine_line()}; torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    torch.manual_seed(0)
    rows = []
    with torch.no_grad():
        for name, shape, c_out, k, s, p in CASES:
            x = torch.randn(shape)
            w = torch.randn(shape[1], c_out, k, k) * 0.05
            b = torch.randn(c_out)
            expected = F.conv_transpose2d(x, w, b, stride=s, padding=p)
            t_ct = best_time(lambda: F.conv_transpose2d(x, w, b, stride=s, padding=p), args.repeat)
            x_cl = x.contiguous(memory_format=torch.channels_last)
            w_cl = w.contiguous(memory_format=torch.channels_last)
            t_ct_cl = best_time(
                lambda: F.conv_transpose2d(x_cl, w_cl, b, stride=s, padding=p), args.repeat
            )
            row = [name, f"{t_ct * 1e3:.1f}", f"{t_ct_cl / t_ct:.2f}"]
            variants = [
                ("CRD", torch.contiguous_format, x, False),
                ("CRD", torch.channels_last, x, False),
                ("DCR", torch.channels_last, x, False),
                ("CRD", torch.channels_last, x_cl, False),
                ("CRD", torch.channels_last, x_cl, True),
            ]
            for order, fmt, inp, preallocated in variants:
                plan = weights.conv_transpose_to_sub_pixel(w, b, stride=s, padding=p, order=order)
                lw = torch.from_numpy(plan.weight).contiguous(memory_format=fmt)
                lb = torch.from_numpy(plan.bias)
                hr = sub_pixel_forward(inp, plan, lw, lb, fmt)
                out = (
                    torch.empty(
                        hr.shape[:2] + tuple(hr.shape[2 + i] + sum(plan.crop[i]) for i in range(2))
                    )
                    if preallocated
                    else None
                )
                got = sub_pixel_forward(inp, plan, lw, lb, fmt, out)
                torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
                t = best_time(lambda: sub_pixel_forward(inp, plan, lw, lb, fmt, out), args.repeat)
                ref = t_ct_cl if inp is x_cl else t_ct
                row.append(f"{t / ref:.2f}")
            rows.append(row)
    print(
        table(
            rows,
            [
                "case",
                "conv_transpose2d ms",
                "conv_transpose2d channels_last / NCHW",
                "sub-pixel CRD",
                "sub-pixel CRD, conv channels_last",
                "sub-pixel DCR, conv channels_last",
                "channels_last in, CRD (vs ct channels_last)",
                "same, shuffle out= (vs ct channels_last)",
            ],
        )
    )
    print(
        "\nratios: time / F.conv_transpose2d on the same input (NCHW unless the column says channels_last "
        "input, then against conv_transpose2d on that channels_last input); forward, no grad"
    )


if __name__ == "__main__":
    main()
