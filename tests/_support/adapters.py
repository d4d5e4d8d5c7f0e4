"""Per-backend test helpers: build a backend's array from NumPy data and read it back.

Each adapter knows its library's dtypes, whether it accepts ``out=``, how to make a
non-contiguous array, and on which device it puts data.  The conformance suite
is written once against this interface.
"""

from __future__ import annotations

import importlib
import os

import numpy as np

from cases import ALL_DTYPES, host_dtype


class Adapter:
    name: str
    framework: str
    dtypes: tuple[str, ...]
    supports_out = True
    device = "cpu"

    def __init__(self, device: str = "cpu"):
        self.device = device

    def __repr__(self) -> str:
        return f"{self.name}-{self.device}"

    def asarray(self, a: np.ndarray, dtype: str | None = None):
        raise NotImplementedError

    def to_numpy(self, x) -> np.ndarray:
        raise NotImplementedError

    def empty(self, shape, dtype: str):
        raise NotImplementedError

    def noncontiguous(self, a: np.ndarray, dtype: str | None = None):
        """A non-contiguous array of the backend holding ``a``'s values."""
        big = np.repeat(a, 2, axis=-1)  # every other element is the original
        return self._slice_last(self.asarray(big, dtype))

    def _slice_last(self, x):
        return x[..., ::2]

    def transpose(self, x, perm):
        """A transposed view (or, for immutable arrays, a transposed copy) of ``x``."""
        return x.transpose(perm)

    def same_device(self, x) -> bool:
        return True

    def dtype_name(self, x) -> str:
        """The dtype of a backend array as a plain name ("float32", "bool", ...)."""
        import subpixel.backends

        return subpixel.backends.backend_for(x).dtype_name(x)

    def aliased(self, a: np.ndarray, out_shape, offset: int):
        """``(x, out)``: ``x`` holds ``a``, ``out`` (of ``out_shape``) is a view of the same
        buffer starting ``offset`` elements later, so the two overlap."""
        raise NotImplementedError

    def unwritable_outs(self, shape, dtype: str):
        """``(id, out, x_or_None)`` triples the contract must refuse as ``out``, each with a
        message regex: outs this library can make but nothing may write into."""
        return []


class NumpyAdapter(Adapter):
    name = framework = "numpy"
    dtypes = tuple(d for d in ALL_DTYPES if d != "bfloat16")

    def asarray(self, a, dtype=None):
        return np.asarray(a, dtype=dtype or a.dtype).copy()

    def to_numpy(self, x):
        assert isinstance(x, np.ndarray), type(x)
        return x

    def empty(self, shape, dtype):
        return np.empty(shape, dtype=dtype)

    def aliased(self, a, out_shape, offset):
        buf = np.empty(a.size + offset, a.dtype)
        buf[: a.size] = a.ravel()
        return buf[: a.size].reshape(a.shape), buf[offset : offset + a.size].reshape(out_shape)

    def unwritable_outs(self, shape, dtype):
        ro = np.empty(shape, dtype)
        ro.flags.writeable = False
        return [
            ("read-only", ro, ValueError, r"^`out` is read-only\. Received: out with flags"),
            (
                "masked",
                np.ma.zeros(shape, dtype),
                TypeError,
                r"^`out` must be a plain numpy\.ndarray, not a masked array.*MaskedArray$",
            ),
            (
                "zero-strides",
                np.lib.stride_tricks.as_strided(np.zeros(1, dtype), shape, (0,) * len(shape)),
                ValueError,
                r"^`out` has elements that share memory",
            ),
        ]


