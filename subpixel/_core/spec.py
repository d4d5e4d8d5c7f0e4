"""The contract: argument normalisation, shape rules and every error message.

Pure Python, imports no array library.  Every public operation calls in here
first; backends receive a :class:`Plan` and only move data, they never
re-validate.

A shuffle is always one reshape, one transpose and one reshape::

    y = x.reshape(plan.src_shape).transpose(plan.perm).reshape(plan.out_shape)

``src_shape``/``perm`` are the *smallest* such description: batch dimensions
are collapsed into one, axes of size 1 are dropped and axes that stay adjacent
through the transpose are merged.  Unshuffle is described the same way.

Shapes may hold unknown (``None``) dimensions, as in a ``tf.function`` traced
with a ``None`` batch size, or symbolic ones (``torch.SymInt``, scalar
tensors).  Checks that need a value run where the value is known.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, TypeVar

# the types of the public signatures' arguments (each normalised by a function below)
Layout = Literal["channels_first", "channels_last"]
Order = Literal["CRD", "DCR"]
Factor = int | Sequence[int]  # one int for every spatial dimension, or one per dimension
# an int for every side, one per dimension, or (before, after) pairs per dimension
Pairs = int | Sequence[int] | Sequence[Sequence[int]]
Padding = Literal["same", "valid"] | Pairs  # an LR convolution's zero padding
Crop = Pairs | None  # pixels removed from a sub-pixel convolution's HR output
LAYOUTS: tuple[Layout, ...] = ("channels_first", "channels_last")
ORDERS: tuple[Order, ...] = ("CRD", "DCR")
OPS = ("shuffle", "unshuffle")

# dtype names every backend reports (``Backend.dtype_name``); others are the library's own
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
COMPLEX_DTYPES = ("complex64", "complex128")
INTEGER_DTYPES = ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64")
# computed results for bool and integer input (blur) are in this dtype on every backend
DEFAULT_FLOAT = "float32"
# half-precision floats are averaged in float32 (exact for their subnormals) and rounded once
BLUR_COMPUTE = {"float16": "float32", "bfloat16": "float32"}
# no array has more elements than this, empty or not (NumPy refuses such shapes)
MAX_ELEMENTS = 2**59

__all__ = [
    "LAYOUTS",
    "ORDERS",
    "ConvPlan",
    "Crop",
    "Factor",
    "Layout",
    "Order",
    "Padding",
    "Plan",
    "blur_dtype",
    "check_divisible_channels",
    "check_out",
    "check_rank",
    "check_shape_size",
    "choice",
    "conv_dtype",
    "crop_key",
    "make_conv_plan",
    "make_plan",
    "normalize_crop",
    "normalize_factor",
    "normalize_layout",
    "normalize_order",
    "normalize_padding",
    "normalize_spatial_dims",
    "out_not_supported",
    "out_problem",
    "out_wrong_device",
    "out_wrong_type",
    "parameter_dtype",
    "refused_array",
    "shuffle_args",
    "spatial_not_divisible",
    "unknown_rank",
    "unmovable_dtype",
    "unsupported_array",
    "unsupported_dtype",
    "wrong_device",
]


# ---------------------------------------------------------------------------
# argument normalisation
# ---------------------------------------------------------------------------


def is_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def normalize_spatial_dims(spatial_dims: Any, factor: Any) -> int:
    """``spatial_dims`` as a positive int; ``None`` means ``len(factor)`` or 2."""
    if spatial_dims is None:
        if isinstance(factor, (tuple, list)):
            if len(factor) == 0:
                raise ValueError(
                    "`factor` must be a positive integer or a non-empty tuple of "
                    f"positive integers. Received: factor={factor!r}"
                )
            return len(factor)
        return 2
    if not is_int(spatial_dims) or operator.index(spatial_dims) < 1:
        raise ValueError(
            "`spatial_dims` must be a positive integer (1, 2, 3, ...). "
            f"Received: spatial_dims={spatial_dims!r}"
        )
    return operator.index(spatial_dims)


def normalize_factor(factor: Any, spatial_dims: int, argname: str = "factor") -> tuple[int, ...]:
    """``factor`` as a tuple of ``spatial_dims`` positive ints (also used for
    ``kernel_size``, named by ``argname`` in the errors)."""
    if isinstance(factor, (tuple, list)):
        items = tuple(factor)
        if len(items) != spatial_dims:
            raise ValueError(
                f"`{argname}` must have one entry per spatial dimension ({spatial_dims} "
                f"for spatial_dims={spatial_dims}). Received: {argname}={factor!r}"
            )
    else:
        items = (factor,) * spatial_dims
    for item in items:
        if not is_int(item) or operator.index(item) < 1:
            raise ValueError(
                f"`{argname}` must be a positive integer or a tuple of positive "
                f"integers. Received: {argname}={factor!r}"
            )
    return tuple(operator.index(item) for item in items)


def check_divisible_channels(
    argname: str,
    channels: int,
    factor: tuple[int, ...],
    shape: Sequence[Any],
    what: str = "output channels",
) -> int:
    """``channels // prod(factor)``; ``ValueError`` naming ``argname`` when it does not divide."""
    R = math.prod(factor)
    if channels % R:
        raise ValueError(
            f"`{argname}` has {channels} {what}, which is not divisible by prod(factor)={R} "
            f"for factor={factor}. Received: {argname}.shape={_shape_str(tuple(shape))}"
        )
    return channels // R


