"""The backends: one module per array library, each exposing ``backend``, a
:class:`~._base.Backend`; and here, the registry that finds the one for an array.

The array's library is recognised from ``sys.modules`` and its type, without
importing any framework: an array of a library can only exist once that
library has been imported.  The answer is cached per type; a backend module is
imported the first time one of its arrays is seen.

Adding a backend is adding one module here and one line to ``_REGISTRY``.
Also here: :func:`to_numpy`, any backend's array as a NumPy array on the host.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from .._core.spec import refused_array, unsupported_array
from ._base import Backend

if TYPE_CHECKING:
    import numpy as np


def _no_types(module: Any) -> tuple:
    return ()


class _Entry(NamedTuple):
    name: str  # the backend's public name
    framework: str  # the module whose presence in sys.modules we look for ("": none)
    array_types: Callable[[Any], tuple]  # framework module -> the array types it owns
    # array types of the library that the contract cannot honour, and why
    refused: Callable[[Any], tuple] = _no_types
    refusal: str = ""


_REGISTRY: tuple[_Entry, ...] = (
    _Entry(
        "numpy",
        "numpy",
        lambda np: (np.ndarray, np.generic),
        lambda np: (np.ma.MaskedArray, np.matrix),
        "must be a plain numpy.ndarray, not a masked array or matrix (their mask or 2-D "
        "rules would be lost); pass `a.data` and `np.ma.getmaskarray(a)` separately",
    ),
    _Entry("torch", "torch", lambda torch: (torch.Tensor,)),
    _Entry("tensorflow", "tensorflow", lambda tf: (tf.Tensor, tf.Variable)),
    _Entry("jax", "jax", lambda jax: (jax.Array,)),
    _Entry("cupy", "cupy", lambda cp: (cp.ndarray,)),
    _Entry("dask", "dask.array", lambda da: (da.Array,)),
    # last: any array of the Python Array API standard that no backend above claims
    _Entry("array_api", "", lambda _: ()),
)


def _speaks_array_api(x: Any) -> bool:
    return hasattr(type(x), "__array_namespace__")


BACKEND_NAMES: tuple[str, ...] = tuple(e.name for e in _REGISTRY)
# backends of a library of their own (the Array API fallback has none to install or run)
LIBRARY_BACKENDS: tuple[str, ...] = tuple(e.name for e in _REGISTRY if e.framework)

_by_type: dict[type, Backend[Any]] = {}
_by_name: dict[str, Backend[Any]] = {}


def _load(name: str) -> Backend[Any]:
    backend = _by_name.get(name)
    if backend is None:
        module = importlib.import_module(f"subpixel.backends.{name}")
        backend = _by_name[name] = module.backend
    return backend


def backend_for(x: Any, argname: str = "x") -> Backend[Any]:
    """The backend that handles ``x``; ``TypeError`` if none does."""
    backend = _by_type.get(type(x)) or _find(x, argname)
    if backend is None:
        raise unsupported_array(argname, x, BACKEND_NAMES)
    return backend


def _find(x: Any, argname: str) -> Backend[Any] | None:
    for entry in _REGISTRY:
        if not entry.framework:
            if _speaks_array_api(x):
                backend = _load(entry.name)
                _by_type[type(x)] = backend
                return backend
            continue
        framework = sys.modules.get(entry.framework)
        if framework is None:
            continue
        try:
            types = entry.array_types(framework)
            refused = entry.refused(framework)
        except AttributeError:  # a framework still being imported
            continue
        if refused and isinstance(x, refused):
            raise refused_array(argname, x, entry.refusal)
        if isinstance(x, types):
            backend = _load(entry.name)
            _by_type[type(x)] = backend
            return backend
    return None


def backend_or_none(x: Any, argname: str) -> Backend[Any] | None:
    """Like :func:`backend_for`, but None for an object no backend handles."""
    return _by_type.get(type(x)) or _find(x, argname)


def backend_by_name(name: str) -> Backend[Any]:
    """The backend called ``name`` (importing its framework)."""
    if name not in BACKEND_NAMES:
        raise ValueError(
            f"`backend` must be one of {', '.join(BACKEND_NAMES)}. Received: backend={name!r}"
        )
    return _load(name)


def available_backends() -> list[str]:
    """Names of the backends whose library is installed (nothing is imported; the Array
    API fallback, which serves whatever library an array comes from, is not listed)."""
    found = []
    for entry in _REGISTRY:
        top = entry.framework.split(".")[0]  # find_spec of a submodule would import its parent
        if top and (entry.framework in sys.modules or importlib.util.find_spec(top)):
            found.append(entry.name)
    return found


def framework_version(name: str) -> str:
    """The version of the library behind the backend called ``name`` (importing it)."""
    entry = next(e for e in _REGISTRY if e.name == name)
    if not entry.framework:
        return "-"
    importlib.import_module(entry.framework)
    module = sys.modules[entry.framework.split(".")[0]]
    return str(getattr(module, "__version__", "?"))


# ---------------------------------------------------------------------------
# any backend's array on the host
# ---------------------------------------------------------------------------


def to_numpy(a: Any, name: str) -> np.ndarray:
    """Any backend's array (or array-like) as a NumPy array on the host; ``name`` is
    the argument's name in messages."""
    import numpy as np

    if isinstance(a, np.ndarray):
        return a
    try:
        return np.asarray(backend_for(a, name).to_numpy(a))
    except TypeError:
        return np.asarray(a)


def maybe_numpy(a: Any, name: str) -> np.ndarray | None:
    """:func:`to_numpy`, passing None through (an absent bias)."""
    return None if a is None else to_numpy(a, name)


def standard_dtype(a: np.ndarray) -> np.ndarray:
    """``a``, or ``a`` widened to float32 (exactly) when its dtype is an extension float
    NumPy itself has not (ml_dtypes' bfloat16, float8 ...) that frameworks cannot take."""
    import numpy as np

    return a.astype(np.float32) if a.dtype.kind not in "biufc" else a
