"""Keras's side of :func:`subpixel.port_weights`: read a model's parameterised layers
(the functional graph tells which convolution feeds a shuffle and which flatten feeds a
dense layer), write converted parameters back, run the model recording layer outputs."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from .. import weights
from ..layers import keras as keras_layers
from ._records import PER_CHANNEL, Record, flatten_features

__all__ = ["layout", "read", "run", "write"]

_CONV = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_CONV_T = (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose)
# layers that only pass channels through (walked over while tracing)
_PASS = (
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.Dropout,
    keras.layers.Identity,
)


def _walk(model: Any) -> list[Any]:
    """Every layer and graph operation (``keras.ops`` calls in a functional model),
    nested models' included, in definition order."""
    out = []
    for layer in getattr(model, "operations", None) or getattr(model, "layers", []):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if hasattr(layer, "layers") and not isinstance(layer, keras_layers.SubPixelConv):
            out.extend(_walk(layer))
        else:
            out.append(layer)
    return out


def layout(model: Any) -> str:
    for layer in _walk(model):
        if isinstance(layer, keras.layers.Layer) and hasattr(layer, "data_format"):
            if isinstance(layer, keras.layers.Flatten):
                continue
            return str(layer.data_format)
    return str(keras.config.image_data_format())


def _np(v: Any) -> Any:
    """A variable's value as NumPy (None for an absent bias)."""
    return None if v is None else np.asarray(keras.ops.convert_to_numpy(v))


def _record(layer: Any) -> Record | None:
    name = layer.path if hasattr(layer, "path") else layer.name
    if isinstance(layer, keras_layers.SubPixelConv):
        w = weights.convert_layout(_np(layer.kernel), src="keras", dst="torch")
        return Record(
            "conv",
            name,
            {"weight": w, "bias": _np(layer.bias)},
            layer.spatial_dims,
            shuffle=(layer.order, layer.factor),
            layout=layer.data_format,
        )
    if isinstance(layer, _CONV):
        w = weights.convert_layout(_np(layer.kernel), src="keras", dst="torch")
        return Record(
            "conv",
            name,
            {"weight": w, "bias": _np(layer.bias)},
            w.ndim - 2,
            layout=layer.data_format,
            extra={"groups": layer.groups},
        )
    if isinstance(layer, _CONV_T):
        w = weights.convert_layout(_np(layer.kernel), src="keras", dst="torch", transposed=True)
        return Record(
            "conv_transpose",
            name,
            {"weight": w, "bias": _np(layer.bias)},
            w.ndim - 2,
            layout=layer.data_format,
        )
    if isinstance(layer, keras.layers.Dense):
        return Record("dense", name, {"weight": _np(layer.kernel).T, "bias": _np(layer.bias)})
    if isinstance(layer, keras.layers.BatchNormalization):
        return Record(
            "batch_norm",
            name,
            {
                "weight": _np(layer.gamma),
                "bias": _np(layer.beta),
                "running_mean": _np(layer.moving_mean),
                "running_var": _np(layer.moving_variance),
            },
            extra={"eps": layer.epsilon},
        )
    if isinstance(layer, keras.layers.LayerNormalization):
        return Record(
            "layer_norm",
            name,
            {"weight": _np(layer.gamma), "bias": _np(layer.beta)},
            extra={"eps": layer.epsilon},
        )
    if isinstance(layer, keras.layers.PReLU):
        alpha = _np(layer.alpha)
        return Record("prelu", name, {"weight": alpha.reshape(-1)[: alpha.shape[-1]]})
    if isinstance(layer, keras.layers.Embedding):
        return Record("embedding", name, {"weight": _np(layer.embeddings)})
    return None


def _parent(layer: Any) -> Any:
    nodes = getattr(layer, "_inbound_nodes", [])
    if not nodes or len(nodes[0].parent_nodes) != 1:
        return None
    return nodes[0].parent_nodes[0].operation


def _passes_channels(op: Any) -> bool:
    """An activation, dropout, or a one-input ``keras.ops`` call keeping the shape."""
    if isinstance(op, _PASS):
        return True
    if isinstance(op, keras.layers.Layer):
        return False
    nodes = getattr(op, "_inbound_nodes", [])
    return (
        len(nodes) == 1
        and len(nodes[0].input_tensors) == 1
        and tuple(nodes[0].input_tensors[0].shape) == tuple(nodes[0].outputs[0].shape)
    )


