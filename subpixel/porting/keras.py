"""Keras's side of :func:`subpixel.port_weights`: a model's parameterised layers
(functional, Sequential, subclassed and nested models), its trace (the TensorFlow or
JAX graph of one call, :mod:`subpixel.movement.keras`) and writing converted
parameters back."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from .. import weights
from .._frameworks.keras import walk
from ..layers import keras as keras_layers
from ..movement import Graph
from .records import Kind, ReadError, Record, check_known, spec_settings

__all__ = ["input_shape", "layout", "read", "restore", "snapshot", "trace", "write"]

_CONV = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_CONV_T = (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose)


def layout(model: Any) -> str:
    for layer in walk(model):
        if isinstance(layer, keras.layers.Layer) and hasattr(layer, "data_format"):
            if isinstance(layer, keras.layers.Flatten):
                continue
            return str(layer.data_format)
    return str(keras.config.image_data_format())


def _name(layer: Any) -> str:
    """A layer's name in records and reports: its path in the model."""
    return str(layer.path if hasattr(layer, "path") else layer.name)


def _np(v: Any) -> Any:
    """A variable's value as NumPy (None for an absent bias)."""
    return None if v is None else np.asarray(keras.ops.convert_to_numpy(v))


def _paths(**variables: Any) -> dict[str, str]:
    return {k: str(v.path) for k, v in variables.items() if v is not None}


def _conv_settings(layer: Any, d: int) -> dict[str, Any]:
    padding = str(layer.padding).lower()
    return {
        "groups": getattr(layer, "groups", 1),
        "stride": tuple(layer.strides),
        "dilation": tuple(layer.dilation_rate) if hasattr(layer, "dilation_rate") else (1,) * d,
        "padding_mode": "zeros",
        "pads": ("same_tf",)
        if padding == "same"
        else ("valid",)
        if padding == "valid"
        else ("causal",),
    }


def _kernel_record(
    kind: Kind, layer: Any, w: np.ndarray, settings: dict[str, Any], groups: int = 1
) -> Record:
    """A (transposed) convolution's record: kernel ``w`` in PyTorch's layout, the layer's bias."""
    return Record(
        kind,
        _name(layer),
        {"weight": w, "bias": _np(layer.bias)},
        w.ndim - 2,
        layout=layer.data_format,
        settings=settings,
        paths=_paths(weight=layer.kernel, bias=layer.bias),
        groups=groups,
    )


def _record(layer: Any) -> Record | None:
    name = _name(layer)
    if isinstance(layer, keras_layers.SubPixelConv):
        w = weights.convert_layout(_np(layer.kernel), src="keras", dst="torch")
        return _kernel_record("conv", layer, w, spec_settings(layer.spec))
    if isinstance(layer, _DEPTHWISE):
        k = _np(layer.kernel)  # (*k, C, multiplier): output channel c * multiplier + m
        w = np.moveaxis(k.reshape(*k.shape[:-2], -1), -1, 0)[:, None]
        settings = _conv_settings(layer, w.ndim - 2)
        settings["groups"] = k.shape[-2]
        return _kernel_record("conv", layer, w, settings, groups=k.shape[-2])
    if isinstance(layer, _CONV):
        w = weights.convert_layout(_np(layer.kernel), src="keras", dst="torch")
        return _kernel_record("conv", layer, w, _conv_settings(layer, w.ndim - 2), layer.groups)
    if isinstance(layer, _CONV_T):
        w = weights.convert_layout(_np(layer.kernel), src="keras", dst="torch", transposed=True)
        settings = {"stride": tuple(layer.strides), "dilation": tuple(layer.dilation_rate)}
        return _kernel_record("conv_transpose", layer, w, settings)
    if isinstance(layer, keras.layers.Dense):
        return Record(
            "dense",
            name,
            {"weight": _np(layer.kernel).T, "bias": _np(layer.bias)},
            layout="channels_last",
            paths=_paths(weight=layer.kernel, bias=layer.bias),
        )
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
            settings={"eps": layer.epsilon},
            paths=_paths(
                weight=layer.gamma,
                bias=layer.beta,
                running_mean=layer.moving_mean,
                running_var=layer.moving_variance,
            ),
            param_axes=(int(layer.axis),) if isinstance(layer.axis, int) else tuple(layer.axis),
        )
    if isinstance(layer, keras.layers.LayerNormalization):
        axes = [layer.axis] if isinstance(layer.axis, int) else list(layer.axis)
        return Record(
            "layer_norm",
            name,
            {"weight": _np(layer.gamma), "bias": _np(layer.beta)},
            settings={"eps": layer.epsilon},
            paths=_paths(weight=layer.gamma, bias=layer.beta),
            param_axes=tuple(sorted(axes)),
        )
    if isinstance(layer, keras.layers.PReLU):
        return Record(
            "prelu",
            name,
            {"weight": _prelu_channels(layer)},
            paths=_paths(weight=layer.alpha),
            param_axes=(-1,),
        )
    if isinstance(layer, keras.layers.Embedding):
        return Record(
            "embedding",
            name,
            {"weight": _np(layer.embeddings)},
            paths=_paths(weight=layer.embeddings),
        )
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


