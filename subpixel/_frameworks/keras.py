"""Keras 3: a variable as NumPy, the one walk over a model's layers, noting the
layers' calls during a run."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np

__all__ = ["to_numpy", "walk", "watching"]


def to_numpy(v: Any) -> Any:
    """A variable's or tensor's value as NumPy (None stays None: an absent bias)."""
    return None if v is None else np.asarray(keras.ops.convert_to_numpy(v))


def walk(model: Any) -> list[Any]:
    """Every layer and graph operation (``keras.ops`` calls in a functional model),
    nested models' included, in definition order, each once; a layer passed as the
    model is its own walk."""
    if isinstance(model, keras.layers.Layer) and not isinstance(model, keras.Model):
        return [model]  # one layer passed as the model
    out: list[Any] = []
    for layer in getattr(model, "operations", None) or getattr(model, "layers", []):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if hasattr(layer, "layers"):  # a nested model
            out.extend(walk(layer))
        else:
            out.append(layer)
    return list({id(layer): layer for layer in out}.values())  # a layer called twice: once


@contextlib.contextmanager
def watching(layers: list[Any], seen: Callable[[Any, tuple], None]) -> Iterator[None]:
    """Each of ``layers`` calls ``seen(layer, args)`` when it runs, for a while: its
    ``call`` wrapped on the instance (past Keras's attribute tracking), then put back."""

    def watched(layer: Any) -> Any:
        call = layer.call

        def noted(*args: Any, **kwargs: Any) -> Any:
            seen(layer, args)
            return call(*args, **kwargs)

        return noted

    own = [(layer, vars(layer).get("call")) for layer in layers]
    try:
        for layer in layers:
            object.__setattr__(layer, "call", watched(layer))
        yield
    finally:
        for layer, call in own:
            if call is not None:
                object.__setattr__(layer, "call", call)
            elif "call" in vars(layer):
                object.__delattr__(layer, "call")
