"""What a data movement does, decided from its index map alone.

An index map is the output of a chain of ops run on ``arange`` of the input's size:
each output element holds the flat index of the input element it came from.  The
map is matched against definitions, not against ways of writing an op:

- a **shuffle** (depth-to-space) keeps every batch index, puts output pixel ``y``
  at input pixel ``y // r`` and fills the ``r``-block of output channel ``c`` from
  input channels given by one table ``T[c, b]`` (``b``: the position in the block,
  row-major).  ``T = c * R + b`` is CRD, ``T = b * C + c`` is DCR; another
  bijective table is a shuffle of order ``"other"``.  An **unshuffle** is a map
  whose inverse is a shuffle.
- a **transpose** takes every output axis from one input axis; moving the channel
  axis between first and last is a **layout** change.
- a **channel permutation** (ShuffleNet's channel shuffle, a constant gather) keeps
  every element's batch and pixel and permutes the channels.
- a **flatten** keeps the batch axis and flattens the others in some axis order.

>>> import numpy as np
>>> from subpixel import shuffle
>>> x = np.arange(2 * 12 * 3 * 5).reshape(2, 12, 3, 5)
>>> m = classify(shuffle(x, 2, order="DCR"), x.shape)
>>> m.kind, m.factor, m.order, m.layout
('shuffle', (2, 2), 'DCR', 'channels_first')
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .._core.spec import Layout

__all__ = ["Kind", "Movement", "classify"]

Kind = Literal[
    "identity",
    "reshape",
    "transpose",
    "layout",
    "flatten",
    "unflatten",
    "channel_permutation",
    "shuffle",
    "unshuffle",
    "selection",
    "other",
]

_LAYOUTS: tuple[Layout, Layout] = ("channels_first", "channels_last")


@dataclass(frozen=True)
class Movement:
    """What a chain of data-movement ops does.

    ``factor``, ``order`` (``"CRD"``, ``"DCR"`` or ``"other"``) and the layouts are
    set for shuffles and unshuffles; ``layout`` is the layout of the side whose
    channels hold the blocks (the input of a shuffle, the output of an unshuffle),
    ``other_layout`` the other side's (the same unless the chain also changes
    layout).  ``table`` is ``T[c, b]`` flattened (shuffles) or the source channel of
    each output channel (channel permutations); ``axes`` the input axis of each
    output axis (transposes) or the input axes in flattening order (flattens).
    ``blocks`` is False for a map whose shapes are those of a shuffle but whose
    elements leave their blocks (no channel order explains it)."""

    kind: Kind
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    factor: tuple[int, ...] | None = None
    order: str | None = None
    layout: Layout | None = None
    other_layout: Layout | None = None
    table: tuple[int, ...] | None = None
    axes: tuple[int, ...] | None = None
    blocks: bool = True

    @property
    def is_site(self) -> bool:
        """A depth-to-space or space-to-depth: what the audit reports."""
        return self.kind in ("shuffle", "unshuffle")

    def describe(self) -> str:
        if self.is_site:
            f = "x".join(map(str, self.factor or ()))
            text = f"{self.kind} x{f} {self.order} {self.layout}"
            if self.other_layout != self.layout:
                text += f" (and to {self.other_layout})"
            return text
        if self.kind in ("transpose", "layout", "flatten"):
            return f"{self.kind} {self.axes}"
        return self.kind


def _coords(shape: tuple[int, ...]) -> list[np.ndarray]:
    return [np.asarray(c).ravel() for c in np.indices(shape, sparse=False)] if shape else []


def _is_permutation(flat: np.ndarray, n: int) -> bool:
    if flat.size != n or (n and (flat.min() < 0 or flat.max() >= n)):
        return False
    return bool(np.all(np.bincount(flat, minlength=n) == 1)) if n else True


def classify(index: np.ndarray, in_shape: tuple[int, ...], hint: Layout | None = None) -> Movement:
    """The :class:`Movement` an index map ``index`` (shaped as the output, holding flat
    indices into an array of ``in_shape``) performs.  ``hint`` is the layout tried
    first where the shapes fit more than one reading."""
    in_shape, out_shape = tuple(int(s) for s in in_shape), tuple(index.shape)
    n = math.prod(in_shape)
    flat = np.asarray(index, np.int64).ravel()
    if not _is_permutation(flat, n):
        return Movement("selection", in_shape, out_shape)
    in_order = bool(np.array_equal(flat, np.arange(n)))
    if in_order and (in_shape == out_shape or len(in_shape) != len(out_shape)):
        return _in_memory_order(in_shape, out_shape)
    src = list(np.unravel_index(flat, in_shape))
    dst = _coords(out_shape)
    layouts = _LAYOUTS if hint != "channels_last" else _LAYOUTS[::-1]
    found = _transpose(src, dst, in_shape, out_shape) or _channel_permutation(
        src, dst, in_shape, out_shape, layouts
    )
    if found is not None:
        return found
    readings = _shuffle(src, dst, in_shape, out_shape, layouts)
    inverse = np.empty_like(flat)
    inverse[flat] = np.arange(n)
    back = _shuffle(
        list(np.unravel_index(inverse, out_shape)), _coords(in_shape), out_shape, in_shape, layouts
    )
    readings += [
        Movement(
            "unshuffle",
            in_shape,
            out_shape,
            m.factor,
            m.order,
            m.layout,
            m.other_layout,
            m.table,
            blocks=m.blocks,
        )
        for m in back
    ]
    # a reading whose elements stay in their blocks, in one layout, the preferred one first
    readings.sort(
        key=lambda m: (
            not m.blocks,
            m.layout != m.other_layout,
            layouts.index(m.layout or layouts[0]),
        )
    )
    site = readings[0] if readings else None
    if site is not None and (site.blocks or not in_order):
        return site  # (a 1-D channels-last shuffle of one channel keeps memory order)
    if in_order:
        return _in_memory_order(in_shape, out_shape)
    return _flatten(flat, in_shape, out_shape) or Movement("other", in_shape, out_shape)


def _in_memory_order(in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> Movement:
    if in_shape == out_shape:
        return Movement("identity", in_shape, out_shape)
    if len(out_shape) == 2 and len(in_shape) >= 3 and out_shape[0] == in_shape[0]:
        return Movement("flatten", in_shape, out_shape, axes=tuple(range(1, len(in_shape))))
    if len(in_shape) == 2 and len(out_shape) >= 3 and out_shape[0] == in_shape[0]:
        return Movement("unflatten", in_shape, out_shape)
    return Movement("reshape", in_shape, out_shape)


def _transpose(src, dst, in_shape, out_shape) -> Movement | None:
    """Every output axis is one input axis (sizes equal, coordinates equal)."""
    if len(in_shape) != len(out_shape):
        return None
    axes: list[int] = []
    for j, size in enumerate(out_shape):
        match = next(
            (
                i
                for i in range(len(in_shape))
                if i not in axes and in_shape[i] == size and np.array_equal(src[i], dst[j])
            ),
            None,
        )
        if match is None:
            return None
        axes.append(match)
    r = len(axes)
    if r >= 3 and tuple(axes) in ((0, *range(2, r), 1), (0, r - 1, *range(1, r - 1))):
        first = axes[1] == r - 1  # the last input axis moves to position 1
        return Movement(
            "layout",
            in_shape,
            out_shape,
            layout="channels_last" if first else "channels_first",
            other_layout="channels_first" if first else "channels_last",
            axes=tuple(axes),
        )
    return Movement("transpose", in_shape, out_shape, axes=tuple(axes))


def _parts(shape: tuple[int, ...], layout: Layout) -> tuple[int, list[int]]:
    """(channel axis, spatial axes) of a tensor with one batch axis."""
    r = len(shape)
    return (1, list(range(2, r))) if layout == "channels_first" else (r - 1, list(range(1, r - 1)))


def _channel_permutation(src, dst, in_shape, out_shape, layouts) -> Movement | None:
    if in_shape != out_shape or len(in_shape) < 2:
        return None
    for layout in layouts:
        ch, _ = _parts(in_shape, layout)
        if all(np.array_equal(src[a], dst[a]) for a in range(len(in_shape)) if a != ch):
            table = np.full(in_shape[ch], -1)
            table[dst[ch]] = src[ch]
            if np.array_equal(table[dst[ch]], src[ch]):
                return Movement(
                    "channel_permutation",
                    in_shape,
                    out_shape,
                    layout=layout,
                    other_layout=layout,
                    table=tuple(int(t) for t in table),
                )
    return None


def _shuffle(src, dst, in_shape, out_shape, layouts) -> list[Movement]:
    """The map read as a shuffle in each pair of layouts its shapes allow: those
    whose elements stay in their blocks, else those whose shapes fit
    (``blocks=False``)."""
    if len(in_shape) != len(out_shape) or len(in_shape) < 3 or in_shape[0] != out_shape[0]:
        return []
    found: list[Movement] = []
    fits: list[Movement] = []
    for lin, lout in itertools.product(layouts, layouts):
        ci, si = _parts(in_shape, lin)
        co, so = _parts(out_shape, lout)
        S_in, S_out = [in_shape[a] for a in si], [out_shape[a] for a in so]
        if any(o % i or o < i for i, o in zip(S_in, S_out)):
            continue
        r = tuple(o // i for i, o in zip(S_in, S_out))
        R, C = math.prod(r), out_shape[co]
        if R < 2 or in_shape[ci] != C * R:
            continue
        block = np.zeros_like(dst[0])
        ok = np.array_equal(src[0], dst[0])
        for k, (a_in, a_out) in enumerate(zip(si, so)):
            ok = ok and np.array_equal(src[a_in], dst[a_out] // r[k])
            block = block * r[k] + dst[a_out] % r[k]
        if ok:
            table = np.full((C, R), -1)
            table[dst[co], block] = src[ci]
            if np.array_equal(table[dst[co], block], src[ci]) and _is_permutation(
                table.ravel(), C * R
            ):
                c, b = np.arange(C)[:, None], np.arange(R)[None, :]
                order = (
                    "CRD"
                    if np.array_equal(table, c * R + b)
                    else "DCR"
                    if np.array_equal(table, b * C + c)
                    else "other"
                )
                found.append(
                    Movement(
                        "shuffle",
                        in_shape,
                        out_shape,
                        r,
                        order,
                        lin,
                        lout,
                        tuple(int(t) for t in table.ravel()),
                    )
                )
                continue
        fits.append(Movement("shuffle", in_shape, out_shape, r, "other", lin, lout, blocks=False))
    return found or fits


def _flatten(
    flat: np.ndarray, in_shape: tuple[int, ...], out_shape: tuple[int, ...]
) -> Movement | None:
    """The batch axis kept, the others flattened in some axis order (an NHWC flatten
    of an NCHW tensor, say); or the inverse."""
    if len(out_shape) == 2 and len(in_shape) >= 3 and out_shape[0] == in_shape[0]:
        base = np.arange(math.prod(in_shape)).reshape(in_shape)
        for perm in itertools.permutations(range(1, len(in_shape))):
            if np.array_equal(base.transpose(0, *perm).ravel(), flat):
                return Movement("flatten", in_shape, out_shape, axes=tuple(perm))
    if len(in_shape) == 2 and len(out_shape) >= 3 and out_shape[0] == in_shape[0]:
        base = np.arange(math.prod(out_shape)).reshape(out_shape)
        inverse = np.empty_like(flat)
        inverse[flat] = np.arange(flat.size)
        for perm in itertools.permutations(range(1, len(out_shape))):
            if np.array_equal(base.transpose(0, *perm).ravel(), inverse):
                return Movement("unflatten", in_shape, out_shape, axes=tuple(perm))
    return None
