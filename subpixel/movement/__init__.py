"""What a chain of ops does to data, decided by running index arrays through it.

Framework-free (NumPy only).  A reader turns a model file or a traced model into a
:class:`Graph`; :func:`find_chains` follows every run of data-movement ops, runs it
on ``arange`` of its input's size and :func:`classify` names the resulting index
map: identity, reshape, transpose, layout change, flatten, channel permutation,
shuffle or unshuffle (factor per axis, CRD/DCR order, layout), or another
permutation.  A new way of writing a shuffle needs no new code here: only the
NumPy semantics of each op (:mod:`.steps`), which readers attach to their nodes.

Readers: :mod:`.onnx` (ONNX files), :mod:`.tflite` (LiteRT flatbuffers), and framework
models traced on an example: :mod:`.torch` (PyTorch), :mod:`.keras` (Keras 3 on
TensorFlow, JAX or PyTorch), :mod:`.jaxpr` (Flax NNX modules and JAX functions).
"""

from typing import Any

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


def reader_for(model: object) -> Any:
    """The reader of a framework model's type (``None`` for none): a function
    ``(model, example) -> (graph, run, inputs)``.  PyTorch modules (:mod:`.torch`),
    Keras models and layers (:mod:`.keras`, any backend), Flax NNX modules
    (:mod:`.jaxpr`); a plain JAX function goes through :func:`.jaxpr.read_function`."""
    import sys

    keras = sys.modules.get("keras")
    if keras is not None and isinstance(model, keras.layers.Layer):
        from .keras import read_model

        return read_model
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        from .torch import read_module

        return read_module
    nnx = sys.modules.get("flax.nnx")
    if nnx is not None and isinstance(model, nnx.Module):
        from .jaxpr import read_module as read_flax

        return read_flax
    return None
