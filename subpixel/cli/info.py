"""``subpixel info``: installed backends, their versions and devices."""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..backends import LIBRARY_BACKENDS, available_backends, backend_by_name, framework_version


def arguments(p: argparse.ArgumentParser) -> None:
    """``subpixel info`` takes no arguments."""


def run(args: argparse.Namespace) -> int:
    print(f"subpixel {__version__}, Python {sys.version.split()[0]}")
    installed = available_backends()
    for name in LIBRARY_BACKENDS:
        if name not in installed:
            print(f"  {name:<11} not installed")
            continue
        try:
            backend = backend_by_name(name)
            version = framework_version(name)
        except Exception as exc:  # report, don't fail: this command describes the machine
            print(f"  {name:<11} installed but fails to import: {exc}".splitlines()[0])
            continue
        try:
            devices = backend.describe_devices()
        except Exception as exc:
            devices = f"unusable: {type(exc).__name__}: {exc}".splitlines()[0]
        print(f"  {name:<11} {version:<12} devices: {devices}")
    return 0
