"""rewrite/ rewrites the ``zoo``'s models in PyTorch, Keras and Flax: those files run
where all three are requested (the ``interop`` environment); test_rewrite_torch.py runs
wherever PyTorch is."""

from adapters import requested_backends

if not {"torch", "tensorflow", "jax"} <= set(requested_backends()):
    collect_ignore_glob = [
        "test_rewrite_exact.py",
        "test_rewrite_keeps.py",
        "test_rewrite_modes.py",
        "test_rewrite_shuffles.py",
    ]