T = TypeVar("T")


def choice(value: Any, name: str, choices: Sequence[T], must_be: str | None = None) -> T:
    """``value`` if it is one of ``choices``; else ``ValueError("`name` must be 'a', 'b'
    or 'c'. Received: name=value")`` (``must_be``: other words for what it must be)."""
    if value not in choices:
        if must_be is None:
            *head, last = (repr(c) for c in choices)
            must_be = f"{', '.join(head)} or {last}" if head else last
        raise ValueError(f"`{name}` must be {must_be}. Received: {name}={value!r}")
    return value


def normalize_layout(layout: Any) -> Layout:
    return choice(layout, "layout", LAYOUTS)


def normalize_order(order: Any) -> Order:
    return choice(
        order, "order", ORDERS, "'CRD' (PyTorch pixel_shuffle) or 'DCR' (TensorFlow depth_to_space)"
    )


def shuffle_args(
    factor: Any, spatial_dims: Any, order: Any, layout: Any
) -> tuple[tuple[int, ...], int, Order, Layout]:
    """A shuffle layer's arguments, normalised: ``(factor, spatial_dims, order, layout)``."""
    d = normalize_spatial_dims(spatial_dims, factor)
    return normalize_factor(factor, d), d, normalize_order(order), normalize_layout(layout)


