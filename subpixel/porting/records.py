"""The neutral description of a model's parameterised layers, and the conversion of
one layer's parameters into its counterpart's.  Parameters are NumPy arrays in
PyTorch's layouts and names:

=================  ============================================================
kind               params
=================  ============================================================
``conv``           ``weight (O, I // groups, *k)``, ``bias (O,)``
``conv_transpose`` ``weight (I, O // groups, *k)``, ``bias (O,)``
``dense``          ``weight (out, in)``, ``bias (out,)``
``batch_norm``     ``weight``, ``bias``, ``running_mean``, ``running_var`` ``(C,)``
``layer_norm``     ``weight``, ``bias`` (the normalized shape, channels first)
``prelu``          ``weight (C,)`` (or ``(1,)``)
``embedding``      ``weight (num, dim)``
=================  ============================================================

The permutations that make the target compute what the source does (a shuffle of
another channel order, a flatten of another layout) come from the models' graphs
(:mod:`.frames`); here they are only applied.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = [
    "CHECKED",
    "KINDS",
    "Kind",
    "PortReport",
    "ReadError",
    "Record",
    "check_known",
    "check_settings",
    "convert_pair",
    "framework_of",
    "plain",
    "spec_settings",
    "strides",
]

Kind = Literal["conv", "conv_transpose", "dense", "batch_norm", "layer_norm", "prelu", "embedding"]
KINDS: tuple[Kind, ...] = (
    "conv",
    "conv_transpose",
    "dense",
    "batch_norm",
    "layer_norm",
    "prelu",
    "embedding",
)


@dataclass
class Record:
    """One parameterised layer of a model, as the porting sees it: its parameters in
    PyTorch's layouts (``params``), the path each has in the model's trace
    (``paths``, to find where the layer runs), the layout of its data, and the
    settings that change what it computes without being parameters (``settings``:
    compared between the models, never copied)."""

    kind: Kind
    name: str  # its path in the model (for messages and reports)
    params: dict[str, np.ndarray | None]
    spatial_dims: int = 0
    layout: str = "channels_first"  # of the data around the layer
    settings: dict[str, Hashable] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)  # param key -> path in the trace
    groups: int = 1
    # a per-channel layer's parameter axes in its input, channels first (a layer norm
    # over (C, H, W) of NHWC data: (3, 1, 2)); None: the layer's channel axis
    param_axes: tuple[int, ...] | None = None
    # the axis of the output channels in the kernel variable as the trace reads it
    # (Keras and Flax kernels: last; PyTorch's: 0); None: not a kernel of channels
    kernel_out_axis: int | None = None
    # the parameters' dtype in the model where ``params`` holds them wider (PyTorch's
    # float16 and bfloat16 as float32): what the port's tolerance allows for
    dtype: str | None = None

    @property
    def label(self) -> str:
        """Its name in messages (a layer passed alone as the model has none)."""
        return self.name or "(the model itself)"

    def describe(self) -> str:
        shapes = ", ".join(f"{k} {None if v is None else v.shape}" for k, v in self.params.items())
        return f"{self.label} ({self.kind}: {shapes})"


class ReadError(ValueError):
    """A model that cannot be read (said of `source` or `target` by port_weights)."""


def check_known(name: str, kind: str, params: list[str]) -> None:
    """Refuse a layer holding ``params`` that the porting does not read: copying the
    rest would leave it out without a word."""
    if params:
        raise ReadError(
            f"has parameters port_weights cannot convert: {name} ({kind}) holds "
            f"{', '.join(params)}; supported are convolutions, transposed convolutions, "
            "dense, batch and layer norms, PReLU, embeddings and subpixel's layers"
        )


def framework_of(model: Any, argname: str) -> str:
    """``"torch"``, ``"keras"`` or ``"flax"`` for a model; ``TypeError`` otherwise."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        return "torch"
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(model, keras.layers.Layer):
        return "keras"
    nnx = sys.modules.get("flax.nnx")
    if nnx is not None and isinstance(model, nnx.Module):
        return "flax"
    kind = type(model)
    raise TypeError(
        f"`{argname}` must be a PyTorch nn.Module, a Keras 3 model or a Flax NNX module. "
        f"Received: {argname} of type {kind.__module__}.{kind.__qualname__}"
    )


