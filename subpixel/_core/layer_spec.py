"""One frozen, validated description of a sub-pixel convolution layer.

Every layer (``subpixel.SubPixelConv`` and the PyTorch, Keras and Flax layers) is
built from a :class:`LayerSpec`; argument rules and messages live here once, as the
op arguments' live in :mod:`.spec`, and every layer reads its arguments back through
:class:`SpecFields`.  Every framework's ICNR initializer gathers a base kernel's
filters with :meth:`LayerSpec.icnr_index` (the rule of :mod:`.channels`).

>>> spec = LayerSpec.create(4, 3, 3, 2, order="DCR")
>>> spec.weight_shape, spec.padding
((12, 4, 3, 3), ((1, 1), (1, 1)))
>>> spec.icnr_index().tolist()   # DCR: LR channel b * C + c starts as base filter c
[0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from . import spec as _spec
from .channels import icnr_index
from .spec import Layout, Order

FORMAT = "subpixel.SubPixelConv/1"
# dtypes a framework-free layer's parameters may have (NumPy has no bfloat16)
PARAM_DTYPES = ("float16", "float32", "float64")
MAX_CHANNELS = 1 << 24  # far above any real layer; keeps hostile files from allocating
MAX_KERNEL = 1 << 10
MAX_FACTOR = 1 << 10
MAX_PADDING = 1 << 12
MAX_PARAMETERS = 1 << 31  # kernel elements: far above any real layer, below a hostile file's


def _bool(value: Any, name: str) -> bool:
    kind = type(value)
    if kind is bool or (kind.__module__ == "numpy" and kind.__name__ in ("bool", "bool_")):
        return bool(value)
    raise ValueError(f"`{name}` must be True or False. Received: {name}={value!r}")


def _count(value: Any, name: str, minimum: int = 1, maximum: int = MAX_CHANNELS) -> int:
    if not _spec.is_int(value) or not minimum <= operator.index(value) <= maximum:
        raise ValueError(
            f"`{name}` must be an integer from {minimum} to {maximum}. Received: {name}={value!r}"
        )
    return operator.index(value)


def _bounded(pairs: tuple, name: str, value: Any) -> tuple:
    if any(v > MAX_PADDING for p in pairs for v in p):
        raise ValueError(
            f"`{name}` must be at most {MAX_PADDING} per side. Received: {name}={value!r}"
        )
    return pairs


def check_plain_conv(framework: str, factor: Any, stride: Any, dilation: Any, groups: int) -> None:
    """A framework's plain convolution is the LR half of a sub-pixel conv only with a
    ``factor`` given and stride 1, no dilation, no groups; ``ValueError`` otherwise."""
    if factor is None:
        raise ValueError(f"`factor` is needed to read a plain {framework} conv as a sub-pixel conv")
    if any(s != 1 for s in stride) or any(v != 1 for v in dilation) or groups != 1:
        raise ValueError(
            "Only stride-1, undilated, ungrouped convolutions are sub-pixel convolutions. "
            f"Received: stride={tuple(stride)}, dilation={tuple(dilation)}, groups={groups}"
        )


@dataclass(frozen=True)
class LayerSpec:
    """A sub-pixel convolution: an LR conv with ``out_channels * prod(factor)``
    outputs (channels in ``order``), zero ``padding``, the shuffle, an optional
    ``blur`` and a ``crop`` of the HR output.  Build it with :meth:`create`."""

    in_channels: int | None  # None until a lazily built layer (Keras) sees its input
    out_channels: int
    kernel_size: tuple[int, ...]
    factor: tuple[int, ...]
    order: Order = "CRD"
    padding: tuple[tuple[int, int], ...] = ()
    crop: tuple[tuple[int, int], ...] = ()
    blur: bool = False
    bias: bool = True
    layout: Layout = "channels_first"

    @classmethod
    def create(
        cls,
        in_channels: Any,
        out_channels: Any,
        kernel_size: Any,
        factor: Any,
        *,
        spatial_dims: Any = None,
        order: Any = "CRD",
        padding: Any = "same",
        crop: Any = None,
        blur: Any = False,
        bias: Any = True,
        layout: Any = "channels_first",
    ) -> LayerSpec:
        """Validate every argument (the contract's messages) and normalise it."""
        if spatial_dims is None:
            spatial_dims = len(kernel_size) if isinstance(kernel_size, (tuple, list)) else None
            if spatial_dims is None and isinstance(factor, (tuple, list)):
                spatial_dims = len(factor)
        d = _spec.normalize_spatial_dims(2 if spatial_dims is None else spatial_dims, None)
        kernel = _spec.normalize_factor(kernel_size, d, "kernel_size")
        if max(kernel) > MAX_KERNEL:
            raise ValueError(
                f"`kernel_size` must be at most {MAX_KERNEL}. Received: kernel_size={kernel_size!r}"
            )
        r = _spec.normalize_factor(factor, d)
        if max(r) > MAX_FACTOR:
            raise ValueError(f"`factor` must be at most {MAX_FACTOR}. Received: factor={factor!r}")
        if in_channels is not None and _spec.is_int(in_channels) and _spec.is_int(out_channels):
            n = int(in_channels) * int(out_channels) * math.prod(r) * math.prod(kernel)
            if n > MAX_PARAMETERS:
                raise ValueError(
                    f"The layer would have {n} kernel parameters (more than 2**31). Received: "
                    f"in_channels={in_channels!r}, out_channels={out_channels!r}, "
                    f"kernel_size={kernel_size!r}, factor={factor!r}"
                )
        return cls(
            in_channels=None if in_channels is None else _count(in_channels, "in_channels"),
            out_channels=_count(out_channels, "out_channels"),
            kernel_size=kernel,
            factor=r,
            order=_spec.normalize_order(order),
            padding=_bounded(_spec.normalize_padding(padding, kernel), "padding", padding),
            crop=_bounded(_spec.normalize_crop(crop, d), "crop", crop),
            blur=_bool(blur, "blur"),
            bias=_bool(bias, "bias"),
            layout=_spec.normalize_layout(layout),
        )

    # -- derived ---------------------------------------------------------------

    @property
    def spatial_dims(self) -> int:
        return len(self.factor)

    @property
    def lr_channels(self) -> int:
        """Output channels of the LR convolution: ``out_channels * prod(factor)``."""
        return self.out_channels * math.prod(self.factor)

    @property
    def inputs(self) -> int:
        """``in_channels``, which a lazily built layer knows only once built."""
        if self.in_channels is None:
            raise ValueError("The layer's `in_channels` is not known yet (the layer is not built)")
        return self.in_channels

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """The kernel in PyTorch layout, ``(out_channels * R, in_channels, *kernel)``."""
        return (self.lr_channels, self.inputs, *self.kernel_size)

    @property
    def has_crop(self) -> bool:
        return any(a or b for a, b in self.crop)

    def replace(self, **changes: Any) -> LayerSpec:
        """A copy with some arguments changed, validated again."""
        args = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        args.update(changes)
        in_channels, out_channels = args.pop("in_channels"), args.pop("out_channels")
        kernel, factor = args.pop("kernel_size"), args.pop("factor")
        return LayerSpec.create(in_channels, out_channels, kernel, factor, **args)

    def op_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`subpixel.sub_pixel_conv` for this layer."""
        return {
            "factor": self.factor,
            "padding": self.padding,
            "spatial_dims": self.spatial_dims,
            "layout": self.layout,
            "order": self.order,
            "blur": self.blur,
            "crop": self.crop if self.has_crop else None,
        }

    def layer_kwargs(self) -> dict[str, Any]:
        """The keywords every framework's layer takes alike, to rebuild this spec."""
        return {"padding": self.padding, "order": self.order, "blur": self.blur, "crop": self.crop}

    # -- the one ICNR rule -----------------------------------------------------

    def icnr_index(self) -> Any:
        """:func:`icnr_index` for this layer."""
        return icnr_index(self.out_channels, self.factor, self.order)

    # -- checks against arrays ---------------------------------------------------

    def check_parameters(self, w_shape: tuple, b_shape: tuple | None, source: str = "") -> None:
        """``ValueError`` unless the kernel and bias fit this description."""
        where = f"{source}: " if source else ""
        if tuple(w_shape) != self.weight_shape:
            raise ValueError(
                f"{where}`weight` must have shape {self.weight_shape} for this layer. "
                f"Received: weight.shape={tuple(w_shape)}"
            )
        expected = (self.lr_channels,) if self.bias else None
        got = None if b_shape is None else tuple(b_shape)
        if got != expected:
            what = f"shape {expected}" if expected else "no bias (bias=False)"
            raise ValueError(f"{where}`bias` must have {what} for this layer. Received: {got}")

    # -- files -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (as stored in weight files)."""
        return {
            "format": FORMAT,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "factor": list(self.factor),
            "order": self.order,
            "padding": [list(p) for p in self.padding],
            "layout": self.layout,
            "crop": [list(p) for p in self.crop],
            "blur": self.blur,
            "bias": self.bias,
        }

    @classmethod
    def from_dict(cls, config: Any, source: str) -> LayerSpec:
        """Strictly read :meth:`to_dict`'s output: known keys only, JSON types, every
        value validated; ``ValueError("<source>: <reason>")`` otherwise.  (Files
        written before ``bias`` was recorded omit it: it is then taken from the arrays.)"""
        if not isinstance(config, Mapping):
            raise ValueError(
                f"{source}: the layer config must be a JSON object, not {type(config).__name__}"
            )
        if config.get("format") != FORMAT:
            raise ValueError(
                f"{source}: the layer config has format {config.get('format')!r}; expected {FORMAT!r}"
            )
        known = set(cls.__dataclass_fields__) | {"format"}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"{source}: unknown key(s) in the layer config: {', '.join(unknown)}")
        missing = [
            k for k in ("in_channels", "out_channels", "kernel_size", "factor") if k not in config
        ]
        if missing:
            raise ValueError(f"{source}: the layer config lacks {', '.join(missing)}")

        def plain(value: Any, key: str) -> Any:  # JSON lists -> tuples, nothing else accepted
            if isinstance(value, list):
                return tuple(plain(v, key) for v in value)
            if value is None or isinstance(value, (bool, int, str)):
                return value
            raise ValueError(
                f"{source}: the layer config's `{key}` holds a {type(value).__name__}: {value!r}"
            )

        args = {k: plain(v, k) for k, v in config.items() if k != "format"}
        if args["in_channels"] is None:
            raise ValueError(f"{source}: the layer config lacks in_channels")
        try:
            return cls.create(
                args.pop("in_channels"),
                args.pop("out_channels"),
                args.pop("kernel_size"),
                args.pop("factor"),
                **args,
            )
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None