# ---------------------------------------------------------------------------
# the plan
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Everything a backend needs to move the data of one shuffle/unshuffle."""

    op: str  # "shuffle" or "unshuffle"
    factor: tuple[int, ...]
    layout: str
    order: str
    in_shape: tuple
    out_shape: tuple
    src_shape: tuple  # minimal view of the input ...
    perm: tuple[int, ...]  # ... transposed by perm ...
    dst_shape: tuple  # ... is this minimal view of the output

    @property
    def spatial_dims(self) -> int:
        return len(self.factor)

    @property
    def batch_ndim(self) -> int:
        return len(self.in_shape) - self.spatial_dims - 1

    @property
    def is_identity(self) -> bool:
        """True when the data moves nowhere (a copy is all it takes)."""
        return self.perm == tuple(range(len(self.perm)))


def unknown_rank(argname: str = "x") -> ValueError:
    return ValueError(
        f"`{argname}` must have a known number of dimensions (rank). "
        f"Received: {argname} of unknown rank"
    )


def check_rank(shape: Sequence[Any] | None, d: int) -> None:
    """``x`` needs a channel axis and ``d`` spatial axes (batch axes are optional).
    ``shape`` is None where the rank itself is unknown (a ``tf.TensorSpec(None)``)."""
    if shape is None:
        raise unknown_rank()
    if len(shape) < d + 1:
        raise ValueError(
            f"`x` must have at least {d + 1} dimensions (a channel axis and "
            f"{d} spatial) for spatial_dims={d}. Received: x.shape={_shape_str(shape)}"
        )


def _static_int(dim: Any) -> bool:
    return type(dim) is int


def _checkable(dim: Any) -> bool:
    """A dimension whose value a check may read (an int, or a torch SymInt guard)."""
    return type(dim) is int or type(dim).__name__ == "SymInt"


def _prod(dims: Sequence[Any]) -> Any:
    result: Any = 1
    for d in dims:
        if d is None:
            return None
        result = result * d
    return result


def _shape_str(shape: Sequence[Any]) -> str:
    inner = ", ".join("None" if d is None else str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def make_plan(
    op: str,
    shape: Sequence[Any] | None,
    factor: Any,
    spatial_dims: Any = None,
    layout: Any = "channels_first",
    order: Any = "CRD",
    *,
    cache: bool = True,
) -> Plan:
    """Validate the arguments of ``shuffle``/``unshuffle`` for an input shape.

    ``shape`` is a sequence of ints (``None`` for an unknown dimension).  Plans
    for fully static shapes are cached unless ``cache`` is false (a tracer such as
    TorchDynamo, which would trace through the cache anyway, asks for that).
    """
    if shape is None:
        raise unknown_rank()
    shape = tuple(shape)
    # Cache only exact ints: 2.0 == 2 and True == 1 hash alike but must be refused.
    if (
        cache
        and all(type(d) is int for d in shape)
        and (type(factor) is int or (type(factor) is tuple and all(type(f) is int for f in factor)))
        and (spatial_dims is None or type(spatial_dims) is int)
        and type(layout) is str
        and type(order) is str
    ):
        return _cached_plan(op, shape, factor, spatial_dims, layout, order)
    return _build_plan(op, shape, factor, spatial_dims, layout, order)


@lru_cache(maxsize=1024)
def _cached_plan(op, shape, factor, spatial_dims, layout, order) -> Plan:
    return _build_plan(op, shape, factor, spatial_dims, layout, order)


def _build_plan(op, shape, factor, spatial_dims, layout, order) -> Plan:
    d = normalize_spatial_dims(spatial_dims, factor)
    r = normalize_factor(factor, d)
    layout = normalize_layout(layout)
    order = normalize_order(order)
    R = math.prod(r)

    ndim = len(shape)
    check_rank(shape, d)
    nbatch = ndim - d - 1
    batch = shape[:nbatch]
    if layout == "channels_first":
        channels, spatial = shape[nbatch], shape[nbatch + 1 :]
        channel_axis = nbatch
    else:
        spatial, channels = shape[nbatch:-1], shape[-1]
        channel_axis = ndim - 1

    if channels is None:
        raise ValueError(
            f"`x` must have a known number of channels (axis {channel_axis}). "
            f"Received: x.shape={_shape_str(shape)}"
        )

    if op == "shuffle":
        if _checkable(channels) and channels % R != 0:
            raise ValueError(
                f"`x` has {channels} channels (axis {channel_axis}), which is not "
                f"divisible by prod(factor)={R} for factor={r}. "
                f"Received: x.shape={_shape_str(shape)}"
            )
        lo_channels = channels // R
        lo_spatial = tuple(spatial)
        hi_spatial = tuple(None if s is None else s * f for s, f in zip(spatial, r))
        out_channels, out_spatial = lo_channels, hi_spatial
    elif op == "unshuffle":
        first_spatial_axis = nbatch + 1 if layout == "channels_first" else nbatch
        for k, (s, f) in enumerate(zip(spatial, r)):
            if _checkable(s) and s % f != 0:
                raise ValueError(
                    spatial_not_divisible(s, first_spatial_axis + k, f, r, _shape_str(shape))
                )
        lo_channels = channels
        lo_spatial = tuple(None if s is None else s // f for s, f in zip(spatial, r))
        hi_spatial = tuple(spatial)
        out_channels, out_spatial = channels * R, lo_spatial
    else:  # pragma: no cover - internal misuse
        raise ValueError(f"`op` must be one of {OPS}. Received: op={op!r}")

    if layout == "channels_first":
        out_shape = (*tuple(batch), out_channels, *tuple(out_spatial))
    else:
        out_shape = tuple(batch) + tuple(out_spatial) + (out_channels,)
    check_shape_size(out_shape, r)

    # Label the axes of the expanded low-resolution and high-resolution views.
    # ("B",) batch, ("C",) channels, ("S", k) low-res spatial k, ("R", k) factor k.
    sizes: dict[Any, Any] = {("B",): _prod(batch) if nbatch else 1, ("C",): lo_channels}
    for k in range(d):
        sizes[("S", k)] = lo_spatial[k]
        sizes[("R", k)] = r[k]
    split = [("C",)] + [("R", k) for k in range(d)]
    if order == "DCR":
        split = split[1:] + split[:1]
    interleaved = [ax for k in range(d) for ax in (("S", k), ("R", k))]
    if layout == "channels_first":
        lo_axes = [("B",)] + split + [("S", k) for k in range(d)]
        hi_axes = [("B",), ("C",), *interleaved]
    else:
        lo_axes = [("B",)] + [("S", k) for k in range(d)] + split
        hi_axes = [("B",), *interleaved, ("C",)]
    src_axes, dst_axes = (lo_axes, hi_axes) if op == "shuffle" else (hi_axes, lo_axes)
    src_shape, perm = _minimal_transpose(src_axes, dst_axes, sizes)
    dst_shape = tuple(src_shape[p] for p in perm)
    return Plan(
        op=op,
        factor=r,
        layout=layout,
        order=order,
        in_shape=shape,
        out_shape=out_shape,
        src_shape=src_shape,
        perm=perm,
        dst_shape=dst_shape,
    )


def spatial_not_divisible(size: Any, axis: int, f: int, r: tuple, shape: str) -> str:
    """The message for an unshuffle whose spatial size does not divide (also used as a
    template, with ``"{}"`` for values known only when a graph runs)."""
    return (
        f"`x` has spatial size {size} on axis {axis}, which is not divisible by its factor "
        f"{f} for factor={r}. Received: x.shape={shape}"
    )


def check_shape_size(shape: Sequence[Any], factor: tuple[int, ...]) -> None:
    """Refuse outputs with more than :data:`MAX_ELEMENTS` elements (counting the non-zero
    dimensions, as NumPy does), so that every backend gives the same answer."""
    n = 1
    for dim in shape:
        if type(dim) is int and dim:
            n *= dim
    if n > MAX_ELEMENTS:
        raise ValueError(
            f"`factor` makes an output of shape {_shape_str(tuple(shape))}, which has more than "
            f"2**59 elements (counting non-zero dimensions). Received: factor={factor}"
        )


def _minimal_transpose(src_axes, dst_axes, sizes):
    """Drop size-1 axes and merge runs adjacent in both orders."""
    src = [a for a in src_axes if not (_static_int(sizes[a]) and sizes[a] == 1)]
    dst = [a for a in dst_axes if a in src]
    # group src axes into runs that also appear consecutively in dst
    groups: list[list[Any]] = []
    for a in src:
        if groups:
            prev = groups[-1][-1]
            j = dst.index(prev)
            if j + 1 < len(dst) and dst[j + 1] == a:
                groups[-1].append(a)
                continue
        groups.append([a])
    src_shape = tuple(_prod([sizes[a] for a in g]) for g in groups)
    first = {g[0]: i for i, g in enumerate(groups)}
    perm = tuple(first[a] for a in dst if a in first)
    return src_shape, perm


# ---------------------------------------------------------------------------
# sub-pixel convolution
# ---------------------------------------------------------------------------


def normalize_padding(padding: Any, kernel: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """An LR convolution's padding as ``((before, after), ...)`` per spatial dim.

    ``"same"`` (the extra pixel of an even kernel after, as PyTorch and TensorFlow
    do), ``"valid"``, an int, one int per dim, or ``(before, after)`` pairs.
    """
    d = len(kernel)
    if isinstance(padding, str):
        if padding == "same":
            return tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel)
        if padding == "valid":
            return ((0, 0),) * d
    else:
        pairs = _int_pairs(padding, d)
        if pairs is not None:
            return pairs
    raise ValueError(
        "`padding` must be 'same', 'valid', a non-negative int, one per spatial dimension, "
        f"or (before, after) pairs. Received: padding={padding!r}"
    )


def _int_pairs(value: Any, d: int) -> tuple[tuple[int, int], ...] | None:
    """An int, ``d`` ints or ``d`` (before, after) pairs of non-negative ints as
    pairs; None if ``value`` is none of those."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value,) * d
    if len(items) != d:
        return None
    pairs = [tuple(p) if isinstance(p, (tuple, list)) else (p, p) for p in items]
    flat = [v for p in pairs for v in p]
    if not all(len(p) == 2 for p in pairs) or not all(
        is_int(v) and operator.index(v) >= 0 for v in flat
    ):
        return None
    return tuple((operator.index(a), operator.index(b)) for a, b in pairs)


