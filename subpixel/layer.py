"""``SubPixelConv``: one sub-pixel convolution layer, parameters held as NumPy
arrays, that runs on any backend's array and moves between frameworks.

>>> import numpy as np
>>> from subpixel import SubPixelConv
>>> layer = SubPixelConv(4, 3, 3, factor=2, seed=0)      # ICNR-initialised
>>> layer(np.zeros((1, 4, 5, 5), np.float32)).shape
(1, 3, 10, 10)
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np

from . import _safetensors, _spec, ops, weights
from ._dispatch import backend_for

__all__ = ["SubPixelConv"]

_FORMAT = "subpixel.SubPixelConv/1"


class SubPixelConv:
    """LR convolution with ``out_channels * prod(factor)`` outputs, then the shuffle.

    ``weight`` is ``(out_channels * prod(factor), in_channels, *kernel_size)``
    (PyTorch layout) with output channels in ``order``; ``bias`` one per LR channel.
    Calling the layer on a NumPy, PyTorch, TensorFlow, JAX (or CuPy) array runs
    there; the parameters are converted once per backend, device and dtype.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        factor: Any,
        *,
        spatial_dims: int | None = None,
        bias: bool = True,
        order: str = "CRD",
        padding: Any = "same",
        layout: str = "channels_first",
        init: Any = "icnr",
        blur: bool = False,
        crop: Any = None,
        seed: int | None = None,
        dtype: Any = np.float32,
    ) -> None:
        if spatial_dims is None:
            spatial_dims = len(kernel_size) if isinstance(kernel_size, (tuple, list)) else 2
        d = _spec.normalize_spatial_dims(spatial_dims, None)
        self.kernel_size = _spec.normalize_factor(kernel_size, d, "kernel_size")
        self.factor = _spec.normalize_factor(factor, d)
        self.order = _spec.normalize_order(order)
        self.padding = _spec.normalize_padding(padding, self.kernel_size)
        self.layout = _spec.normalize_layout(layout)
        self.crop = _spec.normalize_crop(crop, d)
        self.blur = bool(blur)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        shape = (out_channels * math.prod(self.factor), in_channels, *self.kernel_size)
        if isinstance(init, np.ndarray):
            w = init
        elif init == "icnr":
            w = weights.icnr(shape, self.factor, order=self.order, seed=seed, dtype=dtype)
        elif init == "he_normal":
            rng = np.random.default_rng(seed)
            w = rng.standard_normal(shape) * math.sqrt(
                2.0 / (in_channels * math.prod(self.kernel_size))
            )
        else:
            raise ValueError(
                f"`init` must be 'icnr', 'he_normal' or a weight array of shape {shape}. Received: init={init!r}"
            )
        self._weight = self._bias = None
        self.weight = np.asarray(w, dtype=dtype)
        self.bias = np.zeros(shape[0], dtype=dtype) if bias else None

    # -- parameters --------------------------------------------------------

    @property
    def weight(self) -> np.ndarray:
        return self._weight

    @weight.setter
    def weight(self, value: Any) -> None:
        value = np.asarray(value)
        expected = (self.out_channels * math.prod(self.factor), self.in_channels, *self.kernel_size)
        if value.shape != expected:
            raise ValueError(
                f"`weight` must have shape {expected}. Received: weight.shape={value.shape}"
            )
        self._weight = value
        self._cache: dict = {}

    @property
    def bias(self) -> np.ndarray | None:
        return self._bias

    @bias.setter
    def bias(self, value: Any) -> None:
        if value is not None:
            value = np.asarray(value)
            n = self.out_channels * math.prod(self.factor)
            if value.shape != (n,):
                raise ValueError(
                    f"`bias` must have shape ({n},). Received: bias.shape={value.shape}"
                )
        self._bias = value
        self._cache = {}

    @property
    def spatial_dims(self) -> int:
        return len(self.factor)

    def config(self) -> dict:
        return {
            "format": _FORMAT,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "factor": list(self.factor),
            "order": self.order,
            "padding": [list(p) for p in self.padding],
            "layout": self.layout,
            "crop": [list(p) for p in self.crop],
            "blur": self.blur,
        }

    @classmethod
    def from_weights(cls, weight: Any, bias: Any = None, **config: Any) -> SubPixelConv:
        """A layer around given parameters (PyTorch layout)."""
        w = np.asarray(weights._to_numpy(weight, "weight"))
        config.pop("format", None)
        factor = config.pop("factor")
        if w.ndim < 3:
            raise ValueError(
                f"`weight` must be a conv kernel (C_out * R, C_in, *k). Received: weight.shape={w.shape}"
            )
        d = w.ndim - 2
        r = _spec.normalize_factor(factor, d)
        _spec.check_divisible_channels("weight", w.shape[0], r, w.shape)
        layer = cls(
            w.shape[1],
            w.shape[0] // math.prod(r),
            tuple(w.shape[2:]),
            r,
            bias=bias is not None,
            init=w,
            dtype=w.dtype,
            **{
                k: v
                for k, v in config.items()
                if k not in ("in_channels", "out_channels", "kernel_size")
            },
        )
        if bias is not None:
            layer.bias = np.asarray(weights._to_numpy(bias, "bias"), dtype=w.dtype)
        return layer

    # -- running -------------------------------------------------------------

    def _params_for(self, x: Any):
        backend = backend_for(x)
        if backend.name == "numpy":
            return self.weight.astype(
                x.dtype, copy=False
            ), None if self.bias is None else self.bias.astype(x.dtype, copy=False)
        try:
            key = (backend.name, str(x.device), str(x.dtype))
        except Exception:
            key = None
        params = self._cache.get(key) if key else None
        if params is None:
            params = (
                backend.from_numpy(self.weight, like=x),
                None if self.bias is None else backend.from_numpy(self.bias, like=x),
            )
            if key:
                self._cache[key] = params
        return params

    def __call__(self, x: Any) -> Any:
        w, b = self._params_for(x)
        return ops.sub_pixel_conv(
            x,
            w,
            b,
            factor=self.factor,
            padding=self.padding,
            spatial_dims=self.spatial_dims,
            layout=self.layout,
            order=self.order,
            blur=self.blur,
            crop=self.crop,
        )

    def __repr__(self) -> str:
        return (
            f"SubPixelConv({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"factor={self.factor}, order={self.order!r}, layout={self.layout!r})"
        )

    # -- files ---------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Save to ``.safetensors`` or ``.npz`` (plain data; no pickle)."""
        path = os.fspath(path)
        tensors = {"weight": np.ascontiguousarray(self.weight)}
        if self.bias is not None:
            tensors["bias"] = np.ascontiguousarray(self.bias)
        meta = json.dumps(self.config())
        if path.endswith(".safetensors"):
            _safetensors.save(path, tensors, {"subpixel": meta})
        elif path.endswith(".npz"):
            with open(path, "wb") as f:
                np.savez(f, config=np.array(meta), **tensors)
        else:
            raise ValueError(f"`path` must end in .safetensors or .npz. Received: path={path!r}")

    @classmethod
    def load(cls, path: str | os.PathLike) -> SubPixelConv:
        """Load a file written by :meth:`save` (never unpickles anything)."""
        path = os.fspath(path)
        if path.endswith(".safetensors"):
            from safetensors import safe_open

            with safe_open(path, framework="numpy") as f:
                meta = (f.metadata() or {}).get("subpixel")
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        elif path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as f:
                tensors = {k: f[k] for k in f.files}
            meta = str(tensors.pop("config")) if "config" in tensors else None
        else:
            raise ValueError(f"`path` must end in .safetensors or .npz. Received: path={path!r}")
        if meta is None or "weight" not in tensors:
            raise ValueError(f"{path} is not a subpixel SubPixelConv file (no config or no weight)")
        config = json.loads(meta)
        if config.get("format") != _FORMAT:
            raise ValueError(f"{path} has format {config.get('format')!r}; expected {_FORMAT!r}")
        return cls.from_weights(tensors["weight"], tensors.get("bias"), **config)

    # -- transposed convolutions -------------------------------------------

    @classmethod
    def from_conv_transpose(
        cls,
        weight: Any,
        bias: Any = None,
        stride: Any = 2,
        *,
        padding: Any = 0,
        output_padding: Any = None,
        groups: int = 1,
        source: str = "torch",
        order: str = "CRD",
        layout: str = "channels_first",
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
        ct = weights.sub_pixel_to_conv_transpose(
            self.weight,
            self.bias,
            factor=self.factor,
            order=self.order,
            padding=self.padding,
            target="torch",
        )
        if any(a or b for a, b in self.crop):
            # The crop removes (a, b) more of the full output: crops before/after become
            # p + a and p + b.  PyTorch needs before - after in [0, stride): shift it by
            # whole strides with zero taps at the kernel's start (before grows by s) or
            # end (after grows by s).
            w = ct.weight
            pad, op = [], []
            for i, ((a, b), p, s) in enumerate(zip(self.crop, ct.padding, ct.stride)):
                before, after = p + a, p + b
                front = -(-(after - before) // s) if before < after else 0
                back = (before - after) // s if before - after >= s else 0
                widths = [(0, 0)] * w.ndim
                widths[2 + i] = (front * s, back * s)
                w = np.pad(w, widths)
                before, after = before + front * s, after + back * s
                pad.append(before)
                op.append(before - after)
            ct = weights.ConvTransposeParams(w, ct.bias, ct.stride, tuple(pad), tuple(op))
        if target == "torch":
            return ct
        if any(ct.output_padding):
            raise ValueError("`crop` has no Keras Conv*DTranspose equivalent; use target='torch'")
        return weights.sub_pixel_to_conv_transpose(
            self.weight,
            self.bias,
            factor=self.factor,
            order=self.order,
            padding=self.padding,
            target=target,
        )

    # -- frameworks ----------------------------------------------------------

    @classmethod
    def from_torch(
        cls, module: Any, *, factor: Any = None, order: str = "CRD", layout: str = "channels_first"
    ) -> SubPixelConv:
        """From a :mod:`subpixel.layers.torch` ``SubPixelConvNd``, or from a plain
        ``torch.nn.ConvNd`` (stride 1) followed by a shuffle of ``factor`` in ``order``."""
        from .layers import torch as torch_layers

        if isinstance(module, torch_layers._SubPixelConvNd):
            b = None if module.bias is None else module.bias.detach().cpu().numpy()
            return cls.from_weights(
                module.weight.detach().cpu().numpy(),
                b,
                factor=module.factor,
                order=module.order,
                padding=module.padding,
                blur=module.blur,
                crop=module.crop,
                layout=layout,
            )
        if factor is None:
            raise ValueError("`factor` is needed to read a plain torch conv as a sub-pixel conv")
        if (
            any(s != 1 for s in module.stride)
            or any(v != 1 for v in module.dilation)
            or module.groups != 1
        ):
            raise ValueError(
                "Only stride-1, undilated, ungrouped convolutions are sub-pixel convolutions"
            )
        padding = module.padding if isinstance(module.padding, str) else tuple(module.padding)
        b = None if module.bias is None else module.bias.detach().cpu().numpy()
        return cls.from_weights(
            module.weight.detach().cpu().numpy(),
            b,
            factor=factor,
            order=order,
            padding=padding,
            layout=layout,
        )

    def to_torch(self) -> Any:
        """A :mod:`subpixel.layers.torch` ``SubPixelConvNd`` with these parameters."""
        import torch

        from .layers.torch import SUB_PIXEL_CONV

        module = SUB_PIXEL_CONV[self.spatial_dims](
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.factor,
            padding=self.padding,
            bias=self.bias is not None,
            order=self.order,
            blur=self.blur,
            crop=self.crop,
            init="default",
        )
        with torch.no_grad():
            module.weight.copy_(torch.from_numpy(np.array(self.weight, dtype=np.float32)))
            if self.bias is not None:
                module.bias.copy_(torch.from_numpy(np.array(self.bias, dtype=np.float32)))
        return module

    @classmethod
    def from_keras(cls, layer: Any) -> SubPixelConv:
        """From a built :class:`subpixel.layers.keras.SubPixelConv`."""
        kernel = np.asarray(
            layer.kernel.numpy() if hasattr(layer.kernel, "numpy") else layer.kernel
        )
        w = weights.convert_layout(kernel, src="keras", dst="torch")
        b = None if layer.bias is None else np.asarray(layer.bias.numpy())
        return cls.from_weights(
            w,
            b,
            factor=layer.factor,
            order=layer.order,
            padding=layer.padding,
            layout=layer.data_format,
            blur=layer.blur,
            crop=layer.crop,
        )

    def to_keras(self, data_format: str | None = None) -> Any:
        """A built :class:`subpixel.layers.keras.SubPixelConv` with these parameters."""
        from .layers.keras import SubPixelConv as KerasSubPixelConv

        data_format = data_format or self.layout
        layer = KerasSubPixelConv(
            self.out_channels,
            self.kernel_size,
            self.factor,
            padding=self.padding,
            order=self.order,
            data_format=data_format,
            use_bias=self.bias is not None,
            blur=self.blur,
            crop=self.crop,
            kernel_initializer="zeros",
        )
        spatial = (None,) * self.spatial_dims
        layer.build(
            (None, self.in_channels, *spatial)
            if data_format == "channels_first"
            else (None, *spatial, self.in_channels)
        )
        params = [weights.convert_layout(self.weight, src="torch", dst="keras")]
        if self.bias is not None:
            params.append(self.bias)
        layer.set_weights([p.astype(np.float32) for p in params])
        return layer

    @classmethod
    def from_flax(cls, module: Any) -> SubPixelConv:
        """From a :class:`subpixel.layers.flax.SubPixelConv`."""
        w = weights.convert_layout(np.asarray(module.kernel[...]), src="flax", dst="torch")
        b = None if module.bias is None else np.asarray(module.bias[...])
        return cls.from_weights(
            w,
            b,
            factor=module.factor,
            order=module.order,
            padding=module.padding,
            layout=module.layout,
            blur=module.blur,
            crop=module.crop,
        )

    def to_flax(self, layout: str | None = None, rngs: Any = None) -> Any:
        """A :class:`subpixel.layers.flax.SubPixelConv` with these parameters."""
        import jax.numpy as jnp
        from flax import nnx

        from .layers.flax import SubPixelConv as FlaxSubPixelConv

        module = FlaxSubPixelConv(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.factor,
            padding=self.padding,
            order=self.order,
            layout=layout or self.layout,
            use_bias=self.bias is not None,
            blur=self.blur,
            crop=self.crop,
            rngs=rngs or nnx.Rngs(0),
        )
        module.kernel[...] = jnp.asarray(
            weights.convert_layout(self.weight, src="torch", dst="flax")
        )
        if self.bias is not None:
            module.bias[...] = jnp.asarray(self.bias)
        return module
