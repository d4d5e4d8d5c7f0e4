"""The neutral description of a model's parameterised layers, and the conversions
between two of them.  Parameters are NumPy arrays in PyTorch's layouts and names:

=================  ============================================================
kind               params
=================  ============================================================
``conv``           ``weight (O, I // groups, *k)``, ``bias (O,)``
``conv_transpose`` ``weight (I, O // groups, *k)``, ``bias (O,)``
``dense``          ``weight (out, in)``, ``bias (out,)``
``batch_norm``     ``weight``, ``bias``, ``running_mean``, ``running_var`` ``(C,)``
``layer_norm``     ``weight``, ``bias`` (the normalized shape)
``prelu``          ``weight (C,)`` (or ``(1,)``)
``embedding``      ``weight (num, dim)``
=================  ============================================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._core.channels import gather_index
from ..backends import standard_dtype

KINDS = ("conv", "conv_transpose", "dense", "batch_norm", "layer_norm", "prelu", "embedding")


@dataclass
class Record:
    """One parameterised layer of a model, as the porting sees it."""

    kind: str
    name: str  # its path in the model (for messages and reports)
    params: dict[str, np.ndarray | None]
    spatial_dims: int = 0
    # a convolution feeding a pixel shuffle, or a per-channel layer (batch norm, PReLU)
    # between the two: (order, factor) of that shuffle
    shuffle: tuple[str, tuple[int, ...]] | None = None
    # a dense layer after a flatten: the features' shape (C, *spatial) and, for each
    # input of the dense layer, which feature it is (its index in that shape, flattened)
    flatten: tuple[tuple[int, ...], np.ndarray] | None = None
    layout: str = "channels_first"  # the layout of the data around the layer
    extra: dict[str, Any] = field(default_factory=dict)  # eps, groups, ... (checked, not copied)
    run_index: int | None = None  # when it first ran on the example, if every layer did

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


def flatten_features(
    features: tuple[int, ...], layout: str, *, channels_moved_last: bool = False
) -> tuple[tuple[int, ...], np.ndarray]:
    """A flatten's record: ``features`` is ``(C, *spatial)``; the data is in ``layout``
    and flattened in its array order, after Keras's ``Flatten(data_format=
    "channels_first")`` moved its axis 0 to the end (``channels_moved_last``)."""
    index = np.arange(math.prod(features)).reshape(features)
    if layout == "channels_last":
        index = np.moveaxis(index, 0, -1)
    if channels_moved_last:
        index = np.moveaxis(index, 0, -1)
    return tuple(features), index.ravel()


def convert_pair(src: Record, tgt: Record) -> dict[str, np.ndarray | None]:
    """``src``'s parameters made fit for ``tgt``; ``ValueError`` naming the pair if the
    layers differ in kind or shape."""
    if src.kind != tgt.kind:
        raise ValueError(f"the architectures differ: {src.describe()} vs {tgt.describe()}")
    for key in CHECKED.keys() & src.extra.keys() & tgt.extra.keys():
        a, b = src.extra[key], tgt.extra[key]
        if not (math.isclose(a, b, rel_tol=1e-6) if key == "eps" else a == b):
            raise ValueError(
                f"the architectures differ at {src.label} -> {tgt.label}: {CHECKED[key]} is "
                f"{a} in the source and {b} in the target"
            )
    params = {k: plain(v) for k, v in src.params.items()}
    _check_groups(src, tgt)
    if src.extra.get("then") or tgt.extra.get("then"):  # shuffles in a row
        _reorder_chain(params, src, tgt)
    elif src.shuffle and tgt.shuffle and src.shuffle[0] != tgt.shuffle[0]:
        # it feeds a shuffle whose order differs: its output channels change order
        _reorder(params, src.shuffle, tgt.shuffle[0], input_channels=False)
    src_in, tgt_in = src.extra.get("unshuffle"), tgt.extra.get("unshuffle")
    if src_in and tgt_in and src_in[0] != tgt_in[0]:
        # an unshuffle feeds it: a convolution's input channels change order, a
        # per-channel layer's channels
        _reorder(params, src_in, tgt_in[0], input_channels=src.kind == "conv")
    if src.kind == "dense" and params["weight"] is not None:
        params["weight"] = _dense_inputs(src, tgt, params["weight"])
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


def _check_groups(src: Record, tgt: Record) -> None:
    """A grouped convolution's channels can change order only within their groups: a
    shuffle or unshuffle of another order around it would move them between groups."""
    groups = int(src.extra.get("groups", 1)) if src.kind == "conv" else 1
    if groups == 1:
        return
    moves: list[bool] = []
    weight = src.params.get("weight")
    if weight is not None and src.shuffle and tgt.shuffle and src.shuffle[0] != tgt.shuffle[0]:
        out, size = weight.shape[0], weight.shape[0] // groups
        index = gather_index(out, src.shuffle[1], src.shuffle[0], tgt.shuffle[0])
        moves.append(bool(np.any(index // size != np.arange(out) // size)))
    src_in, tgt_in = src.extra.get("unshuffle"), tgt.extra.get("unshuffle")
    moves.append(bool(src_in and tgt_in and src_in[0] != tgt_in[0]))
    if any(moves):
        raise ValueError(
            f"cannot port {src.label} -> {tgt.label}: it is a grouped convolution "
            f"(groups={groups}) next to a pixel shuffle whose channel order differs between "
            "the models, which would move channels between its groups"
        )


PER_CHANNEL = ("batch_norm", "prelu")

# settings that change what a layer computes without being a parameter: they must agree
CHECKED = {
    "eps": "`eps` (epsilon)",
    "groups": "`groups`",
    "stride": "the stride",
    "factor": "`factor`",
    "blur": "`blur`",
    "padding": "the padding",
    "crop": "`crop`",
}


def spec_settings(spec: Any) -> dict[str, Any]:
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
    return standard_dtype(np.array(v, copy=True))


Shuffle = tuple[str, str, tuple[int, ...]]  # ("shuffle" or "unshuffle", order, factor)


def note_run_order(records: list[Record], ran: Sequence[object] | None) -> bool:
    """Give each record the rank of its layer's first run on the example (``ran``: the
    names of the modules as they were called), if every one of them ran; whether they
    all did.  Pairing in that order is one of the two orders ``port_weights`` tries."""
    if ran is None:
        return False
    first: dict[str, int] = {}
    for name in ran:
        if isinstance(name, str):  # (not a shuffle called as a function)
            first.setdefault(name, len(first))
    if any(r.name not in first for r in records):
        return False
    for r in records:
        r.run_index = first[r.name]
    return True


def mark_in_order(sequence: list[Record | Shuffle]) -> None:
    """Where a model cannot be traced, its modules' order tells: a shuffle marks the
    convolution before it (and the per-channel layers between them), an unshuffle the
    convolution after it (and those between)."""
    chain: list[Record] = []  # the last convolution and the per-channel layers after it
    shuffled: list[Record] = []  # those whose output the last shuffle had, if nothing since
    pending: tuple[tuple[str, tuple[int, ...]], list[Record]] | None = None
    for item in sequence:
        if isinstance(item, tuple):
            op, order, factor = item
            if op == "shuffle":
                if chain:
                    for r in chain:
                        r.shuffle = (order, factor)
                    shuffled = chain
                else:  # a shuffle of a shuffle's output
                    add_then(shuffled, (order, factor))
                chain = []
            else:
                pending = ((order, factor), [])
                shuffled = []
        elif item.kind == "conv":
            chain = [] if item.shuffle else [item]  # subpixel's layers shuffle inside
            shuffled = [item] if item.shuffle else []
            if pending is not None:
                for r in (item, *pending[1]):
                    r.extra["unshuffle"] = pending[0]
            pending = None
        elif item.kind in PER_CHANNEL:
            if chain:
                chain.append(item)
            for r in shuffled:  # between two shuffles: not converted
                r.extra["chain_unsupported"] = True
            if pending is not None:
                pending[1].append(item)
        else:
            chain, shuffled, pending = [], [], None


def mark_shuffle(
    conv: Record, between: list[Record], shuffle: tuple[str, tuple], through: bool
) -> None:
    """``conv`` (and the per-channel layers ``between`` it and the shuffle) feeds
    ``shuffle``; if its output was shuffled already (subpixel's layers shuffle inside,
    or ``through`` an earlier shuffle), that is one more shuffle in a row."""
    if conv.shuffle is None and not through:
        for r in (conv, *between):
            r.shuffle = shuffle
        conv.extra["group"] = between
    else:
        add_then([conv, *conv.extra.get("group", [])], shuffle)
        if between:  # a batch norm between a subpixel layer and the shuffle
            conv.extra["chain_unsupported"] = True


def add_then(records: list[Record], shuffle: tuple[str, tuple[int, ...]]) -> None:
    """``records`` (a convolution and the per-channel layers after it, whose output a
    shuffle already had) go through one more shuffle."""
    for r in records:
        r.extra.setdefault("then", []).append(shuffle)


def _reorder(
    params: dict[str, np.ndarray | None],
    shuffle: tuple[str, tuple[int, ...]],
    order: str,
    *,
    input_channels: bool,
) -> None:
    """Put a layer's channels from ``shuffle``'s order into ``order``: a convolution's
    output channels (weight axis 0 and bias) or input channels (weight axis 1), every
    per-channel parameter of a batch norm or PReLU (a single shared value stays)."""
    src_order, factor = shuffle
    for key, value in params.items():
        if value is None or value.ndim == 0 or (input_channels and key != "weight"):
            continue
        axis = 1 if input_channels else 0
        if value.shape[axis] > 1:
            index = gather_index(value.shape[axis], factor, src_order, order)
            params[key] = np.take(value, index, axis=axis)


def chain_of(r: Record) -> list[tuple[str, tuple[int, ...]]]:
    """The shuffles ``r``'s output goes through, in turn (``(order, factor)`` each)."""
    return ([r.shuffle] if r.shuffle else []) + list(r.extra.get("then", []))


