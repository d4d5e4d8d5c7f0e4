"""Exact rewrites of a functional or Sequential Keras model (a copy is returned; the
model itself is left as it is): its strided transposed convolutions as their
sub-pixel equivalents (:class:`~subpixel.layers.keras.SubPixelConv`), and its pixel
shuffles written with Keras or TensorFlow ops as subpixel's layers, so that
``lowering=`` applies to them.

>>> import keras, numpy as np
>>> from subpixel.rewrite.keras import replace_conv_transpose
>>> inputs = keras.Input((5, 5, 8))
>>> model = keras.Model(inputs, keras.layers.Conv2DTranspose(4, 4, 2, "same")(inputs))
>>> rewritten = replace_conv_transpose(model)
>>> type(rewritten.layers[-1]).__name__
'SubPixelConv'
>>> x = np.random.default_rng(0).standard_normal((1, 5, 5, 8)).astype("float32")
>>> def run(m): return keras.ops.convert_to_numpy(m(x))
>>> bool(np.allclose(run(rewritten), run(model), atol=1e-5))
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from .. import ops
from .._core import timing as _timing
from .._core.lowering import Lowering
from .._core.spec import Layout, Order
from .._frameworks.keras import to_numpy, walk, watching
from ..layers.keras import PixelShuffle, PixelUnshuffle, SubPixelConv, from_agnostic
from . import check_mode, example_error

__all__ = ["replace_conv_transpose", "replace_pixel_shuffle", "shuffle_op", "sub_pixel_of"]

_CONV_T = (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose)


def _replaceable(layer: Any) -> bool:
    return (
        isinstance(layer, _CONV_T)
        and any(s > 1 for s in layer.strides)
        and all(v == 1 for v in layer.dilation_rate)
        and layer.padding in ("same", "valid")
    )


def sub_pixel_of(layer: Any) -> SubPixelConv:
    """The exact sub-pixel form of a built ``Conv1D/2D/3DTranspose`` (stride > 1,
    undilated), with its activation, name and data format."""
    from ..layer import SubPixelConv as Agnostic

    kernel = to_numpy(layer.kernel)
    bias = to_numpy(layer.bias) if layer.bias is not None else None
    agnostic = Agnostic.from_conv_transpose(
        kernel,
        bias,
        stride=tuple(layer.strides),
        padding=layer.padding,
        output_padding=None if layer.output_padding is None else tuple(layer.output_padding),
        source="tensorflow",
        layout=layer.data_format,
    )
    new = from_agnostic(agnostic, data_format=layer.data_format, dtype=layer.dtype_policy)
    new.activation = layer.activation
    new.name = layer.name
    return new


def _rewrite(model: Any, replace: Any) -> Any:
    """A functional or Sequential copy of ``model`` with ``replace(layer)`` (None: keep)
    for each layer; the other layers keep their weights."""
    _check_model(model)
    kept: list[tuple[Any, Any]] = []  # (original, its clone) of the layers not replaced

    def clone(layer: Any) -> Any:
        new = replace(layer)
        if new is not None:
            new.trainable = getattr(layer, "trainable", True)
            return new
        if isinstance(layer, keras.layers.Lambda):  # the same function, not a
            new = keras.layers.Lambda(  # serialised one (Keras refuses to load it)
                layer.function,
                output_shape=layer._output_shape,
                mask=layer.mask,
                arguments=layer.arguments,
                name=layer.name,
                dtype=layer.dtype_policy,
            )
        else:
            new = layer.__class__.from_config(layer.get_config())
        kept.append((layer, new))
        return new

    # nested models are cloned layer by layer; graph operations (keras.ops calls) too
    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    for old, new in kept:
        if isinstance(old, keras.layers.Layer) and old.weights:
            new.set_weights(old.get_weights())
    return copy


def _check_model(model: Any) -> None:
    """A functional or Sequential Keras model that has been built."""
    if not _is_graph(model):
        kind = type(model)
        why = (
            " (a subclassed model's `call` is code, which cannot be rewritten: rewrite its "
            "layers with `sub_pixel_of`)"
            if isinstance(model, keras.Model)
            else ""
        )
        raise TypeError(
            f"`model` must be a functional or Sequential Keras model{why}. "
            f"Received: model of type {kind.__module__}.{kind.__qualname__}"
        )
    if not model.built or not model.inputs:
        raise ValueError(
            "`model` must be built (give the Sequential model a `keras.Input`, or call it "
            f"once): its layers have no weights yet. Received: model {model.name!r}"
        )


def _is_graph(model: Any) -> bool:
    """Whether ``model`` is a functional or Sequential model (a graph of layers)."""
    try:
        from keras.src.models.functional import Functional
    except ImportError:  # pragma: no cover - a Keras that moved it
        return hasattr(model, "operations") and hasattr(model, "inputs")
    return isinstance(model, (keras.Sequential, Functional))


def replace_conv_transpose(model: Any, *, mode: str = "subpixel", example: Any = None) -> Any:
    """A copy of a functional or Sequential ``model`` whose stride > 1
    ``Conv1D/2D/3DTranspose`` layers are their exact sub-pixel equivalents (a
    :class:`SubPixelConv` with the crop it needs and the same activation).

    ``mode="fastest"``: run ``model`` on ``example``, time each layer and its sub-pixel
    form on the layer's own input (each compiled by the backend as a one-layer model)
    and replace only the layers whose sub-pixel form is faster."""
    check_mode(mode, example, ("subpixel", "fastest"))
    _check_model(model)
    faster = _faster_as_sub_pixel(model, example) if mode == "fastest" else None

    def replace(layer: Any) -> Any:
        if not _replaceable(layer) or (faster is not None and id(layer) not in faster):
            return None
        return sub_pixel_of(layer)

    return _rewrite(model, replace)


def _faster_as_sub_pixel(model: Any, example: Any) -> set[int]:
    """The ids of ``model``'s replaceable layers (nested models' included) whose
    sub-pixel form runs faster on the input the layer gets from ``example``."""
    layers = [layer for layer in walk(model) if _replaceable(layer)]
    if not layers:
        return set()
    inputs: dict[int, np.ndarray] = {}

    def seen(layer: Any, args: tuple) -> None:
        if id(layer) not in inputs:
            inputs[id(layer)] = keras.ops.convert_to_numpy(args[0])

    try:
        if len(model.inputs) > 1 and isinstance(example, (list, tuple)):
            x: Any = [np.asarray(e) for e in example]
        else:
            x = np.asarray(example)
        with watching(layers, seen):
            model(x, training=False)
    except Exception as e:
        raise example_error(e, example) from None
    chosen = set()
    for layer in layers:
        if id(layer) not in inputs:
            continue  # not reached by the example: kept
        x = inputs[id(layer)]
        twin = layer.__class__.from_config(layer.get_config())  # the user's layer untouched
        twin.build(x.shape)
        twin.set_weights(layer.get_weights())
        runs = []
        for candidate in (twin, sub_pixel_of(layer)):
            inp = keras.Input(x.shape[1:], dtype=layer.compute_dtype)
            one = keras.Model(inp, candidate(inp))
            runs.append(lambda one=one, x=x: one.predict_on_batch(x))
        if _timing.fastest(runs) == 1:
            chosen.add(id(layer))
    return chosen


def shuffle_op(operation: Any) -> tuple[str, Order, tuple[int, ...], Layout] | None:
    """``(op, order, factor, data_format)`` if ``operation`` (a layer of a functional
    model, or one of its graph operations) is a pixel shuffle (``op="shuffle"``) or
    unshuffle: subpixel's :class:`PixelShuffle`/:class:`PixelUnshuffle`, or
    ``keras.ops.depth_to_space``/``space_to_depth`` or a ``Lambda`` (calling
    ``tf.nn.depth_to_space``, say) that does exactly a shuffle, which is found by
    running it on a probe and comparing with :func:`subpixel.shuffle` in each order and
    layout its static shapes allow."""
    if isinstance(operation, PixelShuffle):  # and PixelUnshuffle, a subclass
        return operation.op, operation.order, operation.factor, operation.data_format
    if isinstance(operation, keras.layers.Layer) and not isinstance(operation, keras.layers.Lambda):
        return None
    nodes = getattr(operation, "_inbound_nodes", [])
    if len(nodes) != 1 or len(nodes[0].input_tensors) != 1 or len(nodes[0].outputs) != 1:
        return None
    shape_in, shape_out = nodes[0].input_tensors[0].shape, nodes[0].outputs[0].shape
    layout: Layout
    for layout in ("channels_last", "channels_first"):
        guess = _shuffle_guess(tuple(shape_in), tuple(shape_out), layout)
        if guess is None:
            continue
        op, factor, probe_shapes = guess
        order = _probed_order(operation, op, factor, layout, probe_shapes)
        if order is not None:
            return op, order, factor, layout
    return None


def _probed_order(
    operation: Any,
    op: str,
    factor: tuple[int, ...],
    data_format: Layout,
    probe_shapes: Sequence[tuple[int, ...]],
) -> Order | None:
    """The order in which ``operation`` does exactly ``op`` on every probe, or None.

    Each probe shape is run twice: with element indices (of both signs, exact in
    float32: which element goes where, and that a ``relu`` shows) and with random
    values of every magnitude from 1e-3 to 1e6 (rounding, clipping, scaling show).
    Where a spatial size is not fixed it is probed small and larger than 64, so a
    crop to a fixed size shows too."""
    fn = ops.shuffle if op == "shuffle" else ops.unshuffle
    rng = np.random.default_rng(0)
    found: Order | None = None
    for shape in probe_shapes:
        n = math.prod(shape)
        indices = (np.arange(n) % 2**24 - min(n, 2**24) // 2).astype(np.float32)
        scales = 10.0 ** rng.uniform(-3, 6, n)
        noise = (rng.standard_normal(n) * scales).astype(np.float32)
        for k, values in enumerate((indices, noise)):
            probe = values.reshape(shape)
            try:
                got = keras.ops.convert_to_numpy(operation(probe))
            except Exception:  # it cannot run on the probe: not a shuffle we know
                return None
            orders: tuple[Order, ...] = ("CRD", "DCR") if found is None else (found,)
            matched = [
                o
                for o in orders
                if got.shape == (want := fn(probe, factor, layout=data_format, order=o)).shape
                and np.array_equal(got, want)
            ]
            if not matched:
                return None
            if found is None and k == 0:
                found = matched[0]
    return found


def _shuffle_guess(
    shape_in: tuple, shape_out: tuple, data_format: str
) -> tuple[str, tuple[int, ...], list[tuple[int, ...]]] | None:
    """``(op, factor, probe shapes)`` that static shapes allow for a shuffle in
    ``data_format``, or None."""
    d = len(shape_in) - 2
    if d < 1 or len(shape_out) != len(shape_in):
        return None
    channel = -1 if data_format == "channels_last" else 1
    spatial = range(1, 1 + d) if data_format == "channels_last" else range(2, 2 + d)
    c_in, c_out = shape_in[channel], shape_out[channel]
    if not (isinstance(c_in, int) and isinstance(c_out, int)) or min(c_in, c_out) < 1:
        return None
    op = "shuffle" if c_in > c_out else "unshuffle"
    big, small = max(c_in, c_out), min(c_in, c_out)
    if big % small or big == small:
        return None
    q = big // small
    factor = []
    for axis in spatial:
        a, b = shape_in[axis], shape_out[axis]
        if isinstance(a, int) and isinstance(b, int) and a > 0 and b > 0:
            r, rest = divmod(b, a) if op == "shuffle" else divmod(a, b)
            factor.append(r if rest == 0 else 0)
        else:
            r = round(q ** (1 / d))
            factor.append(r if r**d == q else 0)
    if 0 in factor or math.prod(factor) != q:
        return None
    probes = []
    for multiple in (2, 67):  # small, and larger than a crop to 64
        probe = [1, *shape_in[1:]]
        for axis, r in zip(spatial, factor):
            if not isinstance(probe[axis], int):
                probe[axis] = multiple * r  # divisible for an unshuffle
        if tuple(probe) not in probes:
            probes.append(tuple(probe))
    return op, tuple(factor), probes


def replace_pixel_shuffle(model: Any, *, lowering: Lowering = "auto") -> Any:
    """A copy of a functional or Sequential ``model`` whose pixel shuffles written
    with Keras or TensorFlow (``keras.ops.depth_to_space``/``space_to_depth``, or
    ``Lambda`` layers doing exactly a shuffle, as :func:`shuffle_op` finds) are
    subpixel's :class:`PixelShuffle`/:class:`PixelUnshuffle` in the same order and
    layout, so that ``lowering=`` applies to them (the same numbers)."""

    def replace(operation: Any) -> Any:
        if isinstance(operation, PixelShuffle):
            return None
        found = shuffle_op(operation)
        if found is None:
            return None
        op, order, factor, data_format = found
        cls = PixelShuffle if op == "shuffle" else PixelUnshuffle
        return cls(
            factor, order=order, data_format=data_format, lowering=lowering, name=operation.name
        )

    return _rewrite(model, replace)
