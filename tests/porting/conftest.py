"""porting/ ports models between PyTorch, Keras and Flax (the ``zoo``): it runs where
all three are requested (the ``interop`` environment); elsewhere it is not collected."""

from adapters import requested_backends

if not {"torch", "tensorflow", "jax"} <= set(requested_backends()):
    collect_ignore_glob = ["test_*.py"]
