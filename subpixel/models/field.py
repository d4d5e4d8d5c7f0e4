"""Which part of an image a model's output pixel depends on, measured by running the
model, and the fixed grid of blocks that lets it run on part of an image and give
exactly the pixels it gives for the whole.

A convolutional network is *local* (an output pixel depends on the LR pixels within
some radius of it) and *translation-equivariant* (shifting the input shifts the
output), at least for shifts by a whole period (a network that pixel-unshuffles its
input by 2 first is equivariant under even shifts only).  Then a block with that
radius of context around it, starting on the period, gives the block's pixels of the
whole image.  :func:`measure` finds both by probes, with no gradients and no reading of
the graph, so it works for any runtime:

* **radius**: the model runs on a random image and on copies with one pixel changed
  (several positions, covering every phase up to 4; the pixel set to 0 or 1, and
  raised by 64, whose influence stands out of float32 rounding further out); the
  output pixels that change bound how far one input pixel reaches.  If a change reaches the probe's border at
  every size tried (48, 96, 192 LR pixels), the model has an operation over the whole
  image (global pooling, a channel attention like RCAN's, attention over the whole
  image) or a receptive field too wide to tile: it is not tiled.
* **period**: the model runs on the image cropped by ``p`` pixels at the top and the
  left; away from the borders the output must be the same pixels shifted by
  ``p * scale`` (within float32 rounding: the two runs multiply matrices of different
  shapes).  The smallest ``p`` of 1, 2, 4, 8, 16 that holds is the period.

The probes cannot prove locality (a pixel whose influence is below float32's
resolution on the probe looks independent); the context is therefore the measured
radius plus a quarter and two pixels.  ``tests/models/test_any_model.py`` checks the
result against one call on the whole image for the architectures people use.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["BLOCK", "Field", "Grid", "measure"]

BLOCK = 128  # LR pixels per side of a block, at least (more for a wide receptive field)
PROBE_SIZES = (48, 96, 192)  # LR probe sizes tried in turn
PERIODS = (1, 2, 4, 8, 16)
IMPULSE = 64.0  # added to one pixel (beside setting it to 0 or 1)
# LR offsets from the probe's centre of the pixels changed: every phase mod 2 and mod 4
_IMPULSES = ((0, 0), (1, 1), (2, 3), (3, 2), (1, 2), (2, 1))


@dataclass(frozen=True)
class Grid:
    """How a model runs on an image in parts with the result of the whole: blocks of
    ``block`` x ``block`` LR pixels on a fixed grid from the image's top-left corner,
    each run with ``context`` LR pixels around it (cut at the image border).  ``block``
    and ``context`` are multiples of ``period``; a block at the bottom or right border
    whose input is not a multiple of ``period`` is padded to one by repeating its last
    row or column (the same for every tiling, so the result never depends on it)."""

    block: int
    context: int
    period: int = 1

    @classmethod
    def for_radius(cls, radius: int, period: int = 1) -> Grid:
        """The grid for a measured ``radius``: the context is the radius plus a quarter
        and two pixels (a margin for influence too small for the probe to see), blocks
        at least :data:`BLOCK` and four contexts wide (so context costs at most 2.25x),
        all rounded up to the period."""
        context = _round_up(radius + radius // 4 + 2, period)
        block = _round_up(max(BLOCK, 4 * context), period)
        return cls(block, context, period)


@dataclass(frozen=True)
class Field:
    """What :func:`measure` found: the ``radius`` (LR pixels) an output pixel depends
    on and the ``period`` of translation equivariance, or ``reason``, why the model
    cannot run in blocks (then ``radius`` or ``period`` is None)."""

    radius: int | None
    period: int | None
    reason: str | None = None

    @property
    def grid(self) -> Grid | None:
        """The block grid that runs the model exactly, or None (see ``reason``)."""
        if self.reason is not None or self.radius is None or self.period is None:
            return None
        return Grid.for_radius(self.radius, self.period)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


Model = Callable[[np.ndarray], np.ndarray]  # (1, C, h, w) float32 -> (1, C, h*r, w*r)


class ProbeError(Exception):
    """The model did not run on a probe input (its message says why)."""


def _influence(model: Model, base: np.ndarray, out0: np.ndarray, scale: int) -> tuple[int, bool]:
    """The largest LR distance at which changing one pixel near the centre changes the
    output, and whether that change reached within 3 pixels of the probe's border."""
    size = base.shape[-1]
    centre = size // 2
    radius, reached = 0, False
    for (dy, dx), big in itertools.product(_IMPULSES, (False, True)):
        y, x = centre + dy, centre + dx
        changed = base.copy()
        if big:  # far out of range: its influence stands out of float32 rounding further away
            changed[..., y, x] += IMPULSE
        else:  # in range: what an image can hold
            changed[..., y, x] = np.where(base[..., y, x] < 0.5, 1.0, 0.0)
        try:
            diff = np.any(model(changed) != out0, axis=(0, 1))
        except ValueError:  # NaN or infinity from an input out of range: no reading
            continue
        rows, cols = np.flatnonzero(diff.any(axis=1)), np.flatnonzero(diff.any(axis=0))
        if rows.size == 0:
            continue
        top, bottom = rows[0] // scale, rows[-1] // scale
        left, right = cols[0] // scale, cols[-1] // scale
        radius = max(radius, y - top, bottom - y, x - left, right - x)
        if min(top, left) < 3 or max(bottom, right) > size - 4:
            reached = True
    return int(radius), reached


