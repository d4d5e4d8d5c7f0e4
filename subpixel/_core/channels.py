"""Which channel goes where: the index algebra of the channel orders.

A shuffle reads LR channel ``c * R + b`` (CRD) or ``b * C + c`` (DCR) into output
channel ``c`` at block position ``b`` (``R = prod(factor)`` positions, row-major).
Every conversion between the orders, every ICNR initializer and every lowering that
moves channels gathers with one of these indices.

>>> gather_index(8, (2, 2), "CRD", "DCR").tolist()   # DCR channel i is CRD channel index[i]
[0, 4, 1, 5, 2, 6, 3, 7]
>>> icnr_index(2, (2, 2), "CRD").tolist()          # LR channel -> the base filter it copies
[0, 0, 0, 0, 1, 1, 1, 1]
>>> phase_index((2, 3))[4]                          # block position of phase 4
(1, 1)
"""

from __future__ import annotations

import itertools
import math
from typing import Any

__all__ = ["gather_index", "icnr_index", "phase_index"]


def phase_index(factor: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The position in the block of each phase ``b`` (row-major)."""
    return list(itertools.product(*(range(f) for f in factor)))


def gather_index(channels: int, factor: tuple[int, ...], src: str, dst: str) -> Any:
    """Channel ``i`` of the ``dst``-ordered tensor is channel ``index[i]`` of the
    ``src``-ordered one (``channels`` is the LR count, ``C * R``)."""
    import numpy as np

    R = math.prod(factor)
    C = channels // R
    if src == dst:
        return np.arange(channels)
    if dst == "DCR":  # DCR position b*C + c holds CRD channel c*R + b
        return (np.arange(C)[None, :] * R + np.arange(R)[:, None]).ravel()
    return (np.arange(R)[None, :] * C + np.arange(C)[:, None]).ravel()


def icnr_index(out_channels: int, factor: tuple[int, ...], order: str) -> Any:
    """For each LR output channel, the base filter it starts as (ICNR, Aitken et al.
    2017): every phase of output channel ``c`` copies base filter ``c``, so a layer
    starts as its base conv followed by nearest-neighbour upsampling.  Every
    framework's ICNR initializer gathers its base kernel with this index."""
    import numpy as np

    C, R = out_channels, math.prod(factor)
    if order == "CRD":  # LR channel c * R + b
        return np.repeat(np.arange(C), R)
    return np.tile(np.arange(C), R)  # DCR: LR channel b * C + c
