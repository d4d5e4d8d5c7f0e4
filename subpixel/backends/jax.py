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

from .._spec import Plan


@partial(jax.jit, static_argnums=1)
def _rearrange(x: jax.Array, plan: Plan) -> jax.Array:
    if plan.is_identity:
        return jnp.reshape(jnp.array(x, copy=True), plan.out_shape)
    y = jnp.transpose(jnp.reshape(x, plan.src_shape), plan.perm)
    return jnp.reshape(y, plan.out_shape)


class JaxBackend:
    name = "jax"
    mutable = False

    def cache_plans(self) -> bool:
        return True

    def shape(self, x: Any) -> tuple:
        return tuple(x.shape)

    def dtype(self, x: Any) -> Any:
        return x.dtype

    def is_array(self, obj: Any) -> bool:
        return isinstance(obj, jax.Array)

    def from_numpy(self, a: Any, like: Any = None) -> jax.Array:
        if like is not None and not isinstance(like, jax.core.Tracer):
            return jax.device_put(a, like.sharding)
        return jnp.asarray(a)

    def to_numpy(self, x: Any) -> np.ndarray:
        if x.dtype == jnp.bfloat16:
            x = x.astype(jnp.float32)
        return np.asarray(x)

    def rearrange(self, x: Any, plan: Plan, out: Any = None) -> jax.Array:
        return _rearrange(x, plan)


backend = JaxBackend()
