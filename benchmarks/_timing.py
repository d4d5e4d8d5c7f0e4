"""The benchmark scripts' helpers: timing comes from the package (``subpixel bench``
uses the same), plus a Markdown table."""

from __future__ import annotations

from subpixel._core.timing import best_time, best_times, machine_line

__all__ = ["best_time", "best_times", "machine_line", "table"]


def table(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
