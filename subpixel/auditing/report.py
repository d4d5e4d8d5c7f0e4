"""What an audit found: the depth-to-space sites of a graph, hazards, and (with a
source to compare against) each site verified or diagnosed.  Printed as a table for
people (``str(report)``) or as one JSON object for machines (:meth:`AuditReport.to_json`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from ..movement import Chain, Graph, Movement

__all__ = ["AuditReport", "Comparison", "Site"]


@dataclass
class Comparison:
    """A site compared with its counterpart in the source: ``status`` is
    ``"verified"`` (the target moves the data as the source does, exactly),
    ``"diverges"`` (it does not: ``diagnosis`` says how, ``fix`` what to do),
    ``"missing"`` (no counterpart found) or ``"inputs differ"`` (it moves the data
    as the source does, but the data reaching it already differs)."""

    status: str
    max_diff: float | None = None
    input_diff: float | None = None
    diagnosis: str = ""
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "max_diff": _number(self.max_diff),
            "input_diff": _number(self.input_diff),
            "diagnosis": self.diagnosis,
            "fix": self.fix,
        }


@dataclass
class Site:
    """One depth-to-space (``kind="shuffle"``) or space-to-depth (``"unshuffle"``)."""

    index: int
    chain: Chain
    hazards: list[str] = field(default_factory=list)
    comparison: Comparison | None = None

    @property
    def movement(self) -> Movement:
        assert self.chain.movement is not None
        return self.chain.movement

    @property
    def kind(self) -> str:
        return self.movement.kind

    @property
    def factor(self) -> tuple[int, ...]:
        return self.movement.factor or ()

    @property
    def order(self) -> str:
        return self.movement.order or "other"

    @property
    def layout(self) -> str:
        return self.movement.layout or "channels_first"

    @property
    def channels(self) -> int:
        """Channels on the unpacked side (C of ``C * R``)."""
        m = self.movement
        shape = m.out_shape if m.kind == "shuffle" else m.in_shape
        side = m.other_layout
        return shape[1] if side == "channels_first" else shape[-1]

    @property
    def orders_agree(self) -> bool:
        """With one channel, CRD and DCR move the data alike."""
        return self.channels == 1

    @property
    def nodes(self) -> list[str]:
        return [n.name for n in self.chain.nodes]

    @property
    def ops(self) -> list[str]:
        return [n.op for n in self.chain.nodes]

    @property
    def elements(self) -> int:
        return math.prod(self.movement.in_shape)

    def to_dict(self) -> dict[str, Any]:
        m = self.movement
        out: dict[str, Any] = {
            "kind": self.kind,
            "factor": list(self.factor),
            "order": self.order,
            "layout": self.layout,
            "nodes": self.nodes,
            "ops": self.ops,
            "input": self.chain.input,
            "output": self.chain.output,
            "input_shape": list(m.in_shape),
            "output_shape": list(m.out_shape),
            "elements": self.elements,
            "orders_agree": self.orders_agree,
            "hazards": list(self.hazards),
        }
        if m.other_layout != m.layout:
            out["other_layout"] = m.other_layout
        if self.comparison is not None:
            out["comparison"] = self.comparison.to_dict()
        return out


@dataclass
class AuditReport:
    """The sites of a model in data-flow order, the other data movements found,
    hazards of the whole graph and, with ``against``, the comparison's verdict."""

    model: str
    graph: Graph
    sites: list[Site]
    movements: list[Chain]  # the other data movements (not sites)
    hazards: list[str]
    against: str | None = None
    # the source's sites whose counterpart in the model is no site (or is missing)
    unpaired: list[tuple[int, Comparison]] = field(default_factory=list)
    output_diff: float | None = None
    output_tolerance: float | None = None
    first_divergence: str = ""
    probe_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def classified(self) -> bool:
        """Every site's order is CRD or DCR."""
        return all(s.order != "other" for s in self.sites)

    @property
    def agrees(self) -> bool | None:
        """With ``against``: no site diverges and the outputs agree (None without)."""
        if self.against is None:
            return None
        comparisons = [s.comparison for s in self.sites if s.comparison is not None]
        comparisons += [c for _, c in self.unpaired]
        if any(c.status in ("diverges", "missing") for c in comparisons):
            return False
        return not self.first_divergence

    @property
    def movements_all(self) -> list[Chain]:
        """Every chain, sites included, in data-flow order."""
        order = {id(n): i for i, n in enumerate(self.graph.nodes)}
        chains = [s.chain for s in self.sites] + self.movements
        return sorted(chains, key=lambda c: order[id(c.nodes[-1])])

    @property
    def exit_status(self) -> int:
        """0: every site classified (and agreeing with ``against``); 1: a site that is
        not or a difference found."""
        return 0 if self.classified and self.agrees is not False else 1

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "format": self.graph.source,
            "probe_shapes": {k: list(v) for k, v in self.probe_shapes.items()},
            "sites": [s.to_dict() for s in self.sites],
            "movements": [
                {
                    "kind": c.movement.kind if c.movement else "unprobed",
                    "nodes": [n.name for n in c.nodes],
                    "ops": [n.op for n in c.nodes],
                    "detail": c.movement.describe() if c.movement else c.problem,
                }
                for c in self.movements
            ],
            "hazards": list(self.hazards),
            "classified": self.classified,
        }
        if self.against is not None:
            out["against"] = self.against
            out["agrees"] = self.agrees
            out["output_diff"] = _number(self.output_diff)
            out["output_tolerance"] = _number(self.output_tolerance)
            out["first_divergence"] = self.first_divergence
            out["unpaired"] = [{"source_site": k, **c.to_dict()} for k, c in self.unpaired]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __str__(self) -> str:
        lines = [
            f"{self.model} ({self.graph.source}, {len(self.graph.nodes)} ops): "
            f"{len(self.sites)} depth-to-space site{'s' if len(self.sites) != 1 else ''}"
        ]
        rows = [("#", "kind", "factor", "order", "layout", "ops", "elements", "nodes")]
        for s in self.sites:
            order = s.order + (" (=DCR, 1 channel)" if s.orders_agree and s.order == "CRD" else "")
            layout = s.layout + (
                f" -> {s.movement.other_layout}" if s.movement.other_layout != s.layout else ""
            )
            rows.append(
                (
                    str(s.index),
                    s.kind,
                    "x".join(map(str, s.factor)),
                    order,
                    layout,
                    "+".join(_compress(s.ops)),
                    str(s.elements),
                    _nodes(s.nodes),
                )
            )
        if self.sites:
            widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
            for r in rows:
                lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
        for s in self.sites:
            for h in s.hazards:
                lines.append(f"  site {s.index}: hazard: {h}")
        for h in self.hazards:
            lines.append(f"hazard: {h}")
        if self.against is not None:
            lines.append(f"against {self.against}:")
            for s in self.sites:
                c = s.comparison
                if c is None:
                    continue
                if c.status == "verified":
                    note = f": {c.diagnosis}" if c.diagnosis else ""
                    lines.append(
                        f"  site {s.index}: verified (max difference {_fmt(c.max_diff)}){note}"
                    )
                elif c.status == "inputs differ":
                    lines.append(
                        f"  site {s.index}: moves the data as the source does, but its input "
                        f"already differs by {_fmt(c.input_diff)}"
                    )
                else:
                    lines.append(f"  site {s.index}: {c.status.upper()}: {c.diagnosis}")
                    if c.fix:
                        lines.append(f"    fix: {c.fix}")
            for k, c in self.unpaired:
                lines.append(f"  source site {k}: {c.status.upper()}: {c.diagnosis}")
                if c.fix:
                    lines.append(f"    fix: {c.fix}")
            lines.append(
                f"  outputs: max difference {_fmt(self.output_diff)} "
                f"(tolerance {_fmt(self.output_tolerance)})"
            )
            if self.first_divergence:
                lines.append(f"  first divergence: {self.first_divergence}")
            else:
                lines.append("  the models agree")
        return "\n".join(lines)


def _compress(ops: list[str]) -> list[str]:
    return ops if len(ops) <= 4 else [*ops[:2], f"...({len(ops) - 3})", ops[-1]]


def _nodes(names: list[str]) -> str:
    text = ", ".join(names)
    return text if len(text) <= 60 else text[:57] + "..."


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)