def _chain_index(channels: int, chain: list[tuple[str, tuple[int, ...]]]) -> np.ndarray:
    """For each value of the output of ``chain`` applied to ``channels`` channels (1 x 1
    pixels), the channel it comes from."""
    from .. import ops

    x = np.arange(channels).reshape(1, channels, *(1,) * len(chain[0][1]))
    for order, factor in chain:
        x = ops.shuffle(
            x, factor, order="DCR" if order == "DCR" else "CRD", layout="channels_first"
        )
    return x.ravel()


def _reorder_chain(params: dict[str, np.ndarray | None], src: Record, tgt: Record) -> None:
    """A layer feeding shuffles in a row (a shuffle of a shuffle, a subpixel layer and
    then a shuffle): its channels reordered so that every output value comes from the
    same channel in the target's chain of orders as in the source's."""
    a, b = chain_of(src), chain_of(tgt)
    between = src.extra.get("chain_unsupported") or tgt.extra.get("chain_unsupported")
    if between or [f for _, f in a] != [f for _, f in b]:
        raise ValueError(
            f"cannot convert {src.label} -> {tgt.label}: its output goes through the shuffles "
            f"{a} in the source and {b} in the target"
            + ("; a batch norm or PReLU between two shuffles is not converted" if between else "")
        )
    if [o for o, _ in a] == [o for o, _ in b]:
        return
    for key, value in params.items():
        if value is None or value.ndim == 0 or value.shape[0] == 1:
            continue
        from_src, from_tgt = _chain_index(value.shape[0], a), _chain_index(value.shape[0], b)
        index = np.empty_like(from_tgt)
        index[from_tgt] = from_src  # the target's channel t is the source's index[t]
        params[key] = np.take(value, index, axis=0)


