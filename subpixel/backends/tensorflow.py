"""TensorFlow backend.

* ``reshape -> transpose -> reshape`` from the plan.  channels_first never uses
  ``data_format="NCHW"``, which has no CPU kernel.
* ``order="DCR"``, ``channels_last``, 2-D, square factor, one batch axis, small
  tensor: TensorFlow's own ``depth_to_space``/``space_to_depth`` (the same
  function, one op instead of three).  On large tensors its CPU kernel is slower
  than the transpose (docs/benchmarks.md), so it is not used there.
* Unknown dimensions (a ``None`` batch in a ``tf.function`` signature, unknown
  spatial sizes) are read from ``tf.shape`` at run time.

Tensors are immutable: ``out=`` is refused by :mod:`subpixel.ops`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from .._core.spec import ConvPlan, Plan, make_plan, spatial_not_divisible
from ._base import ArrayBackend

_NATIVE_MAX_ELEMENTS = 1 << 18  # above this, transpose beats depth_to_space on CPU
# ops are placed on a GPU whenever one exists: then pin them to the input's device
_HAS_GPU = bool(tf.config.list_logical_devices("GPU"))

# dtypes TensorFlow's depth_to_space/space_to_depth have CPU kernels for
_NATIVE_DTYPES = frozenset(
    {
        tf.float16,
        tf.bfloat16,
        tf.float32,
        tf.float64,
        tf.int8,
        tf.uint8,
        tf.int16,
        tf.int32,
        tf.int64,
        tf.uint16,
        tf.complex64,
        tf.complex128,
        tf.bool,
    }
)


# quantized dtypes have no transpose kernel: they move as the integers of their width
_QUANTIZED_AS = {
    tf.qint8: tf.int8,
    tf.quint8: tf.uint8,
    tf.qint16: tf.int16,
    tf.quint16: tf.uint16,
    tf.qint32: tf.int32,
}


def _is_native(plan: Plan, dtype) -> bool:
    f = plan.factor
    return (
        plan.order == "DCR"
        and plan.layout == "channels_last"
        and len(f) == 2
        and f[0] == f[1]
        and f[0] > 1
        and plan.batch_ndim == 1
        and dtype in _NATIVE_DTYPES
    )


def _small(plan: Plan) -> bool:
    n = 1
    for d in plan.in_shape:
        if d is None:
            return False
        n *= d
    return n <= _NATIVE_MAX_ELEMENTS


def _run_time_checks(plan: Plan, shape: list) -> list:
    """The contract's unshuffle divisibility checks for spatial sizes known only when
    the graph runs: ``InvalidArgumentError`` with the contract's message."""
    if plan.op != "unshuffle":
        return []
    d = plan.spatial_dims
    first = len(shape) - d if plan.layout == "channels_first" else len(shape) - d - 1
    template = None
    checks = []
    for k, f in enumerate(plan.factor):
        size = shape[first + k]
        if not isinstance(size, tf.Tensor) or f == 1:
            continue
        if template is None:
            dims = ", ".join("{}" for _ in shape)
            template = f"({dims})" if len(shape) > 1 else f"({dims},)"
        message = tf.strings.format(
            spatial_not_divisible("{}", first + k, f, plan.factor, template),
            [size, *shape],
        )
        checks.append(tf.debugging.Assert(tf.equal(size % f, 0), [message]))
    return checks


