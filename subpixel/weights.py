"""Weight conversion: transposed convolution <-> sub-pixel convolution, channel
orders, framework kernel layouts, ICNR initialisation.

A transposed convolution with stride ``s`` and kernel ``K`` equals an LR
convolution with ``prod(s)`` times more output channels and kernel
``ceil(K / s)``, followed by a periodic shuffle and a crop (docs/weights.md):

    conv_transpose(x) == crop(shuffle(conv(pad(x, lr_padding), weight, bias), factor, order), crop)

Every function takes NumPy arrays (or any backend's arrays) and returns NumPy
arrays.  Kernels are in PyTorch layout unless a ``source``/``target`` says
otherwise: regular ``(C_out, C_in // groups, *k)``, transposed
``(C_in, C_out // groups, *k)``.

>>> import numpy as np
>>> from subpixel import weights
>>> w = np.random.default_rng(0).standard_normal((32, 1, 9, 9))   # ConvTranspose2d(32, 1, 9, 3, 3)
>>> plan = weights.conv_transpose_to_sub_pixel(w, stride=3, padding=3)
>>> plan.weight.shape, plan.lr_padding, plan.crop
((9, 32, 3, 3), ((1, 1), (1, 1)), ((0, 0), (0, 0)))
>>> back = weights.sub_pixel_to_conv_transpose(plan.weight, factor=3, padding=1)
>>> back.weight.shape, back.stride, back.padding, back.output_padding
((32, 1, 9, 9), (3, 3), (3, 3), (0, 0))
>>> bool(np.array_equal(back.weight, w))
True
"""

from __future__ import annotations

import inspect
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from ._core import spec as _spec
from ._core.channels import gather_index, icnr_index
from ._core.layer_spec import MAX_FACTOR
from ._core.spec import Crop, Factor, Order, Padding
from .backends import maybe_numpy, to_numpy

__all__ = [
    "ConvTransposeParams",
    "SubPixelPlan",
    "conv_transpose_to_sub_pixel",
    "convert_layout",
    "icnr",
    "reorder_channels",
    "sub_pixel_to_conv_transpose",
]

SOURCES = ("torch", "tensorflow")
LAYOUT_NAMES = ("torch", "tensorflow", "keras", "flax", "jax")


@dataclass(frozen=True)
class SubPixelPlan:
    """An LR convolution + shuffle + crop equal to a transposed convolution."""

    weight: np.ndarray  # (C_out * prod(factor), C_in // groups, *k_lr), PyTorch layout
    bias: np.ndarray | None  # (C_out * prod(factor),)
    factor: tuple[int, ...]
    order: str
    lr_padding: tuple[tuple[int, int], ...]  # zero padding of the LR input, per spatial dim
    crop: tuple[tuple[int, int], ...]  # cropped from the shuffled HR output, per spatial dim
    groups: int = 1

    @property
    def spatial_dims(self) -> int:
        return len(self.factor)


@dataclass(frozen=True)
class ConvTransposeParams:
    """A transposed convolution: ``weight``, ``bias`` and its hyper-parameters.

    ``target="torch"``: ``weight`` is ``(C_in, C_out // groups, *k)`` and
    ``padding``/``output_padding`` are ints per dim, as ``torch.nn.ConvTranspose*d``.
    ``target="tensorflow"``: ``weight`` is ``(*k, C_out, C_in)`` and ``padding`` is
    ``"same"`` or ``"valid"``, as Keras ``Conv*DTranspose`` (``output_padding`` None).
    """

    weight: np.ndarray
    bias: np.ndarray | None
    stride: tuple[int, ...]
    padding: Any
    output_padding: tuple[int, ...] | None
    groups: int = 1
    target: str = "torch"


# ---------------------------------------------------------------------------
# argument helpers
# ---------------------------------------------------------------------------


