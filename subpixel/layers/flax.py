"""Flax NNX modules over :func:`subpixel.shuffle` and :func:`subpixel.sub_pixel_conv`,
and Flax's side of moving layers between frameworks (:func:`to_agnostic`,
:func:`from_agnostic`).

The kernel uses Flax's conv layout ``(*kernel, in_features, out_features * prod(factor))``;
data default to ``channels_last`` as everywhere in Flax.

>>> import jax.numpy as jnp
>>> from flax import nnx
>>> from subpixel.layers.flax import SubPixelConv
>>> layer = SubPixelConv(16, 3, (3, 3), factor=2, rngs=nnx.Rngs(0))
>>> layer(jnp.zeros((1, 8, 8, 16))).shape
(1, 16, 16, 3)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .. import ops, weights
from .._core import spec as _spec
from .._core.channels import icnr_index
from .._core.layer_spec import LayerSpec, check_rewrite_mode, example_error
from .._core.spec import Layout, Order
from ..backends import standard_dtype

if TYPE_CHECKING:
    from ..layer import SubPixelConv as AgnosticSubPixelConv

__all__ = [
    "PixelShuffle",
    "PixelUnshuffle",
    "SubPixelConv",
    "from_agnostic",
    "icnr_init",
    "to_agnostic",
]


def icnr_init(factor: Any, order: Order = "CRD", base_init: Any = None):
    """A Flax initializer: ICNR over ``base_init`` (default: Flax's conv default,
    LeCun normal) for a kernel ``(*k, C_in, C_out * prod(factor))`` (the rule of
    :func:`subpixel._core.channels.icnr_index`)."""
    base_init = base_init or nnx.initializers.lecun_normal()
    order = _spec.normalize_order(order)

    def init(key, shape, dtype=jnp.float32):
        r = _spec.normalize_factor(factor, len(shape) - 2)
        base_channels = _spec.check_divisible_channels("shape", shape[-1], r, shape)
        base = base_init(key, (*shape[:-1], base_channels), dtype)
        return jnp.take(base, jnp.asarray(icnr_index(base_channels, r, order)), axis=-1)

    return init


class PixelShuffle(nnx.Module):
    """:func:`subpixel.shuffle` as an NNX module (default ``channels_last``)."""

    op = staticmethod(ops.shuffle)

    def __init__(
        self,
        factor: Any,
        *,
        spatial_dims: int | None = None,
        order: Order = "CRD",
        layout: Layout = "channels_last",
    ) -> None:
        d = _spec.normalize_spatial_dims(spatial_dims, factor)
        self.factor, self.spatial_dims = _spec.normalize_factor(factor, d), d
        self.order = _spec.normalize_order(order)
        self.layout = _spec.normalize_layout(layout)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.op(
            x, self.factor, spatial_dims=self.spatial_dims, layout=self.layout, order=self.order
        )


class PixelUnshuffle(PixelShuffle):
    """:func:`subpixel.unshuffle` as an NNX module."""

    op = staticmethod(ops.unshuffle)


class SubPixelConv(nnx.Module):
    """LR conv with ``out_features * prod(factor)`` outputs, then the shuffle."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: Any,
        factor: Any,
        *,
        padding: Any = "same",
        order: Order = "CRD",
        layout: Layout = "channels_last",
        use_bias: bool = True,
        kernel_init: Any = None,
        bias_init: Any = None,
        blur: bool = False,
        crop: Any = None,
        param_dtype: Any = jnp.float32,
        dtype: Any = None,
        rngs: nnx.Rngs,
    ) -> None:
        self.dtype = dtype  # the computation's (None: the input's and parameters')
        self.spec = LayerSpec.create(
            in_features,
            out_features,
            kernel_size,
            factor,
            order=order,
            padding=padding,
            crop=crop,
            blur=blur,
            bias=use_bias,
            layout=layout,
        )
        spec = self.spec
        kernel_init = kernel_init or icnr_init(spec.factor, spec.order)
        self.kernel = nnx.Param(
            kernel_init(
                rngs.params(), (*spec.kernel_size, spec.in_channels, spec.lr_channels), param_dtype
            )
        )
        bias_init = bias_init or nnx.initializers.zeros_init()
        self.bias = (
            nnx.Param(bias_init(rngs.params(), (spec.lr_channels,), param_dtype))
            if use_bias
            else None
        )

    in_features = property(lambda self: self.spec.in_channels)
    out_features = property(lambda self: self.spec.out_channels)
    kernel_size = property(lambda self: self.spec.kernel_size)
    factor = property(lambda self: self.spec.factor)
    padding = property(lambda self: self.spec.padding)
    order = property(lambda self: self.spec.order)
    layout = property(lambda self: self.spec.layout)
    blur = property(lambda self: self.spec.blur)
    crop = property(lambda self: self.spec.crop)

    def __call__(self, x: jax.Array) -> jax.Array:
        d = self.spec.spatial_dims
        weight = jnp.transpose(self.kernel[...], (d + 1, d, *range(d)))  # -> (O, I, *k)
        bias = None if self.bias is None else self.bias[...]
        if self.dtype is not None:  # as nnx.Conv(dtype=...): compute in that dtype
            x, weight = x.astype(self.dtype), weight.astype(self.dtype)
            bias = None if bias is None else bias.astype(self.dtype)
        return ops.sub_pixel_conv(x, weight, bias, **self.spec.op_kwargs())