class TensorflowBackend(ArrayBackend[Any]):
    name = "tensorflow"
    mutable = False

    def shape(self, x: Any) -> tuple | None:
        if x.shape.rank is None:
            return None
        return tuple(x.shape.as_list())

    def is_array(self, obj: Any) -> bool:
        return isinstance(obj, (tf.Tensor, tf.Variable))

    def dtype_name(self, x: Any) -> str:
        return x.dtype.name

    def astype(self, x: Any, name: str) -> tf.Tensor:
        return tf.cast(x, name)

    def device(self, x: Any) -> str:
        """``"cpu:0"``, ``"gpu:1"``, ...; "" where TensorFlow has not placed ``x`` (graph mode)."""
        name = getattr(x, "device", "") or ""
        if not name:
            return ""
        spec = tf.DeviceSpec.from_string(name)
        return f"{(spec.device_type or '').lower()}:{spec.device_index or 0}"

    def zeros(self, shape: tuple, like: Any) -> tf.Tensor:
        return tf.zeros(shape, dtype=like.dtype)

    def tanh(self, x: Any) -> tf.Tensor:
        return tf.math.tanh(x)

    def describe_devices(self) -> str:
        return ", ".join(sorted({d.device_type.lower() for d in tf.config.list_logical_devices()}))

    def bench_baselines(self, x: Any) -> dict[str, Any]:
        nhwc = tf.transpose(x, (0, 2, 3, 1))
        return {"copy": lambda: tf.identity(x + 0), "native": lambda: tf.nn.depth_to_space(nhwc, 2)}

    def from_numpy(self, a: Any, like: Any = None) -> tf.Tensor:
        if like is None:
            return tf.constant(a)
        t = tf.cast(tf.constant(a), like.dtype)
        if getattr(like, "device", "") and tf.executing_eagerly():
            with tf.device(like.device):
                return tf.identity(t)
        return t

    def concat(self, arrays: list, axis: int) -> tf.Tensor:
        return tf.concat(arrays, axis=axis)

    def conv(self, x: Any, weight: Any, bias: Any, cplan: ConvPlan) -> tf.Tensor:
        """LR convolution with ``tf.nn.convolution`` in NHWC (channels_first is
        transposed there and back: TensorFlow's NCHW conv has no CPU kernel)."""
        d = len(cplan.kernel)
        rank = len(x.shape)
        nbatch = rank - d - 1
        if cplan.layout == "channels_first":
            x = tf.transpose(x, [*range(nbatch), *range(nbatch + 1, rank), nbatch])
        shape = tf.shape(x)
        x = tf.reshape(x, tf.concat([[-1], shape[nbatch:]], axis=0))
        if any(a or b for a, b in cplan.padding):
            x = tf.pad(x, [[0, 0], *[list(p) for p in cplan.padding], [0, 0]])
        kernel = tf.transpose(weight, [*range(2, d + 2), 1, 0])  # (O, I, *k) -> (*k, I, O)
        lr = tf.nn.convolution(x, tf.cast(kernel, x.dtype), padding="VALID")
        if bias is not None:
            lr = lr + tf.cast(bias, lr.dtype)
        lr_shape = tf.shape(lr)
        lr = tf.reshape(lr, tf.concat([shape[:nbatch], lr_shape[1:]], axis=0))
        if cplan.layout == "channels_first":
            lr = tf.transpose(lr, [*range(nbatch), rank - 1, *range(nbatch, rank - 1)])
        return lr

    def to_numpy(self, x: Any) -> np.ndarray:
        if x.dtype == tf.bfloat16:
            x = tf.cast(x, tf.float32)
        return x.numpy()

    def rearrange(self, x: Any, plan: Plan, out: Any = None) -> tf.Tensor:
        device = getattr(x, "device", "") if _HAS_GPU and tf.executing_eagerly() else ""
        if device:
            with tf.device(device):
                return self._rearrange(x, plan)
        return self._rearrange(x, plan)

    def _rearrange(self, x, plan: Plan) -> tf.Tensor:
        if x.dtype in _QUANTIZED_AS:
            y = self._rearrange(tf.bitcast(x, _QUANTIZED_AS[x.dtype]), plan)
            return tf.bitcast(y, x.dtype)
        if _is_native(plan, x.dtype) and _small(plan):
            r = plan.factor[0]
            if plan.op == "shuffle":
                return tf.nn.depth_to_space(x, r)
            return tf.nn.space_to_depth(x, r)
        if any(d is None for d in plan.in_shape):
            # re-plan with run-time sizes (scalar tensors) where static ones are unknown
            dynamic = tf.shape(x)
            shape = [dynamic[i] if d is None else d for i, d in enumerate(plan.in_shape)]
            checks = _run_time_checks(plan, shape)
            with tf.control_dependencies(checks):
                x = tf.identity(x) if checks else x
            plan = make_plan(plan.op, shape, plan.factor, None, plan.layout, plan.order)
        if plan.is_identity:
            return tf.reshape(x, plan.out_shape)
        y = tf.transpose(tf.reshape(x, plan.src_shape), plan.perm)
        return tf.reshape(y, plan.out_shape)


backend = TensorflowBackend()
