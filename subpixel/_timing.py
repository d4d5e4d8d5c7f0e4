"""Timing helpers shared by the ``subpixel bench`` command and ``benchmarks/``."""

from __future__ import annotations

import datetime
import os
import platform
import time
from collections.abc import Callable


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


def machine_line() -> str:
    """Where and when a measurement ran (host, CPU, CPUs, Python, date)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{platform.node() or 'host'}: {platform.processor() or platform.machine()}, "
        f"{cpus} CPUs, Python {platform.python_version()}, "
        f"{datetime.date.today().isoformat()}"
    )
