"""Timing helpers shared by the ``subpixel bench`` command and ``benchmarks/``."""

from __future__ import annotations

import datetime
import os
import platform
import time
from collections.abc import Callable, Sequence


def best_time(
    fn: Callable[[], object],
    repeat: int = 7,
    warmup: int = 2,
    sync: Callable[[object], object] | None = None,
) -> float:
    """Best wall time of ``fn()`` in seconds over ``repeat`` runs; ``sync(result)``
    waits for asynchronous work (GPUs, JAX) before the clock stops."""
    if repeat < 1:
        raise ValueError(f"`repeat` must be at least 1. Received: repeat={repeat!r}")
    for _ in range(warmup):
        out = fn()
        if sync:
            sync(out)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        if sync:
            sync(out)
        best = min(best, time.perf_counter() - start)
    return best


def best_times(
    candidates: Sequence[Callable[..., object]],
    rounds: int = 4,
    repeat: int = 3,
    sync: Callable[[object], object] | None = None,
) -> list[float]:
    """Best wall time of each of ``candidates`` (callables doing the same work), side
    by side: rounds alternate between them, so that drift in the machine's speed hits
    all alike."""
    times = [float("inf")] * len(candidates)
    for r in range(rounds):
        for i, fn in enumerate(candidates):
            t = best_time(fn, repeat, warmup=2 if r == 0 else 0, sync=sync)
            times[i] = min(times[i], t)
    return times


def fastest(
    candidates: Sequence[Callable[..., object]],
    margin: float = 0.05,
    sync: Callable[[object], object] | None = None,
) -> int:
    """The index of the fastest of ``candidates``; ``0`` (the original) unless another
    is faster by more than ``margin``, so that noise never trades it for a slower form."""
    times = best_times(candidates, sync=sync)
    best = times.index(min(times))
    return best if times[best] < times[0] * (1 - margin) else 0


def machine_line() -> str:
    """Where and when a measurement ran (host, CPU, CPUs, Python, date)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{platform.node() or 'host'}: {platform.processor() or platform.machine()}, "
        f"{cpus} CPUs, Python {platform.python_version()}, "
        f"{datetime.date.today().isoformat()}"
    )