def normalize_crop(crop: Any, d: int) -> tuple[tuple[int, int], ...]:
    """``crop`` (removed from the HR output) as ``((before, after), ...)``."""
    if crop is None:
        return ((0, 0),) * d
    pairs = _int_pairs(crop, d)
    if pairs is None:
        raise ValueError(
            "`crop` must be None, a non-negative int, one per spatial dimension, or "
            f"(before, after) pairs. Received: crop={crop!r}"
        )
    return pairs


def crop_key(
    ndim: int, spatial_dims: int, layout: str, crop: Sequence[tuple[int, int]]
) -> tuple[slice, ...]:
    """The index that removes ``crop`` (``(before, after)`` per spatial axis) from an
    ``ndim``-D array in ``layout``."""
    first = ndim - spatial_dims if layout == "channels_first" else ndim - spatial_dims - 1
    key = [slice(None)] * ndim
    for k, (a, b) in enumerate(crop):
        key[first + k] = slice(a, -b if b else None)
    return tuple(key)


@dataclass(frozen=True)
class ConvPlan:
    """A validated sub-pixel convolution: LR conv, then :attr:`shuffle`, then crop."""

    padding: tuple[tuple[int, int], ...]
    kernel: tuple[int, ...]
    in_channels: int
    lr_shape: tuple  # the LR conv's output, in the input's layout
    shuffle: Plan
    crop: tuple[tuple[int, int], ...] = ()
    out_shape: tuple = ()

    @property
    def has_crop(self) -> bool:
        return any(a or b for a, b in self.crop)

    @property
    def layout(self) -> str:
        return self.shuffle.layout

    @property
    def factor(self) -> tuple[int, ...]:
        return self.shuffle.factor


def make_conv_plan(
    x_shape: Sequence[Any] | None,
    w_shape: Sequence[Any] | None,
    b_shape: Sequence[int] | None,
    factor: Any,
    padding: Any = "same",
    spatial_dims: Any = None,
    layout: Any = "channels_first",
    order: Any = "CRD",
    *,
    crop: Any = None,
    check_channels: bool = True,
) -> ConvPlan:
    """Validate ``sub_pixel_conv``'s arguments; the weight is ``(C_out * R, C_in, *k)``.

    ``check_channels=False`` skips matching ``x``'s channels against the weight's
    (for shape inference before a layer has built its weight)."""
    if x_shape is None:
        raise unknown_rank("x")
    if w_shape is None:
        raise unknown_rank("weight")
    w_shape = tuple(w_shape)
    if spatial_dims is None:
        spatial_dims = len(w_shape) - 2 if len(w_shape) >= 3 else None
    d = normalize_spatial_dims(spatial_dims, factor)
    r = normalize_factor(factor, d)
    layout = normalize_layout(layout)
    normalize_order(order)
    if len(w_shape) != d + 2:
        raise ValueError(
            f"`weight` must have shape (C_out * prod(factor), C_in, *kernel) with {d} kernel "
            f"dimensions for spatial_dims={d}. Received: weight.shape={_shape_str(w_shape)}"
        )
    check_divisible_channels("weight", w_shape[0], r, w_shape)
    if b_shape is not None and tuple(b_shape) != (w_shape[0],):
        raise ValueError(
            f"`bias` must have shape ({w_shape[0]},), one value per LR output channel. "
            f"Received: bias.shape={_shape_str(tuple(b_shape))}"
        )
    x_shape = tuple(x_shape)
    ndim = len(x_shape)
    check_rank(x_shape, d)
    nbatch = ndim - d - 1
    channel_axis = nbatch if layout == "channels_first" else ndim - 1
    spatial = x_shape[nbatch + 1 :] if layout == "channels_first" else x_shape[nbatch:-1]
    if check_channels and x_shape[channel_axis] != w_shape[1]:
        raise ValueError(
            f"`x` has {x_shape[channel_axis]} channels (axis {channel_axis}) but `weight` "
            f"expects {w_shape[1]} input channels. Received: x.shape={_shape_str(x_shape)}, "
            f"weight.shape={_shape_str(w_shape)}"
        )
    kernel = w_shape[2:]
    pads = normalize_padding(padding, kernel)
    lr_spatial: list[Any] = []
    for s, k, (a, b) in zip(spatial, kernel, pads):
        if s is None:
            lr_spatial.append(None)
            continue
        n = s + a + b - k + 1
        if _checkable(s) and n < 1:
            raise ValueError(
                f"`x` is too small for the kernel: spatial size {s} with padding ({a}, {b}) "
                f"and kernel {k} leaves no output. Received: x.shape={_shape_str(x_shape)}"
            )
        lr_spatial.append(n)
    batch = x_shape[:nbatch]
    if layout == "channels_first":
        lr_shape = (*batch, w_shape[0], *lr_spatial)
    else:
        lr_shape = (*batch, *lr_spatial, w_shape[0])
    plan = make_plan("shuffle", lr_shape, r, d, layout, order)
    crops = normalize_crop(crop, d)
    out = list(plan.out_shape)
    first = nbatch + 1 if layout == "channels_first" else nbatch
    for k, (a, b) in enumerate(crops):
        size = out[first + k]
        if size is None:
            continue
        if _checkable(size) and a + b >= size:
            raise ValueError(
                f"`crop` removes {a + b} of the {size} output pixels on spatial axis {k}. "
                f"Received: crop={crop!r}"
            )
        out[first + k] = size - a - b
    return ConvPlan(pads, tuple(kernel), x_shape[channel_axis], lr_shape, plan, crops, tuple(out))


