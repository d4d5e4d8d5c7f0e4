"""Flax NNX's side of :func:`subpixel.port_weights`: read a module's parameterised
layers in definition order (attribute order, nested modules and lists included),
write converted parameters back, run the module."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from .. import weights
from ..layers import flax as flax_layers
from ._records import Record, Shuffle, check_known, mark_in_order, spec_settings, strides

__all__ = ["layout", "read", "run", "write"]


def _walk(node: Any, path: str = "", seen: set[int] | None = None) -> list[tuple[str, Any]]:
    """``(path, module)`` of every module below ``node``, in the order they were
    assigned (a module shared by two attributes once, under its first path)."""
    out: list[tuple[str, Any]] = []
    seen = set() if seen is None else seen
    items: list[tuple[str, Any]]
    if isinstance(node, (list, tuple)) or type(node).__name__ == "List":
        items = [(str(i), v) for i, v in enumerate(node)]
    elif isinstance(node, dict):
        items = [(str(k), v) for k, v in node.items()]
    elif isinstance(node, nnx.Module):
        items = [(k, v) for k, v in vars(node).items() if not k.startswith("_")]
    else:
        return out
    for key, value in items:
        sub = f"{path}.{key}" if path else key
        if isinstance(value, nnx.Module) and not isinstance(value, (list, tuple)):
            if id(value) in seen:
                continue
            seen.add(id(value))
            out.append((sub, value))
            if not isinstance(value, flax_layers.SubPixelConv):
                out.extend(_walk(value, sub, seen))
        elif isinstance(value, (list, tuple, dict)) or type(value).__name__ == "List":
            out.extend(_walk(value, sub, seen))
    return out


def _modules(model: Any) -> list[tuple[str, Any]]:
    """The model itself (a layer passed alone is read as one) and every module below."""
    return [("", model), *_walk(model)]


def layout(model: Any) -> str:
    for _, m in _modules(model):
        if isinstance(m, (flax_layers.SubPixelConv, flax_layers.PixelShuffle)):
            return str(m.layout)
    return "channels_last"


def _v(p: Any) -> Any:
    """A parameter's value as NumPy (None for an absent bias)."""
    return None if p is None else np.asarray(p[...])


def _record(name: str, m: Any) -> Record | None:
    if isinstance(m, flax_layers.SubPixelConv):
        w = weights.convert_layout(_v(m.kernel), src="flax", dst="torch")
        return Record(
            "conv",
            name,
            {"weight": w, "bias": _v(m.bias)},
            m.spec.spatial_dims,
            shuffle=(m.spec.order, m.spec.factor),
            layout=m.spec.layout,
            extra=spec_settings(m.spec),
        )
    if isinstance(m, nnx.ConvTranspose):
        w = weights.convert_layout(
            _v(m.kernel),
            src="flax",
            dst="torch",
            transposed=True,
            transpose_kernel=m.transpose_kernel,
        )
        return Record(
            "conv_transpose",
            name,
            {"weight": w, "bias": _v(m.bias)},
            w.ndim - 2,
            layout="channels_last",
            extra={"stride": strides(m.strides, w.ndim - 2)},
        )
    if isinstance(m, nnx.Conv):
        w = weights.convert_layout(_v(m.kernel), src="flax", dst="torch")
        return Record(
            "conv",
            name,
            {"weight": w, "bias": _v(m.bias)},
            w.ndim - 2,
            layout="channels_last",
            extra={"groups": m.feature_group_count, "stride": strides(m.strides, w.ndim - 2)},
        )
    if isinstance(m, nnx.Linear):
        return Record(
            "dense", name, {"weight": _v(m.kernel).T, "bias": _v(m.bias)}, layout="channels_last"
        )
    if isinstance(m, nnx.BatchNorm):
        return Record(
            "batch_norm",
            name,
            {
                "weight": _v(m.scale),
                "bias": _v(m.bias),
                "running_mean": _v(m.mean),
                "running_var": _v(m.var),
            },
            extra={"eps": m.epsilon},
        )
    if isinstance(m, nnx.LayerNorm):
        return Record(
            "layer_norm",
            name,
            {"weight": _v(m.scale), "bias": _v(m.bias)},
            extra={"eps": m.epsilon},
        )
    if isinstance(m, nnx.PReLU):
        return Record("prelu", name, {"weight": _v(m.negative_slope).reshape(-1)})
    if isinstance(m, nnx.Embed):
        return Record("embedding", name, {"weight": _v(m.embedding)})
    return None


def read(model: Any, example: Any = None) -> list[Record]:
    records: list[Record] = []
    sequence: list[Record | Shuffle] = []  # Flax calls modules in code: their order tells
    for name, m in _modules(model):
        r = _record(name, m)
        if r is not None:
            records.append(r)
            sequence.append(r)
        elif isinstance(m, flax_layers.PixelShuffle):  # and PixelUnshuffle
            op = "shuffle" if m.op is flax_layers.ops.shuffle else "unshuffle"
            sequence.append((op, m.order, m.factor))
        else:
            own = [k for k, v in vars(m).items() if isinstance(v, nnx.Param)]
            check_known(name or "the model", type(m).__name__, own)
    mark_in_order(sequence)
    data = layout(model)
    for r in records:
        r.layout = data
    return records


def write(model: Any, records: list[Record], converted: list[dict]) -> None:
    modules = dict(_modules(model))
    for record, params in zip(records, converted):
        m = modules[record.name]
        w, b = params.get("weight"), params.get("bias")
        if record.kind == "conv":
            m.kernel[...] = jnp.asarray(
                weights.convert_layout(w, src="torch", dst="flax"), m.kernel.dtype
            )
        elif record.kind == "conv_transpose":
            kernel = weights.convert_layout(
                w, src="torch", dst="flax", transposed=True, transpose_kernel=m.transpose_kernel
            )
            m.kernel[...] = jnp.asarray(kernel, m.kernel.dtype)
        elif record.kind == "dense":
            m.kernel[...] = jnp.asarray(np.asarray(w).T, m.kernel.dtype)
        elif record.kind == "batch_norm":
            for attr, key in (
                ("scale", "weight"),
                ("bias", "bias"),
                ("mean", "running_mean"),
                ("var", "running_var"),
            ):
                if getattr(m, attr, None) is not None and params.get(key) is not None:
                    getattr(m, attr)[...] = jnp.asarray(params[key], getattr(m, attr).dtype)
            continue
        elif record.kind == "layer_norm":
            if m.scale is not None:
                m.scale[...] = jnp.asarray(w, m.scale.dtype)
        elif record.kind == "embedding":
            m.embedding[...] = jnp.asarray(w, m.embedding.dtype)
            continue
        elif record.kind == "prelu":
            slope = m.negative_slope
            slope[...] = jnp.asarray(np.reshape(np.asarray(w), slope[...].shape), slope.dtype)
            continue
        if b is not None and getattr(m, "bias", None) is not None:
            m.bias[...] = jnp.asarray(b, m.bias.dtype)


def run(model: Any, example: Any, names: list[str]) -> dict[str, Any]:
    """The output of an evaluation-mode copy (the model's own state, batch statistics
    and mode, stay as they are)."""
    return {"__output__": np.asarray(flax_layers._evaluate(model, example))}
