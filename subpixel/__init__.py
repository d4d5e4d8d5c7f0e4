"""subpixel: pixel shuffle / unshuffle and sub-pixel convolution, one API for
NumPy, CuPy, PyTorch, TensorFlow and JAX.

Defaults everywhere: ``layout="channels_first"``, ``order="CRD"`` (PyTorch's
``pixel_shuffle``).  TensorFlow's ``depth_to_space`` is ``layout="channels_last",
order="DCR"``.

Importing this package imports no array framework.
"""

from ._core.lowering import Lowering
from ._core.spec import LAYOUTS, ORDERS, Crop, Factor, Layout, Order, Padding
from .backends import available_backends
from .ops import backend_name, blur, shuffle, sub_pixel_conv, unshuffle

__version__ = "0.2.0"  # the one place: pyproject.toml reads it


def __getattr__(name: str):
    # NumPy-backed parts load on first use, so that `import subpixel` imports nothing
    if name == "SubPixelConv":
        from .layer import SubPixelConv

        return SubPixelConv
    if name == "port_weights":
        from .porting import port_weights

        return port_weights
    if name == "audit":
        from .auditing import audit

        return audit
    if name in (
        "weights",
        "layer",
        "layers",
        "deploy",
        "porting",
        "rewrite",
        "movement",
        "auditing",
    ):
        import importlib

        return importlib.import_module(f"subpixel.{name}")
    raise AttributeError(f"module 'subpixel' has no attribute {name!r}")


__all__ = [
    "LAYOUTS",
    "ORDERS",
    "Crop",
    "Factor",
    "Layout",
    "Lowering",
    "Order",
    "Padding",
    "SubPixelConv",
    "__version__",
    "audit",
    "available_backends",
    "backend_name",
    "blur",
    "port_weights",
    "shuffle",
    "sub_pixel_conv",
    "unshuffle",
]