class TorchAdapter(Adapter):
    name = framework = "torch"
    dtypes = ALL_DTYPES  # every one, bfloat16 included

    def __init__(self, device="cpu"):
        super().__init__(device)
        import torch

        self.torch = torch

    def _dtype(self, name):
        return getattr(self.torch, name)

    def asarray(self, a, dtype=None):
        dtype = dtype or a.dtype.name
        t = self.torch.from_numpy(np.ascontiguousarray(a.astype(host_dtype(dtype))))
        return t.to(device=self.device, dtype=self._dtype(dtype))

    def to_numpy(self, x):
        assert isinstance(x, self.torch.Tensor), type(x)
        x = x.detach().cpu()
        if x.dtype == self.torch.bfloat16:
            x = x.float()
        return x.numpy()

    def empty(self, shape, dtype):
        return self.torch.empty(shape, dtype=self._dtype(dtype), device=self.device)

    def same_device(self, x):
        return str(x.device).startswith(self.device)

    def transpose(self, x, perm):
        return x.permute(perm)

    def aliased(self, a, out_shape, offset):
        buf = self.torch.empty(a.size + offset, dtype=self._dtype(a.dtype.name), device=self.device)
        buf[: a.size] = self.asarray(a.ravel())
        return buf[: a.size].view(a.shape), buf[offset : offset + a.size].view(out_shape)

    def unwritable_outs(self, shape, dtype):
        torch = self.torch
        other = "meta" if self.device != "meta" else "cpu"
        return [
            (
                "requires-grad",
                torch.zeros(
                    shape, dtype=self._dtype(dtype), device=self.device, requires_grad=True
                ),
                ValueError,
                r"^`out` requires grad: .*Received: out with requires_grad=True$",
            ),
            (
                "expanded",
                torch.zeros(1, dtype=self._dtype(dtype), device=self.device).expand(shape),
                ValueError,
                r"^`out` has elements that share memory",
            ),
            (
                "other-device",
                torch.zeros(shape, dtype=self._dtype(dtype), device=other),
                ValueError,
                rf"^`out` must be on the input's device \({self.device}.*\)\. Received: out on device {other}$",
            ),
        ]


class TensorflowAdapter(Adapter):
    name = framework = "tensorflow"
    dtypes = ALL_DTYPES
    supports_out = False

    def __init__(self, device="cpu"):
        super().__init__(device)
        import tensorflow as tf

        self.tf = tf

    def asarray(self, a, dtype=None):
        dtype = dtype or a.dtype.name
        with self.tf.device(self.device):
            t = self.tf.constant(a.astype(host_dtype(dtype)))
            return self.tf.cast(t, dtype) if dtype == "bfloat16" else t

    def to_numpy(self, x):
        tf = self.tf
        assert isinstance(x, (tf.Tensor, tf.Variable)), type(x)
        if x.dtype == tf.bfloat16:
            x = tf.cast(x, tf.float32)
        return x.numpy()

    def _slice_last(self, x):
        # tf tensors are always dense; a strided slice is the closest thing
        return x[..., ::2]

    def transpose(self, x, perm):
        return self.tf.transpose(x, perm)


class JaxAdapter(Adapter):
    name = framework = "jax"
    supports_out = False

    def __init__(self, device="cpu"):
        super().__init__(device)
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        x64 = jax.config.read("jax_enable_x64")
        self.dtypes = tuple(
            d for d in ALL_DTYPES if x64 or d not in ("int64", "uint64", "float64", "complex128")
        )

    def asarray(self, a, dtype=None):
        dtype = dtype or a.dtype.name
        dev = self.jax.devices(self.device)[0]
        host = a.astype(host_dtype(dtype))
        return self.jax.device_put(self.jnp.asarray(host, dtype=dtype), dev)

    def to_numpy(self, x):
        assert isinstance(x, self.jax.Array), type(x)
        if x.dtype == self.jnp.bfloat16:
            x = x.astype(self.jnp.float32)
        return np.asarray(x)

    def same_device(self, x):
        return all(d.platform == self.device for d in x.devices())


class GPUUnavailable(Exception):
    """The backend needs a GPU and this machine has none."""


