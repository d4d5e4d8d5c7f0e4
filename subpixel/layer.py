"""``SubPixelConv``: one sub-pixel convolution layer, parameters held as NumPy
arrays, that runs on any backend's array and moves between frameworks.

>>> import numpy as np
>>> from subpixel import SubPixelConv
>>> layer = SubPixelConv(4, 3, 3, factor=2, seed=0)      # ICNR-initialised
>>> layer(np.zeros((1, 4, 5, 5), np.float32)).shape
(1, 3, 10, 10)

Parameters are read-only arrays: assign new ones (``layer.weight = w``), which the
layer validates and converts for each backend again, so it never computes with
stale copies.  Each framework's module moves layers to and from it
(:func:`subpixel.layers.torch.from_agnostic` / ``to_agnostic``, and the same in
:mod:`subpixel.layers.keras` and :mod:`subpixel.layers.flax`).
"""

from __future__ import annotations

import importlib
import json
import math
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import ops, weights
from ._core import deprecation as _deprecation
from ._core import files as _files
from ._core.layer_spec import PARAM_DTYPES, LayerSpec, SpecFields
from ._core.spec import Crop, Factor, Layout, Order, Padding
from .backends import backend_for, maybe_numpy, to_numpy

if TYPE_CHECKING:
    import keras
    import torch
    from flax import nnx

Array = TypeVar("Array")

__all__ = ["SubPixelConv"]

CONFIG_KEY = "subpixel"  # the metadata entry of weight files that holds the layer config


def _param_dtype(dtype: DTypeLike) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in PARAM_DTYPES:
        raise ValueError(
            "`dtype` must be float16, float32 or float64 (a layer's parameters are "
            f"floating point). Received: dtype={dtype!r}"
        )
    return dt


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (
        isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0
    ):
        return np.random.default_rng(seed)
    raise ValueError(
        f"`seed` must be None, a non-negative integer or a numpy.random.Generator. Received: seed={seed!r}"
    )


def _read_only(a: np.ndarray) -> np.ndarray:
    """A read-only view of a private read-only copy: NumPy refuses to make such a view
    writeable again (``flags.writeable = True`` raises), so nothing edits it in place."""
    a = np.array(a, copy=True)
    a.flags.writeable = False
    view = a.view()
    view.flags.writeable = False
    return view