def _period(model: Model, base: np.ndarray, out0: np.ndarray, scale: int, radius: int) -> int | str:
    """The smallest shift of :data:`PERIODS` under which the model is equivariant on
    the probe; else why not: ``"room"`` (the probe is too small to compare the larger
    shifts), ``"sizes"`` (no shifted size ran), ``"differs"``."""
    size = base.shape[-1]
    tolerance = 1e-4 * (1.0 + float(np.abs(out0).max()))  # float32 rounding of two shapes
    ran = False
    for p in PERIODS:
        lo, hi = p + radius, size - radius  # LR rows whose context is inside both inputs
        if hi - lo < 4:
            return "room"
        try:
            shifted = model(np.ascontiguousarray(base[..., p:, p:]))
        except ProbeError:
            continue  # this size is not one the model takes (e.g. odd, before an unshuffle)
        if shifted.shape[-2:] != ((size - p) * scale, (size - p) * scale):
            continue
        ran = True
        a = out0[..., lo * scale : hi * scale, lo * scale : hi * scale]
        b = shifted[..., (lo - p) * scale : (hi - p) * scale, (lo - p) * scale : (hi - p) * scale]
        if float(np.abs(a - b).max()) <= tolerance:
            return p
    return "differs" if ran else "sizes"


def _base(
    model: Model, rng: np.random.Generator, channels: int, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """A random probe of about ``size`` pixels the model takes (``size``, or the next
    multiple of 32 or 64, for networks that halve their input several times) and its
    output."""
    error: ProbeError | None = None
    for n in dict.fromkeys((size, _round_up(size, 32), _round_up(size, 64))):
        base = rng.random((1, channels, n, n), dtype=np.float32)
        try:
            return base, model(base)
        except ProbeError as exc:
            error = error or exc
    assert error is not None
    raise error


def measure(model: Model, channels: int, scale: int, *, seed: int = 0) -> Field:
    """Probe ``model`` (``(1, channels, h, w)`` float32 in [0, 1] -> ``(1, channels,
    h * scale, w * scale)``; it raises :class:`ProbeError` for a size it does not take)
    for its receptive field and period (see the module's docstring)."""
    rng = np.random.default_rng(seed)
    reason = "far"
    for size in PROBE_SIZES:
        try:
            base, out0 = _base(model, rng, channels, size)
        except ProbeError as exc:
            return Field(None, None, f"it does not run on a {size}x{size} probe ({exc})")
        radius, reached = _influence(model, base, out0, scale)
        if reached:
            continue
        period = _period(model, base, out0, scale, radius)
        if isinstance(period, int):
            return Field(radius, period)
        if period == "room":  # a larger probe compares the larger shifts
            reason = "room"
            continue
        if period == "sizes":
            return Field(
                radius,
                None,
                "it did not run on the image cropped by 1, 2, 4, 8 or 16 pixels, so blocks "
                "cannot start where the grid needs them",
            )
        return Field(
            radius,
            None,
            "its output is not the same when the image is shifted by 1, 2, 4, 8 or 16 "
            "pixels (it depends on where a pixel is, not only on its neighbours)",
        )
    if reason == "room":
        return Field(
            None,
            None,
            f"its period could not be measured on probes of up to {PROBE_SIZES[-1]} pixels",
        )
    far = PROBE_SIZES[-1] // 2 - 4
    return Field(
        None,
        None,
        f"changing one pixel changes output pixels more than {far} LR pixels away (an "
        "operation over the whole image such as global pooling, channel attention or "
        "global attention, or a receptive field too wide to tile)",
    )
