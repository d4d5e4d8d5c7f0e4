"""Whole models: copy a network's weights between PyTorch, Keras 3 and Flax NNX models
of the same architecture, every conversion done (:func:`port_weights`).

Each framework's module (:mod:`.torch`, :mod:`.keras`, :mod:`.flax`) reads a model
into a list of :class:`~._records.Record` (its parameterised layers in definition
order, each with when it first ran on the example; parameters in PyTorch layout, and what tracing found around them: the channel
order of a shuffle a convolution feeds, the layout and shape of a flatten before a
dense layer), and writes such a list back.  Pairing, validation and every
conversion between two models live here, once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backends import to_numpy
from ._records import PortReport, ReadError, Record, convert_pair, framework_of

__all__ = ["PortReport", "Record", "port_weights"]


def _module(framework: str) -> Any:
    import importlib

    return importlib.import_module(f"subpixel.porting.{framework}")


def port_weights(source: Any, target: Any, *, example: Any = None) -> PortReport:
    """Copy ``source``'s weights into ``target``: two models of the same architecture in
    PyTorch (``nn.Module``), Keras 3 (``keras.Model``) or Flax NNX (``nnx.Module``), in
    any pair and direction.

    Parameterised layers (convolutions 1-3-D, transposed convolutions, dense/linear,
    batch and layer norms, PReLU, embeddings, and subpixel's layers) are paired in
    definition order, or in the order they run on ``example`` where every layer of
    both models runs and that order differs (of two orders that both fit, the one
    whose output is closer to the source's is kept), and converted: kernel and transposed-kernel layouts, channels
    first or last, the flatten before a dense layer (NCHW and NHWC flatten in different
    orders; its shape comes from ``example`` or the model's own static shapes), and CRD
    vs DCR wherever a convolution feeds a pixel shuffle whose order differs between
    the two models (found by tracing).  When the architectures do not match, one
    ``ValueError`` names the first pair that does not fit, and nothing is copied.

    With ``example`` (an input for ``source``, in its layout) both models run and the
    report holds the max difference of every paired layer's output and overall.
    """
    src_fw, tgt_fw = framework_of(source, "source"), framework_of(target, "target")
    src_mod, tgt_mod = _module(src_fw), _module(tgt_fw)
    src_records = _read(src_mod, source, example, "source")
    # an image moves between layouts; a sequence of features or token ids does not
    spatial = any(r.spatial_dims for r in src_records)
    layouts = (src_mod.layout(source), tgt_mod.layout(target)) if spatial else None
    tgt_example = None if example is None else _example_for(example, layouts)
    tgt_records = _read(tgt_mod, target, tgt_example, "target")
    if not (spatial or any(r.spatial_dims for r in tgt_records)):
        for r in (*src_records, *tgt_records):  # no images: a flatten keeps its order
            r.flatten, r.layout = None, "channels_last"
            r.extra.pop("flatten_unknown", None)
    if len(src_records) != len(tgt_records):
        first = _first_unpaired(src_records, tgt_records)
        raise ValueError(
            f"`source` has {len(src_records)} parameterised layers and `target` "
            f"{len(tgt_records)}: they are not the same architecture ({first})"
        )
    if example is not None:  # both runs checked before anything is copied
        src_out = _run(src_mod, source, example, [r.name for r in src_records], "source")
        _run(tgt_mod, target, tgt_example, [r.name for r in tgt_records], "target")
    pairings = _pairings(src_records, tgt_records)  # validated: converted, or one error
    best: PortReport | None = None
    for src_order, tgt_order, converted in pairings:
        tgt_mod.write(target, tgt_order, converted)  # only now is anything copied
        report = PortReport(pairs=[(s.name, t.name) for s, t in zip(src_order, tgt_order)])
        if example is not None:
            tgt_out = tgt_mod.run(target, tgt_example, [r.name for r in tgt_order])
            report.compare(src_out, tgt_out, layouts)
        if best is None or _closer(report, best):
            best, kept = report, (tgt_order, converted)
    if best is not report:  # the last one tried is not the one to keep
        tgt_mod.write(target, *kept)
    assert best is not None
    return best


def _pairings(src: list[Record], tgt: list[Record]) -> list[tuple[list, list, list]]:
    """The orders to pair the layers in, each with its converted parameters: definition
    order, and the order the layers ran in on the example where both models ran every
    layer and that differs.  An order whose pairs do not fit is dropped; if none fits,
    the error of the last (the run order's, if any) is raised."""
    orders = [(src, tgt)]
    if all(r.run_index is not None for r in (*src, *tgt)):
        ran = (sorted(src, key=_ran), sorted(tgt, key=_ran))
        if [id(r) for r in (*ran[0], *ran[1])] != [id(r) for r in (*src, *tgt)]:
            orders.append(ran)
    fitting, error = [], None
    for s, t in orders:
        try:
            fitting.append((s, t, [convert_pair(a, b) for a, b in zip(s, t)]))
        except ValueError as e:
            error = e
    if not fitting:
        assert error is not None
        raise error
    return fitting


def _ran(r: Record) -> int:
    return -1 if r.run_index is None else r.run_index


def _closer(report: PortReport, best: PortReport) -> bool:
    """Whether ``report``'s output is closer to the source's than ``best``'s (two
    orders that both fit: the models' outputs tell which pairs the layers right)."""
    if report.max_diff is None or best.max_diff is None or np.isnan(report.max_diff):
        return False  # (a tie keeps the first: definition order)
    return bool(np.isnan(best.max_diff) or report.max_diff < best.max_diff)


def _read(module: Any, model: Any, example: Any, which: str) -> list[Record]:
    try:
        return list(module.read(model, example))
    except ReadError as e:
        raise ValueError(f"`{which}` {e}") from None


def _run(module: Any, model: Any, example: Any, names: list[str], which: str) -> dict[str, Any]:
    """``module.run``, a failure caused by ``example`` as one line naming it."""
    try:
        return dict(module.run(model, example, names))
    except Exception as e:
        a = np.asarray(example)
        line = (str(e).strip().splitlines() or [""])[0][:300]
        raise ValueError(
            f"`example` does not run through the {which} model ({type(e).__name__}: {line}). "
            f"Received: example of shape {a.shape} and dtype {a.dtype}"
            + (" (moved to the target's layout)" if which == "target" else "")
        ) from None


def _first_unpaired(a: list[Record], b: list[Record]) -> str:
    for i, (s, t) in enumerate(zip(a, b)):
        if s.kind != t.kind:
            return f"pair {i}: {s.describe()} vs {t.describe()}"
    i = min(len(a), len(b))
    extra = a[i] if len(a) > len(b) else b[i]
    return f"pair {i}: {extra.describe()} has no counterpart"


def _example_for(example: Any, layouts: tuple[str, str] | None) -> Any:
    """The source's example as the target's input (NumPy; an image moved from the
    source's layout to the target's)."""
    a = _to_numpy(example)
    if layouts is not None and a.ndim >= 3 and layouts[0] != layouts[1]:
        a = np.moveaxis(a, 1, -1) if layouts[0] == "channels_first" else np.moveaxis(a, -1, 1)
    return np.ascontiguousarray(a)


def _to_numpy(a: Any) -> np.ndarray:
    return to_numpy(a, "example")