class SubPixelConv(SpecFields):
    """LR convolution with ``out_channels * prod(factor)`` outputs, then the shuffle.

    ``weight`` is ``(out_channels * prod(factor), in_channels, *kernel_size)``
    (PyTorch layout) with output channels in ``order``; ``bias`` one per LR channel.
    Calling the layer on a NumPy, PyTorch, TensorFlow, JAX (or CuPy) array runs
    there; the parameters are converted once per backend, device and dtype.

    Args:
        init: ``"icnr"`` (default: He normal base kernel copied to every phase),
            ``"he_normal"``, or a weight array of the layer's shape.
        seed: None, a non-negative int or a ``numpy.random.Generator``.
        dtype: the parameters' dtype: float16, float32 (default) or float64.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, ...],
        factor: Factor,
        *,
        spatial_dims: int | None = None,
        bias: bool = True,
        order: Order = "CRD",
        padding: Padding = "same",
        layout: Layout = "channels_first",
        init: str | ArrayLike = "icnr",
        blur: bool = False,
        crop: Crop = None,
        seed: int | np.random.Generator | None = None,
        dtype: DTypeLike = np.float32,
    ) -> None:
        spec = LayerSpec.create(
            in_channels,
            out_channels,
            kernel_size,
            factor,
            spatial_dims=spatial_dims,
            order=order,
            padding=padding,
            crop=crop,
            blur=blur,
            bias=bias,
            layout=layout,
        )
        dt = _param_dtype(dtype)
        shape = spec.weight_shape
        if isinstance(init, np.ndarray) or (not isinstance(init, str) and hasattr(init, "shape")):
            w = to_numpy(init, "init")
        elif init == "icnr":
            w = weights.icnr(shape, spec.factor, order=spec.order, seed=_rng(seed), dtype=dt)
        elif init == "he_normal":
            fan_in = spec.inputs * math.prod(spec.kernel_size)
            w = _rng(seed).standard_normal(shape) * math.sqrt(2.0 / fan_in)
        else:
            raise ValueError(
                f"`init` must be 'icnr', 'he_normal' or a weight array of shape {shape}. "
                f"Received: init={init!r}"
            )
        self._spec = spec
        self._dtype = dt
        self.weight = w
        self.bias = np.zeros(spec.lr_channels, dtype=dt) if spec.bias else None

    @classmethod
    def from_spec(
        cls, spec: LayerSpec, weight: ArrayLike, bias: ArrayLike | None = None
    ) -> SubPixelConv:
        """A layer for a :class:`~subpixel._core.layer_spec.LayerSpec` around given parameters."""
        w = np.asarray(to_numpy(weight, "weight"))
        spec.check_parameters(w.shape, None if bias is None else np.shape(bias))
        dtype = w.dtype if w.dtype.name in PARAM_DTYPES else np.float32
        layer = cls.__new__(cls)
        layer._spec, layer._dtype = spec, np.dtype(dtype)
        layer.weight = w
        layer.bias = maybe_numpy(bias, "bias")
        return layer

    # -- the description -----------------------------------------------------

    @property
    def spec(self) -> LayerSpec:
        """The layer's validated, frozen description."""
        return self._spec

    @property
    def spatial_dims(self) -> int:
        return self._spec.spatial_dims

    @property
    def dtype(self) -> np.dtype:
        """The parameters' dtype."""
        return self._dtype

    def config(self) -> dict:
        """The description as stored in weight files (JSON-ready)."""
        return self._spec.to_dict()

    # -- parameters --------------------------------------------------------

    @property
    def weight(self) -> np.ndarray:
        """``(out_channels * R, in_channels, *kernel_size)``, read-only: assign a new array."""
        return self._weight

    @weight.setter
    def weight(self, value: ArrayLike) -> None:
        value = np.asarray(to_numpy(value, "weight"))
        if value.shape != self._spec.weight_shape:
            raise ValueError(
                f"`weight` must have shape {self._spec.weight_shape}. Received: weight.shape={value.shape}"
            )
        if value.dtype.kind not in "fiu":
            raise ValueError(
                f"`weight` must hold real numbers. Received: weight.dtype={value.dtype}"
            )
        self._weight = _read_only(value.astype(self._dtype.newbyteorder("=")))
        self._cache: dict = {}

    @property
    def bias(self) -> np.ndarray | None:
        """``(out_channels * R,)`` or None, read-only: assign a new array."""
        return self._bias

    @bias.setter
    def bias(self, value: ArrayLike | None) -> None:
        if value is not None:
            if not self._spec.bias:
                raise ValueError("`bias` cannot be set on a layer made with bias=False")
            value = np.asarray(to_numpy(value, "bias"))
            n = self._spec.lr_channels
            if value.shape != (n,):
                raise ValueError(
                    f"`bias` must have shape ({n},). Received: bias.shape={value.shape}"
                )
            if value.dtype.kind not in "fiu":
                raise ValueError(
                    f"`bias` must hold real numbers. Received: bias.dtype={value.dtype}"
                )
            value = _read_only(value.astype(self._dtype.newbyteorder("=")))
        elif self._spec.bias and hasattr(self, "_bias"):
            raise ValueError("`bias` cannot be removed from a layer made with bias=True")
        self._bias = value
        self._cache = {}

    @classmethod
    def from_weights(
        cls, weight: ArrayLike, bias: ArrayLike | None = None, **config: object
    ) -> SubPixelConv:
        """A layer around given parameters (PyTorch layout); ``config`` takes the
        constructor's keywords (``factor`` is required) and may repeat the shapes."""
        w = np.asarray(to_numpy(weight, "weight"))
        if "factor" not in config:
            raise ValueError("`factor` is needed to read a kernel as a sub-pixel convolution")
        if w.ndim < 3:
            raise ValueError(
                f"`weight` must be a conv kernel (C_out * R, C_in, *k). Received: weight.shape={w.shape}"
            )
        config = {k: v for k, v in config.items() if k != "format"}
        factor = config.pop("factor")
        from ._core.spec import check_divisible_channels, normalize_factor

        r = normalize_factor(factor, w.ndim - 2)
        derived = {
            "in_channels": w.shape[1],
            "out_channels": check_divisible_channels("weight", w.shape[0], r, w.shape),
            "kernel_size": tuple(w.shape[2:]),
        }
        for key, value in derived.items():  # a config that contradicts the arrays is an error
            given = config.pop(key, value)
            if (tuple(given) if isinstance(given, (list, tuple)) else given) != value:
                raise ValueError(
                    f"`{key}`={given!r} contradicts the weight of shape {w.shape} ({key}={value!r})"
                )
        config.setdefault("bias", bias is not None)
        spec = LayerSpec.create(
            derived["in_channels"], derived["out_channels"], derived["kernel_size"], r, **config
        )
        return cls.from_spec(spec, w, bias)

    # -- running -------------------------------------------------------------

    def _params_for(self, x: object) -> tuple[Any, Any]:
        backend = backend_for(x)
        key = (backend.name, backend.device(x), backend.dtype_name(x))
        params = self._cache.get(key)
        if params is None:
            params = self._cache[key] = (
                backend.from_numpy(self._weight, like=x),
                None if self._bias is None else backend.from_numpy(self._bias, like=x),
            )
        return params

    def __call__(self, x: Array) -> Array:
        w, b = self._params_for(x)
        return ops.sub_pixel_conv(x, w, b, **self._spec.op_kwargs())

    def __repr__(self) -> str:
        s = self._spec
        return (
            f"SubPixelConv({s.in_channels}, {s.out_channels}, kernel_size={s.kernel_size}, "
            f"factor={s.factor}, order={s.order!r}, layout={s.layout!r})"
        )

    # -- files ---------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Save to ``.safetensors`` or ``.npz`` (plain data, atomically; no pickle)."""
        tensors = {"weight": self._weight}
        if self._bias is not None:
            tensors["bias"] = self._bias
        _files.write_tensors(path, tensors, {CONFIG_KEY: json.dumps(self.config())})

    @classmethod
    def load(cls, path: str | os.PathLike) -> SubPixelConv:
        """Load a file written by :meth:`save`; ``ValueError("<path>: <reason>")`` for
        any file that is not one (never unpickles anything)."""
        path = os.fspath(path)
        if _files.kind_of(path) not in ("safetensors", "npz"):
            raise _files.FileError(path, "a SubPixelConv is saved as .safetensors or .npz")
        with _files.open_tensors(path) as f:
            return cls.from_file(f)

    @classmethod
    def from_file(cls, f: _files.TensorFile) -> SubPixelConv:
        """The layer an opened weights file (:meth:`save`'s format) holds."""
        path = f.path
        if CONFIG_KEY not in f.metadata:
            raise _files.FileError(path, "not a subpixel SubPixelConv file (no layer config)")
        keys = set(f.keys())
        if "weight" not in keys or not keys <= {"weight", "bias"}:
            raise _files.FileError(
                path,
                f"a SubPixelConv file holds `weight` and `bias`, not: {', '.join(sorted(keys))}",
            )
        config = _parse_config(f.metadata[CONFIG_KEY], path)
        if isinstance(config, dict) and "bias" not in config:  # files of subpixel 0.1
            config = {**config, "bias": "bias" in keys}
        spec = LayerSpec.from_dict(config, path)
        # check the shapes against the config before reading any data
        b_shape = f.shape("bias") if "bias" in keys else None
        try:
            spec.check_parameters(f.shape("weight"), b_shape)
        except ValueError as exc:
            raise _files.FileError(path, f"the arrays contradict the layer config: {exc}") from None
        return cls.from_spec(spec, f["weight"], f["bias"] if b_shape is not None else None)

    # -- transposed convolutions -------------------------------------------

    @classmethod
    def from_conv_transpose(
        cls,
        weight: ArrayLike,
        bias: ArrayLike | None = None,
        stride: int | tuple[int, ...] = 2,
        *,
        padding: int | tuple[int, ...] | Literal["same", "valid"] = 0,
        output_padding: int | tuple[int, ...] | None = None,
        groups: int = 1,
        source: str = "torch",
        order: Order = "CRD",
        layout: Layout = "channels_first",
    ) -> SubPixelConv:
        """The exact sub-pixel equivalent of a transposed convolution (see
        :func:`subpixel.weights.conv_transpose_to_sub_pixel`)."""
        plan = weights.conv_transpose_to_sub_pixel(
            weight,
            bias,
            stride=stride,
            padding=padding,
            output_padding=output_padding,
            groups=groups,
            source=source,
            order=order,
        )
        if plan.groups != 1:
            raise ValueError(f"`groups` must be 1 for a SubPixelConv. Received: groups={groups}")
        return cls.from_weights(
            plan.weight,
            plan.bias,
            factor=plan.factor,
            order=plan.order,
            padding=plan.lr_padding,
            crop=plan.crop,
            layout=layout,
        )

    def to_conv_transpose(self, target: str = "torch") -> weights.ConvTransposeParams:
        """The transposed convolution equal to this layer (blur is not representable)."""
        if self.blur:
            raise ValueError("A layer with blur=True has no transposed-convolution equivalent")
        return weights.sub_pixel_to_conv_transpose(
            self._weight,
            self._bias,
            factor=self.factor,
            order=self.order,
            padding=self.padding,
            crop=self.crop,
            target=target,
        )

    # -- frameworks: the spellings of subpixel 0.2, for one release ----------------
    # (each framework's module owns the conversions: subpixel.layers.<framework>)

    @classmethod
    def from_torch(
        cls,
        module: torch.nn.Module,
        *,
        factor: Factor | None = None,
        order: Order = "CRD",
        layout: Layout = "channels_first",
    ) -> SubPixelConv:
        """Deprecated: :func:`subpixel.layers.torch.to_agnostic`."""
        convert = _moved("SubPixelConv.from_torch", "torch", "to_agnostic")
        return convert(module, factor=factor, order=order, layout=layout)

    def to_torch(self) -> torch.nn.Module:
        """Deprecated: :func:`subpixel.layers.torch.from_agnostic`."""
        return _moved("SubPixelConv.to_torch", "torch", "from_agnostic")(self)

    @classmethod
    def from_keras(
        cls, layer: keras.layers.Layer, *, factor: Factor | None = None, order: Order = "CRD"
    ) -> SubPixelConv:
        """Deprecated: :func:`subpixel.layers.keras.to_agnostic`."""
        convert = _moved("SubPixelConv.from_keras", "keras", "to_agnostic")
        return convert(layer, factor=factor, order=order)

    def to_keras(self, data_format: Layout | None = None) -> keras.layers.Layer:
        """Deprecated: :func:`subpixel.layers.keras.from_agnostic`."""
        return _moved("SubPixelConv.to_keras", "keras", "from_agnostic")(self, data_format)

    @classmethod
    def from_flax(cls, module: nnx.Module) -> SubPixelConv:
        """Deprecated: :func:`subpixel.layers.flax.to_agnostic`."""
        return _moved("SubPixelConv.from_flax", "flax", "to_agnostic")(module)

    def to_flax(self, layout: Layout | None = None, rngs: nnx.Rngs | None = None) -> nnx.Module:
        """Deprecated: :func:`subpixel.layers.flax.from_agnostic`."""
        return _moved("SubPixelConv.to_flax", "flax", "from_agnostic")(self, layout, rngs)


def _moved(old: str, framework: str, function: str) -> Callable[..., Any]:
    """The function of ``subpixel.layers.<framework>`` an old method became (warning
    that the method is deprecated); found by name, so that this module stays below
    the framework modules, which build on it."""
    _deprecation.warn(f"subpixel.{old}", f"subpixel.layers.{framework}.{function}", stacklevel=4)
    return getattr(importlib.import_module(f"subpixel.layers.{framework}"), function)


def _parse_config(text: str, path: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _files.FileError(path, f"the layer config is not JSON ({exc})") from None
