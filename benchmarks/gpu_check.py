"""One script for a GPU machine: the test suite's conformance matrix, error battery,
sub-pixel convolution and layer tests run by pytest on CUDA arrays
(``SUBPIXEL_TEST_BACKENDS=cupy,torch,jax``: the adapters put data on every GPU
they see), a 64-bit indexing check on a real 2^31-element array, then the GPU
benchmarks.  Needs no TensorFlow and no install:

    PYTHONPATH=. python benchmarks/gpu_check.py [--quick] [--skip-bench]

Prints one table per part and a summary line; exits 1 on any failure.
``--dry-run-cpu`` runs the same pytest invocation with the NumPy backend, to check
the script on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import math
import os
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import subpixel  # noqa: E402
from subpixel import LAYOUTS, ORDERS  # noqa: E402
from subpixel._core import spec as _spec  # noqa: E402
from subpixel._core.timing import best_time  # noqa: E402

# the suite's own files: the matrix is never re-implemented here
TEST_FILES = [
    "tests/ops/test_conformance.py",
    "tests/ops/test_errors.py",
    "tests/ops/test_dtype_rules.py",
    "tests/layers/test_sub_pixel_conv.py",
    "tests/layers/test_layers_torch.py",
    "tests/layers/test_layers_flax.py",
]
results: list[tuple[str, int, int, str]] = []  # (part, passed, total, note)


def run_pytest(backends: list[str], quick: bool) -> None:
    """The test files above on ``backends``, in a subprocess (its summary is recorded)."""
    env = dict(os.environ, SUBPIXEL_TEST_BACKENDS=",".join(backends), PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TEST_FILES]
    if quick:
        cmd += ["-k", "test_values and r2 or test_dtypes or test_out"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-300:]
    print(proc.stdout[-4000:])
    results.append((f"pytest {','.join(backends)}", int(proc.returncode == 0), 1, tail))


def check_64bit_indexing() -> None:
    """A shuffle of 2^31 + elements (the 64-bit index kernels), spot-checked against the
    index formula, and its round trip."""
    import cupy as cp

    passed = total = 0
    shape = (2, 4, 2**14, 2**14)
    x = (cp.arange(math.prod(shape), dtype=cp.uint32) % 251).astype(cp.uint8).reshape(shape)
    y = subpixel.shuffle(x, 2)
    rng = np.random.default_rng(0)
    n, c, h, w = (cp.asarray(rng.integers(0, size, 4000)) for size in y.shape)
    expected = x[n, c * 4 + (h % 2) * 2 + (w % 2), h // 2, w // 2]
    total += 1
    passed += bool(cp.array_equal(y[n, c, h, w], expected))
    total += 1
    passed += bool(cp.array_equal(subpixel.unshuffle(y, 2), x))
    del x, y
    results.append(("cupy 64-bit indexing (2^31 elements)", passed, total, ""))


def gpu_time(fn, sync, repeat=10):
    return best_time(fn, repeat, warmup=1, sync=lambda _: sync())


# ---------------------------------------------------------------------------
# benchmarks
# ---------------------------------------------------------------------------


def bench_shuffle():
    import cupy as cp

    sync = cp.cuda.Device().synchronize
    shape = (32, 256, 256, 256)
    nbytes = math.prod(shape) * 4
    x = cp.random.standard_normal(shape, dtype=cp.float32)
    buf = cp.empty_like(x)
    t_copy = gpu_time(lambda: cp.copyto(buf, x), sync)
    rows = [("cupy copy (device to device)", t_copy, 1.0)]
    x_cl = cp.ascontiguousarray(cp.moveaxis(x, 1, -1))
    for layout in LAYOUTS:
        src = x if layout == "channels_first" else x_cl
        for order in ORDERS:
            out = subpixel.shuffle(src, 2, layout=layout, order=order)
            t = gpu_time(
                lambda: subpixel.shuffle(src, 2, layout=layout, order=order, out=out), sync
            )
            rows.append((f"cupy shuffle out= {layout} {order}", t, t_copy / t))
            back = cp.empty_like(src)
            t = gpu_time(
                lambda: subpixel.unshuffle(out, 2, layout=layout, order=order, out=back), sync
            )
            rows.append((f"cupy unshuffle out= {layout} {order}", t, t_copy / t))
    del x_cl
    if importlib.util.find_spec("torch"):
        import torch
        import torch.nn.functional as F

        if torch.cuda.is_available():
            tx = torch.as_tensor(x, device="cuda")
            tsync = torch.cuda.synchronize
            tbuf = torch.empty_like(tx)
            rows.append(("torch copy_", gpu_time(lambda: tbuf.copy_(tx), tsync), None))
            rows.append(
                ("torch F.pixel_shuffle", gpu_time(lambda: F.pixel_shuffle(tx, 2), tsync), None)
            )
            tout = torch.empty(32, 64, 512, 512, device="cuda")
            rows.append(
                (
                    "subpixel.shuffle(torch) out=, CRD",
                    gpu_time(lambda: subpixel.shuffle(tx, 2, out=tout), tsync),
                    None,
                )
            )
            rows.append(
                (
                    "subpixel.shuffle(torch) alloc, DCR",
                    gpu_time(lambda: subpixel.shuffle(tx, 2, order="DCR"), tsync),
                    None,
                )
            )
            del tx, tbuf, tout
            torch.cuda.empty_cache()
    if importlib.util.find_spec("jax"):
        import jax
        import jax.numpy as jnp

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        if gpus:
            jx = jax.device_put(np.asarray(cp.asnumpy(x[:8])), gpus[0])  # 512 MiB
            jcopy = jax.jit(jnp.copy)
            jshuffle = jax.jit(lambda t: subpixel.shuffle(t, 2))
            t_jc = gpu_time(lambda: jcopy(jx).block_until_ready(), lambda: None)
            t_js = gpu_time(lambda: jshuffle(jx).block_until_ready(), lambda: None)
            rows.append(("jax jitted copy (8, 256, 256, 256)", t_jc, None))
            rows.append(("jax jitted subpixel.shuffle (same)", t_js, t_jc / t_js))
    print(f"\n### Shuffle of {shape} float32 ({nbytes / 2**30:.0f} GiB), factor 2\n")
    print("| operation | ms | GB/s (read+write) | bandwidth / copy |")
    print("|---|---|---|---|")
    for name, t, ratio in rows:
        size = nbytes / 4 if "jax" in name else nbytes
        print(
            f"| {name} | {t * 1e3:.2f} | {2 * size / t / 1e9:.0f} | {'' if ratio is None else f'{ratio:.2f}'} |"
        )


def bench_conv():
    import cupy as cp

    from subpixel.backends._im2col import im2col_conv

    sync = cp.cuda.Device().synchronize
    x = cp.random.standard_normal((16, 32, 256, 256), dtype=cp.float32)
    w = cp.random.standard_normal((27, 32, 3, 3), dtype=cp.float32) * 0.05
    b = cp.random.standard_normal(27, dtype=cp.float32)
    cplan = _spec.make_conv_plan(x.shape, w.shape, b.shape, 3)
    t_lr = gpu_time(lambda: im2col_conv(cp, x, w, b, cplan), sync)
    t_fused = gpu_time(lambda: subpixel.sub_pixel_conv(x, w, b, factor=3), sync)
    rows = [
        ("cupy LR conv alone (im2col + cuBLAS GEMM + bias)", t_lr),
        ("cupy sub_pixel_conv (GEMM + fused epilogue)", t_fused),
    ]
    if importlib.util.find_spec("torch"):
        import torch
        import torch.nn.functional as F

        if torch.cuda.is_available():
            tx, tw, tb = (torch.as_tensor(v, device="cuda") for v in (x, w, b))
            tsync = torch.cuda.synchronize
            rows.append(
                ("torch conv2d alone", gpu_time(lambda: F.conv2d(tx, tw, tb, padding=1), tsync))
            )
            rows.append(
                (
                    "torch conv2d + F.pixel_shuffle",
                    gpu_time(lambda: F.pixel_shuffle(F.conv2d(tx, tw, tb, padding=1), 3), tsync),
                )
            )
            rows.append(
                (
                    "subpixel.sub_pixel_conv(torch)",
                    gpu_time(lambda: subpixel.sub_pixel_conv(tx, tw, tb, factor=3), tsync),
                )
            )
    print("\n### ESPCN-like last layer: (16, 32, 256, 256) -> 3 channels, k=3, r=3, float32\n")
    print("| operation | ms | / cupy LR conv alone |")
    print("|---|---|---|")
    for name, t in rows:
        print(f"| {name} | {t * 1e3:.2f} | {t / t_lr:.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a subset of the matrix")
    parser.add_argument("--skip-bench", action="store_true")
    parser.add_argument(
        "--dry-run-cpu", action="store_true", help="check this script on a CPU-only machine"
    )
    args = parser.parse_args()
    if args.dry_run_cpu:
        run_pytest(["numpy"], args.quick)
        for name, passed, total, note in results:
            print(f"{name}: {passed}/{total} {note}")
        return int(any(p != t for _, p, t, _ in results))
    import cupy as cp

    props = cp.cuda.runtime.getDeviceProperties(0)
    print(f"# subpixel GPU check, {datetime.datetime.now().isoformat(timespec='minutes')}")
    print(
        f"GPU: {props['name'].decode()}, CuPy {cp.__version__}, CUDA runtime {cp.cuda.runtime.runtimeGetVersion()}, "
        f"Python {sys.version.split()[0]}, NumPy {np.__version__}"
    )
    backends = ["cupy"] + [n for n in ("torch", "jax") if importlib.util.find_spec(n)]
    run_pytest(backends, args.quick)
    try:
        check_64bit_indexing()
    except Exception as exc:
        traceback.print_exc()
        results.append(("cupy 64-bit indexing", 0, 1, f"crashed: {type(exc).__name__}: {exc}"))
    print("\n### Correctness\n")
    print("| part | passed | note |")
    print("|---|---|---|")
    for name, passed, total, note in results:
        print(f"| {name} | {passed}/{total} | {note} |")
    bad = any(p != t for _, p, t, _ in results)
    if not args.skip_bench:
        for bench in (bench_shuffle, bench_conv):
            try:
                bench()
            except Exception:
                traceback.print_exc()
    print("\nRESULT:", "FAILED" if bad else "all checks passed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