# settings that change what a layer computes without being a parameter: they must agree
CHECKED = {
    "eps": "`eps` (epsilon)",
    "groups": "`groups`",
    "stride": "the stride",
    "dilation": "the dilation",
    "padding_mode": "the padding mode",
    "factor": "`factor`",
    "blur": "`blur`",
    "padding": "the padding",
    "crop": "`crop`",
}


def spec_settings(spec: Any) -> dict[str, Hashable]:
    """The settings of one of subpixel's layers (a ``LayerSpec``) that must agree."""
    return {k: getattr(spec, k) for k in ("factor", "blur", "padding", "crop")}


def strides(value: Any, d: int) -> tuple[int, ...]:
    """A stride as ``d`` ints (Flax allows None or one int)."""
    value = 1 if value is None else value
    return tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else (int(value),) * d


def plain(v: Any) -> np.ndarray | None:
    """A parameter as a fresh NumPy array every framework can take: a copy (never a view
    of the model's memory), bfloat16 and other extension floats widened to float32."""
    if v is None:
        return None
    a = np.array(v, copy=True)
    if a.dtype.kind == "V" or a.dtype.name not in np.sctypeDict:
        a = a.astype(np.float32)
    if a.dtype.name.startswith("bfloat") or a.dtype.name.startswith("float8"):
        a = a.astype(np.float32)
    return a


def _permute(a: np.ndarray, perm: np.ndarray, axis: int) -> np.ndarray:
    """``a`` with index ``c`` of ``axis`` moved to ``perm[c]``."""
    out = np.empty_like(a)
    index: list[Any] = [slice(None)] * a.ndim
    index[axis] = perm
    out[tuple(index)] = a
    return out


def check_settings(src: Record, tgt: Record) -> None:
    """``ValueError`` naming the pair where a setting that is not a parameter differs."""
    for key in CHECKED.keys() & src.settings.keys() & tgt.settings.keys():
        a, b = src.settings[key], tgt.settings[key]
        same = (
            math.isclose(float(a), float(b), rel_tol=1e-6)  # type: ignore[arg-type]
            if key == "eps"
            else a == b
        )
        if not same:
            raise ValueError(
                f"the architectures differ at {src.label} -> {tgt.label}: {CHECKED[key]} is "
                f"{a} in the source and {b} in the target"
            )


def _group_map(perm: np.ndarray, groups: int) -> np.ndarray | None:
    """Where a permutation sends each group of channels (None where it splits one)."""
    size = len(perm) // groups
    target = perm.reshape(groups, size) // size
    if not np.all(target == target[:, :1]):
        return None
    return target[:, 0]


def _grouped(
    params: dict[str, np.ndarray | None],
    src: Record,
    tgt: Record,
    groups: int,
    out_perm: np.ndarray | None,
    in_perm: np.ndarray | None,
) -> None:
    """A grouped convolution's channels reordered: possible where the reorder moves
    whole groups (inputs and outputs alike) and reorders within them."""
    w = params.get("weight")
    refuse = ValueError(
        f"cannot port {src.label} -> {tgt.label}: it is a grouped convolution "
        f"(groups={groups}) whose channels come in another order in the target, which "
        "would move channels between its groups"
    )
    if src.kind != "conv" or w is None:
        raise refuse
    osize, isize = w.shape[0] // groups, w.shape[1]
    outs = out_perm if out_perm is not None else np.arange(w.shape[0])
    ins = in_perm if in_perm is not None else np.arange(isize * groups)
    maps = _group_map(outs, groups), _group_map(ins, groups)
    if maps[0] is None or maps[1] is None or not np.array_equal(maps[0], maps[1]):
        raise refuse
    new = np.empty_like(w)
    for g in range(groups):
        tg = int(maps[0][g])
        block = _permute(
            w[g * osize : (g + 1) * osize], outs[g * osize : (g + 1) * osize] - tg * osize, 0
        )
        block = _permute(block, ins[g * isize : (g + 1) * isize] - tg * isize, 1)
        new[tg * osize : (tg + 1) * osize] = block
    params["weight"] = new
    b = params.get("bias")
    if b is not None:
        params["bias"] = _permute(b, outs, 0)


