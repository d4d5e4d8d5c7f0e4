"""Models an audit reads: a graph to analyse and a way to run it that returns any of
its tensors.  Files (ONNX, LiteRT) here; framework models come through their
readers in :mod:`subpixel.movement`."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._core.files import FileError
from ..movement import Graph

__all__ = ["Opened", "open_model"]

Runner = Callable[[list[np.ndarray], Sequence[str]], dict[str, np.ndarray]]


@dataclass
class Opened:
    """A model ready to audit: its ``graph`` (sizes for the probe input), its inputs
    (name, probe shape, dtype) and ``run(inputs, names)`` giving the named tensors."""

    name: str
    graph: Graph
    inputs: list[tuple[str, tuple[int, ...], str]]
    run: Runner


def _suffix(path: str) -> str:
    name = path.lower()
    if name.endswith(".onnx"):
        return "onnx"
    if name.endswith((".tflite", ".litert")):
        return "tflite"
    return ""


def _shapes_for(graph_inputs: list[str], shapes: Any) -> Mapping[str, Sequence[int]] | None:
    """``shapes`` as a mapping by input name (one shape alone: the only input's)."""
    if shapes is None or isinstance(shapes, Mapping):
        return shapes
    if len(graph_inputs) != 1:
        raise ValueError(
            f"the model has {len(graph_inputs)} inputs: pass `shapes` as a dict by input name"
        )
    return {graph_inputs[0]: tuple(int(s) for s in shapes)}


def open_model(model: Any, *, shapes: Any = None, example: Any = None) -> Opened:
    """Open ``model``: a path to an ``.onnx`` or ``.tflite`` file, or a PyTorch module,
    Keras model or Flax NNX module (with ``example``, an input it runs on)."""
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        kind = _suffix(path)
        if not os.path.exists(path):
            raise FileError(path, "no such file")
        if kind == "onnx":
            return _open_onnx(path, shapes)
        if kind == "tflite":
            return _open_tflite(path, shapes)
        raise FileError(path, "unknown model format (use .onnx, .tflite or .litert)")
    from .. import movement

    reader = movement.reader_for(model)
    if reader is None:
        cls = type(model)
        raise TypeError(
            "`model` must be a path to an .onnx or .tflite file, or a PyTorch module, Keras "
            "model or Flax NNX module. "
            f"Received: model of type {cls.__module__}.{cls.__qualname__}"
        )
    if example is None:
        raise ValueError("`example` is needed to trace a framework model: an input it runs on")
    graph, run, inputs = reader(model, example)
    return Opened(type(model).__name__, graph, inputs, run)


def _open_onnx(path: str, shapes: Any) -> Opened:
    from ..movement import onnx as reader

    model = reader.load(path)
    init = {t.name for t in model.graph.initializer}
    names = [vi.name for vi in model.graph.input if vi.name not in init]
    folder = os.path.dirname(os.path.abspath(path))
    try:
        graph = reader.read(model, _shapes_for(names, shapes), folder)
    except ValueError as e:
        raise FileError(path, str(e)) from None
    inputs = [(n, graph.values[n].probe_shape or (), graph.values[n].dtype) for n in graph.inputs]

    def run(feeds: list[np.ndarray], wanted: Sequence[str]) -> dict[str, np.ndarray]:
        return reader.run(model, dict(zip(graph.inputs, feeds)), wanted, folder)

    return Opened(path, graph, inputs, run)


def _open_tflite(path: str, shapes: Any) -> Opened:
    from ..movement import tflite as reader

    graph = reader.read(path, None)
    if shapes is not None:
        graph = reader.read(path, _shapes_for(graph.inputs, shapes))
    inputs = [(n, graph.values[n].probe_shape or (), graph.values[n].dtype) for n in graph.inputs]

    def run(feeds: list[np.ndarray], wanted: Sequence[str]) -> dict[str, np.ndarray]:
        return reader.run(path, feeds, wanted, graph)

    return Opened(path, graph, inputs, run)