# ---------------------------------------------------------------------------
# moving layers between frameworks: Flax's side
# ---------------------------------------------------------------------------


def from_agnostic(
    layer: AgnosticSubPixelConv,
    layout: Layout | None = None,
    rngs: Any = None,
    param_dtype: Any = None,
    dtype: Any = None,
) -> SubPixelConv:
    """A Flax :class:`SubPixelConv` holding a :class:`subpixel.SubPixelConv`'s parameters
    (in ``param_dtype``; default: theirs), computing in ``dtype`` (default: the input's
    and parameters')."""
    spec = layer.spec
    module = SubPixelConv(
        spec.inputs,
        spec.out_channels,
        spec.kernel_size,
        spec.factor,
        padding=spec.padding,
        order=spec.order,
        layout=layout or spec.layout,
        use_bias=spec.bias,
        blur=spec.blur,
        crop=spec.crop,
        rngs=rngs or nnx.Rngs(0),
        param_dtype=param_dtype or layer.dtype,
        dtype=dtype,
    )
    kernel = weights.convert_layout(layer.weight, src="torch", dst="flax")
    module.kernel[...] = jnp.asarray(kernel, module.kernel.dtype)
    if layer.bias is not None and module.bias is not None:
        module.bias[...] = jnp.asarray(layer.bias, module.bias.dtype)
    return module


def to_agnostic(module: Any) -> AgnosticSubPixelConv:
    """A :class:`subpixel.SubPixelConv` from a Flax :class:`SubPixelConv`."""
    from ..layer import SubPixelConv as Agnostic

    if not isinstance(module, SubPixelConv):
        raise ValueError(
            "`module` must be a subpixel.layers.flax.SubPixelConv. "
            f"Received: module of type {type(module).__module__}.{type(module).__qualname__}"
        )
    kernel = weights.convert_layout(np.asarray(module.kernel[...]), src="flax", dst="torch")
    bias = None if module.bias is None else np.asarray(module.bias[...])
    return Agnostic.from_spec(module.spec, kernel, bias)


# ---------------------------------------------------------------------------
# rewriting a module's transposed convolutions, exactly
# ---------------------------------------------------------------------------


