"""Exact rewrites of whole models: a model's transposed convolutions as their
sub-pixel (or phase-by-phase) equivalents, and pixel shuffles written with a
framework's own ops as subpixel's layers (so that ``lowering=`` applies to them).

One module per framework (:mod:`.torch`, :mod:`.keras`, :mod:`.flax`); import the
one you need (nothing is imported here).  The rules all three share are below.
"""

from __future__ import annotations

from typing import Any

from .._core import spec as _spec

__all__ = ["check_mode", "example_error"]


def check_mode(mode: str, example: Any, modes: tuple[str, ...]) -> None:
    """The ``mode`` of a framework's ``replace_conv_transpose``: one of ``modes``;
    ``"fastest"`` times the forms on an ``example`` input, which it then needs."""
    _spec.choice(mode, "mode", modes)
    if mode == "fastest" and example is None:
        raise ValueError("`mode='fastest'` needs an `example` input to time the layers on")


def example_error(e: Exception, example: Any) -> ValueError:
    """One line: ``example`` did not run through the model being rewritten."""
    import numpy as np

    shape = getattr(example, "shape", None)
    if shape is None and not isinstance(example, (list, tuple, dict, str)):
        shape = np.shape(example)
    line = (str(e).strip().splitlines() or [""])[0][:300]
    got = "" if shape is None else f" of shape {tuple(shape)}"
    return ValueError(
        f"`example` does not run through the model ({type(e).__name__}: {line}). "
        f"Received: example{got}"
    )
