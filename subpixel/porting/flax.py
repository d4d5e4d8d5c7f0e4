"""Flax NNX's side of :func:`subpixel.port_weights`: read a module's parameterised
layers (attributes, nested modules and lists; in the order they run on the example,
else in attribute order), write converted parameters back, run the module."""

from __future__ import annotations

import warnings
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from .. import weights
from .._frameworks.flax import evaluate, model_input, put
from .._frameworks.flax import slots as _slots
from .._frameworks.flax import walk as _walk
from ..layers import flax as flax_layers
from ._records import (
    Record,
    Shuffle,
    check_known,
    mark_in_order,
    note_run_order,
    spec_settings,
    strides,
)

__all__ = ["layout", "read", "run", "write"]


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
    modules = _modules(model)
    records: dict[str, Record] = {}
    steps: dict[str, Record | Shuffle] = {}  # Flax calls modules in code: their order tells
    for name, m in modules:
        r = _record(name, m)
        if r is not None:
            records[name] = steps[name] = r
        elif isinstance(m, flax_layers.PixelShuffle):  # and PixelUnshuffle
            op = "shuffle" if m.op is flax_layers.ops.shuffle else "unshuffle"
            steps[name] = (op, m.order, m.factor)
        else:
            own = [k for k, v in vars(m).items() if isinstance(v, nnx.Param)]
            check_known(name or "the model", type(m).__name__, own)
    ran = _run_order(model, example, set(steps))
    in_order = note_run_order(list(records.values()), ran)
    if not in_order and len(records) > 1 and any(_rebuilt(m) for _, m in modules):
        if example is None or ran is not None:  # (an example that fails is an error later)
            how = (
                "pass `example=` to pair layers in the order they run"
                if example is None
                else "not every layer's run on `example` could be noted (a layer in a "
                "tuple or passed to a transform such as nnx.scan or nnx.remat, or one "
                "that does not run), so that order is used"
            )
            warnings.warn(
                "a Flax module rebuilt by nnx.split/merge, nnx.clone or nnx.eval_shape has "
                f"its attributes in alphabetical order, not the order they were defined in: {how}",
                stacklevel=4,
            )
    mark_in_order([steps[n] for n in (ran if in_order and ran else steps) if n in steps])
    data = layout(model)
    for r in records.values():
        r.layout = data
    return list(records.values())


def _rebuilt(m: Any) -> bool:
    """Whether ``m``'s attributes are sorted, as NNX leaves a module it rebuilt (one
    built by its own ``__init__`` sets its private attributes first, unsorted)."""
    keys = list(vars(m))
    public = [k for k in keys if not k.startswith("_")]
    return len(public) > 1 and keys == sorted(keys)


class _Called:
    """Stands in for a module during one run and notes its name when called."""

    def __init__(self, module: Any, name: str, log: list[str]) -> None:
        self.module, self.name, self.log = module, name, log

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.log.append(self.name)
        return self.module(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:  # the model's code may read its attributes
        return getattr(self.module, attr)


def _run_order(model: Any, example: Any, wanted: set[str]) -> list[str] | None:
    """The modules named in ``wanted`` in the order ``model`` calls them on ``example``
    (a module called twice is named twice), noted on an evaluation-mode copy (the
    model's own state stays as it is); ``[]`` where noting broke a run that works
    without it; None without an example or where the example does not run."""
    if example is None or "" in wanted:
        return None  # a layer passed alone: nothing to order
    copy = nnx.clone(model)
    copy.eval()
    slots = _slots(copy)
    name_of = {id(m): path for _, _, m, path in slots if path in wanted}
    called: list[str] = []
    for parent, key, m, _ in slots:
        if id(m) in name_of:
            put(parent, key, _Called(m, name_of[id(m)], called))
    try:
        copy(model_input(model, example))
    except Exception:
        try:  # a transform given a stand-in (nnx.remat(f)(self.block, x)) fails
            evaluate(model, example)
        except Exception:
            return None  # the example is checked (one line) before anything is written
        return []
    return called


def write(model: Any, records: list[Record], converted: list[dict]) -> None:
    modules = dict(_modules(model))
    for record, params in zip(records, converted):
        m = modules[record.name]
        w: Any = params.get("weight")
        b = params.get("bias")
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
    return {"__output__": np.asarray(evaluate(model, example))}
