"""Native layers, one thin module per framework over :mod:`subpixel.ops` and
:mod:`subpixel.weights` (import the one you need; nothing is imported here):

- :mod:`subpixel.layers.torch`: ``SubPixelConv1d/2d/3d``, ``PixelShuffle``, ``PixelUnshuffle``
- :mod:`subpixel.layers.keras`: Keras 3 ``SubPixelConv``, ``PixelShuffle``, ``PixelUnshuffle``, ``ICNR``
- :mod:`subpixel.layers.flax`: Flax NNX ``SubPixelConv``, ``PixelShuffle``, ``PixelUnshuffle``
"""
