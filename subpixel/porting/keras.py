"""Keras's side of :func:`subpixel.port_weights`: read a model's parameterised layers
(the functional graph tells which convolution feeds a shuffle and which flatten feeds a
dense layer), write converted parameters back, run the model recording layer outputs."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np

from .. import weights
from .._frameworks.keras import to_numpy as _np
from .._frameworks.keras import walk as _walk
from .._frameworks.keras import watching
from ..layers import keras as keras_layers
from ..rewrite.keras import shuffle_op
from ._records import (
    PER_CHANNEL,
    ReadError,
    Record,
    Shuffle,
    check_known,
    flatten_features,
    mark_in_order,
    mark_shuffle,
    note_run_order,
    spec_settings,
)

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


def layout(model: Any) -> str:
    for layer in _walk(model):
        if isinstance(layer, keras.layers.Layer) and hasattr(layer, "data_format"):
            if isinstance(layer, keras.layers.Flatten):
                continue
            return str(layer.data_format)
    return str(keras.config.image_data_format())


def _name(layer: Any) -> str:
    """A layer's name in records and reports: its path in the model."""
    return str(layer.path if hasattr(layer, "path") else layer.name)


def _record(layer: Any) -> Record | None:
    name = _name(layer)
    if isinstance(layer, keras_layers.SubPixelConv):
        w = weights.convert_layout(_np(layer.kernel), src="keras", dst="torch")
        return Record(
            "conv",
            name,
            {"weight": w, "bias": _np(layer.bias)},
            layer.spatial_dims,
            shuffle=(layer.order, layer.factor),
            layout=layer.data_format,
            extra=spec_settings(layer.spec),
        )
    if isinstance(layer, _DEPTHWISE):
        k = _np(layer.kernel)  # (*k, C, multiplier): output channel c * multiplier + m
        w = np.moveaxis(k.reshape(*k.shape[:-2], -1), -1, 0)[:, None]
        return Record(
            "conv",
            name,
            {"weight": w, "bias": _np(layer.bias)},
            w.ndim - 2,
            layout=layer.data_format,
            extra={"groups": k.shape[-2]},
        )
    if isinstance(layer, _CONV):
        w = weights.convert_layout(_np(layer.kernel), src="keras", dst="torch")
        return Record(
            "conv",
            name,
            {"weight": w, "bias": _np(layer.bias)},
            w.ndim - 2,
            layout=layer.data_format,
            extra={"groups": layer.groups, "stride": tuple(layer.strides)},
        )
    if isinstance(layer, _CONV_T):
        w = weights.convert_layout(_np(layer.kernel), src="keras", dst="torch", transposed=True)
        return Record(
            "conv_transpose",
            name,
            {"weight": w, "bias": _np(layer.bias)},
            w.ndim - 2,
            layout=layer.data_format,
            extra={"stride": tuple(layer.strides)},
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
        return Record("prelu", name, {"weight": _prelu_channels(layer)})
    if isinstance(layer, keras.layers.Embedding):
        return Record("embedding", name, {"weight": _np(layer.embeddings)})
    return None


_DEPTHWISE = tuple(
    getattr(keras.layers, n)
    for n in ("DepthwiseConv1D", "DepthwiseConv2D")
    if hasattr(keras.layers, n)
)


def _prelu_axis(layer: Any) -> int | None:
    """The axis of ``alpha`` holding the channels (all others of size 1), -1 for a
    single shared alpha; None when alpha varies along more (per position)."""
    shape = tuple(layer.alpha.shape)
    if math.prod(shape) == 1:
        return -1
    sized = [i for i, n in enumerate(shape) if n > 1]
    return sized[0] if len(sized) == 1 and sized[0] in (0, len(shape) - 1) else None


def _prelu_channels(layer: Any) -> np.ndarray:
    axis = _prelu_axis(layer)
    if axis is None:
        raise ValueError(
            f"PReLU {layer.name} has an alpha of shape {tuple(layer.alpha.shape)} (one per "
            "position): only one alpha per channel or one for all can be ported; create it "
            "with `shared_axes` set to its spatial axes"
        )
    alpha = _np(layer.alpha)
    return alpha.reshape(-1)[:1] if axis == -1 else alpha.reshape(-1)


def _parent(layer: Any) -> Any:
    """The operation whose output ``layer`` takes (inside a nested model: the one that
    makes the nested model's output); None if none or several."""
    nodes = getattr(layer, "_inbound_nodes", [])
    if not nodes or len(nodes[0].parent_nodes) != 1:
        return None
    op = nodes[0].parent_nodes[0].operation
    while hasattr(op, "layers") and not isinstance(op, keras_layers.SubPixelConv):
        outputs = getattr(op, "outputs", None) or []
        if len(outputs) != 1:
            return None
        op = outputs[0]._keras_history[0]
    return op


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
    if not model.built:
        raise ReadError(
            "is not built: give a Sequential model a `keras.Input`, or call the model once"
        )
    operations = _walk(model)
    records, by_op = [], {}
    for op in operations:
        r = _record(op) if isinstance(op, keras.layers.Layer) else None
        if r is not None:
            records.append(r)
            by_op[id(op)] = r
        elif isinstance(op, keras.layers.Layer):
            check_known(op.name, type(op).__name__, [v.path for v in op.weights])
    layers = [
        op for op in operations if id(op) in by_op or isinstance(op, keras_layers.PixelShuffle)
    ]
    ran = _run_order(model, layers, example)
    in_order = note_run_order(records, ran)
    if not any(getattr(op, "_inbound_nodes", None) for op in operations):
        # subclassed: no graph to read, the order its layers run in tells
        _read_by_order(model, layers, records, by_op, ran if in_order else None)
        return records
    children: dict[int, list[Any]] = {}
    for op in operations:
        children.setdefault(id(_parent(op)), []).append(op)
    data = layout(model)
    shuffles = {id(op): shuffle_op(op) for op in operations if id(op) not in by_op}
    for op in operations:
        found = shuffles.get(id(op))
        if found is not None and found[0] == "shuffle":  # back to the convolution
            between, src, through, unsupported = [], _parent(op), False, False
            while src is not None and not (id(src) in by_op and by_op[id(src)].kind == "conv"):
                earlier = None if id(src) in by_op else shuffles.get(id(src))
                if id(src) in by_op and by_op[id(src)].kind in PER_CHANNEL:
                    between.append(by_op[id(src)])
                elif earlier is not None and earlier[0] == "shuffle" and not through:
                    through = True  # a shuffle of a shuffle's output
                    unsupported, between = bool(between), []
                elif not _passes_channels(src):
                    src = None
                    break
                src = _parent(src)
            if src is not None:
                mark_shuffle(by_op[id(src)], between, (found[1], found[2]), through)
                if through and unsupported:
                    by_op[id(src)].extra["chain_unsupported"] = True
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
            by_op[id(op)].flatten = _flatten_before(op, data)
    _set_layout(records, data)
    return records


def _set_layout(records: list[Record], data: str) -> None:
    """Every record's data layout; a layer norm over (H, W, C) has its parameters in
    PyTorch's (C, H, W) order."""
    for r in records:
        r.layout = data
        if r.kind == "layer_norm" and data == "channels_last":
            for key, v in r.params.items():
                if v is not None and v.ndim >= 2:
                    r.params[key] = np.moveaxis(v, -1, 0)


def _read_by_order(
    model: Any, layers: list[Any], records: list[Record], by_op: dict, ran: list[str] | None
) -> None:
    """A subclassed model calls its layers in code: the order they ran in on the
    example (else the order they were created in) tells which convolution a shuffle
    layer (subpixel's) follows, as in Flax."""
    steps: dict[str, Record | Shuffle] = {}
    for op in layers:
        steps[_name(op)] = by_op[id(op)] if id(op) in by_op else (op.op, op.order, op.factor)
    mark_in_order([steps[name] for name in (steps if ran is None else ran) if name in steps])
    _set_layout(records, layout(model))


def _run_order(model: Any, layers: list[Any], example: Any) -> list[str] | None:
    """The names of ``layers`` in the order ``model`` calls them on ``example`` (a
    layer called twice is named twice); None without an example or where it fails."""
    if example is None or model in layers:
        return None  # a layer passed alone: nothing to order
    called: list[str] = []
    try:
        with (
            _eagerly(),
            watching(layers, lambda layer, _: called.append(_name(layer))),
        ):
            model(_input(example), training=False)
    except Exception:
        return None  # the example is checked (one line) before anything is written
    return called


@contextlib.contextmanager
def _eagerly() -> Iterator[None]:
    """TensorFlow runs a ``tf.function`` (a subclassed model's ``call``, say) as Python
    for a while: a graph it traced before would not call the layers' ``call``."""
    if keras.backend.backend() != "tensorflow":
        yield
        return
    import tensorflow as tf

    before = tf.config.functions_run_eagerly()
    tf.config.run_functions_eagerly(True)
    try:
        yield
    finally:
        tf.config.run_functions_eagerly(before)


def _flatten_before(dense: Any, data_format: str) -> Any:
    """The flatten record of a ``Flatten`` (or a ``Reshape`` to one axis) feeding a
    dense layer (through dropouts and activations), from the static shape of what it
    flattens."""
    src = _parent(dense)
    while src is not None and _passes_channels(src):
        src = _parent(src)
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
    by_name = {_name(layer): layer for layer in _walk(model)}
    assignments: list[
        tuple[Any, Any]
    ] = []  # every value converted first: the copying itself cannot fail half way
    for record, params in zip(records, converted):
        layer = by_name[record.name]
        w: Any = params.get("weight")
        b = params.get("bias")
        if isinstance(layer, _DEPTHWISE):
            k = tuple(layer.kernel.shape)
            values = [np.moveaxis(w[:, 0], 0, -1).reshape(k)] + ([b] if b is not None else [])
        elif record.kind in ("conv", "conv_transpose"):
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
            shape, axis = tuple(layer.alpha.shape), _prelu_axis(layer)
            at = [1] * len(shape)
            at[-1 if axis is None else axis] = -1
            values = [np.broadcast_to(np.reshape(w, at), shape)]
        else:  # layer_norm (back to (H, W, C) order), embedding
            values = [v for v in (w, b) if v is not None]
            if record.kind == "layer_norm" and record.layout == "channels_last":
                values = [np.moveaxis(v, 0, -1) if v.ndim >= 2 else v for v in values]
        variables = layer.weights
        if len(variables) != len(values):
            raise ValueError(
                f"the architectures differ at {record.name}: the target layer has "
                f"{len(variables)} weights, the source {len(values)}"
            )
        assignments.extend(
            (var, keras.ops.cast(np.asarray(v), var.dtype)) for var, v in zip(variables, values)
        )
    for var, value in assignments:
        var.assign(value)


def _input(example: Any) -> np.ndarray:
    """``example`` as NumPy: floats as float32 (Keras's default), integers as they are."""
    x = np.asarray(example)
    return x.astype("float32") if x.dtype.kind not in "biu" else x


def run(model: Any, example: Any, names: list[str]) -> dict[str, Any]:
    x = _input(example)
    outputs: dict[str, Any] = {
        "__output__": np.asarray(keras.ops.convert_to_numpy(model(x, training=False)))
    }
    try:  # a functional model also gives each layer's output
        by_name = {_name(layer): layer for layer in _walk(model)}
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        probe = keras.Model(inputs, [by_name[n].output for n in names])
        values = probe(x, training=False)
        values = values if isinstance(values, (list, tuple)) else [values]
        for name, value in zip(names, values):
            outputs[name] = np.asarray(keras.ops.convert_to_numpy(value))
    except Exception:
        pass  # a subclassed model: the output alone
    return outputs
