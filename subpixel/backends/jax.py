"""JAX backend: ``reshape -> transpose -> reshape`` from the plan.

The three are jitted together (the plan is a static argument), so XLA emits one
copy also in eager mode; inside a user's ``jit`` they are inlined.  The functions
are pure ``jax.numpy``: ``jit``, ``vmap``, ``grad``/``vjp`` and sharded inputs
work unchanged.  Arrays are immutable: ``out=`` is refused by :mod:`subpixel.ops`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._core.spec import ConvPlan, Plan
from ._base import ArrayBackend

_SPATIAL = "DHW"


@partial(jax.jit, static_argnums=1)
def _rearrange(x: jax.Array, plan: Plan) -> jax.Array:
    if plan.is_identity:
        return jnp.reshape(jnp.array(x, copy=True), plan.out_shape)
    y = jnp.transpose(jnp.reshape(x, plan.src_shape), plan.perm)
    return jnp.reshape(y, plan.out_shape)


@partial(jax.jit, static_argnums=3)
def _conv(x: jax.Array, weight: jax.Array, bias: Any, cplan: ConvPlan) -> jax.Array:
    d = len(cplan.kernel)
    nbatch = x.ndim - d - 1
    spatial = _SPATIAL[-d:] if d <= 3 else "".join(chr(ord("a") + i) for i in range(d))
    lhs = "NC" + spatial if cplan.layout == "channels_first" else "N" + spatial + "C"
    batch = x.shape[:nbatch]
    x = jnp.reshape(x, (-1, *x.shape[nbatch:]))
    lr = jax.lax.conv_general_dilated(
        x,
        weight.astype(x.dtype),
        window_strides=(1,) * d,
        padding=cplan.padding,
        dimension_numbers=(lhs, "OI" + spatial, lhs),
    )
    if bias is not None:
        shape = (-1,) + (1,) * d if cplan.layout == "channels_first" else (-1,)
        lr = lr + jnp.reshape(bias.astype(lr.dtype), shape)
    return jnp.reshape(lr, (*batch, *lr.shape[1:]))


class JaxBackend(ArrayBackend[jax.Array]):
    name = "jax"
    mutable = False

    def is_array(self, obj: Any) -> bool:
        return isinstance(obj, jax.Array)

    def zeros(self, shape: tuple, like: Any) -> jax.Array:
        z = jnp.zeros(shape, dtype=like.dtype)
        if isinstance(like, jax.core.Tracer):
            return z
        return jax.device_put(z, like.sharding) if hasattr(like, "sharding") else z

    def from_numpy(self, a: Any, like: Any = None) -> jax.Array:
        if like is None:
            return jnp.asarray(a)
        a = np.asarray(a, dtype=like.dtype)
        if isinstance(like, jax.core.Tracer):
            return jnp.asarray(a)
        return jax.device_put(a, next(iter(like.devices())))

    def concat(self, arrays: list, axis: int) -> jax.Array:
        return jnp.concatenate(arrays, axis=axis)

    def tanh(self, x: Any) -> jax.Array:
        return jnp.tanh(x)

    def synchronize(self, x: Any) -> None:
        if not isinstance(x, jax.core.Tracer):
            x.block_until_ready()

    def describe_devices(self) -> str:
        return ", ".join(sorted({d.platform for d in jax.devices()}))

    def bench_baselines(self, x: Any) -> dict[str, Any]:
        copy = jax.jit(jnp.copy)
        return {"copy": lambda: copy(x)}

    def conv(self, x: Any, weight: Any, bias: Any, cplan: ConvPlan) -> jax.Array:
        return _conv(x, weight, bias, cplan)

    def to_numpy(self, x: Any) -> np.ndarray:
        if x.dtype == jnp.bfloat16:
            x = x.astype(jnp.float32)
        return np.asarray(x)

    def rearrange(self, x: Any, plan: Plan, out: Any = None) -> jax.Array:
        return _rearrange(x, plan)


backend = JaxBackend()