def _per_dim(
    value: Any, d: int, name: str, minimum: int, maximum: int | None = None
) -> tuple[int, ...]:
    items = tuple(value) if isinstance(value, (tuple, list)) else (value,) * d
    ok = len(items) == d and all(
        not isinstance(v, bool) and isinstance(v, (int, np.integer)) and v >= minimum for v in items
    )
    if ok and maximum is not None:
        ok = all(v <= maximum for v in items)
    if not ok:
        bound = f"at least {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ValueError(
            f"`{name}` must be an integer {bound} or a tuple of {d} such integers. "
            f"Received: {name}={value!r}"
        )
    return tuple(operator.index(v) for v in items)


def _check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    return _spec.choice(value, name, choices, "one of " + ", ".join(repr(c) for c in choices))


def _check_kernel(w: np.ndarray, name: str = "weight") -> int:
    if w.ndim < 3:
        raise ValueError(
            f"`{name}` must be a convolution kernel with 1, 2 or 3 spatial dimensions "
            f"(at least 3 axes). Received: {name}.shape={w.shape}"
        )
    return w.ndim - 2


def _check_bias(bias: np.ndarray | None, channels: int, what: str) -> None:
    if bias is not None and bias.shape != (channels,):
        raise ValueError(
            f"`bias` must have shape ({channels},), one value per {what}. "
            f"Received: bias.shape={bias.shape}"
        )


def _check_groups(groups: Any, channels: int, what: str = "input channels") -> int:
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"`groups` must be a positive integer. Received: groups={groups!r}")
    if channels % groups:
        raise ValueError(f"`groups` must divide the {channels} {what}. Received: groups={groups}")
    return int(groups)


# ---------------------------------------------------------------------------
# channel orders
# ---------------------------------------------------------------------------


def reorder_channels(
    w: ArrayLike,
    factor: Factor,
    *,
    src: Order = "CRD",
    dst: Order = "DCR",
    axis: int = 0,
    spatial_dims: int | None = None,
) -> np.ndarray:
    """Reorder the channels of a sub-pixel kernel or bias between CRD and DCR.

    ``axis=0``: the output channels of a conv whose output is shuffled (or its
    bias).  ``axis=1``: the input channels of a conv fed by ``unshuffle``.  With
    the reordered weights, a model in ``dst`` order gives the same numbers as
    the original in ``src`` order.  An int ``factor`` applies to every spatial
    dimension: ``spatial_dims`` (default: ``w.ndim - 2`` for a kernel) says how many.

    >>> import numpy as np
    >>> reorder_channels(np.arange(8), (2, 2), src="CRD", dst="DCR")   # bias, C=2
    array([0, 4, 1, 5, 2, 6, 3, 7])
    """
    w = to_numpy(w, "w")
    src = _spec.normalize_order(src)
    dst = _spec.normalize_order(dst)
    if spatial_dims is None and not isinstance(factor, (tuple, list)):
        if w.ndim < 3:
            raise ValueError(
                "`spatial_dims` is needed with an int `factor` for a bias (1-D `w`), or pass "
                f"one factor per spatial dimension. Received: factor={factor!r}, w.shape={w.shape}"
            )
        spatial_dims = w.ndim - 2
    d = _spec.normalize_spatial_dims(spatial_dims, factor)
    r = _spec.normalize_factor(factor, d)
    R = math.prod(r)
    if not _spec.is_int(axis) or not -w.ndim <= operator.index(axis) < w.ndim:
        raise ValueError(f"`axis` must be an axis of `w` (ndim {w.ndim}). Received: axis={axis!r}")
    axis = operator.index(axis)
    C = _spec.check_divisible_channels("w", w.shape[axis], r, w.shape, f"channels on axis {axis}")
    if src == dst:
        return np.array(w, copy=True)
    return np.take(w, gather_index(C * R, r, src, dst), axis=axis)


# ---------------------------------------------------------------------------
# transposed conv -> sub-pixel conv
# ---------------------------------------------------------------------------


