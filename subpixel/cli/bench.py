"""``subpixel bench``: shuffle throughput against a plain copy and the native ops."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from .._core.timing import best_time
from ..backends import available_backends
from ..backends._base import Backend
from ._common import (
    UserError,
    add_backends,
    add_force,
    output_file,
    positive_int,
    usable_backend,
)


@runtime_checkable
class Baselines(Protocol):
    """What this command asks of a backend beside the operations' contract (the
    backends of :mod:`subpixel.backends` all have it): zero-argument callables to time a
    shuffle of ``x`` (channels_first, factor 2) against: ``"copy"`` (the same bytes
    copied) and, where the library has one, ``"native"`` (its own pixel shuffle /
    depth-to-space)."""

    def bench_baselines(self, x: Any) -> dict[str, Callable[[], object]]: ...


Row = tuple[str, str, float, float, float | None]  # backend, order, s, / copy, / native


def measure(backends: list[tuple[str, Backend[Any]]], a: Any, repeat: int) -> list[Row]:
    """The best time of a CRD and a DCR shuffle (factor 2, channels_first) of ``a`` on
    each backend, and its ratios to the backend's :class:`Baselines`."""
    from .. import ops

    rows: list[Row] = []
    for name, backend in backends:
        if not isinstance(backend, Baselines):
            raise UserError(f"backend {name!r} has no baselines to time a shuffle against")
        x = backend.from_numpy(a)
        baselines = backend.bench_baselines(x)
        sync = backend.synchronize

        def timed(fn: Callable[[], object], sync: Callable[[object], object] = sync) -> float:
            return best_time(fn, repeat, warmup=1, sync=sync)

        t_copy = timed(baselines["copy"])
        t_native = timed(baselines["native"]) if "native" in baselines else None
        for order in ("CRD", "DCR"):
            t = timed(functools.partial(ops.shuffle, x, 2, order=order))
            rows.append((name, order, t, t / t_copy, None if t_native is None else t / t_native))
    return rows


def arguments(p: argparse.ArgumentParser) -> None:
    add_backends(
        p, help="repeatable; default: all installed (those that cannot run here are skipped)"
    )
    p.add_argument(
        "--shape",
        type=positive_int,
        nargs=4,
        default=(4, 256, 128, 128),
        metavar=("N", "C", "H", "W"),
        help="the input (channels_first); C divisible by 4",
    )
    p.add_argument("--repeat", type=positive_int, default=5, help="runs per timing (best is kept)")
    p.add_argument(
        "--plot",
        default=None,
        metavar="FILE.png",
        help="bar chart of the ratios, a .png file (needs matplotlib)",
    )
    add_force(p)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    shape = tuple(args.shape)
    if shape[1] % 4:
        raise UserError(
            f"--shape: C={shape[1]} must be divisible by 4 (factor 2 in two dimensions)"
        )
    if args.plot:
        if not args.plot.lower().endswith(".png"):
            raise UserError(f"--plot {args.plot}: the chart is a PNG image; name it .png")
        plot_path = output_file(args.plot, inputs=[], force=args.force)
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise UserError("--plot needs matplotlib (pip install 'subpixel[plot]')") from None
    requested = args.backend is not None
    names = args.backend or available_backends()
    backends = []
    for name in names:
        try:
            backends.append((name, usable_backend(name)))
        except UserError as exc:
            if requested:
                raise
            print(f"{name}: skipped ({exc})")
    a = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    rows = measure(backends, a, args.repeat)
    nbytes = a.nbytes
    print(
        f"shuffle of {shape} float32 ({nbytes / 2**20:.1f} MiB), factor 2, channels_first, "
        f"best of {args.repeat}"
    )
    print(f"{'backend':<11} {'order':<5} {'ms':>8} {'GB/s':>7} {'/ copy':>7} {'/ native':>9}")
    for name, order, t, r_copy, r_native in rows:
        native = "-" if r_native is None else f"{r_native:.2f}"
        print(
            f"{name:<11} {order:<5} {t * 1e3:8.2f} {2 * nbytes / t / 1e9:7.1f} {r_copy:7.2f} {native:>9}"
        )
    if args.plot:
        from .._core.files import atomic_write

        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.bar([f"{n}\n{o}" for n, o, *_ in rows], [r[3] for r in rows], color="tab:blue")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_ylabel("time / plain copy")
        ax.set_title(f"subpixel.shuffle {shape}, factor 2")
        fig.tight_layout()
        atomic_write(plot_path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
        print(f"wrote {args.plot}")
    return 0
