"""PyTorch, TensorFlow and JAX backends against their native ops and a plain copy.

    python benchmarks/bench_frameworks.py [--only torch,tensorflow,jax] [--device cpu|cuda]

Prints Markdown tables of ratios measured side by side in this process.  Lower is
better.  Sections for frameworks that are not installed are left out.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

import subpixel

from _timing import best_time, machine_line, table

SHAPE_CF = (8, 256, 128, 128)  # float32, 128 MiB
LAYOUTS = ("channels_first", "channels_last")
ORDERS = ("CRD", "DCR")


def _per_call_us(fn, n=2000):
    fn()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


def bench_torch(repeat: int, device: str) -> None:
    import torch
    import torch.nn.functional as F

    sync = (lambda _: torch.cuda.synchronize()) if device == "cuda" else None
    print(f"\n### PyTorch {torch.__version__} on {device}, {torch.get_num_threads()} threads\n")
    x_cf = torch.randn(SHAPE_CF, device=device)
    x_cl = x_cf.permute(0, 2, 3, 1).contiguous()  # (N, H, W, C) dense
    buf = torch.empty_like(x_cf)
    t_copy = best_time(lambda: buf.copy_(x_cf), repeat, sync=sync)
    t_native = best_time(lambda: F.pixel_shuffle(x_cf, 2), repeat, sync=sync)
    rows = []
    for layout in LAYOUTS:
        x = x_cf if layout == "channels_first" else x_cl
        for order in ORDERS:
            out = subpixel.shuffle(x, 2, layout=layout, order=order)
            t_out = best_time(
                lambda: subpixel.shuffle(x, 2, layout=layout, order=order, out=out),
                repeat,
                sync=sync,
            )
            t_alloc = best_time(
                lambda: subpixel.shuffle(x, 2, layout=layout, order=order), repeat, sync=sync
            )
            inv = torch.empty_like(x)
            t_inv = best_time(
                lambda: subpixel.unshuffle(out, 2, layout=layout, order=order, out=inv),
                repeat,
                sync=sync,
            )
            rows.append(
                [
                    layout,
                    order,
                    f"{t_out / t_copy:.2f}",
                    f"{t_inv / t_copy:.2f}",
                    f"{t_alloc / t_copy:.2f}",
                    f"{t_alloc / t_native:.2f}",
                ]
            )
    print(
        f"input {SHAPE_CF} float32 (channels_last rows: the same data as (N, H, W, C)), factor 2; "
        f"`copy_` into a preallocated tensor {t_copy * 1e3:.1f} ms, `F.pixel_shuffle` {t_native * 1e3:.1f} ms "
        f"({t_native / t_copy:.2f}x copy)\n"
    )
    print(
        table(
            rows,
            [
                "layout",
                "order",
                "shuffle out= / copy_",
                "unshuffle out= / copy_",
                "shuffle alloc / copy_",
                "shuffle alloc / F.pixel_shuffle",
            ],
        )
    )
    # channels_last memory format input (NCHW logical, NHWC in memory)
    x_mf = x_cf.contiguous(memory_format=torch.channels_last)
    t_native_mf = best_time(lambda: F.pixel_shuffle(x_mf, 2), repeat, sync=sync)
    rows = []
    for order in ORDERS:
        t = best_time(lambda: subpixel.shuffle(x_mf, 2, order=order), repeat, sync=sync)
        rows.append([order, f"{t * 1e3:.1f}", f"{t / t_native_mf:.2f}"])
    print(f"\nchannels_last memory format input: `F.pixel_shuffle` {t_native_mf * 1e3:.1f} ms\n")
    print(table(rows, ["order", "subpixel ms", "/ F.pixel_shuffle"]))
    small = torch.randn(1, 4, 8, 8, device=device)
    t_small_native = _per_call_us(lambda: F.pixel_shuffle(small, 2))
    t_small = _per_call_us(lambda: subpixel.shuffle(small, 2))
    t_small_dcr = _per_call_us(lambda: subpixel.shuffle(small, 2, order="DCR"))
    print(
        f"\ndispatch overhead on (1, 4, 8, 8): F.pixel_shuffle {t_small_native:.1f} us, "
        f"subpixel.shuffle CRD {t_small:.1f} us (+{t_small - t_small_native:.1f} us), "
        f"DCR {t_small_dcr:.1f} us (+{t_small_dcr - t_small_native:.1f} us)"
    )


def bench_tensorflow(repeat: int) -> None:
    import tensorflow as tf

    print(f"\n### TensorFlow {tf.__version__} on CPU\n")
    a = np.random.default_rng(0).standard_normal(SHAPE_CF).astype(np.float32)
    x_cf = tf.constant(a)
    x_cl = tf.constant(np.ascontiguousarray(a.transpose(0, 2, 3, 1)))
    t_copy = best_time(lambda: x_cl + 0.0, repeat)  # eager: one read and one write of the bytes
    t_d2s = best_time(lambda: tf.nn.depth_to_space(x_cl, 2), repeat)
    rows = []
    for layout in LAYOUTS:
        x = x_cf if layout == "channels_first" else x_cl
        for order in ORDERS:
            t = best_time(lambda: subpixel.shuffle(x, 2, layout=layout, order=order), repeat)
            rows.append([layout, order, f"{t * 1e3:.1f}", f"{t / t_d2s:.2f}", f"{t / t_copy:.2f}"])
    print(
        f"input {SHAPE_CF} float32 (channels_last: (N, H, W, C)), factor 2; "
        f"`tf.nn.depth_to_space` NHWC {t_d2s * 1e3:.1f} ms, an elementwise `x + 0` {t_copy * 1e3:.1f} ms\n"
    )
    print(table(rows, ["layout", "order", "ms", "/ depth_to_space NHWC", "/ copy"]))
    small = tf.random.normal((1, 8, 8, 4))
    t_n = _per_call_us(lambda: tf.nn.depth_to_space(small, 2), 500)
    t_s = _per_call_us(lambda: subpixel.shuffle(small, 2, layout="channels_last", order="DCR"), 500)
    print(
        f"\ndispatch overhead on (1, 8, 8, 4): depth_to_space {t_n:.1f} us, subpixel {t_s:.1f} us "
        f"(+{t_s - t_n:.1f} us)"
    )


def bench_jax(repeat: int) -> None:
    import jax
    import jax.numpy as jnp

    print(f"\n### JAX {jax.__version__} on {jax.devices()[0].platform}\n")
    x_cf = jax.random.normal(jax.random.key(0), SHAPE_CF)
    x_cl = jnp.transpose(x_cf, (0, 2, 3, 1)).block_until_ready()
    copy = jax.jit(lambda t: jnp.copy(t))
    t_copy = best_time(lambda: copy(x_cf).block_until_ready(), repeat)
    rows = []
    for layout in LAYOUTS:
        x = x_cf if layout == "channels_first" else x_cl
        for order in ORDERS:
            f = jax.jit(
                lambda t, layout=layout, order=order: subpixel.shuffle(
                    t, 2, layout=layout, order=order
                )
            )
            t = best_time(lambda: f(x).block_until_ready(), repeat)
            t_eager = best_time(
                lambda: subpixel.shuffle(x, 2, layout=layout, order=order).block_until_ready(),
                repeat,
            )
            rows.append(
                [layout, order, f"{t * 1e3:.1f}", f"{t / t_copy:.2f}", f"{t_eager / t_copy:.2f}"]
            )
    print(f"input {SHAPE_CF} float32, factor 2; jitted `jnp.copy` {t_copy * 1e3:.1f} ms\n")
    print(table(rows, ["layout", "order", "jit ms", "jit / jitted copy", "eager / jitted copy"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="torch,tensorflow,jax")
    parser.add_argument("--device", default="cpu", help="torch device (cpu or cuda)")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(f"machine: {machine_line()}; subpixel {subpixel.__version__}")
    for name in args.only.split(","):
        if importlib.util.find_spec(name) is None:
            print(f"\n({name} not installed: skipped)")
            continue
        if name == "torch":
            bench_torch(args.repeat, args.device)
        elif name == "tensorflow":
            bench_tensorflow(args.repeat)
        elif name == "jax":
            bench_jax(args.repeat)


if __name__ == "__main__":
    main()
