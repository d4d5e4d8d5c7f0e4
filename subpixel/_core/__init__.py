"""The private core: what every other room of the package stands on.

Pure Python and NumPy (imported lazily where needed); it imports no array
framework and nothing else of subpixel.  Names here are public within the package
(``from .._core import spec as _spec``) and private to users.

- :mod:`.spec`: the contract of the operations (arguments, shapes, dtypes, errors, plans)
- :mod:`.layer_spec`: the contract of a sub-pixel layer (``LayerSpec``)
- :mod:`.channels`: which channel goes where (CRD/DCR gathers, ICNR, block phases)
- :mod:`.lowering`: how an export writes a shuffle (``lowering=``)
- :mod:`.phases`: a strided transposed convolution as one convolution per phase
- :mod:`.files`: every file read or written (strict readers, atomic writes)
- :mod:`.timing`: best-of-n and side-by-side timing
- :mod:`.deprecation`: old spellings kept for one release
"""
