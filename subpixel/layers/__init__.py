"""Native layers, one module per framework over :mod:`subpixel.ops` and
:mod:`subpixel.weights`, with that framework's side of moving a layer to and from the
framework-free :class:`subpixel.SubPixelConv` (``from_agnostic``/``to_agnostic``).
Import the one you need; nothing is imported here:

- :mod:`subpixel.layers.torch`: ``SubPixelConv1d/2d/3d``, ``PixelShuffle``, ``PixelUnshuffle``,
  ``PhasedConvTranspose``
- :mod:`subpixel.layers.keras`: Keras 3 ``SubPixelConv``, ``PixelShuffle``, ``PixelUnshuffle``, ``ICNR``
- :mod:`subpixel.layers.flax`: Flax NNX ``SubPixelConv``, ``PixelShuffle``, ``PixelUnshuffle``

Rewriting a whole model's layers is :mod:`subpixel.rewrite`'s.
"""
