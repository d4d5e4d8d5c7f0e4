"""Keras emitters of :mod:`subpixel._core.lowering`: the same numbers as
:func:`subpixel.shuffle` in every lowering, as Keras ops, so that a model converted
to LiteRT/TFLite (TensorFlow backend) holds the graph asked for.

``native`` is TensorFlow's ``depth_to_space``/``space_to_depth`` (TFLite
``DEPTH_TO_SPACE``/``SPACE_TO_DEPTH``), which are DCR and channels_last only: a CRD
shuffle gathers its channels first, a CRD unshuffle after, and a CRD ``SubPixelConv``
reorders its kernel instead (no extra op).  On the other Keras backends, and in eager
mode, ``native`` and ``auto`` compute with :func:`subpixel.shuffle`.
"""

from __future__ import annotations

from typing import Any

import keras

from .. import ops, weights
from .._core import lowering as _lowering
from .._core import spec as _spec
from .._core.channels import gather_index
from .._core.layer_spec import LayerSpec

__all__ = ["fold_kernel", "rearrange", "sub_pixel_conv", "tracing_for_tflite"]


def tracing_for_tflite() -> bool:
    """True while TensorFlow traces a graph (``tf.function``, a TFLite conversion)."""
    if keras.config.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return not tf.executing_eagerly()


def _plan(x: Any, op: str, factor: Any, spatial_dims: Any, layout: str, order: str) -> _spec.Plan:
    shape = tuple(keras.ops.shape(x))  # ints, or scalar tensors where a size is unknown
    return _spec.make_plan(op, shape, factor, spatial_dims, layout, order, cache=False)


def _native(x: Any, plan: _spec.Plan, gather: bool) -> Any:
    r = plan.factor[0]
    channels = x.shape[-1]
    if plan.op == "shuffle":
        if gather and plan.order == "CRD":  # the op reads DCR channels
            x = keras.ops.take(x, gather_index(channels, plan.factor, "CRD", "DCR"), axis=-1)
        return keras.ops.depth_to_space(x, r, data_format="channels_last")
    y = keras.ops.space_to_depth(x, r, data_format="channels_last")
    if plan.order == "CRD":  # the op writes DCR channels
        y = keras.ops.take(y, gather_index(channels * r * r, plan.factor, "DCR", "CRD"), axis=-1)
    return y


def _conv(x: Any, plan: _spec.Plan) -> Any:
    nbatch = plan.batch_ndim
    channels = (plan.out_shape if plan.op == "shuffle" else plan.in_shape)[
        nbatch if plan.layout == "channels_first" else -1
    ]
    kernel, _ = _lowering.one_hot_kernel(channels, plan.factor, plan.order, dense=True)
    kernel = keras.ops.cast(
        weights.convert_layout(kernel, src="torch", dst="keras", transposed=plan.op == "shuffle"),
        x.dtype,
    )
    fn = keras.ops.conv_transpose if plan.op == "shuffle" else keras.ops.conv
    return fn(x, kernel, strides=plan.factor, padding="valid", data_format=plan.layout)


def _one_batch_axis(x: Any, nbatch: int, fn: Any) -> Any:
    """``fn`` of ``x`` with its ``nbatch`` leading batch axes (none, or several) made one."""
    shape = tuple(keras.ops.shape(x))
    y = fn(keras.ops.reshape(x, (-1, *shape[nbatch:])))
    return keras.ops.reshape(y, (*shape[:nbatch], *tuple(keras.ops.shape(y))[1:]))


def rearrange(
    x: Any,
    op: str,
    factor: Any,
    spatial_dims: Any,
    order: str,
    layout: str,
    lowering: str,
    *,
    folded: bool = False,
) -> Any:
    """``subpixel.shuffle``/``unshuffle`` in ``lowering``; ``folded``: the channels were
    already put in DCR order by the kernel (a CRD SubPixelConv, ``native``)."""
    tracing = tracing_for_tflite()
    kw = {"spatial_dims": spatial_dims, "layout": layout, "order": order}
    if lowering in ("auto", "native") and not tracing:
        return getattr(ops, op)(x, factor, **kw)
    plan = _plan(x, op, factor, spatial_dims, layout, order)
    if plan.batch_ndim != 1 and lowering in ("conv", "native"):
        # the ops take one batch axis: the batch axes become one around them
        def one(t: Any) -> Any:
            return rearrange(t, op, factor, spatial_dims, order, layout, lowering, folded=folded)

        return _one_batch_axis(x, plan.batch_ndim, one)
    native = layout == "channels_last" and plan.batch_ndim == 1
    if lowering == "native" or (
        lowering == "auto" and native and _lowering.has_native_op(plan.factor)
    ):
        if folded:
            plan = _plan(x, op, factor, spatial_dims, layout, "DCR")
        return _native(x, plan, gather=not folded)
    if lowering == "flat":
        for shape, perm in _lowering.flat_steps(plan):
            x = keras.ops.transpose(keras.ops.reshape(x, shape), perm)
        return keras.ops.reshape(x, plan.out_shape)
    if lowering == "conv":
        return _conv(x, plan)
    y = keras.ops.transpose(keras.ops.reshape(x, plan.src_shape), plan.perm)
    return keras.ops.reshape(y, plan.out_shape)


def fold_kernel(kernel: Any, bias: Any, factor: tuple[int, ...]) -> tuple[Any, Any]:
    """A CRD layer's kernel ``(*k, C_in, C_out * R)`` and bias with their output
    channels put in DCR order, for TensorFlow's DCR-only ``depth_to_space``."""
    index = gather_index(kernel.shape[-1], factor, "CRD", "DCR")
    kernel = keras.ops.take(kernel, index, axis=-1)
    return kernel, (None if bias is None else keras.ops.take(bias, index, axis=0))


def sub_pixel_conv(x: Any, kernel: Any, bias: Any, spec: LayerSpec, lowering: str) -> Any:
    """A sub-pixel convolution as Keras ops, the shuffle in ``lowering`` (what a TFLite
    conversion records): ``kernel`` in Keras's layout ``(*k, C_in, C_out * R)``."""
    kernel = keras.ops.cast(kernel, x.dtype)
    bias = None if bias is None else keras.ops.cast(bias, x.dtype)
    tracing = tracing_for_tflite()
    native = lowering == "native" or (
        lowering == "auto"
        and spec.layout == "channels_last"
        and _lowering.has_native_op(spec.factor)
    )
    folded = native and tracing and spec.order == "CRD"
    if folded:  # put the kernel's channels in depth_to_space's DCR order: no extra op
        kernel, bias = fold_kernel(kernel, bias, spec.factor)
    channels_first = spec.layout == "channels_first"
    if any(a or b for a, b in spec.padding):
        pads = [list(p) for p in spec.padding]
        x = keras.ops.pad(x, [[0, 0], [0, 0], *pads] if channels_first else [[0, 0], *pads, [0, 0]])
    y = keras.ops.conv(x, kernel, padding="valid", data_format=spec.layout)
    if bias is not None:
        shape = (-1,) + (1,) * spec.spatial_dims if channels_first else (-1,)
        y = y + keras.ops.reshape(bias, shape)
    y = rearrange(
        y,
        "shuffle",
        spec.factor,
        spec.spatial_dims,
        spec.order,
        spec.layout,
        lowering,
        folded=folded,
    )
    if spec.blur:
        y = ops.blur(y, spatial_dims=spec.spatial_dims, layout=spec.layout)
    if spec.has_crop:
        y = y[_spec.crop_key(2 + spec.spatial_dims, spec.spatial_dims, spec.layout, spec.crop)]
    return y
