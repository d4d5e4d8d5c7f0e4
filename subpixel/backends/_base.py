"""What a backend provides."""

from __future__ import annotations

from typing import Any, Protocol

from .._spec import ConvPlan, Plan


class Backend(Protocol):
    """Moves data for a :class:`~subpixel._spec.Plan`; never validates arguments."""

    name: str
    mutable: bool  # whether arrays can be written in place (``out=``)

    def cache_plans(self) -> bool:
        """Whether plans may come from the cache now (false while a tracer runs)."""

    def shape(self, x: Any) -> tuple:
        """The shape of ``x``, ``None`` (or a symbolic size) where unknown."""

    def dtype(self, x: Any) -> Any:
        """The dtype of ``x``, comparable with ``==`` to another of the same backend."""

    def is_array(self, obj: Any) -> bool:
        """Whether ``obj`` is an array of this backend (to vet ``out``)."""

    def from_numpy(self, a: Any, like: Any = None) -> Any:
        """A new array of this backend holding ``a`` (on ``like``'s device if given)."""

    def to_numpy(self, x: Any) -> Any:
        """``x``'s values as a NumPy array on the host."""

    def concat(self, arrays: list, axis: int) -> Any:
        """Concatenate along ``axis`` (used by blur)."""

    def conv(self, x: Any, weight: Any, bias: Any, cplan: ConvPlan) -> Any:
        """The LR convolution of a sub-pixel conv, output in ``x``'s layout.

        A backend may also define ``sub_pixel_conv(x, weight, bias, cplan)`` for a
        faster combined conv + shuffle; :func:`subpixel.sub_pixel_conv` then uses it."""

    def rearrange(self, x: Any, plan: Plan, out: Any = None) -> Any:
        """``x.reshape(src_shape).transpose(perm).reshape(out_shape)``, always a new
        array (or ``out``, filled)."""


class ArrayBackend:
    """Defaults shared by the backends: arrays with ``.shape`` and ``.dtype``,
    plans always cacheable.  Subclasses provide the rest of :class:`Backend`."""

    name: str
    mutable: bool

    def cache_plans(self) -> bool:
        return True

    def shape(self, x: Any) -> tuple:
        return tuple(x.shape)

    def dtype(self, x: Any) -> Any:
        return x.dtype
