"""subpixel: pixel shuffle / unshuffle and sub-pixel convolution, one API for
NumPy, CuPy, PyTorch, TensorFlow and JAX.

Defaults everywhere: ``layout="channels_first"``, ``order="CRD"`` (PyTorch's
``pixel_shuffle``).  TensorFlow's ``depth_to_space`` is ``layout="channels_last",
order="DCR"``.

Importing this package imports no array framework.
"""

from ._dispatch import available_backends
from ._spec import LAYOUTS, ORDERS
from .ops import backend_name, shuffle, unshuffle

__version__ = "0.1.0"

__all__ = [
    "LAYOUTS",
    "ORDERS",
    "__version__",
    "available_backends",
    "backend_name",
    "shuffle",
    "unshuffle",
]