class CupyAdapter(Adapter):
    name = framework = "cupy"
    dtypes = tuple(d for d in ALL_DTYPES if d != "bfloat16")

    def __init__(self, device="gpu"):
        super().__init__(device)
        import cupy

        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:
            raise GPUUnavailable(
                f"CuPy cannot reach a CUDA GPU here: {type(exc).__name__}: {exc}"
            ) from exc
        if count == 0:
            raise GPUUnavailable("CuPy sees no CUDA GPU here")
        self.cp = cupy

    def asarray(self, a, dtype=None):
        return self.cp.asarray(np.asarray(a, dtype=dtype or a.dtype))

    def to_numpy(self, x):
        assert isinstance(x, self.cp.ndarray), type(x)
        return self.cp.asnumpy(x)

    def empty(self, shape, dtype):
        return self.cp.empty(shape, dtype=dtype)

    def aliased(self, a, out_shape, offset):
        buf = self.cp.empty(a.size + offset, a.dtype)
        buf[: a.size] = self.cp.asarray(a.ravel())
        return buf[: a.size].reshape(a.shape), buf[offset : offset + a.size].reshape(out_shape)


class DaskAdapter(Adapter):
    """Dask arrays of NumPy chunks, chunked on every axis (2 per axis where it can),
    so that every operation crosses chunk boundaries."""

    name = "dask"
    framework = "dask.array"
    dtypes = tuple(d for d in ALL_DTYPES if d != "bfloat16")
    supports_out = False

    def __init__(self, device="cpu"):
        super().__init__(device)
        import dask.array as da

        self.da = da

    def asarray(self, a, dtype=None):
        a = np.asarray(a, dtype=dtype or a.dtype)
        chunks = tuple(max(1, -(-s // 2)) for s in a.shape)
        return self.da.from_array(a.copy(), chunks=chunks)

    def to_numpy(self, x):
        assert isinstance(x, self.da.Array), type(x)
        return np.asarray(x.compute())


class ArrayApiAdapter(Adapter):
    """array-api-strict arrays: only what the Array API standard promises."""

    name = "array_api"
    framework = "array_api_strict"
    dtypes = tuple(d for d in ALL_DTYPES if d not in ("bfloat16", "float16"))
    supports_out = False

    def __init__(self, device="cpu"):
        super().__init__(device)
        import array_api_strict

        self.xp = array_api_strict

    def asarray(self, a, dtype=None):
        return self.xp.asarray(np.asarray(a, dtype=dtype or a.dtype).copy())

    def to_numpy(self, x):
        assert hasattr(x, "__array_namespace__") and type(x).__module__.startswith(
            "array_api_strict"
        ), type(x)
        return np.from_dlpack(x)

    def _slice_last(self, x):
        return x[..., ::2]

    def transpose(self, x, perm):
        return self.xp.permute_dims(x, perm)


ADAPTERS = {
    "numpy": NumpyAdapter,
    "torch": TorchAdapter,
    "tensorflow": TensorflowAdapter,
    "jax": JaxAdapter,
    "cupy": CupyAdapter,
    "dask": DaskAdapter,
    "array_api": ArrayApiAdapter,
}


def requested_backends() -> list[str]:
    """Backends named in ``SUBPIXEL_TEST_BACKENDS`` (default: numpy)."""
    raw = os.environ.get("SUBPIXEL_TEST_BACKENDS", "numpy")
    return [n.strip() for n in raw.split(",") if n.strip()]


def devices_for(name: str) -> list[str]:
    """Devices the matrix runs on for a backend: the CPU, plus a GPU where present."""
    if name == "torch":
        import torch

        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if name == "jax":
        import jax

        platforms = {d.platform for d in jax.devices()}
        return ["cpu"] + (["gpu"] if "gpu" in platforms else [])
    if name == "tensorflow":
        import tensorflow as tf

        return ["cpu"] + (["gpu"] if tf.config.list_physical_devices("GPU") else [])
    if name == "cupy":
        return ["gpu"]  # CuPy arrays live on a GPU; without one its cases skip, saying so
    return ["cpu"]


def check_installed(name: str) -> None:
    """Raise unless the backend and its framework import."""
    if name not in ADAPTERS:
        raise ValueError(
            f"unknown backend {name!r} in SUBPIXEL_TEST_BACKENDS; known: {', '.join(ADAPTERS)}"
        )
    importlib.import_module(ADAPTERS[name].framework)
    importlib.import_module(f"subpixel.backends.{name}")
