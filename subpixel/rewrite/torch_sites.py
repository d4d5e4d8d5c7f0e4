"""Every shuffle of a PyTorch model, found by what it does, rewritten with a chosen
``lowering``: modules, function calls and hand-written ``view``/``permute`` chains
alike.

The model is exported (``torch.export``, batch and spatial sizes dynamic where it
allows) and its ATen graph read into the movement analysis; each chain classified
as a shuffle or unshuffle is a site.  A module whose whole forward is one site (an
``nn.PixelShuffle``, a user's own depth-to-space module) is swapped in place for
subpixel's layer of the same order; where sites are written in code, the exported
graph itself is rewritten (each site's nodes replaced by one call of subpixel's
lowering) and returned as a ``GraphModule``.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from .._core.lowering import Lowering
from ..movement import Chain, Graph, Node, Value, find_chains
from ..movement import torch as movement_torch

__all__ = ["Site", "find", "rewrite"]


class Site:
    """A site in an exported graph: its FX nodes, what it does, and the module whose
    forward it is, if it is the whole of one."""

    def __init__(self, chain: Chain, nodes: list[Any], module: str | None) -> None:
        self.chain, self.nodes, self.module = chain, nodes, module

    @property
    def movement(self) -> Any:
        return self.chain.movement


def _hint(v: Any) -> int:
    if isinstance(v, torch.SymInt):
        return int(v.node.hint)
    return int(v)


def export(model: nn.Module, example: Any) -> Any:
    """``torch.export`` of ``model`` in evaluation mode, batch and spatial sizes dynamic
    (the example is repeated to a batch of 2 where it has 1, so that the batch is not
    fixed to 1), else static; ``ValueError`` naming the model where it cannot."""
    x = example if isinstance(example, torch.Tensor) else torch.as_tensor(np.asarray(example))
    inputs = [x]
    if x.dim() >= 3 and x.shape[0] == 1:  # a program exported with batch 1 keeps it
        inputs.insert(0, torch.cat([x, x]))
    dims = {0: torch.export.Dim.AUTO, **{a: torch.export.Dim.AUTO for a in range(2, x.dim())}}
    errors = []
    for x, dynamic in [(i, d) for i in inputs for d in ((dims,), None)]:
        try:
            with (
                movement_torch.evaluating(model),
                warnings.catch_warnings(),
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                warnings.simplefilter("ignore")
                return torch.export.export(model, (x,), dynamic_shapes=dynamic, strict=False)
        except Exception as e:
            errors.append(e)
    last = errors[-1]
    line = (str(last).strip().splitlines() or [""])[0][:300]
    raise ValueError(
        f"cannot export {type(model).__name__} with torch.export ({type(last).__name__}: {line})"
    )


def _graph(gm: Any) -> tuple[Graph, dict[str, Any]]:
    """The movement graph of an exported ``GraphModule`` (sizes: the example's)."""
    fx = torch.fx
    graph = Graph("torch", "channels_first")
    constants: dict[str, Any] = {}
    data: set[str] = set()
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            graph.inputs.append(node.name)
            data.add(node.name)
            _value(graph, node)
        elif node.op == "get_attr":
            t = gm
            for part in str(node.target).split("."):
                t = getattr(t, part)
            constants[node.name] = t
            v = _value(graph, node)
            v.constant = True
        elif node.op == "output":
            outs = node.args[0] if isinstance(node.args[0], (list, tuple)) else [node.args[0]]
            graph.outputs = [o.name for o in outs if isinstance(o, fx.Node)]
        elif node.op == "call_function":
            ins = [a.name for a in node.all_input_nodes]
            if any(i in data for i in ins) and isinstance(node.meta.get("val"), torch.Tensor):
                data.add(node.name)
            kind, step = _step(node, constants, data)
            first = node.args[0] if node.args else None
            index = ins.index(first.name) if isinstance(first, fx.Node) else 0
            graph.add(Node(node.name, str(node.target), ins, [node.name], kind, step, index))  # type: ignore[arg-type]
            _value(graph, node)
    return graph, constants


def _value(graph: Graph, node: Any) -> Value:
    v = graph.values.get(node.name) or Value(node.name)
    graph.values[node.name] = v
    val = node.meta.get("val")
    if isinstance(val, torch.Tensor):
        v.probe_shape = tuple(_hint(s) for s in val.shape)
        v.shape = tuple(s if isinstance(s, int) else None for s in val.shape)
        v.dtype = str(val.dtype).removeprefix("torch.")
    return v


def _step(node: Any, constants: dict[str, Any], data: set[str]) -> tuple[str, Any]:
    fx = torch.fx
    base = movement_torch.base_name(node.target)
    if base in movement_torch.SHAPE_OPS:
        return "shape", None
    if base in movement_torch.ELEMENTWISE_OPS:
        return "elementwise", None
    if (
        base not in movement_torch.MOVE_OPS
        or not node.args
        or not isinstance(node.args[0], fx.Node)
    ):
        return "compute", None

    def concrete(a: Any) -> Any:
        if isinstance(a, fx.Node):
            if a.name in data:
                raise KeyError(a.name)
            if a.name in constants:
                return constants[a.name]
            val = a.meta.get("val")
            if isinstance(val, (torch.SymInt, int)):
                return _hint(val)
            raise KeyError(a.name)
        if isinstance(a, (list, tuple)):
            return type(a)(concrete(v) for v in a)
        if isinstance(a, torch.SymInt):
            return _hint(a)
        return a

    try:
        rest = [concrete(a) for a in node.args[1:]]
        kw = {k: concrete(v) for k, v in node.kwargs.items()}
    except KeyError:
        return "compute", None
    target = node.target

    def step(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return target(
                torch.from_numpy(np.require(x, requirements=["C", "W"])), *rest, **kw
            ).numpy()

    return "move", step


def find(model: nn.Module, example: Any) -> tuple[Any, list[Site]]:
    """The exported program of ``model`` and its sites."""
    ep = export(model, example)
    gm = ep.module()
    graph, _ = _graph(gm)
    by_name = {n.name: n for n in gm.graph.nodes}
    owner: dict[str, str] = {}
    members: dict[str, set[str]] = {}
    for n in gm.graph.nodes:
        stack = n.meta.get("nn_module_stack")
        if n.op == "call_function" and stack:
            path = list(stack.values())[-1][0]
            owner[n.name] = path
            members.setdefault(path, set()).add(n.name)
    sites = []
    for chain in find_chains(graph):
        m = chain.movement
        if m is None or not m.is_site or m.order == "other":
            continue
        names = [n.name for n in chain.nodes]
        paths = {owner.get(n) for n in names}
        path = paths.pop() if len(paths) == 1 else None
        whole = path not in (None, "") and members.get(path, set()) <= set(names) | _shape_nodes(
            gm, path
        )
        sites.append(Site(chain, [by_name[n] for n in names], path if whole else None))
    return gm, sites


def _shape_nodes(gm: Any, path: str | None) -> set[str]:
    """The size arithmetic a module's forward does (``x.size()``): not data work."""
    out = set()
    for n in gm.graph.nodes:
        stack = n.meta.get("nn_module_stack")
        if (
            stack
            and list(stack.values())[-1][0] == path
            and not isinstance(n.meta.get("val"), torch.Tensor)
        ):
            out.add(n.name)
    return out


def _layer(site: Site, lowering: Lowering) -> nn.Module:
    from ..layers import torch as torch_layers

    m = site.movement
    make = torch_layers.PixelShuffle if m.kind == "shuffle" else torch_layers.PixelUnshuffle
    return make(tuple(m.factor), order=m.order, layout=m.layout, lowering=lowering)


def rewrite(model: nn.Module, example: Any, lowering: Lowering) -> nn.Module:
    """``model`` with every site written in ``lowering`` (see the module's docstring)."""
    gm, sites = find(model, example)
    modules = dict(model.named_modules())
    # a module swap where each site is the whole of a module the model holds (a
    # program loaded by torch.export.load names the modules of the model it was
    # exported from, which it no longer holds: its graph is rewritten instead)
    if all(s.module is not None and s.module in modules for s in sites):
        for s in sites:
            parent, _, name = s.module.rpartition(".")  # type: ignore[union-attr]
            holder = modules[parent] if parent else model
            old = getattr(holder, name)
            new = _layer(s, lowering)
            new.train(old.training)
            setattr(holder, name, new)
        return model
    for k, s in enumerate(sites):
        name = f"subpixel_site_{k}"
        gm.add_module(name, _layer(s, lowering))
        last, first = s.nodes[-1], s.nodes[0]
        data = first.args[0]
        with gm.graph.inserting_after(last):
            new = gm.graph.call_module(name, (data,))
        last.replace_all_uses_with(new)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm
