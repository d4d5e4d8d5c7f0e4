"""The public operations: validate with :mod:`._core.spec`, then hand to the backend."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from ._core import spec as _spec
from ._core.spec import Crop, Factor, Layout, Order, Padding
from .backends import backend_for, backend_or_none
from .backends._base import Backend

if TYPE_CHECKING:
    import numpy as np

Array = TypeVar("Array")

__all__ = ["backend_name", "blur", "shuffle", "sub_pixel_conv", "unshuffle"]


def _run(op: str, x, factor, spatial_dims, layout, order, out):
    backend = backend_for(x)
    plan = _spec.make_plan(
        op, backend.shape(x), factor, spatial_dims, layout, order, cache=backend.cache_plans()
    )
    if not backend.movable(x):
        raise _spec.unmovable_dtype(backend.name, backend.dtype(x))
    if out is None:
        return backend.rearrange(x, plan)
    _check_out(backend, x, out, plan)
    if backend.may_share_memory(x, out):
        # the contract: `out` gets the non-aliased result, whatever the overlap
        backend.copy_into(out, backend.rearrange(x, plan))
        return out
    return backend.rearrange(x, plan, out)


def _check_out(backend: Backend[Any], x: Any, out: Any, plan: _spec.Plan) -> None:
    if not backend.mutable:
        raise _spec.out_not_supported(backend.name, out)
    out_backend = backend_or_none(out, "out")
    if out_backend is None or out_backend is not backend:
        raise _spec.out_wrong_type(backend.name, out)
    _spec.check_out(plan, backend.shape(out), backend.dtype(out), backend.dtype(x))
    if backend.device(out) != backend.device(x):
        raise _spec.out_wrong_device(backend.device(x), backend.device(out))
    problem = backend.out_problem(out, x)
    if problem is not None:
        raise _spec.out_problem(problem[0], out, problem[1])


def shuffle(
    x: Array,
    factor: Factor,
    *,
    spatial_dims: int | None = None,
    layout: Layout = "channels_first",
    order: Order = "CRD",
    out: Array | None = None,
) -> Array:
    """Pixel shuffle (depth-to-space): move channel blocks into space.

    ``(..., C * prod(factor), *S)`` -> ``(..., C, *(s * r for s, r in zip(S, factor)))``
    in ``channels_first`` layout; ``(..., *S, C * prod(factor))`` -> ``(..., *S * r, C)``
    in ``channels_last``.  ``order="CRD"`` reads the input channel as
    ``c * prod(factor) + b`` (PyTorch ``pixel_shuffle``), ``order="DCR"`` as
    ``b * C + c`` (TensorFlow ``depth_to_space``), where ``b`` is the row-major
    position in the block.

    Args:
        x: a NumPy, CuPy, PyTorch, TensorFlow or JAX array.
        factor: upscaling factor, an int or one int per spatial dimension.
        spatial_dims: how many trailing (channels_first) or inner (channels_last)
            axes are spatial; default ``len(factor)`` for a tuple, else 2.
            Axes before the channel and spatial axes are batch axes.
        layout: ``"channels_first"`` (default) or ``"channels_last"``.
        order: ``"CRD"`` (default) or ``"DCR"``.
        out: optional preallocated output (NumPy, CuPy, PyTorch only).

    Returns:
        A new array of ``x``'s library, dtype and device (or ``out``).

    Example:
        >>> import numpy as np, subpixel
        >>> x = np.arange(8).reshape(1, 8, 1, 1)   # 2 output channels, factor 2
        >>> subpixel.shuffle(x, 2)[0, 0]            # CRD: channels 0..3 -> channel 0
        array([[0, 1],
               [2, 3]])
        >>> subpixel.shuffle(x, 2, order="DCR")[0, 0]   # DCR: channels 0, 2, 4, 6
        array([[0, 2],
               [4, 6]])
    """
    return _run("shuffle", x, factor, spatial_dims, layout, order, out)


def unshuffle(
    x: Array,
    factor: Factor,
    *,
    spatial_dims: int | None = None,
    layout: Layout = "channels_first",
    order: Order = "CRD",
    out: Array | None = None,
) -> Array:
    """Pixel unshuffle (space-to-depth): the exact inverse of :func:`shuffle`.

    ``(..., C, *S)`` -> ``(..., C * prod(factor), *(s // r))`` in
    ``channels_first``; every spatial size must be divisible by its factor.
    Arguments as in :func:`shuffle`.

    Example:
        >>> import numpy as np, subpixel
        >>> y = np.arange(32).reshape(2, 2, 2, 4)
        >>> x = subpixel.unshuffle(y, (1, 2), order="DCR")
        >>> x.shape
        (2, 4, 2, 2)
        >>> bool((subpixel.shuffle(x, (1, 2), order="DCR") == y).all())
        True
    """
    return _run("unshuffle", x, factor, spatial_dims, layout, order, out)


def _as_backend_array(a: Any, backend: Any, like: Any, argname: str) -> Any:
    """``a`` as an array of ``like``'s backend, dtype and device (NumPy arrays convert);
    real numbers only, on ``like``'s device."""
    if a is None:
        return a
    if backend.is_array(a):
        _spec.parameter_dtype(argname, backend.dtype_name(a), backend.dtype(a))
        device, expected = backend.device(a), backend.device(like)
        if device and expected and device != expected:
            raise _spec.wrong_device(argname, expected, device)
        return a
    if type(a).__module__ == "numpy" and hasattr(a, "shape"):
        _spec.parameter_dtype(argname, a.dtype.name, a.dtype)
        return backend.from_numpy(a, like=like)
    raise TypeError(
        f"`{argname}` must be an array of the input's library ({backend.name}) or a NumPy "
        f"array. Received: {argname} of type {type(a).__module__}.{type(a).__qualname__}"
    )


def sub_pixel_conv(
    x: Array,
    weight: Array | np.ndarray,
    bias: Array | np.ndarray | None = None,
    *,
    factor: Factor,
    padding: Padding = "same",
    spatial_dims: int | None = None,
    layout: Layout = "channels_first",
    order: Order = "CRD",
    blur: bool = False,
    crop: Crop = None,
) -> Array:
    """Sub-pixel convolution: an LR convolution, then :func:`shuffle`.

    ``weight`` is always in PyTorch layout, ``(C_out * prod(factor), C_in, *kernel)``,
    whatever ``layout`` the data has; its output channels are in ``order``.  It may
    be an array of ``x``'s library or a NumPy array (converted to ``x``'s dtype and
    device).  ``bias``: ``(C_out * prod(factor),)`` or None.

    Args:
        padding: the LR convolution's zero padding: ``"same"`` (default),
            ``"valid"``, an int, one per spatial dim, or ``(before, after)`` pairs.
        spatial_dims: default ``weight.ndim - 2``.
        blur: follow the shuffle with a replication pad and a 2x...x2 average
            (fastai's ``PixelShuffle_ICNR(blur=True)``) against checkerboards.
        crop: pixels removed from the HR output, ``(before, after)`` per spatial
            dim (as produced by :func:`subpixel.weights.conv_transpose_to_sub_pixel`).

    Example:
        >>> import numpy as np, subpixel
        >>> x = np.ones((1, 2, 4, 4), np.float32)
        >>> w = np.ones((3 * 4, 2, 3, 3), np.float32)   # 3 output channels, factor 2
        >>> subpixel.sub_pixel_conv(x, w, factor=2).shape
        (1, 3, 8, 8)
    """
    backend = backend_for(x)
    x_dtype = backend.dtype_name(x)
    _spec.conv_dtype(x_dtype, backend.dtype(x))
    weight = _cast_like(_as_backend_array(weight, backend, x, "weight"), backend, x_dtype)
    bias = _cast_like(_as_backend_array(bias, backend, x, "bias"), backend, x_dtype)
    cplan = _spec.make_conv_plan(
        backend.shape(x),
        backend.shape(weight),
        None if bias is None else backend.shape(bias),
        factor,
        padding,
        spatial_dims,
        layout,
        order,
        crop=crop,
    )
    if _has_no_terms(cplan, tuple(backend.shape(weight) or ())):
        # nothing to sum: the LR result is the bias alone (or empty)
        y = backend.rearrange(_bias_only(backend, x, bias, cplan), cplan.shuffle)
    elif hasattr(backend, "sub_pixel_conv"):  # a backend with a faster combined path
        y = backend.sub_pixel_conv(x, weight, bias, cplan)
    else:
        y = backend.rearrange(backend.conv(x, weight, bias, cplan), cplan.shuffle)
    if blur:
        y = _blur(backend, y, cplan.shuffle)
    if cplan.has_crop:
        plan = cplan.shuffle
        y = y[_spec.crop_key(len(plan.out_shape), plan.spatial_dims, plan.layout, cplan.crop)]
    return y


def _cast_like(a: Any, backend: Any, dtype_name: str) -> Any:
    """Weights and bias in the data's dtype (the contract: the result has ``x``'s dtype)."""
    if a is None or backend.dtype_name(a) == dtype_name:
        return a
    return backend.astype(a, dtype_name)


def _has_no_terms(cplan: _spec.ConvPlan, w_shape: tuple) -> bool:
    """True for a static zero-size batch, input or output channels: the convolution
    has no terms (or no outputs), which some libraries' kernels refuse."""
    sizes = (*cplan.lr_shape, *w_shape)
    return any(type(n) is int and n == 0 for n in sizes)


def _bias_only(backend: Any, x: Any, bias: Any, cplan: _spec.ConvPlan) -> Any:
    lr = backend.zeros(cplan.lr_shape, like=x)
    if bias is None or any(n == 0 for n in cplan.lr_shape):
        return lr
    d = len(cplan.kernel)
    if cplan.layout == "channels_first":
        expand = (slice(None), *(None,) * d)
        bias = bias[expand]
    return lr + bias


def blur(x: Array, *, spatial_dims: int = 2, layout: Layout = "channels_first") -> Array:
    """Replication-pad one pixel before each spatial axis, then average every
    2x...x2 window: a stride-1 box blur that keeps the shape.

    Floating-point and complex input keep their dtype (the average never overflows:
    values are halved before they are added); bool and integer input give float32
    on every backend.

    >>> import numpy as np, subpixel
    >>> subpixel.blur(np.array([[[0.0, 4.0], [8.0, 0.0]]]))
    array([[[0., 2.],
            [4., 3.]]])
    """
    backend = backend_for(x)
    d = _spec.normalize_spatial_dims(spatial_dims, None)
    layout = _spec.normalize_layout(layout)
    shape = backend.shape(x)
    _spec.check_rank(shape, d)
    plan = _spec.make_plan("shuffle", shape, 1, d, layout, "CRD")
    return _blur(backend, x, plan)


def _blur(backend: Any, y: Any, plan: _spec.Plan) -> Any:
    d = plan.spatial_dims
    ndim = len(plan.out_shape)
    first = ndim - d if plan.layout == "channels_first" else ndim - d - 1
    name = backend.dtype_name(y)
    result = _spec.blur_dtype(name, backend.dtype(y))
    compute = _spec.BLUR_COMPUTE.get(name, result)
    if compute is not None:
        y = backend.astype(y, compute)
    for axis in range(first, first + d):  # separable: pad one before, average pairs
        # full keys (a trailing Ellipsis): the Array API standard indexes no other way
        head = (*(slice(None),) * axis, slice(0, 1), Ellipsis)
        y = backend.concat([y[head], y], axis)
        lo = (*(slice(None),) * axis, slice(0, -1), Ellipsis)
        hi = (*(slice(None),) * axis, slice(1, None), Ellipsis)
        # halve, then add: never overflows, and exact but for subnormal numbers
        y = y[lo] * 0.5 + y[hi] * 0.5
    if compute is not None and result is None:  # float16/bfloat16: rounded once, at the end
        y = backend.astype(y, name)
    return y


def backend_name(x: object) -> str:
    """The name of the backend that handles ``x``: ``"numpy"``, ``"cupy"``,
    ``"torch"``, ``"tensorflow"`` or ``"jax"``.

    >>> import numpy as np, subpixel
    >>> subpixel.backend_name(np.zeros(3))
    'numpy'
    """
    return backend_for(x).name