def convert_pair(
    src: Record,
    tgt: Record,
    *,
    out_perm: np.ndarray | None = None,
    in_perm: np.ndarray | None = None,
    param_perm: np.ndarray | None = None,
) -> dict[str, np.ndarray | None]:
    """``src``'s parameters made fit for ``tgt`` (PyTorch layouts): its channels
    permuted as the graphs require (``out_perm``: output channels or features,
    ``in_perm``: input channels or features, ``param_perm``: a per-channel layer's
    parameters, flat over their axes); ``ValueError`` naming the pair where the layers
    differ in kind, setting or shape."""
    if src.kind != tgt.kind:
        raise ValueError(f"the architectures differ: {src.describe()} vs {tgt.describe()}")
    check_settings(src, tgt)
    params = {k: plain(v) for k, v in src.params.items()}
    out_axis, in_axis = {
        "conv": (0, 1),
        "conv_transpose": (1, 0),
        "dense": (0, 1),
        "embedding": (1, None),
    }.get(src.kind, (None, None))
    groups = max(src.groups, 1)
    if groups > 1 and (out_perm is not None or in_perm is not None):
        _grouped(params, src, tgt, groups, out_perm, in_perm)
        out_perm = in_perm = None  # applied
    for key, value in params.items():
        if value is None:
            continue
        if out_perm is not None and out_axis is not None:
            axis = out_axis if key == "weight" else 0
            if value.ndim > axis and value.shape[axis] == len(out_perm):
                params[key] = value = _permute(value, out_perm, axis)
        if in_perm is not None and in_axis is not None and key == "weight":
            if value.shape[in_axis] == len(in_perm):
                params[key] = _permute(value, in_perm, in_axis)
        if param_perm is not None and src.kind in ("batch_norm", "prelu", "layer_norm"):
            if value.size == len(param_perm) and value.size > 1:
                params[key] = _permute(value.reshape(-1), param_perm, 0).reshape(value.shape)
    for key in tgt.params:
        have, want = params.get(key), tgt.params[key]
        if (have is None) != (want is None) or (
            have is not None and want is not None and have.shape != want.shape
        ):
            raise ValueError(
                f"the architectures differ at {src.label} -> {tgt.label}: `{key}` is "
                f"{None if have is None else have.shape} in the source and "
                f"{None if want is None else want.shape} in the target"
            )
    return params


@dataclass
class PortReport:
    """What :func:`subpixel.port_weights` did: the pairs, the channel reorders the
    graphs required, and the max difference of every paired layer's output (like
    with like: the same point of each model, channels in the same order) and of the
    models' outputs on the example, with the tolerance they were held to."""

    pairs: list[tuple[str, str]]
    reorders: dict[str, str] = field(default_factory=dict)
    layer_max_diff: dict[str, float] = field(default_factory=dict)
    max_diff: float | None = None
    tolerance: float | None = None
    example: str = ""  # what the models were compared on

    def __str__(self) -> str:
        lines = [f"{len(self.pairs)} layers ported"]
        for name, what in self.reorders.items():
            lines.append(f"  {name}: {what}")
        for name, d in self.layer_max_diff.items():
            lines.append(f"  {name}: max difference {d:.3g}")
        if self.max_diff is not None:
            lines.append(
                f"output: max difference {self.max_diff:.3g} (tolerance {self.tolerance:.3g}"
                + (f", on {self.example}" if self.example else "")
                + ")"
            )
        return "\n".join(lines)
