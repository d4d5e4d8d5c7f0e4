"""What a chain of ops does to data, decided by running index arrays through it.

Framework-free (NumPy only).  A reader turns a model file or a traced model into a
:class:`Graph`; :func:`find_chains` follows every run of data-movement ops, runs it
on ``arange`` of its input's size and :func:`classify` names the resulting index
map: identity, reshape, transpose, layout change, flatten, channel permutation,
shuffle or unshuffle (factor per axis, CRD/DCR order, layout), or another
permutation.  A new way of writing a shuffle needs no new code here: only the
NumPy semantics of each op (:mod:`.steps`), which readers attach to their nodes.

Readers: :mod:`.onnx` (ONNX files) and :mod:`.tflite` (LiteRT flatbuffers).
"""

from .chains import Chain, find_chains, index_map
from .classify import Movement, classify
from .graph import Graph, Node, Quant, Value

__all__ = [
    "Chain",
    "Graph",
    "Movement",
    "Node",
    "Quant",
    "Value",
    "classify",
    "find_chains",
    "index_map",
]


def reader_for(model: object):  # type: ignore[no-untyped-def]
    """The reader of a framework model's type (``None`` for none): a function
    ``(model, example) -> (graph, run, inputs)``."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        from .torch import read_module

        return read_module
    return None
