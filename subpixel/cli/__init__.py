"""The ``subpixel`` command (also ``python -m subpixel``), one module per command.

subpixel info     installed backends, versions and devices
subpixel check    compare every installed backend with the NumPy reference (default)
subpixel upscale  super-resolve an image with the bundled ESPCN or a model file
subpixel bench    shuffle throughput against a plain copy and the native ops
subpixel convert  port sub-pixel conv weights between files, frameworks and orders
subpixel export   export the bundled ESPCN or a PyTorch model to ONNX or LiteRT/TFLite
                  and check it runs right
subpixel audit    list each depth-to-space of an .onnx/.tflite file with the order it
                  implements

Every problem with what the user passed is one line ``subpixel: error: ...`` and
exit status 2; a failed check exits with 1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from typing import NoReturn

from .. import __version__
from ._common import UserError

__all__ = ["UserError", "build_parser", "main"]

# one module of this package per command, in the order of `subpixel --help`, with its
# line there: each module has arguments(parser), which declares the command's
# arguments, and run(args) -> exit status
COMMANDS = {
    "info": "installed backends, versions and devices",
    "check": "compare every installed backend with the NumPy reference (default)",
    "upscale": "super-resolve an image with the bundled ESPCN or a model file",
    "bench": "shuffle throughput against a plain copy and the native ops",
    "convert": "port sub-pixel conv weights between files, frameworks and orders",
    "export": "export the bundled ESPCN or a PyTorch model to ONNX or LiteRT/TFLite and check "
    "it runs right",
    "audit": "list each depth-to-space of an .onnx/.tflite file with the order it implements",
}


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in the one-line form of every other error."""

    def error(self, message: str) -> NoReturn:
        prog = self.prog.removeprefix("subpixel").strip()
        self.exit(2, f"subpixel: error: {prog + ': ' if prog else ''}{message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="subpixel",
        description="Pixel shuffle / sub-pixel convolution across NumPy, CuPy, PyTorch, "
        "TensorFlow and JAX.",
    )
    parser.add_argument("--version", action="version", version=f"subpixel {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, line in COMMANDS.items():
        command = importlib.import_module(f"{__name__}.{name}")
        p = sub.add_parser(name, help=line)
        command.arguments(p)
        p.set_defaults(run=command.run)
    return parser


def _error(message: str) -> int:
    print(f"subpixel: error: {message}".splitlines()[0], file=sys.stderr)
    return 2


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds: temporary output files are removed


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up chatter
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["check", *(argv if argv is not None else sys.argv[1:])])
    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if on_main else None
    try:
        # a command reports in its own words: the libraries' warnings would add lines
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            status = args.run(args)
        sys.stdout.flush()  # (a reader gone away is seen here, not at exit)
        return status
    except (UserError, ValueError) as exc:  # ValueError: the library's contract messages
        return _error(str(exc))
    except BrokenPipeError:  # the reader of the output went away (`| head`): as `cat` does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (no flush error)
        return 128 + signal.SIGPIPE
    except OSError as exc:  # unreadable input, unwritable output, a full disk
        return _error(f"{exc.filename}: {exc.strerror or exc}" if exc.filename else str(exc))
    except MemoryError:
        return _error("out of memory (is the input much larger than intended?)")
    except KeyboardInterrupt:
        print("subpixel: interrupted", file=sys.stderr)
        return 130
    finally:
        if on_main:
            signal.signal(signal.SIGTERM, previous)
