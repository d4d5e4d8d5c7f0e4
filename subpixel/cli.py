"""The ``subpixel`` command (also ``python -m subpixel``).

subpixel info     installed backends, their versions and devices
subpixel check    every installed backend against the NumPy reference (default)
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from . import __version__
from ._dispatch import BACKEND_NAMES, available_backends, backend_by_name


def _framework_version(name: str) -> str:
    module = importlib.import_module(name)
    return getattr(module, "__version__", "?")


def _devices(name: str) -> str:
    try:
        if name == "torch":
            import torch

            gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
            return "cpu" + (f", cuda x{gpus}" if gpus else "")
        if name == "jax":
            import jax

            return ", ".join(sorted({d.platform for d in jax.devices()}))
        if name == "tensorflow":
            import tensorflow as tf

            return ", ".join(
                sorted({d.device_type.lower() for d in tf.config.list_logical_devices()})
            )
        if name == "cupy":
            import cupy

            return f"cuda x{cupy.cuda.runtime.getDeviceCount()}"
    except Exception as exc:
        return f"unusable: {type(exc).__name__}: {exc}".splitlines()[0]
    return "cpu"


def cmd_info(args: argparse.Namespace) -> int:
    print(f"subpixel {__version__}, Python {sys.version.split()[0]}")
    installed = available_backends()
    for name in BACKEND_NAMES:
        if name not in installed:
            print(f"  {name:<11} not installed")
            continue
        try:
            version = _framework_version(name)
        except Exception as exc:
            print(f"  {name:<11} installed but fails to import: {exc}")
            continue
        print(f"  {name:<11} {version:<12} devices: {_devices(name)}")
    return 0


# Cases for `check`: (op, numpy shape, factor, spatial_dims, layout)
_CHECK_CASES = [
    ("shuffle", (2, 12, 3, 4), (2, 3), 2, "channels_first"),
    ("shuffle", (2, 3, 4, 12), (2, 3), 2, "channels_last"),
    ("unshuffle", (2, 2, 6, 9), 3, 2, "channels_first"),
    ("unshuffle", (3, 8, 2), 2, 1, "channels_last"),
    ("shuffle", (1, 16, 2, 1, 3), 2, 3, "channels_first"),
]


def _known_answer() -> list[str]:
    """The NumPy reference on the worked example of docs/conventions.md."""
    import numpy as np

    from .ops import shuffle

    x = np.arange(8).reshape(1, 8, 1, 1)
    problems = []
    if shuffle(x, 2)[0].tolist() != [[[0, 1], [2, 3]], [[4, 5], [6, 7]]]:
        problems.append("numpy CRD differs from the worked example")
    if shuffle(x, 2, order="DCR")[0].tolist() != [[[0, 2], [4, 6]], [[1, 3], [5, 7]]]:
        problems.append("numpy DCR differs from the worked example")
    return problems


def cmd_check(args: argparse.Namespace) -> int:
    import numpy as np

    from . import ops

    names = args.backend or available_backends()
    problems = _known_answer()
    rows = []
    rng = np.random.default_rng(0)
    for name in names:
        try:
            backend = backend_by_name(name)
        except Exception as exc:
            rows.append((name, "-", f"unusable: {type(exc).__name__}: {exc}".splitlines()[0]))
            continue
        try:
            backend.to_numpy(backend.from_numpy(np.zeros(1, np.float32)))
        except Exception as exc:
            rows.append(
                (
                    name,
                    "-",
                    f"skipped, cannot run here: {type(exc).__name__}: {exc}".splitlines()[0],
                )
            )
            continue
        passed = total = 0
        failures: list[str] = []
        for op, shape, factor, d, layout in _CHECK_CASES:
            for order in ("CRD", "DCR"):
                a = rng.permutation(int(np.prod(shape))).astype(np.float32).reshape(shape)
                kw = dict(spatial_dims=d, layout=layout, order=order)
                expected = getattr(ops, op)(a, factor, **kw)
                total += 1
                try:
                    got = backend.to_numpy(getattr(ops, op)(backend.from_numpy(a), factor, **kw))
                    if got.shape == expected.shape and np.array_equal(got, expected):
                        passed += 1
                    else:
                        failures.append(f"{op} {layout} {order}")
                except Exception as exc:
                    failures.append(f"{op} {layout} {order}: {type(exc).__name__}: {exc}")
        status = "ok" if passed == total else "MISMATCH: " + "; ".join(failures[:3])
        rows.append((name, f"{passed}/{total}", status))
    width = max(len(r[0]) for r in rows) if rows else 7
    print(f"{'backend':<{width}}  cases   result")
    for name, score, status in rows:
        print(f"{name:<{width}}  {score:<7} {status}")
    for p in problems:
        print(f"error: {p}")
    bad = problems or [r for r in rows if r[2] != "ok" and not r[2].startswith("skipped")]
    print("all backends agree with the NumPy reference" if not bad else "check FAILED")
    return 1 if bad else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="subpixel",
        description="Pixel shuffle / sub-pixel convolution across NumPy, CuPy, PyTorch, TensorFlow and JAX.",
    )
    parser.add_argument("--version", action="version", version=f"subpixel {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("info", help="installed backends, versions and devices")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser(
        "check", help="compare every installed backend with the NumPy reference (default)"
    )
    p.add_argument(
        "--backend",
        action="append",
        choices=BACKEND_NAMES,
        help="check only this backend (repeatable)",
    )
    p.set_defaults(func=cmd_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["check", *(argv or [])])
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
