"""What a backend provides."""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar

from .._core.spec import ConvPlan, Plan

A = TypeVar("A")  # the backend's array type


class Backend(Protocol[A]):
    """Moves data for a :class:`~subpixel._core.spec.Plan`; never validates arguments.

    Rules that hold for every backend (overlapping ``out``, dtype rules, zero sizes)
    live in :mod:`subpixel.ops` and :mod:`subpixel._core.spec`; a backend reports facts
    about its arrays (``dtype_name``, ``device``, ``may_share_memory``, ``out_problem``)
    and moves data.

    This is what the operations need.  A room that needs more of a library states it
    as a protocol of its own, which the backends that can serve it implement beside
    this one: ``Elementwise.tanh`` (:mod:`subpixel.models.espcn`: the bundled network)
    and ``Baselines.bench_baselines`` (:mod:`subpixel.cli.bench`: what a shuffle is
    timed against)."""

    name: str
    mutable: bool  # whether arrays can be written in place (``out=``)

    def cache_plans(self) -> bool:
        """Whether plans may come from the cache now (false while a tracer runs)."""

    def shape(self, x: A) -> tuple | None:
        """The shape of ``x``, ``None`` (or a symbolic size) where unknown; ``None``
        instead of a tuple where even the rank is unknown."""

    def dtype(self, x: A) -> Any:
        """The dtype of ``x``, comparable with ``==`` to another of the same backend."""

    def dtype_name(self, x: A) -> str:
        """``x``'s dtype as a name of :mod:`subpixel._core.spec`'s vocabulary (``"float32"``,
        ``"bfloat16"``, ``"int8"``, ``"bool"``, ...) or the library's own name."""

    def astype(self, x: A, name: str) -> A:
        """``x`` converted to the dtype called ``name`` (a new array)."""

    def movable(self, x: A) -> bool:
        """Whether ``rearrange`` can move ``x``'s dtype (quantized and sub-byte dtypes
        of some libraries cannot be copied)."""

    def device(self, x: A) -> str:
        """Where ``x`` lives, e.g. ``"cpu"``, ``"cuda:0"``."""

    def is_array(self, obj: Any) -> bool:
        """Whether ``obj`` is an array of this backend (to vet ``out``)."""

    def may_share_memory(self, a: A, b: A) -> bool:
        """Whether two arrays may overlap in memory (conservative; mutable backends)."""

    def out_problem(self, out: A, x: A) -> tuple[str, str] | None:
        """Why ``out`` cannot be written for input ``x``: a key of
        ``_spec._OUT_PROBLEMS`` and the offending property; None if it can."""

    def copy_into(self, out: A, y: A) -> None:
        """Copy ``y`` into ``out`` (same shape and dtype)."""

    def zeros(self, shape: tuple, like: A) -> A:
        """A new array of zeros, of ``like``'s dtype and device."""

    def from_numpy(self, a: Any, like: A | None = None) -> A:
        """A new array of this backend holding ``a`` (on ``like``'s device if given)."""

    def to_numpy(self, x: A) -> Any:
        """``x``'s values as a NumPy array on the host."""

    def concat(self, arrays: list[A], axis: int) -> A:
        """Concatenate along ``axis`` (used by blur)."""

    def synchronize(self, x: A) -> None:
        """Wait until work producing ``x`` has finished (timing on asynchronous devices)."""

    def describe_devices(self) -> str:
        """The devices this backend can use here, e.g. ``"cpu, cuda x2"``."""

    def conv(self, x: A, weight: A, bias: A | None, cplan: ConvPlan) -> A:
        """The LR convolution of a sub-pixel conv, output in ``x``'s layout.

        A backend may also define ``sub_pixel_conv(x, weight, bias, cplan)`` for a
        faster combined conv + shuffle; :func:`subpixel.sub_pixel_conv` then uses it."""

    def rearrange(self, x: A, plan: Plan, out: A | None = None) -> A:
        """``x.reshape(src_shape).transpose(perm).reshape(out_shape)``, always a new
        array (or ``out``, filled; ``out`` never overlaps ``x`` here)."""


_DTYPE_NAMES: dict[Any, str] = {}


class ArrayBackend(Generic[A]):
    """Defaults shared by the backends: arrays with ``.shape``, ``.dtype`` and
    ``.astype``, plans always cacheable, every dtype movable, immutable arrays.
    Subclasses provide the rest of :class:`Backend`."""

    name: str
    mutable: bool

    def cache_plans(self) -> bool:
        return True

    def shape(self, x: Any) -> tuple | None:
        return tuple(x.shape)

    def dtype(self, x: Any) -> Any:
        return x.dtype

    def dtype_name(self, x: Any) -> str:
        dtype = x.dtype
        name = _DTYPE_NAMES.get(dtype)
        if name is None:  # NumPy builds dtype.name in Python: slow enough to cache
            name = _DTYPE_NAMES[dtype] = str(dtype.name)
        return name

    def astype(self, x: Any, name: str) -> Any:
        return x.astype(name)

    def movable(self, x: Any) -> bool:
        return True

    def device(self, x: Any) -> str:
        return "cpu"

    def may_share_memory(self, a: Any, b: Any) -> bool:
        return False

    def out_problem(self, out: Any, x: Any) -> tuple[str, str] | None:
        return None

    def synchronize(self, x: Any) -> None:
        return None

    def describe_devices(self) -> str:
        return "cpu"
