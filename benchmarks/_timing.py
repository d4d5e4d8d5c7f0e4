"""Small timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import datetime
import os
import platform
import time
from collections.abc import Callable


def best_time(fn: Callable[[], object], repeat: int = 7, warmup: int = 2, sync=None) -> float:
    """Best wall time of ``fn()`` in seconds over ``repeat`` runs."""
    for _ in range(warmup):
        fn()
        if sync:
            sync()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        best = min(best, time.perf_counter() - start)
    return best


def machine_line() -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{platform.node() or 'host'}: {platform.processor() or platform.machine()}, "
        f"{cpus} CPUs, Python {platform.python_version()}, "
        f"{datetime.date.today().isoformat()}"
    )


def table(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
