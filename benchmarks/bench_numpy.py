"""NumPy backend against np.copyto of the same bytes and the naive reshape/transpose.

    python benchmarks/bench_numpy.py [--threads N]

Prints a Markdown table of ratios (time / time of np.copyto of the same bytes,
both single-threaded NumPy calls).  Lower is better; 1.0 is a plain copy.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

import subpixel
from subpixel.backends import numpy as np_backend

from _timing import best_time, machine_line, table


def naive(x, r, layout, order):
    """The textbook reshape/transpose/copy (allocating), as a yardstick."""
    n, c, h, w = (
        x.shape if layout == "channels_first" else (x.shape[0], x.shape[3], x.shape[1], x.shape[2])
    )
    oc = c // (r * r)
    if layout == "channels_first":
        split = (n, oc, r, r, h, w) if order == "CRD" else (n, r, r, oc, h, w)
        perm = (0, 1, 4, 2, 5, 3) if order == "CRD" else (0, 3, 4, 1, 5, 2)
        return np.ascontiguousarray(x.reshape(split).transpose(perm)).reshape(n, oc, h * r, w * r)
    split = (n, h, w, oc, r, r) if order == "CRD" else (n, h, w, r, r, oc)
    perm = (0, 1, 4, 2, 5, 3) if order == "CRD" else (0, 1, 3, 2, 4, 5)
    return np.ascontiguousarray(x.reshape(split).transpose(perm)).reshape(n, h * r, w * r, oc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="subpixel NumPy threads")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    if args.threads:
        np_backend.set_num_threads(args.threads)
    print(
        f"machine: {machine_line()}; numpy {np.__version__}; "
        f"subpixel numpy threads: {np_backend.get_num_threads()}"
    )
    rows = []
    rng = np.random.default_rng(0)
    for r, channels in ((2, 256), (3, 288)):
        n, h, w = 8, 128, 128
        for layout in ("channels_first", "channels_last"):
            shape = (n, channels, h, w) if layout == "channels_first" else (n, h, w, channels)
            x = rng.random(shape, dtype=np.float32)
            copy_dst = np.empty_like(x)
            base = best_time(lambda: np.copyto(copy_dst, x), args.repeat)
            for order in ("CRD", "DCR"):
                out = subpixel.shuffle(x, r, layout=layout, order=order)
                ref = naive(x, r, layout, order)
                assert np.array_equal(out, ref)
                t_out = best_time(
                    lambda: subpixel.shuffle(x, r, layout=layout, order=order, out=out), args.repeat
                )
                t_alloc = best_time(
                    lambda: subpixel.shuffle(x, r, layout=layout, order=order), args.repeat
                )
                t_naive = best_time(lambda: naive(x, r, layout, order), args.repeat)
                inv_out = np.empty_like(x)
                t_unsh = best_time(
                    lambda: subpixel.unshuffle(out, r, layout=layout, order=order, out=inv_out),
                    args.repeat,
                )
                rows.append(
                    [
                        f"{shape}",
                        str(r),
                        layout,
                        order,
                        f"{base * 1e3:.1f}",
                        f"{t_out / base:.2f}",
                        f"{t_unsh / base:.2f}",
                        f"{t_alloc / base:.2f}",
                        f"{t_naive / base:.2f}",
                    ]
                )
    print(
        table(
            rows,
            [
                "input (float32)",
                "r",
                "layout",
                "order",
                "np.copyto ms",
                "shuffle out=",
                "unshuffle out=",
                "shuffle alloc",
                "naive reshape/transpose",
            ],
        )
    )
    size = math.prod((8, 256, 128, 128)) * 4 / 2**20
    print(f"\nratios are times over np.copyto of the same {size:.0f} MiB; best of {args.repeat}")


if __name__ == "__main__":
    main()