def _conv_transpose_args(m: Any) -> tuple[dict, Any]:
    """(``from_conv_transpose`` keywords, kernel) for an ``nnx.ConvTranspose``: 'SAME' and
    'VALID' are TensorFlow's rules; explicit ``(low, high)`` pads of the dilated input
    are PyTorch's ``padding = k - 1 - low``, ``output_padding = high - low``."""
    kernel = _real(m.kernel[...])
    d = kernel.ndim - 2
    strides = m.strides if isinstance(m.strides, (tuple, list)) else (m.strides,) * d
    if isinstance(m.padding, str):
        tf_kernel = weights.convert_layout(
            kernel,
            src="flax",
            dst="tensorflow",
            transposed=True,
            transpose_kernel=m.transpose_kernel,
        )
        return {
            "stride": tuple(strides),
            "padding": m.padding.lower(),
            "source": "tensorflow",
        }, tf_kernel
    pads = _explicit_pads(m.padding, d)
    k = kernel.shape[:d]
    torch_kernel = weights.convert_layout(
        kernel, src="flax", dst="torch", transposed=True, transpose_kernel=m.transpose_kernel
    )
    return {
        "stride": tuple(strides),
        "padding": tuple(k[i] - 1 - lo for i, (lo, _) in enumerate(pads)),
        "output_padding": tuple(hi - lo for lo, hi in pads),
    }, torch_kernel


def _real(value: Any) -> np.ndarray:
    """A parameter as NumPy, bfloat16 widened to float32 (exactly) for the conversion;
    the new module gets the original's ``param_dtype`` back."""
    return standard_dtype(np.asarray(value))


def _explicit_pads(padding: Any, d: int) -> list[tuple[int, int]]:
    """Flax's explicit padding (an int, or ``(low, high)`` pairs) as ``d`` pairs."""
    if isinstance(padding, int):
        return [(padding, padding)] * d
    return [(int(p), int(p)) if isinstance(p, int) else (int(p[0]), int(p[1])) for p in padding]


def _tuple(v: Any, d: int) -> tuple[int, ...]:
    v = 1 if v is None else v
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * d


def _replaceable(m: Any) -> bool:
    """A stride > 1 ``nnx.ConvTranspose`` whose exact sub-pixel form exists: undilated,
    unmasked, zero padding 'SAME', 'VALID' or explicit pads a PyTorch transposed
    convolution can express (``0 <= low <= k - 1``, ``0 <= high - low < stride``)."""
    if not isinstance(m, nnx.ConvTranspose) or getattr(m, "mask", None) is not None:
        return False
    k = tuple(m.kernel[...].shape[:-2])
    d = len(k)
    strides, dilation = _tuple(m.strides, d), _tuple(m.kernel_dilation, d)
    if not any(s > 1 for s in strides) or any(v != 1 for v in dilation):
        return False
    if isinstance(m.padding, str):
        return m.padding.upper() in ("SAME", "VALID")
    try:
        pads = _explicit_pads(m.padding, d)
    except (TypeError, ValueError, IndexError):
        return False
    return len(pads) == d and all(
        0 <= lo <= n - 1 and 0 <= hi - lo < s for (lo, hi), n, s in zip(pads, k, strides)
    )


def sub_pixel_of(m: Any) -> SubPixelConv:
    """The exact sub-pixel form of an ``nnx.ConvTranspose`` (stride > 1, undilated)."""
    from ..layer import SubPixelConv as Agnostic

    kwargs, kernel = _conv_transpose_args(m)
    bias = None if m.bias is None else _real(m.bias[...])
    agnostic = Agnostic.from_conv_transpose(kernel, bias, layout="channels_last", **kwargs)
    return from_agnostic(agnostic, layout="channels_last", param_dtype=m.param_dtype, dtype=m.dtype)


def _slots(node: Any) -> list[tuple[Any, Any, Any]]:
    """``(parent, key, module)`` of every replaceable ``nnx.ConvTranspose`` below
    ``node`` (attributes, nested modules and lists)."""
    items = (
        list(enumerate(node))
        if _is_list(node)
        else [(k, v) for k, v in vars(node).items() if not k.startswith("_")]
    )
    found = []
    for key, value in items:
        if _replaceable(value):
            found.append((node, key, value))
        elif isinstance(value, nnx.Module) or _is_list(value):
            found.extend(_slots(value))
    return found


def _is_list(node: Any) -> bool:
    """A Python list or an ``nnx.List`` of modules."""
    return isinstance(node, list) or type(node).__name__ == "List"