def _tf_crops(K: int, s: int, padding: str, output_padding: int | None) -> tuple[int, int]:
    """(crop_before, crop_after) of the full transposed-conv output, Keras/TF rules.

    The output length is ``L * s + c`` for a constant ``c``; TensorFlow places the
    padding of the equivalent forward conv with SAME rules (extra on the right).
    """
    if output_padding is None:
        c = max(K - s, 0) if padding == "valid" else 0
    else:
        pad = 0 if padding == "valid" else K // 2
        c = K - s - 2 * pad + output_padding
    if padding == "valid":
        before = 0
    else:
        pad_total = max((-(-c // s) - 1) * s + K - c, 0)
        before = pad_total // 2
    after = K - s - before - c  # full length (L-1)s+K minus before minus output length
    return before, after


def conv_transpose_to_sub_pixel(
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    *,
    stride: int | Sequence[int],
    padding: int | Sequence[int] | Literal["same", "valid"] = 0,
    output_padding: int | Sequence[int] | None = None,
    groups: int = 1,
    source: str = "torch",
    order: Order = "CRD",
) -> SubPixelPlan:
    """The sub-pixel form of a transposed convolution (exact).

    Args:
        weight: ``source="torch"``: ``(C_in, C_out // groups, *k)``
            (``ConvTranspose*d.weight``); ``source="tensorflow"``: ``(*k, C_out, C_in)``
            (Keras ``Conv*DTranspose.kernel``).
        bias: ``(C_out,)`` or None.
        stride: int or one per spatial dim; becomes the shuffle factor.
        padding: torch: int or one per dim (``ConvTranspose*d.padding``);
            tensorflow: ``"same"`` or ``"valid"``.
        output_padding: torch: None (0) or int or one per dim, each less than its
            stride; tensorflow: None (Keras default) or int or one per dim.
        groups: torch only.
        order: channel order of the returned LR kernel, ``"CRD"`` or ``"DCR"``.

    Returns:
        A :class:`SubPixelPlan`; ``plan.weight`` is in PyTorch conv layout.
    """
    w = np.asarray(to_numpy(weight, "weight"))
    b = maybe_numpy(bias, "bias")
    source = _check_choice(source, "source", SOURCES)
    order = _spec.normalize_order(order)
    d = _check_kernel(w)
    s = _per_dim(stride, d, "stride", 1, MAX_FACTOR)
    if source == "tensorflow":
        if groups != 1:
            raise ValueError(
                f"`groups` must be 1 for source='tensorflow'. Received: groups={groups!r}"
            )
        same_or_valid = _check_choice(padding, "padding", ("same", "valid"))
        w = np.moveaxis(w, (-1, -2), (0, 1))  # (*k, C_out, C_in) -> (C_in, C_out, *k)
        op = None if output_padding is None else _per_dim(output_padding, d, "output_padding", 0)
        K = w.shape[2:]
        crops = [
            _tf_crops(K[i], s[i], same_or_valid, None if op is None else op[i]) for i in range(d)
        ]
        if op is not None:
            for i in range(d):
                if op[i] >= s[i]:
                    raise ValueError(
                        "`output_padding` must be smaller than `stride` in every dimension. "
                        f"Received: output_padding={output_padding!r} with stride={stride!r}"
                    )
    else:
        p = _per_dim(padding, d, "padding", 0)
        op = _per_dim(0 if output_padding is None else output_padding, d, "output_padding", 0)
        for i in range(d):
            if op[i] >= s[i]:
                raise ValueError(
                    "`output_padding` must be smaller than `stride` in every dimension. "
                    f"Received: output_padding={output_padding!r} with stride={stride!r}"
                )
        crops = [(p[i], p[i] - op[i]) for i in range(d)]
    groups = _check_groups(groups, w.shape[0])
    c_in = w.shape[0]
    c_out = w.shape[1] * groups
    _check_bias(b, c_out, "output channel of the transposed convolution")
    if order == "DCR" and groups > 1:
        raise ValueError(
            "`order` must be 'CRD' when groups > 1: a grouped LR convolution produces "
            "each group's channels contiguously, which is the CRD order. "
            f"Received: order='DCR' with groups={groups}"
        )

    K = w.shape[2:]
    kp = tuple(-(-K[i] // s[i]) for i in range(d))  # LR kernel size
    # zero-pad the kernel to a multiple of the stride (the seed's f=(1,2,3) example)
    padded = np.zeros(w.shape[:2] + tuple(kp[i] * s[i] for i in range(d)), dtype=w.dtype)
    taps = (slice(None), slice(None), *(slice(0, k) for k in K))
    padded[taps] = w
    # (C_in, C_out/g, kp_1, s_1, ..., kp_d, s_d): tap j, phase f at kernel index j*s + f
    split = padded.reshape(w.shape[:2] + tuple(x for i in range(d) for x in (kp[i], s[i])))
    # flip the taps: the LR correlation reads x[m - j] as tap q = kp - 1 - j
    split = np.flip(split, axis=tuple(2 + 2 * i for i in range(d)))
    g_in = c_in // groups
    g_out = c_out // groups
    # -> (groups, C_out/g, s_1..s_d, C_in/g, kp_1..kp_d): CRD channel (o, phase)
    split = split.reshape((groups, g_in, g_out, *split.shape[2:]))
    perm = (0, 2, *(4 + 2 * i for i in range(d)), 1, *(3 + 2 * i for i in range(d)))
    lr = split.transpose(perm).reshape((c_out * math.prod(s), g_in, *kp))
    lr_bias = None if b is None else np.repeat(b, math.prod(s))
    if order == "DCR":
        lr = reorder_channels(lr, s, src="CRD", dst="DCR")
        lr_bias = None if lr_bias is None else reorder_channels(lr_bias, s, src="CRD", dst="DCR")

    lr_padding, hr_crop = [], []
    for i in range(d):
        before, after = crops[i]
        a = min(kp[i] - 1, before // s[i])  # whole LR steps of the crop saved by padding less
        right = max(0, -(-(K[i] - after) // s[i]) - 1)
        lr_padding.append((kp[i] - 1 - a, right))
        hr_crop.append((before - a * s[i], (right + 1) * s[i] - K[i] + after))
    return SubPixelPlan(
        weight=np.ascontiguousarray(lr),
        bias=lr_bias,
        factor=s,
        order=order,
        lr_padding=tuple(lr_padding),
        crop=tuple(hr_crop),
        groups=groups,
    )


# ---------------------------------------------------------------------------
# sub-pixel conv -> transposed conv
# ---------------------------------------------------------------------------


def sub_pixel_to_conv_transpose(
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    *,
    factor: Factor,
    order: Order = "CRD",
    padding: Padding = "same",
    crop: Crop = None,
    groups: int = 1,
    target: str = "torch",
) -> ConvTransposeParams:
    """The transposed convolution equal to an LR conv + shuffle (+ crop): the inverse map.

    Args:
        weight: LR kernel ``(C_out * prod(factor), C_in // groups, *k)`` (PyTorch
            layout), channels in ``order``.
        bias: ``(C_out * prod(factor),)``; every phase of an output channel must
            carry the same bias (a transposed conv has one per channel).
        factor: the shuffle factor (becomes the stride).
        padding: the LR conv's padding: ``"same"``, ``"valid"``, an int or one per
            dim, or ``(before, after)`` pairs.
        crop: pixels removed from the shuffled output, ``(before, after)`` per dim
            (as :func:`conv_transpose_to_sub_pixel` produces); torch target only.
        target: ``"torch"`` (ConvTranspose*d) or ``"tensorflow"`` (Keras
            Conv*DTranspose, ``"same"``/``"valid"`` only).

    Where the LR padding is asymmetric (e.g. ``"same"`` with an even kernel) or
    larger than the kernel, zero taps are added to the kernel so that a
    symmetric padding reproduces it exactly.  Raises ``ValueError`` where the
    target's padding vocabulary cannot express the result.
    """
    w = np.asarray(to_numpy(weight, "weight"))
    b = maybe_numpy(bias, "bias")
    order = _spec.normalize_order(order)
    target = _check_choice(target, "target", SOURCES)
    d = _check_kernel(w)
    s = _spec.normalize_factor(factor, d)
    R = math.prod(s)
    c_out = _spec.check_divisible_channels("weight", w.shape[0], s, w.shape)
    groups = _check_groups(groups, c_out, "output channels of the transposed convolution")
    if groups > 1 and order == "DCR":
        raise ValueError(
            f"`order` must be 'CRD' when groups > 1. Received: order='DCR' with groups={groups}"
        )
    _check_bias(b, w.shape[0], "LR output channel")
    if order == "DCR":
        w = reorder_channels(w, s, src="DCR", dst="CRD")
        b = None if b is None else reorder_channels(b, s, src="DCR", dst="CRD")
    ct_bias = None
    if b is not None:
        per_phase = b.reshape(c_out, R)
        same = (per_phase == per_phase[:, :1]) | (np.isnan(per_phase) & np.isnan(per_phase[:, :1]))
        if not np.all(same):
            bad = int(np.argmax(~np.all(same, axis=1)))
            raise ValueError(
                "`bias` must be equal across the phases of each output channel: a transposed "
                f"convolution has one bias per channel. Received: bias of output channel {bad} "
                f"= {per_phase[bad].tolist()}"
            )
        ct_bias = per_phase[:, 0].copy()

    kp = w.shape[2:]
    pads = _spec.normalize_padding(padding, kp)
    # balance the padding with zero taps: prepend a (kernel and left pad grow),
    # append b (kernel and right pad grow) until left == right <= kernel - 1
    pre, post = [], []
    for i in range(d):
        left, right = pads[i]
        n_post = max(0, left - kp[i] + 1, left - right)
        n_pre = right + n_post - left
        pre.append(n_pre)
        post.append(n_post)
    w = np.pad(w, [(0, 0), (0, 0)] + [(pre[i], post[i]) for i in range(d)])
    kq = w.shape[2:]
    lefts = [pads[i][0] + pre[i] for i in range(d)]
    g_in = w.shape[1]
    c_in = g_in * groups
    g_out = c_out // groups
    # (groups, C_out/g, s_1..s_d, C_in/g, kq_1..kq_d) -> (C_in, C_out/g, kq_1, s_1, ...)
    split = w.reshape((groups, g_out, *s, g_in, *kq))
    perm = (0, 2 + d, 1, *(x for i in range(d) for x in (3 + d + i, 2 + i)))
    big = split.transpose(perm)
    big = np.flip(big, axis=tuple(3 + 2 * i for i in range(d)))  # undo the tap flip
    big = big.reshape((c_in, g_out, *(kq[i] * s[i] for i in range(d))))
    p = tuple((kq[i] - 1 - lefts[i]) * s[i] for i in range(d))
    big = np.ascontiguousarray(big)
    crops = _spec.normalize_crop(crop, d)
    if any(a or b for a, b in crops):
        if target != "torch":
            raise ValueError(
                "`crop` has no Keras Conv*DTranspose equivalent; use target='torch'. "
                f"Received: crop={crop!r}"
            )
        big, p, op = _crop_as_padding(big, p, s, crops)
        return ConvTransposeParams(big, ct_bias, s, p, op, groups, "torch")
    if target == "torch":
        return ConvTransposeParams(big, ct_bias, s, p, (0,) * d, groups, "torch")
    # Keras: padding 'same' crops floor((K - s) / 2) = floor((kq - 1) s / 2) before;
    # 'valid' crops nothing; neither takes output_padding here
    if groups != 1:
        raise ValueError(f"`groups` must be 1 for target='tensorflow'. Received: groups={groups}")
    tf_kernel = np.ascontiguousarray(np.moveaxis(big, (0, 1), (-1, -2)))
    if all(p[i] == 0 for i in range(d)):
        return ConvTransposeParams(tf_kernel, ct_bias, s, "valid", None, 1, "tensorflow")
    if all(
        p[i] == ((kq[i] - 1) * s[i]) // 2 and (kq[i] - 1 - lefts[i]) == lefts[i] for i in range(d)
    ):
        return ConvTransposeParams(tf_kernel, ct_bias, s, "same", None, 1, "tensorflow")
    raise ValueError(
        "No Keras transposed convolution ('same' or 'valid') reproduces this sub-pixel "
        f"convolution exactly: its LR padding {tuple(pads)} crops {p} from the transposed "
        "output. Use target='torch' (explicit padding) or an LR padding of 'same' or "
        f"kernel - 1 on each side. Received: padding={padding!r}"
    )


def _crop_as_padding(w: np.ndarray, pad: tuple, s: tuple, crops: tuple) -> tuple:
    """Fold an HR crop into a torch transposed conv's padding and output_padding.

    The crop removes (a, b) more of the full output: before/after become p + a and
    p + b.  PyTorch needs before - after in [0, stride): shift it by whole strides
    with zero taps at the kernel's start (before grows by s) or end (after grows by s).
    """
    new_pad, output_padding = [], []
    for i, ((a, b), p, si) in enumerate(zip(crops, pad, s)):
        before, after = p + a, p + b
        front = -(-(after - before) // si) if before < after else 0
        back = (before - after) // si if before - after >= si else 0
        widths = [(0, 0)] * w.ndim
        widths[2 + i] = (front * si, back * si)
        w = np.pad(w, widths)
        before, after = before + front * si, after + back * si
        new_pad.append(before)
        output_padding.append(before - after)
    return np.ascontiguousarray(w), tuple(new_pad), tuple(output_padding)


# ---------------------------------------------------------------------------
# framework layouts
# ---------------------------------------------------------------------------


def convert_layout(
    w: ArrayLike,
    *,
    src: str = "torch",
    dst: str = "tensorflow",
    transposed: bool = False,
    transpose_kernel: bool = False,
) -> np.ndarray:
    """Convert a kernel between PyTorch, TensorFlow/Keras and Flax/JAX layouts.

    =============  =======================  ==================================
    framework      regular conv             transposed conv
    =============  =======================  ==================================
    torch          ``(O, I, *k)``           ``(I, O, *k)``
    tensorflow     ``(*k, I, O)``           ``(*k, O, I)``
    keras          as tensorflow            as tensorflow
    flax / jax     ``(*k, I, O)``           ``(*k, I, O)``, taps flipped unless
                                            ``transpose_kernel=True`` (then as
                                            tensorflow)
    =============  =======================  ==================================

    ``I``/``O`` are the layer's input/output channels.  Flax's ``ConvTranspose``
    with the default ``transpose_kernel=False`` correlates the dilated input with
    its kernel, so its taps are the reverse of PyTorch's.

    >>> import numpy as np
    >>> convert_layout(np.zeros((8, 3, 5, 5)), src="torch", dst="keras").shape
    (5, 5, 3, 8)
    """
    w = np.asarray(to_numpy(w, "w"))
    src = _check_choice(src, "src", LAYOUT_NAMES)
    dst = _check_choice(dst, "dst", LAYOUT_NAMES)
    if w.ndim < 3:
        raise ValueError(f"`w` must be a kernel with at least 3 axes. Received: w.shape={w.shape}")
    canonical = _to_torch_layout(w, src, transposed, transpose_kernel)
    return np.ascontiguousarray(_from_torch_layout(canonical, dst, transposed, transpose_kernel))


def _family(name: str) -> str:
    return {"keras": "tensorflow", "jax": "flax"}.get(name, name)


def _spatial_flip(w: np.ndarray, first: int, d: int) -> np.ndarray:
    return np.flip(w, axis=tuple(range(first, first + d)))


def _kernel_form(name: str, transposed: bool, transpose_kernel: bool) -> str:
    """How a framework's kernel stands against PyTorch's (:func:`convert_layout`'s
    table): ``"torch"``, the same; ``"last"``, the two channel axes last and swapped
    (TensorFlow, and Flax's regular conv and its ``ConvTranspose`` with
    ``transpose_kernel=True``); ``"flipped"``, the channel axes last in PyTorch's
    order and the taps reversed (Flax's ``ConvTranspose`` otherwise)."""
    fam = _family(name)
    if fam == "torch":
        return "torch"
    if fam == "flax" and transposed and not transpose_kernel:
        return "flipped"
    return "last"


def _to_torch_layout(w, src, transposed, transpose_kernel):
    form = _kernel_form(src, transposed, transpose_kernel)
    if form == "last":
        # regular (*k, I, O) -> (O, I, *k); transposed (*k, O, I) -> (I, O, *k)
        return np.moveaxis(w, (-1, -2), (0, 1))
    if form == "flipped":  # (*k, I, O), taps reversed -> (I, O, *k)
        return _spatial_flip(np.moveaxis(w, (-2, -1), (0, 1)), 2, w.ndim - 2)
    return w


def _from_torch_layout(w, dst, transposed, transpose_kernel):
    form = _kernel_form(dst, transposed, transpose_kernel)
    if form == "last":
        return np.moveaxis(w, (0, 1), (-1, -2))
    if form == "flipped":
        return np.moveaxis(_spatial_flip(w, 2, w.ndim - 2), (0, 1), (-2, -1))
    return w


# ---------------------------------------------------------------------------
# ICNR
# ---------------------------------------------------------------------------


def _he_normal(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    fan_in = math.prod(shape[1:])
    return rng.standard_normal(shape) * math.sqrt(2.0 / max(fan_in, 1))


def icnr(
    shape: Sequence[int],
    factor: Factor,
    *,
    order: Order = "CRD",
    init: Callable[..., ArrayLike] | ArrayLike | None = None,
    seed: int | np.random.Generator | None = None,
    dtype: DTypeLike = np.float32,
) -> np.ndarray:
    """ICNR initialisation (Aitken et al. 2017) of a sub-pixel conv kernel.

    ``shape`` is the kernel's PyTorch layout ``(C_out * prod(factor), C_in, *k)``.
    A base kernel ``(C_out, C_in, *k)`` is drawn with ``init`` and copied to every
    phase, so that at initialisation conv + shuffle equals the base conv followed
    by nearest-neighbour upsampling: no checkerboard.  CRD repeats each base
    filter ``prod(factor)`` times consecutively; DCR tiles the base.

    ``init``: None (He normal), a base kernel array, or a callable
    ``init(shape)`` or ``init(shape, rng)`` returning one.

    >>> w = icnr((8, 3, 3, 3), 2, seed=0)
    >>> bool((w[0] == w[3]).all() and (w[4] == w[7]).all() and not (w[0] == w[4]).all())
    True
    """
    if not isinstance(shape, (tuple, list)) or not all(
        _spec.is_int(v) and operator.index(v) >= 1 for v in shape
    ):
        raise ValueError(f"`shape` must be a tuple of positive integers. Received: shape={shape!r}")
    shape = tuple(operator.index(v) for v in shape)
    order = _spec.normalize_order(order)
    if len(shape) < 3:
        raise ValueError(
            f"`shape` must be a kernel shape with at least 3 axes. Received: shape={shape}"
        )
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.kind != "f":
        raise ValueError(
            f"`dtype` must be a floating-point dtype (integers would truncate the kernel to "
            f"zeros). Received: dtype={dtype!r}"
        )
    d = len(shape) - 2
    r = _spec.normalize_factor(factor, d)
    base_shape = (_spec.check_divisible_channels("shape", shape[0], r, shape), *shape[1:])
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if init is None:
        base = _he_normal(base_shape, rng)
    elif callable(init):
        base = to_numpy(init(base_shape, rng) if _takes_rng(init) else init(base_shape), "init")
    else:
        base = to_numpy(init, "init")
    base = np.asarray(base)
    if base.shape != base_shape:
        raise ValueError(
            f"`init` must give the base kernel of shape {base_shape}. Received: shape {base.shape}"
        )
    index = icnr_index(base_shape[0], r, order)  # the one ICNR rule (subpixel._core.channels)
    return np.take(base, index, axis=0).astype(dt)


def _takes_rng(init: Callable[..., Any]) -> bool:
    """Whether ``init`` accepts a second positional argument (the generator)."""
    try:
        params = list(inspect.signature(init).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature: give the generator
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)
