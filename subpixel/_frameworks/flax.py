"""Flax NNX: a parameter as NumPy, the one walk over a module's submodules (each once,
or each slot that holds one), evaluation mode, an input for a module."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["evaluate", "evaluating", "is_list", "model_input", "put", "slots", "to_numpy", "walk"]


def to_numpy(p: Any) -> Any:
    """A parameter's value as NumPy (None stays None: an absent bias)."""
    return None if p is None else np.asarray(p[...])


# ---------------------------------------------------------------------------
# the walk: what a module holds
# ---------------------------------------------------------------------------


def is_list(node: Any) -> bool:
    """A Python list or an ``nnx.List`` of modules."""
    return isinstance(node, list) or type(node).__name__ == "List"


def _items(node: Any) -> list[tuple[Any, Any]]:
    """``(key, value)`` of what ``node`` holds: the items of a list, tuple or dict, a
    module's public attributes in the order they were assigned."""
    if isinstance(node, tuple) or is_list(node):
        return list(enumerate(node))
    if isinstance(node, dict):
        return list(node.items())
    if isinstance(node, nnx.Module):
        return [(k, v) for k, v in vars(node).items() if not k.startswith("_")]
    return []


def walk(node: Any, path: str = "", seen: set[int] | None = None) -> list[tuple[str, Any]]:
    """``(path, module)`` of every module below ``node``, in the order they were
    assigned (a module shared by two attributes once, under its first path; modules
    in tuples included)."""
    out: list[tuple[str, Any]] = []
    seen = set() if seen is None else seen
    for key, value in _items(node):
        sub = f"{path}.{key}" if path else str(key)
        if isinstance(value, nnx.Module) and not isinstance(value, (list, tuple)):
            if id(value) in seen:
                continue
            seen.add(id(value))
            out.append((sub, value))
            out.extend(walk(value, sub, seen))
        elif isinstance(value, (tuple, dict)) or is_list(value):
            out.extend(walk(value, sub, seen))
    return out


def slots(node: Any, path: str = "", ancestors: tuple = ()) -> list[tuple[Any, Any, Any, str]]:
    """``(parent, key, module, path)`` of every slot holding a module below ``node``,
    paths as :func:`walk` names them (a shared module in each of its slots; modules in
    tuples cannot be swapped, and are not listed)."""
    if id(node) in ancestors or isinstance(node, tuple):
        return []
    ancestors = (*ancestors, id(node))
    out = []
    for key, value in _items(node):
        sub = f"{path}.{key}" if path else str(key)
        if isinstance(value, nnx.Module) and not is_list(value):
            out.append((node, key, value, sub))
            out.extend(slots(value, sub, ancestors))
        elif is_list(value) or isinstance(value, dict):
            out.extend(slots(value, sub, ancestors))
    return out


def put(parent: Any, key: Any, value: Any) -> None:
    """Put ``value`` in ``parent``'s slot ``key`` (an item of a list or dict, else an
    attribute)."""
    if is_list(parent) or isinstance(parent, dict):
        parent[key] = value
    else:
        setattr(parent, key, value)


# ---------------------------------------------------------------------------
# running a module
# ---------------------------------------------------------------------------


def model_input(module: Any, example: Any) -> jax.Array:
    """``example`` as an input for ``module``: floats in its parameters' dtype,
    integers (token ids, say) as they are."""
    x = np.asarray(example)
    if x.dtype.kind not in "biu":
        params = jax.tree_util.tree_leaves(nnx.state(module, nnx.Param))
        x = x.astype(params[0].dtype if params else np.float32)
    return jnp.asarray(x)


_MODES = ("use_running_average", "deterministic")


@contextlib.contextmanager
def evaluating(module: Any) -> Iterator[None]:
    """``module`` in evaluation mode for a while; each submodule's own mode restored."""
    modules = [m for _, m in nnx.iter_graph(module) if isinstance(m, nnx.Module)]
    saved = [(m, a, getattr(m, a)) for m in modules for a in _MODES if hasattr(m, a)]
    try:
        module.eval()
        yield
    finally:
        for m, a, v in saved:
            setattr(m, a, v)


def evaluate(module: Any, example: Any) -> jax.Array:
    """``module(example)`` in evaluation mode, run on a copy: batch norms use and keep
    their running statistics, dropout is off, and ``module`` itself is untouched."""
    copy = nnx.clone(module)
    copy.eval()
    return copy(model_input(module, example))