class _Described(Protocol):
    @property
    def spec(self) -> LayerSpec: ...


class SpecFields:
    """The arguments every sub-pixel layer shares, read-only from its :class:`LayerSpec`
    (``self.spec``): the framework-free layer and the PyTorch, Keras and Flax layers
    inherit them, and alias them in their framework's words (``filters``,
    ``data_format``, ``in_features`` ...)."""

    @property
    def in_channels(self: _Described) -> int:
        return self.spec.inputs

    @property
    def out_channels(self: _Described) -> int:
        return self.spec.out_channels

    @property
    def kernel_size(self: _Described) -> tuple[int, ...]:
        return self.spec.kernel_size

    @property
    def factor(self: _Described) -> tuple[int, ...]:
        return self.spec.factor

    @property
    def order(self: _Described) -> Order:
        return self.spec.order

    @property
    def padding(self: _Described) -> tuple[tuple[int, int], ...]:
        """The LR convolution's zero padding, ``(before, after)`` per spatial dimension."""
        return self.spec.padding

    @property
    def crop(self: _Described) -> tuple[tuple[int, int], ...]:
        """Pixels removed from the HR output, ``(before, after)`` per spatial dimension."""
        return self.spec.crop

    @property
    def blur(self: _Described) -> bool:
        return self.spec.blur

    @property
    def layout(self: _Described) -> Layout:
        return self.spec.layout
