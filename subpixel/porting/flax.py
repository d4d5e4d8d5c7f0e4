"""Flax NNX's side of :func:`subpixel.port_weights`: a module's parameterised layers
(attributes, nested modules, lists and dicts), its trace (the jaxpr of one call,
:mod:`subpixel.movement.jaxpr`) and writing converted parameters back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import jax.numpy as jnp
import numpy as np
from flax import nnx

from .. import weights
from .._frameworks.flax import model_input, walk
from ..layers import flax as flax_layers
from ..movement import Graph
from .records import Kind, Record, check_known, spec_settings, strides

__all__ = ["input_shape", "layout", "read", "restore", "snapshot", "trace", "write"]


def _modules(model: Any) -> list[tuple[str, Any]]:
    """The model itself (a layer passed alone is read as one) and every module below."""
    return [("", model), *walk(model)]


def layout(model: Any) -> str:
    for _, m in _modules(model):
        if isinstance(m, (flax_layers.SubPixelConv, flax_layers.PixelShuffle)):
            return str(m.layout)
    return "channels_last"


def _v(p: Any) -> Any:
    """A parameter's value as NumPy (None for an absent bias)."""
    return None if p is None else np.asarray(p[...])


def _kernel_record(
    kind: Kind, name: str, m: Any, w: np.ndarray, layout: str, settings: dict[str, Any]
) -> Record:
    """A (transposed) convolution's record: kernel ``w`` in PyTorch's layout, ``m``'s bias."""
    return Record(
        kind, name, {"weight": w, "bias": _v(m.bias)}, w.ndim - 2, layout=layout, settings=settings
    )


def _record(name: str, m: Any) -> Record | None:
    if isinstance(m, flax_layers.SubPixelConv):
        w = weights.convert_layout(_v(m.kernel), src="flax", dst="torch")
        return _kernel_record("conv", name, m, w, m.spec.layout, spec_settings(m.spec))
    if isinstance(m, nnx.ConvTranspose):
        w = weights.convert_layout(
            _v(m.kernel),
            src="flax",
            dst="torch",
            transposed=True,
            transpose_kernel=m.transpose_kernel,
        )
        settings = {"stride": strides(m.strides, w.ndim - 2)}
        return _kernel_record("conv_transpose", name, m, w, "channels_last", settings)
    if isinstance(m, nnx.Conv):
        w = weights.convert_layout(_v(m.kernel), src="flax", dst="torch")
        settings = {"groups": m.feature_group_count, "stride": strides(m.strides, w.ndim - 2)}
        return _kernel_record("conv", name, m, w, "channels_last", settings)
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
            settings={"eps": m.epsilon},
        )
    if isinstance(m, nnx.LayerNorm):
        return Record(
            "layer_norm",
            name,
            {"weight": _v(m.scale), "bias": _v(m.bias)},
            settings={"eps": m.epsilon},
        )
    if isinstance(m, nnx.PReLU):
        return Record("prelu", name, {"weight": _v(m.negative_slope).reshape(-1)})
    if isinstance(m, nnx.Embed):
        return Record("embedding", name, {"weight": _v(m.embedding)})
    return None


_ATTRS = {
    "conv": {"weight": "kernel", "bias": "bias"},
    "conv_transpose": {"weight": "kernel", "bias": "bias"},
    "dense": {"weight": "kernel", "bias": "bias"},
    "batch_norm": {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"},
    "layer_norm": {"weight": "scale", "bias": "bias"},
    "prelu": {"weight": "negative_slope"},
    "embedding": {"weight": "embedding"},
}


def read(model: Any, *, target: bool = False) -> list[Record]:
    """The parameterised layers of ``model`` in attribute order."""
    records = []
    # each variable's path as a trace names it (NNX's own walk: a variable two modules
    # share has the path it is first reached by)
    path_of = {
        id(node): "/".join(str(k) for k in path)
        for path, node in nnx.iter_graph(model)
        if isinstance(node, nnx.Variable)
    }
    for name, m in _modules(model):
        r = _record(name, m)
        if r is not None:
            for key, attr in _ATTRS[r.kind].items():
                var = getattr(m, attr, None)
                if r.params.get(key) is not None and var is not None and id(var) in path_of:
                    r.paths[key] = path_of[id(var)]
            r.layout = "channels_last" if r.kind != "conv" or not r.layout else r.layout
            if r.kind == "conv" and not isinstance(m, flax_layers.SubPixelConv):
                r.groups = int(cast(int, r.settings.get("groups", 1)))
                r.settings.update(_conv_settings(m, r.spatial_dims))
            if r.kind in ("batch_norm", "prelu"):
                r.param_axes = (-1,)
            records.append(r)
        else:
            own = [k for k, v in vars(m).items() if isinstance(v, nnx.Param)]
            check_known(name or "the model", type(m).__name__, own)
    for r in records:  # Flax kernels hold their output channels last: (*k, I, O)
        r.kernel_out_axis = {"conv": -1, "conv_transpose": -1, "dense": -1}.get(r.kind)
    return records


def _conv_settings(m: Any, d: int) -> dict[str, Any]:
    padding = m.padding
    if isinstance(padding, str):
        pads: tuple = (
            ("same_tf",)
            if padding.upper() == "SAME"
            else ("valid",)
            if padding.upper() == "VALID"
            else (padding.lower(),)
        )
    elif isinstance(padding, int):
        pads = ("explicit", ((padding, padding),) * d)
    else:
        pads = (
            "explicit",
            tuple((p, p) if isinstance(p, int) else (int(p[0]), int(p[1])) for p in padding),
        )
    dilation = m.kernel_dilation if m.kernel_dilation is not None else 1
    return {
        "dilation": strides(dilation, d),
        "pads": pads,
        "padding_mode": "zeros"
        if not isinstance(padding, str) or padding.upper() in ("SAME", "VALID")
        else padding.lower(),
    }


def input_shape(model: Any) -> tuple[tuple[int, ...], str] | None:
    return None


def trace(model: Any, example: Any) -> tuple[Graph, Any]:
    """The graph of one call on ``example`` (on an evaluation-mode copy: no state of
    the model moves) and a runner giving its named values."""
    from ..movement import jaxpr as movement_jaxpr

    x = model_input(model, example)
    graph, run, _ = movement_jaxpr.read_model(model, x)

    def runner(feeds: Sequence[Any], names: Sequence[str]) -> dict[str, np.ndarray]:
        return run([model_input(model, f) for f in feeds], names)

    return graph, runner


def output(model: Any, example: Any) -> np.ndarray:
    """The model's first output on ``example``, in evaluation mode on a copy."""
    from .._frameworks.flax import evaluate

    y = evaluate(model, example)
    y = y[0] if isinstance(y, (tuple, list)) else y
    return np.asarray(y)


def snapshot(model: Any) -> Any:
    return nnx.clone(nnx.state(model))


def restore(model: Any, saved: Any) -> None:
    nnx.update(model, saved)


def write(model: Any, records: list[Record], converted: list[dict]) -> None:
    modules = dict(_modules(model))
    for record, params in zip(records, converted):
        m = modules[record.name]
        w, b = params.get("weight"), params.get("bias")
        if record.kind == "conv":
            assert w is not None  # (a convolution's kernel is always read)
            m.kernel[...] = jnp.asarray(
                weights.convert_layout(w, src="torch", dst="flax"), m.kernel.dtype
            )
        elif record.kind == "conv_transpose":
            assert w is not None
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
