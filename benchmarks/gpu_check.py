"""One script for a GPU machine: correctness of the cupy backend (and the torch and
JAX backends on CUDA) against the NumPy index-formula oracle, then the GPU
benchmarks of issues #3 and #6.  Needs no pytest, no TensorFlow, no install:

    PYTHONPATH=. python benchmarks/gpu_check.py [--quick] [--skip-bench]

Prints one table per part and a summary line; exits 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import math
import sys
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from cases import ALL_DTYPES, BATCHES, FACTORS, LAYOUTS, ORDERS, make_data, op_shape  # noqa: E402

import subpixel  # noqa: E402
from subpixel import _spec  # noqa: E402

from reference import conv_ref, reference, shuffle_gather  # noqa: E402

DTYPES = [d for d in ALL_DTYPES if d != "bfloat16"]  # NumPy has no bfloat16

results: list[tuple[str, int, int, str]] = []  # (part, passed, total, note)


def matrix(name, to_dev, to_host, dtypes, quick, supports_out=True, empty=None):
    """The conformance matrix for one backend/device; returns (passed, total, first failure)."""
    passed = total = 0
    first = ""

    def check(label, got, expected):
        nonlocal passed, total, first
        total += 1
        ok = got.shape == expected.shape and np.array_equal(got, expected)
        passed += ok
        if not ok and not first:
            first = label

    cases = FACTORS[::3] if quick else FACTORS
    for factor, spatial in cases:
        d = len(spatial)
        for batch in BATCHES:
            for layout in LAYOUTS:
                for order in ORDERS:
                    for op in ("shuffle", "unshuffle"):
                        kw = dict(spatial_dims=d, layout=layout, order=order)
                        a = make_data(op_shape(op, factor, spatial, batch, layout), "float32")
                        y = getattr(subpixel, op)(to_dev(a), factor, **kw)
                        check(
                            f"{op} {factor} {batch} {layout} {order}",
                            to_host(y),
                            reference(op, a, factor, **kw),
                        )
    for dtype in dtypes:
        for factor, spatial in ((2, (3, 4)), ((2, 3), (2, 2)), ((1, 2, 3), (2, 1, 2))):
            for layout in LAYOUTS:
                for op in ("shuffle", "unshuffle"):
                    a = make_data(op_shape(op, factor, spatial, (2,), layout), dtype)
                    kw = dict(spatial_dims=len(spatial), layout=layout, order="DCR")
                    y = getattr(subpixel, op)(to_dev(a), factor, **kw)
                    check(
                        f"{dtype} {op} {factor} {layout}",
                        to_host(y),
                        reference(op, a, factor, **kw),
                    )
    # non-contiguous input, zero-size, out=, large (blocked) arrays
    a = make_data((2, 12, 3, 8), "float32")
    dev = to_dev(a)
    check(
        "non-contiguous",
        to_host(subpixel.shuffle(dev[..., ::2], (2, 3))),
        reference("shuffle", a[..., ::2], (2, 3)),
    )
    z = np.zeros((0, 8, 2, 2), np.float32)
    check("zero-size", to_host(subpixel.shuffle(to_dev(z), 2)), reference("shuffle", z, 2))
    if supports_out:
        out = empty((2, 2, 6, 24))
        subpixel.shuffle(dev, (2, 3), order="DCR", out=out)
        check("out=", to_host(out), reference("shuffle", a, (2, 3), order="DCR"))
    big = make_data((4, 36, 128, 96), "float32")
    for layout in LAYOUTS:
        for order in ORDERS:
            src = (
                big
                if layout == "channels_first"
                else np.ascontiguousarray(big.transpose(0, 2, 3, 1))
            )
            y = subpixel.unshuffle(
                subpixel.shuffle(to_dev(src), (3, 2), layout=layout, order=order),
                (3, 2),
                layout=layout,
                order=order,
            )
            check(f"large round trip {layout} {order}", to_host(y), src)
            y = subpixel.shuffle(to_dev(src), 3, layout=layout, order=order)
            check(
                f"large {layout} {order}",
                to_host(y),
                reference("shuffle", src, 3, layout=layout, order=order),
            )
    # sub-pixel convolution (fused epilogue on cupy) against the reference conv
    rng = np.random.default_rng(3)
    for dtype, tol in (("float32", 1e-4), ("float64", 1e-10)):
        for layout in LAYOUTS:
            for order in ORDERS:
                x = rng.standard_normal((2, 3, 6, 5)).astype(dtype)
                w = rng.standard_normal((2 * 6, 3, 3, 3)).astype(dtype)
                b = rng.standard_normal(12).astype(dtype)
                expected = shuffle_gather(conv_ref(x, w, b, ((1, 1), (1, 1))), (2, 3), order=order)
                xin = (
                    x if layout == "channels_first" else np.ascontiguousarray(np.moveaxis(x, 1, -1))
                )
                y = to_host(
                    subpixel.sub_pixel_conv(
                        to_dev(xin), w, b, factor=(2, 3), order=order, layout=layout
                    )
                )
                if layout == "channels_last":
                    y = np.moveaxis(y, -1, 1)
                total += 1
                ok = y.shape == expected.shape and np.allclose(y, expected, rtol=tol, atol=tol)
                passed += ok
                if not ok and not first:
                    first = f"sub_pixel_conv {dtype} {layout} {order}"
    results.append((name, passed, total, first))


def check_cupy(quick):
    import cupy as cp

    matrix(
        "cupy matrix (GPU vs NumPy oracle)",
        cp.asarray,
        cp.asnumpy,
        DTYPES,
        quick,
        empty=lambda s: cp.empty(s, np.float32),
    )
    # 64-bit indexing: 2^31 + elements
    passed = total = 0
    shape = (2, 4, 2**14, 2**14)  # 2^31 elements: the 64-bit index kernels
    x = (cp.arange(math.prod(shape), dtype=cp.uint32) % 251).astype(cp.uint8).reshape(shape)
    y = subpixel.shuffle(x, 2)
    rng = np.random.default_rng(0)
    n, c, h, w = (cp.asarray(rng.integers(0, size, 4000)) for size in y.shape)  # spot checks
    expected = x[n, c * 4 + (h % 2) * 2 + (w % 2), h // 2, w // 2]
    total += 1
    passed += bool(cp.array_equal(y[n, c, h, w], expected))
    total += 1
    passed += bool(cp.array_equal(subpixel.unshuffle(y, 2), x))
    del x, y
    results.append(("cupy 64-bit indexing (2^31 elements)", passed, total, ""))


def check_torch(quick):
    import torch

    if not torch.cuda.is_available():
        results.append(("torch cuda", 0, 0, "no CUDA device visible to torch"))
        return

    def to_dev(a):
        return torch.from_numpy(np.ascontiguousarray(a)).cuda()

    matrix(
        "torch matrix (CUDA vs NumPy oracle)",
        to_dev,
        lambda t: t.cpu().numpy(),
        [d for d in DTYPES if d not in ("uint16", "uint32", "uint64")],
        quick,
        empty=lambda s: torch.empty(s, device="cuda"),
    )


def check_jax(quick):
    import jax

    gpus = [d for d in jax.devices() if d.platform == "gpu"]
    if not gpus:
        results.append(("jax gpu", 0, 0, "no GPU device visible to JAX"))
        return
    x64 = jax.config.read("jax_enable_x64")
    dtypes = [d for d in DTYPES if x64 or d not in ("int64", "uint64", "float64", "complex128")]
    matrix(
        "jax matrix (GPU vs NumPy oracle)",
        lambda a: jax.device_put(a, gpus[0]),
        np.asarray,
        dtypes,
        quick,
        supports_out=False,
    )


# ---------------------------------------------------------------------------
# benchmarks
# ---------------------------------------------------------------------------


def gpu_time(fn, sync, repeat=10):
    fn()
    sync()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


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


def dry_run(quick: bool) -> int:
    """The correctness part on the CPU (NumPy, and torch if installed): checks this
    script itself on a machine without a GPU."""
    matrix(
        "numpy (dry run)",
        np.asarray,
        np.asarray,
        DTYPES,
        quick,
        empty=lambda s: np.empty(s, np.float32),
    )
    if importlib.util.find_spec("torch"):
        import torch

        matrix(
            "torch cpu (dry run)",
            lambda a: torch.from_numpy(np.ascontiguousarray(a)),
            lambda t: t.numpy(),
            [d for d in DTYPES if d not in ("uint16", "uint32", "uint64")],
            quick,
            empty=lambda s: torch.empty(s),
        )
    for name, passed, total, note in results:
        print(f"{name}: {passed}/{total} {note}")
    return int(any(p != t for _, p, t, _ in results))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a third of the geometry cases")
    parser.add_argument("--skip-bench", action="store_true")
    parser.add_argument(
        "--dry-run-cpu", action="store_true", help="check this script on a CPU-only machine"
    )
    args = parser.parse_args()
    if args.dry_run_cpu:
        return dry_run(args.quick)
    import cupy as cp

    props = cp.cuda.runtime.getDeviceProperties(0)
    print(f"# subpixel GPU check, {datetime.datetime.now().isoformat(timespec='minutes')}")
    print(
        f"GPU: {props['name'].decode()}, CuPy {cp.__version__}, CUDA runtime {cp.cuda.runtime.runtimeGetVersion()}, "
        f"Python {sys.version.split()[0]}, NumPy {np.__version__}"
    )
    for part in (check_cupy, check_torch, check_jax):
        name = part.__name__.replace("check_", "")
        if name != "cupy" and importlib.util.find_spec(name) is None:
            results.append((name, 0, 0, "not installed"))
            continue
        try:
            part(args.quick)
        except Exception as exc:
            traceback.print_exc()
            results.append((name, 0, 1, f"crashed: {type(exc).__name__}: {exc}"))
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
    print("\nRESULT:", "MISMATCH" if bad else "all checked cases match the NumPy oracle")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
