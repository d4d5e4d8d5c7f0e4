"""``subpixel.audit``: which channel order and layout each depth-to-space of a model
really implements, with hazards, and (``against=``) where and why it departs from
its source.

>>> report = audit("model.onnx")                            # doctest: +SKIP
>>> [(s.kind, s.factor, s.order, s.layout) for s in report.sites]   # doctest: +SKIP
[('shuffle', (2, 2), 'CRD', 'channels_first')]

Sites are found by behaviour: every run of data-movement ops is evaluated on an
index array and classified (:mod:`subpixel.movement`), so a depth-to-space written as
a native op, as reshapes and transposes, as a channel gather or as a one-hot
convolution is found alike.
"""

from __future__ import annotations

import os
from typing import Any

from ..movement import Chain, find_chains
from .report import AuditReport, Comparison, Site
from .sources import Opened, open_model

__all__ = ["AuditReport", "Comparison", "Site", "audit"]

# tensors of higher rank than this fail on GPU delegates (LiteRT, Core ML, NNAPI)
MAX_DELEGATE_RANK = 4


def audit(
    model: Any, *, against: Any = None, example: Any = None, shapes: Any = None
) -> AuditReport:
    """Audit ``model`` (a path to an ``.onnx``/``.tflite`` file, or a PyTorch module with
    ``example``): every depth-to-space and space-to-depth site with its kind, factor,
    channel order and layout, and hazards.  With ``against`` (another file, also in
    the other layout, or a PyTorch module with ``example`` as its input), both run on
    one probe input and each site is verified or diagnosed.  ``shapes``: the probe
    input's shape (one tuple, or a dict by input name) where sizes are dynamic."""
    target = open_model(model, shapes=shapes, example=example)
    if against is None:
        return _analyse(target)
    from .against import compare

    source = open_model(against, example=example)
    target, source = _aligned(model, target, against, source, example)
    report = _analyse(target)
    source_sites = [
        c for c in find_chains(source.graph) if c.movement is not None and c.movement.is_site
    ]
    report.against = source.name
    compare(report, target, source, source_sites)
    return report


def _fits(shape: tuple[int, ...], declared: Any) -> bool:
    return declared is None or (
        len(shape) == len(declared) and all(d is None or d == s for s, d in zip(shape, declared))
    )


def _layouts_of(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """``shape`` as it is, with its axis 1 moved last, and its last axis moved to 1."""
    out = [tuple(shape)]
    if len(shape) >= 3:
        out.append((shape[0], *shape[2:], shape[1]))
        out.append((shape[0], shape[-1], *shape[1:-1]))
    return out


def _aligned(
    model: Any, target: Opened, against: Any, source: Opened, example: Any
) -> tuple[Opened, Opened]:
    """Both models opened for the same probe input: the target's sizes follow the
    source's (in the target's layout), or the source's the target's where only the
    source's are open."""
    if len(target.inputs) != len(source.inputs):
        raise ValueError(
            f"the model has {len(target.inputs)} inputs and `against` {len(source.inputs)}: "
            "they cannot run on one probe input"
        )
    s_shape, t_shape = source.inputs[0][1], target.inputs[0][1]
    t_declared = target.graph.values[target.graph.inputs[0]].shape
    s_declared = source.graph.values[source.graph.inputs[0]].shape
    for cand in _layouts_of(s_shape):
        if _fits(cand, t_declared):
            if cand != tuple(t_shape):
                target = open_model(model, shapes=cand, example=example)
            return target, source
    for cand in _layouts_of(t_shape):
        if _fits(cand, s_declared) and isinstance(against, (str, os.PathLike)):
            return target, open_model(against, shapes=cand)
    raise ValueError(
        f"the model's input {t_shape} and the source's {s_shape} do not fit one probe input "
        "(in either layout): pass shapes= (--shape) that both accept"
    )


def _analyse(opened: Opened) -> AuditReport:
    graph = opened.graph
    chains = find_chains(graph)
    sites: list[Site] = []
    others: list[Chain] = []
    for c in chains:
        if c.movement is not None and c.movement.is_site:
            sites.append(Site(len(sites), c, _site_hazards(graph, c)))
        else:
            others.append(c)
    report = AuditReport(opened.name, graph, sites, others, _graph_hazards(graph, others))
    report.probe_shapes = {name: shape for name, shape, _ in opened.inputs}
    return report


def _site_hazards(graph: Any, chain: Chain) -> list[str]:
    out = []
    m = chain.movement
    assert m is not None
    ranks = {len(graph.values[v].probe_shape or ()) for v in chain.values}
    if max(ranks) > MAX_DELEGATE_RANK:
        out.append(
            f"a tensor of rank {max(ranks)} on the way: GPU delegates (LiteRT, Core ML) take "
            f"at most {MAX_DELEGATE_RANK}; write it with lowering='flat' or 'native'"
        )
    dynamic = [
        (w, v)
        for w, v in (("input", chain.input), ("output", chain.output))
        if graph.values[v].dynamic
    ]
    if dynamic:
        out.append(
            "dynamic sizes around the site ("
            + ", ".join(f"{w} {_dims(graph.values[v].shape)}" for w, v in dynamic)
            + "): converters have written depth-to-space wrongly, or unrunnably, with open sizes"
        )
    quants = {graph.values[v].quant for v in chain.values if graph.values[v].quant is not None}
    if len(quants) > 1:
        out.append(
            "quantization parameters change across the site ("
            + "; ".join(q.describe() for q in quants if q is not None)
            + "): the values are requantized, not only moved"
        )
    if m.order == "other":
        out.append(
            "its channel order is neither CRD nor DCR"
            if m.blocks
            else "its elements leave their blocks: no channel order of a depth-to-space explains it"
        )
    return out


def _dims(shape: Any) -> str:
    return (
        "unknown"
        if shape is None
        else "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"
    )


def _graph_hazards(graph: Any, others: list[Chain]) -> list[str]:
    out = []
    custom = sorted(
        {n.op for n in graph.nodes if n.op.startswith("CUSTOM:") or n.attrs.get("domain")}
    )
    if custom:
        out.append(
            "custom ops (" + ", ".join(custom) + "): need their own kernels (Flex ops the "
            "TensorFlow runtime); delegates and other runtimes refuse them"
        )
    for c in others:
        if c.movement is None:
            out.append(
                f"the data movement at {', '.join(n.name for n in c.nodes)} was not probed: {c.problem}"
            )
    subgraphs = graph.attrs.get("subgraphs", 1)
    if isinstance(subgraphs, int) and subgraphs > 1:
        out.append(f"{subgraphs} subgraphs: only the main one is audited")
    return out