def _type_name(obj: Any) -> str:
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


def out_not_supported(backend: str, out: Any) -> TypeError:
    return TypeError(
        f"`out` is not supported by the {backend} backend: its arrays are immutable, "
        f"use the returned array. Received: out of type {_type_name(out)}"
    )


def out_wrong_type(backend: str, out: Any) -> TypeError:
    return TypeError(
        f"`out` must be an array of the input's library ({backend}). "
        f"Received: out of type {_type_name(out)}"
    )


def refused_array(argname: str, x: Any, reason: str) -> TypeError:
    """An array of a supported library whose kind the contract cannot honour."""
    return TypeError(f"`{argname}` {reason}. Received: {argname} of type {_type_name(x)}")


def unsupported_array(argname: str, x: Any, supported: Sequence[str]) -> TypeError:
    return TypeError(
        f"`{argname}` must be an array of a supported library ({', '.join(supported)}). "
        f"Received: {argname} of type {_type_name(x)}"
    )


_OUT_PROBLEMS = {
    "read_only": "`out` is read-only",
    "internal_overlap": "`out` has elements that share memory (a broadcast or zero-stride view)",
    "requires_grad": (
        "`out` requires grad: writing into it would bypass autograd (PyTorch's own "
        "functions refuse such an `out`); pass no `out`, or write under torch.no_grad()"
    ),
}


