"""Tolerances for comparing floats that two different computations produced.

Where both sides run the same arithmetic, tests compare bit for bit instead (marked
``exact``). Each tolerance here says what differs and why the bound holds.
"""

from __future__ import annotations

import numpy as np

from subpixel.models import ESPCN

ULP = 2.0**-23  # float32's spacing at 1.0


def espcn_allowance(scale: int, ulps: float = 4) -> float:
    """How far two float32 runs of the bundled ESPCN may be apart on rounding alone.

    Two backends or runtimes run the same network with their own kernels: their own
    convolution summation orders (which also change with the BLAS's blocking, the CPU and
    ``OPENBLAS_CORETYPE``) and their own tanh approximations (ONNX Runtime's and XLA's
    are a few ulp off, and which kernel runs depends on the CPU's instruction set).
    Allow each hidden activation (tanh outputs, in [-1, 1]) to be off by ``ulps`` ulp of
    1.0 on each side, and take the worst case through the layers after it: an error d in
    layer 1's output moves an output by at most ``max sum|W3| * max sum|W2| * d`` (~500 d
    for the bundled weights), one in layer 2's by ``max sum|W3| * d``. With 4 ulp that is
    ~4.7e-4 at x2 and x3: an eighth of one 8-bit output level (1/255), while real defects
    are far above it (sub-pixel rows and columns swapped: 0.27; a block context one pixel
    short: 0.042). Measured differences: 3e-7 to 5e-7 on one machine, 1.07e-5 (an ONNX
    export at x2) on a CI machine.
    """
    params = ESPCN.pretrained(scale).params
    gain = lambda key: float(np.abs(params[key]).sum(axis=(1, 2, 3)).max())  # noqa: E731
    w2, w3 = gain("conv2.weight"), gain("conv3.weight")
    return 2 * ulps * ULP * (w3 * w2 + w3 + 1)
