"""Old spellings kept for one release: each still works, and warns with a
``DeprecationWarning`` that names the new spelling.

A module whose public names moved gets a module ``__getattr__`` from
:func:`moved_names`; a method or function kept under its old name calls :func:`warn`
and then does what the new spelling does.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["REMOVED_IN", "moved_names", "warn"]

REMOVED_IN = "0.4"  # the release that drops the spellings deprecated in 0.3


def warn(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn that ``old`` is deprecated in favour of ``new`` (both as a user writes them)."""
    warnings.warn(
        f"{old} is deprecated: use {new} (the old spelling goes in subpixel {REMOVED_IN})",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def moved_names(module: str, moved: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for names that moved: ``moved`` maps each old name of
    ``module`` to ``"new.module:name"`` (``name`` may be dotted: ``Class.method``).
    Reading an old name warns, then imports the new module (by name: the old room
    never imports the new one) and returns the name from there."""

    def __getattr__(name: str) -> Any:
        target = moved.get(name)
        if target is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        where, _, path = target.partition(":")
        warn(f"{module}.{name}", f"{where}.{path}")
        found: Any = importlib.import_module(where)
        for attr in path.split("."):
            found = getattr(found, attr)
        return found

    return __getattr__