def unmovable_dtype(backend: str, dtype: Any) -> TypeError:
    return unsupported_dtype(
        "x",
        dtype,
        f"has a dtype the {backend} backend cannot rearrange (its quantized and sub-byte "
        "dtypes have no copy kernel)",
    )


def out_problem(problem: str, out: Any, detail: str) -> ValueError:
    """A preallocated ``out`` the contract cannot write (``problem`` is a key reported by
    ``Backend.out_problem``, ``detail`` the offending property)."""
    return ValueError(f"{_OUT_PROBLEMS[problem]}. Received: out with {detail}")


def wrong_device(argname: str, x_device: Any, device: Any) -> ValueError:
    return ValueError(
        f"`{argname}` must be on the input's device ({x_device}). "
        f"Received: {argname} on device {device}"
    )


def out_wrong_device(x_device: Any, out_device: Any) -> ValueError:
    return wrong_device("out", x_device, out_device)


def parameter_dtype(argname: str, name: str, dtype: Any) -> None:
    """Weights and biases hold real numbers (they are cast to the data's float dtype)."""
    if name != "bool" and name not in INTEGER_DTYPES and name not in FLOAT_DTYPES:
        raise unsupported_dtype(argname, dtype, "must hold real numbers (bool, integer or float)")


def unsupported_dtype(argname: str, dtype: Any, what: str) -> TypeError:
    return TypeError(f"`{argname}` {what}. Received: {argname}.dtype={dtype}")


def blur_dtype(name: str, dtype: Any) -> str | None:
    """The dtype ``blur`` computes in for input dtype ``name``: None to keep it (floats
    and complex), :data:`DEFAULT_FLOAT` for bool and integers; others are refused."""
    if name in FLOAT_DTYPES or name in COMPLEX_DTYPES:
        return None
    if name == "bool" or name in INTEGER_DTYPES:
        return DEFAULT_FLOAT
    raise unsupported_dtype(
        "x", dtype, "must be bool, an integer, a floating-point or a complex dtype for blur"
    )


def conv_dtype(name: str, dtype: Any) -> None:
    """``sub_pixel_conv`` needs floating-point data (weights are cast to its dtype)."""
    if name not in FLOAT_DTYPES:
        raise unsupported_dtype(
            "x",
            dtype,
            "must have a floating-point dtype (float16, bfloat16, float32 or float64) for a "
            "convolution; cast it first, e.g. to float32",
        )


def check_out(plan: Plan, out_shape: Sequence[Any] | None, out_dtype: Any, x_dtype: Any) -> None:
    """Validate a preallocated ``out``'s shape and dtype against a plan."""
    if out_shape is None or tuple(out_shape) != tuple(plan.out_shape):
        raise ValueError(
            f"`out` must have shape {_shape_str(plan.out_shape)} for this {plan.op}. "
            f"Received: out.shape={'unknown' if out_shape is None else _shape_str(tuple(out_shape))}"
        )
    if out_dtype != x_dtype:
        raise ValueError(
            f"`out` must have the input's dtype {x_dtype}. Received: out.dtype={out_dtype}"
        )