def read(model: Any, example: Any = None) -> list[Record]:
    operations = _walk(model)
    records, by_op = [], {}
    for op in operations:
        r = _record(op) if isinstance(op, keras.layers.Layer) else None
        if r is not None:
            records.append(r)
            by_op[id(op)] = r
    children: dict[int, list[Any]] = {}
    for op in operations:
        children.setdefault(id(_parent(op)), []).append(op)
    for op in operations:
        found = None if id(op) in by_op else keras_layers.shuffle_op(op)
        if found is not None and found[0] == "shuffle":  # back to the convolution
            between, src = [], _parent(op)
            while src is not None and not (id(src) in by_op and by_op[id(src)].kind == "conv"):
                if id(src) in by_op and by_op[id(src)].kind in PER_CHANNEL:
                    between.append(by_op[id(src)])
                elif not _passes_channels(src):
                    src = None
                    break
                src = _parent(src)
            if src is not None and by_op[id(src)].shuffle is None:
                for r in (by_op[id(src)], *between):
                    r.shuffle = (found[1], found[2])
        elif found is not None:  # an unshuffle: forward to the convolution
            between, users = [], children.get(id(op), [])
            while len(users) == 1 and not (
                id(users[0]) in by_op and by_op[id(users[0])].kind == "conv"
            ):
                if id(users[0]) in by_op and by_op[id(users[0])].kind in PER_CHANNEL:
                    between.append(by_op[id(users[0])])
                elif not _passes_channels(users[0]):
                    break
                users = children.get(id(users[0]), [])
            if len(users) == 1 and id(users[0]) in by_op and by_op[id(users[0])].kind == "conv":
                for r in (by_op[id(users[0])], *between):
                    r.extra["unshuffle"] = (found[1], found[2])
        if isinstance(op, keras.layers.Dense) and id(op) in by_op:
            by_op[id(op)].flatten = _flatten_before(op, layout(model))
    data = layout(model)
    for r in records:
        r.layout = data
    return records


def _flatten_before(dense: Any, data_format: str) -> Any:
    """The flatten record of a ``Flatten`` (or a ``Reshape`` to one axis) feeding a
    dense layer, from the static shape of what it flattens."""
    src = _parent(dense)
    reshape = isinstance(src, keras.layers.Reshape) and len(src.target_shape) == 1
    if not (isinstance(src, keras.layers.Flatten) or reshape):
        return None
    shape = tuple(src._inbound_nodes[0].input_tensors[0].shape[1:])
    if len(shape) < 2 or not all(isinstance(s, int) for s in shape):
        return None
    features = shape if data_format == "channels_first" else (shape[-1], *shape[:-1])
    # Keras's Flatten(data_format="channels_first") moves axis 1 last before flattening
    moved = not reshape and getattr(src, "data_format", None) == "channels_first"
    return flatten_features(features, data_format, channels_moved_last=moved)


def write(model: Any, records: list[Record], converted: list[dict]) -> None:
    by_name = {
        (layer.path if hasattr(layer, "path") else layer.name): layer for layer in _walk(model)
    }
    for record, params in zip(records, converted):
        layer = by_name[record.name]
        w, b = params.get("weight"), params.get("bias")
        if record.kind in ("conv", "conv_transpose"):
            kernel = weights.convert_layout(
                w, src="torch", dst="keras", transposed=record.kind == "conv_transpose"
            )
            values = [kernel] + ([b] if b is not None else [])
        elif record.kind == "dense":
            values = [np.asarray(w).T] + ([b] if b is not None else [])
        elif record.kind == "batch_norm":
            values = [v for v in (w, b) if v is not None] + [
                params["running_mean"],
                params["running_var"],
            ]
        elif record.kind == "prelu":
            alpha = layer.alpha
            values = [np.broadcast_to(np.asarray(w), tuple(alpha.shape)).copy()]
        else:  # layer_norm, embedding
            values = [v for v in (w, b) if v is not None]
        layer.set_weights([np.asarray(v, dtype=_dtype(layer)) for v in values])


def _dtype(layer: Any) -> str:
    return str(getattr(layer, "variable_dtype", None) or "float32")


def run(model: Any, example: Any, names: list[str]) -> dict[str, Any]:
    x = np.asarray(example, dtype="float32")
    outputs: dict[str, Any] = {
        "__output__": np.asarray(keras.ops.convert_to_numpy(model(x, training=False)))
    }
    try:  # a functional model also gives each layer's output
        by_name = {
            (layer.path if hasattr(layer, "path") else layer.name): layer for layer in _walk(model)
        }
        probe = keras.Model(model.inputs, [by_name[n].output for n in names])
        for name, value in zip(names, probe(x, training=False)):
            outputs[name] = np.asarray(keras.ops.convert_to_numpy(value))
    except Exception:
        pass  # a subclassed model: the output alone
    return outputs
