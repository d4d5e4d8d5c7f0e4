"""A strided transposed convolution as one low-resolution convolution per output phase.

Along one axis, output ``o = s * i + t - p`` of a transposed convolution (stride ``s``,
padding ``p``, kernel taps ``t``) takes input ``i``.  The outputs of one phase
``o = s * m + q`` use only the taps ``t = r, r + s, r + 2s, ...`` with
``r = (q + p) % s``, each on input ``m + c - n`` (``c = (q + p) // s``): a plain
convolution with those taps reversed, computing exactly that phase's outputs and no
more.  The ``s`` phases interleaved (a pixel shuffle) are the transposed
convolution; along ``d`` axes there are ``s**d`` phases, the products of each axis's.
Pure Python: the frameworks' layers slice their kernels and inputs with it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AxisPhase", "AxisPlan", "axis_plan"]


@dataclass(frozen=True)
class AxisPhase:
    """One phase along one axis: outputs ``q, q + s, ...`` (``count`` of them), from
    the kernel's taps ``first_tap::s`` reversed (``taps`` of them) over the padded
    input's ``start : start + count + taps - 1``."""

    q: int
    count: int
    first_tap: int
    taps: int
    start: int


@dataclass(frozen=True)
class AxisPlan:
    """All phases of one axis, and the zero padding of the input they share."""

    out_size: int
    pad_before: int
    pad_after: int
    phases: tuple[AxisPhase, ...]


def axis_plan(
    size: int, kernel: int, stride: int, padding: int = 0, output_padding: int = 0
) -> AxisPlan:
    """The phases of a transposed convolution along one axis of ``size`` inputs.

    >>> plan = axis_plan(4, kernel=4, stride=2, padding=1)  # DCGAN's k4 s2 p1
    >>> plan.out_size, [(ph.q, ph.count, ph.taps) for ph in plan.phases]
    (8, [(0, 4, 2), (1, 4, 2)])
    """
    out_size = (size - 1) * stride - 2 * padding + kernel + output_padding
    raw = []
    for q in range(stride):
        r, c = (q + padding) % stride, (q + padding) // stride
        count = len(range(q, max(out_size, 0), stride))
        taps = len(range(r, kernel, stride))
        raw.append((q, count, r, taps, c - taps + 1))  # first input, unpadded
    live = [ph for ph in raw if ph[1] and ph[3]]
    before = max([0] + [-first for *_, first in live])
    after = max([0] + [first + count + taps - 1 - size for _, count, _, taps, first in live])
    phases = tuple(AxisPhase(q, count, r, taps, first + before) for q, count, r, taps, first in raw)
    return AxisPlan(out_size, before, after, phases)