def _put(parent: Any, key: Any, value: Any) -> None:
    """Put ``value`` in ``parent``'s slot ``key`` (an item of a list or dict, else an
    attribute)."""
    if _is_list(parent) or isinstance(parent, dict):
        parent[key] = value
    else:
        setattr(parent, key, value)


def replace_conv_transpose(module: Any, *, mode: str = "subpixel", example: Any = None) -> Any:
    """Swap every stride > 1 ``nnx.ConvTranspose`` below ``module`` (in place, nested
    modules and lists included) for its exact sub-pixel equivalent; returns ``module``.
    (Flax has no pixel-shuffle module of its own to replace: use
    :class:`PixelShuffle`.)

    ``mode="fastest"``: run ``module`` on ``example``, time each layer and its
    sub-pixel form (``nnx.jit``) on the layer's own input and swap only the layers
    whose sub-pixel form is faster."""
    check_rewrite_mode(mode, example, ("subpixel", "fastest"))
    if not isinstance(module, nnx.Module):
        kind = type(module)
        raise TypeError(
            "`module` must be a Flax NNX module. "
            f"Received: module of type {kind.__module__}.{kind.__qualname__}"
        )
    if _replaceable(module):
        return sub_pixel_of(module)
    slots = _slots(module)
    if mode == "fastest":
        slots = _faster_as_sub_pixel(module, slots, example)
    made: dict[int, SubPixelConv] = {}  # all made first: a failure changes nothing
    for _, _, m in slots:
        if id(m) not in made:  # a module shared by two attributes stays shared
            made[id(m)] = sub_pixel_of(m)
    for parent, key, m in slots:
        _put(parent, key, made[id(m)])
    return module


def _model_input(module: Any, example: Any) -> jax.Array:
    """``example`` as an input for ``module``: floats in its parameters' dtype,
    integers (token ids, say) as they are."""
    x = np.asarray(example)
    if x.dtype.kind not in "biu":
        params = jax.tree_util.tree_leaves(nnx.state(module, nnx.Param))
        x = x.astype(params[0].dtype if params else np.float32)
    return jnp.asarray(x)


_MODES = ("use_running_average", "deterministic")


@contextlib.contextmanager
def _evaluating(module: Any) -> Iterator[None]:
    """``module`` in evaluation mode for a while; each submodule's own mode restored."""
    modules = [m for _, m in nnx.iter_graph(module) if isinstance(m, nnx.Module)]
    saved = [(m, a, getattr(m, a)) for m in modules for a in _MODES if hasattr(m, a)]
    try:
        module.eval()
        yield
    finally:
        for m, a, v in saved:
            setattr(m, a, v)


def _evaluate(module: Any, example: Any) -> jax.Array:
    """``module(example)`` in evaluation mode, run on a copy: batch norms use and keep
    their running statistics, dropout is off, and ``module`` itself is untouched."""
    copy = nnx.clone(module)
    copy.eval()
    return copy(_model_input(module, example))


class _Recorder:
    """Stands in for a layer during one run and keeps its input."""

    def __init__(self, layer: Any) -> None:
        self.layer, self.inputs = layer, list[Any]()

    def __call__(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        self.inputs.append(x)
        return self.layer(x, *args, **kwargs)


def _faster_as_sub_pixel(module: Any, slots: list, example: Any) -> list:
    from .._core.timing import fastest

    recorders = [_Recorder(m) for _, _, m in slots]
    with _evaluating(module):  # no batch statistics change; every mode restored after
        try:
            for (parent, key, _), recorder in zip(slots, recorders):
                _put(parent, key, recorder)
            module(_model_input(module, example))
        except Exception as e:
            raise example_error(e, example) from None
        finally:
            for parent, key, m in slots:
                _put(parent, key, m)
    run = nnx.jit(lambda layer, x: layer(x))
    chosen = []
    for slot, recorder in zip(slots, recorders):
        if not recorder.inputs:  # not reached by the example: keep the original
            continue
        x = recorder.inputs[0]
        forms = (slot[2], sub_pixel_of(slot[2]))
        if fastest([lambda f=f, x=x: run(f, x).block_until_ready() for f in forms]) == 1:
            chosen.append(slot)
    return chosen
