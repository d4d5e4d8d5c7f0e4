"""Multiply-adds and parameters: LR (sub-pixel) vs HR networks, transposed conv vs
its sub-pixel form.  Pure arithmetic, no timing.

    python benchmarks/cost_model.py
"""

from __future__ import annotations

import math

from _timing import table


def conv_macs(c_in: int, c_out: int, k: int, pixels: int, d: int = 2) -> int:
    """Multiply-adds of a stride-1 conv producing ``pixels`` output pixels."""
    return c_in * c_out * k**d * pixels


def main() -> None:
    W = H = 256
    print("## The seed's example: an LR layer vs an HR layer of the same cost (W = H = 256)\n")
    lr = conv_macs(32, 32, 3, (W // 2) * (H // 2))
    hr = conv_macs(8, 8, 6, W * H)
    rows = [
        [
            "LR: 32 -> 32 channels, 3x3, on W/2 x H/2",
            f"{lr / 1e6:.1f} M",
            f"{32 * 32 * 9}",
            "32 x W/2 x H/2 = 8 x W x H",
        ],
        ["HR: 8 -> 8 channels, 6x6, on W x H", f"{hr / 1e6:.1f} M", f"{8 * 8 * 36}", "8 x W x H"],
    ]
    print(table(rows, ["layer", "multiply-adds", "parameters", "activations stored"]))
    print(
        f"\nsame cost ({lr == hr}), same receptive field (3 LR pixels = 6 HR pixels), "
        f"{32 * 32 * 9 // (8 * 8 * 36)}x the parameters in LR space.\n"
    )

    print("## A transposed convolution and its sub-pixel form\n")
    cases = [
        ("(8, 64, 64, 64) -> 64, k6 s2", 8, 64, 64, 64, 6, 2),
        ("(1, 32, 256, 256) -> 3, k9 s3", 1, 32, 3, 256, 9, 3),
        ("seed: (1, 32, 64, 64) -> 1, k9 s3", 1, 32, 1, 64, 9, 3),
    ]
    rows = []
    for name, n, c_in, c_out, size, k, s in cases:
        hr_pixels = n * (size * s) ** 2
        zero_filled = conv_macs(c_in, c_out, k, hr_pixels)  # conv over the zero-inserted input
        scatter = n * c_in * c_out * k * k * size * size  # every input pixel times every tap
        kp = math.ceil(k / s)
        sub_pixel = conv_macs(c_in, c_out * s * s, kp, n * size * size)
        rows.append(
            [
                name,
                f"{zero_filled / 1e9:.2f} G",
                f"{scatter / 1e9:.2f} G",
                f"{sub_pixel / 1e9:.2f} G",
                f"{zero_filled / sub_pixel:.0f}x",
            ]
        )
    print(
        table(
            rows,
            [
                "case",
                "transposed conv as conv on zero-filled input",
                "transposed conv, scatter form",
                "sub-pixel (LR conv)",
                "zero-filled / sub-pixel",
            ],
        )
    )
    print(
        "\nThe sub-pixel form does the multiply-adds of the scatter form (equal when the kernel is a "
        "multiple of the stride) as one dense stride-1 convolution, and skips the s^d-fold zero work "
        "of the naive form."
    )


if __name__ == "__main__":
    main()