def read(model: Any, *, target: bool = False) -> list[Record]:
    """The parameterised layers of ``model`` (nested models' included), in definition
    order; a weight held by no layer the porting reads (a subclassed model's own
    ``add_weight``, an unknown layer's) is refused by name."""
    if not model.built:
        raise ReadError(
            "is not built: give a Sequential model a `keras.Input`, or call the model once"
        )
    records = []
    covered: set[int] = set()
    for op in walk(model):
        if not isinstance(op, keras.layers.Layer):
            continue
        r = _record(op)
        if r is not None:
            records.append(r)
            covered.update(id(v) for v in op.weights)
        elif not any(isinstance(op, t) for t in (keras.Model,)):
            own = [v.path for v in op.weights if id(v) not in covered]
            check_known(_name(op), type(op).__name__, own)
            covered.update(id(v) for v in op.weights)
    rest = [v.path for v in model.weights if id(v) not in covered]
    check_known(_name(model) or "the model", type(model).__name__, rest)
    data = layout(model)
    for r in records:
        if r.kind in ("batch_norm", "layer_norm", "prelu", "embedding"):
            r.layout = data
        # Keras kernels hold their output channels last ((*k, I, O); transposed: (*k, O, I))
        r.kernel_out_axis = {"conv": -1, "conv_transpose": -2, "dense": -1}.get(r.kind)
        if (
            r.kind == "layer_norm"
            and data == "channels_last"
            and r.param_axes
            and len(r.param_axes) > 1
        ):
            # PyTorch keeps a layer norm's parameters channels first: (C, H, W) for NHWC
            r.params = {
                k: (np.moveaxis(v, -1, 0) if v is not None and v.ndim >= 2 else v)
                for k, v in r.params.items()
            }
            last = max(r.param_axes)
            r.param_axes = (last, *(a for a in r.param_axes if a != last))
    return records


def input_shape(model: Any) -> tuple[tuple[int, ...], str] | None:
    """The model's input shape and dtype where it declares them (open sizes: batch 2,
    32 elsewhere)."""
    try:
        shape = model.input_shape if not isinstance(model.input_shape, list) else None
        dtype = str(model.inputs[0].dtype) if getattr(model, "inputs", None) else "float32"
    except (AttributeError, ValueError):
        return None
    if shape is None or not shape:
        return None
    sizes = tuple(
        2 if i == 0 and d is None else 32 if d is None else int(d) for i, d in enumerate(shape)
    )
    return sizes, dtype


def _input(example: Any, model: Any = None) -> np.ndarray:
    """``example`` as NumPy: floats in the model's float dtype (its first float
    variable's, else Keras's default), integers as they are."""
    x = np.asarray(example)
    if x.dtype.kind in "biu":
        return x
    dtype = next(
        (str(v.dtype) for v in getattr(model, "variables", []) if "float" in str(v.dtype)),
        keras.config.floatx(),
    )
    return x.astype(dtype)


def trace(model: Any, example: Any) -> tuple[Graph, Any]:
    """The graph of one call on ``example`` and a runner giving its named values."""
    from ..movement import keras as movement_keras

    graph, run, _ = movement_keras.read_model(model, _input(example, model))

    def runner(feeds: Sequence[Any], names: Sequence[str]) -> dict[str, np.ndarray]:
        return run([_input(f, model) for f in feeds], names)

    return graph, runner


def output(model: Any, example: Any) -> np.ndarray:
    """The model's first output on ``example``, in inference mode."""
    y = model(_input(example, model), training=False)
    y = y[0] if isinstance(y, (tuple, list)) else y
    return np.asarray(keras.ops.convert_to_numpy(y))


def snapshot(model: Any) -> list[tuple[Any, np.ndarray]]:
    return [(v, np.array(keras.ops.convert_to_numpy(v), copy=True)) for v in model.variables]


def restore(model: Any, saved: list[tuple[Any, np.ndarray]]) -> None:
    for v, value in saved:
        v.assign(value)


def write(model: Any, records: list[Record], converted: list[dict]) -> None:
    by_name = {_name(layer): layer for layer in walk(model)}
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