def _dense_inputs(src: Record, tgt: Record, w: np.ndarray) -> np.ndarray:
    """The dense kernel's inputs in the target's flatten order.  Where only one side's
    flatten was traced (Flax reshapes in code), the other is taken to flatten the same
    features in its own layout, as a model does that flattens its activations."""
    unknown = [r.name for r in (src, tgt) if r.extra.get("flatten_unknown")]
    if unknown and not (src.flatten or tgt.flatten) and src.layout != tgt.layout:
        raise ValueError(
            f"a flatten feeds the dense layer {unknown[0]} and its input's shape is unknown, "
            f"so the order of its inputs cannot be converted from {src.layout} to "
            f"{tgt.layout}: pass `example=` (an input for the source) so that it is traced"
        )
    s = src.flatten or (tgt.flatten and flatten_features(tgt.flatten[0], src.layout))
    t = tgt.flatten or (src.flatten and flatten_features(src.flatten[0], tgt.layout))
    if not (s and t) or s[0] != t[0] or len(s[1]) != w.shape[1]:
        return w
    position = np.empty_like(s[1])
    position[s[1]] = np.arange(len(s[1]))  # feature -> its input of the source's layer
    return w[:, position[t[1]]]


@dataclass
class PortReport:
    """What :func:`subpixel.port_weights` did: the pairs, and with an example the max
    difference of every paired layer's output and of the models' outputs."""

    pairs: list[tuple[str, str]]
    layer_max_diff: dict[str, float] = field(default_factory=dict)
    max_diff: float | None = None

    def compare(
        self, src: dict[str, Any], tgt: dict[str, Any], layouts: tuple[str, str] | None
    ) -> None:
        """Fill the differences from the two runs' outputs (``"__output__"`` and, where
        a framework records them, each layer's output by name); ``layouts`` (source's,
        target's) where the models' images are in those layouts."""
        move = layouts is not None and layouts[0] != layouts[1]

        def diff(a: Any, b: Any) -> float:
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            if move and layouts is not None and b.ndim >= 3:  # the target's to the source's
                b = (
                    np.moveaxis(b, -1, 1)
                    if layouts[0] == "channels_first"
                    else np.moveaxis(b, 1, -1)
                )
            if a.shape != b.shape:
                return float("nan")
            with np.errstate(invalid="ignore"):  # a NaN or inf in both agrees
                d = np.where((a == b) | (np.isnan(a) & np.isnan(b)), 0.0, np.abs(a - b))
            return float(d.max()) if d.size else 0.0

        self.max_diff = diff(src["__output__"], tgt["__output__"])
        for s_name, t_name in self.pairs:
            if s_name in src and t_name in tgt:
                self.layer_max_diff[f"{s_name} -> {t_name}"] = diff(src[s_name], tgt[t_name])

    def __str__(self) -> str:
        lines = [f"{len(self.pairs)} layers ported"]
        for name, d in self.layer_max_diff.items():
            lines.append(f"  {name}: max difference {d:.3g}")
        if self.max_diff is not None:
            lines.append(f"output: max difference {self.max_diff:.3g}")
        return "\n".join(lines)
