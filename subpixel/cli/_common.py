"""What every command shares: one-line user errors, input and output paths that
never lose data, backends checked before any work, positive-number arguments."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..backends import LIBRARY_BACKENDS, available_backends, backend_by_name


class UserError(Exception):
    """A problem with the command's input: reported in one line, exit status 2."""


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return value


def input_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{path}: no such file" if not p.exists() else f"{path}: not a file")
    return p


def output_file(
    path: str | os.PathLike, *, inputs: list[Any], force: bool, folder_ok: bool = False
) -> Path:
    """``path`` checked before anything is computed or written: not one of ``inputs``,
    not an existing file unless ``force``, in an existing folder (``folder_ok``: the
    output is itself a folder, a Zarr store)."""
    out = Path(path)
    for source in inputs:
        if source is not None and _same_file(out, Path(source)):
            raise UserError(f"{path}: the output is the input file {source}; choose another name")
    if out.is_dir() and not folder_ok:
        raise UserError(f"{path}: is a folder")
    if out.exists() and not force:
        raise UserError(f"{path}: exists; pass --force to overwrite it")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"{path}: no such folder {folder}")
    if not os.access(folder, os.W_OK):
        raise UserError(f"{path}: folder {folder} is not writable")
    return out


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def usable_backend(name: str, *, requested: bool = True) -> Any:
    """The backend called ``name`` after a round trip of a small array through it;
    ``UserError`` (saying why) if it is not installed or cannot run here."""
    if name not in LIBRARY_BACKENDS:
        raise UserError(f"unknown backend {name!r} (known: {', '.join(LIBRARY_BACKENDS)})")
    if name not in available_backends():
        raise UserError(
            f"backend {name!r} is not installed here (installed: {', '.join(available_backends())})"
        )
    import numpy as np

    try:
        backend = backend_by_name(name)
        backend.to_numpy(backend.from_numpy(np.zeros(1, np.float32)))
    except Exception as exc:  # a framework that imports but cannot run (no GPU, no driver)
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise UserError(f"backend {name!r} cannot run here ({reason})") from None
    return backend


def add_force(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="overwrite an existing output file")


def add_backends(parser: argparse.ArgumentParser, help: str) -> None:
    """``--backend NAME``, repeatable: the library backends a command works on."""
    parser.add_argument("--backend", action="append", choices=LIBRARY_BACKENDS, help=help)


@contextlib.contextmanager
def interrupts_reported() -> Iterator[None]:
    """Ctrl-C (SIGINT) inside the block is an interruption, whatever a library made of
    the ``KeyboardInterrupt`` it raised (PyTorch's exporter, interrupted in one of its
    lazy imports, raises ``AttributeError`` instead): the command then reports
    "interrupted" (exit 130), and the block's temporary files are gone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    hit: list[int] = []

    def handler(signum: int, frame: object) -> None:
        hit.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    except BaseException:
        if hit:
            raise KeyboardInterrupt from None
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
    if hit:
        raise KeyboardInterrupt
