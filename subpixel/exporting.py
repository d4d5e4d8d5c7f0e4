"""Any PyTorch model exported to a runtime and checked there: ``subpixel export MODEL
OUT``.

A ``torch.export`` program or a checkpoint (:mod:`subpixel.models.checkpoints`) has its
shuffles rewritten for ``lowering`` (every shuffle and unshuffle, found by what it
does: :func:`subpixel.rewrite.torch.replace_pixel_shuffle`), then goes to ``.onnx`` by
``torch.onnx.export`` or to ``.tflite`` by litert-torch; the file runs on a random
input in its runtime and is compared with the unmodified model, under a temporary
name: it appears under its own only once it runs and agrees (the checks of
:mod:`subpixel.models.export`).
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

from . import deploy
from ._core import files as _files
from ._core.lowering import Lowering
from .models.checkpoints import LoadedModel
from .models.export import Exported, check_outputs, run_file, written_files

__all__ = ["example_input", "export_torch"]


def example_input(loaded: LoadedModel, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """The check input for ``loaded``: ``shape`` (``N,C,H,W``) where given, else one
    image of the model's channels, 64 x 64 (or the program's static sizes, or the
    smallest size the architecture takes above 64), uniform in [0, 1) with a fixed
    seed."""
    if shape is None:
        c = loaded.in_channels or 3
        side = max(64, loaded.minimum)
        side = -(-side // loaded.multiple_of) * loaded.multiple_of
        fixed = loaded.shape or (None, None, None, None)
        shape = (
            fixed[0] or 1,
            fixed[1] or c,
            fixed[2] or side,
            fixed[3] or side,
        )
    return np.random.default_rng(0).random(shape, dtype=np.float32)


def export_torch(
    loaded: LoadedModel,
    path: str | os.PathLike,
    *,
    lowering: Lowering = "auto",
    opset: int | None = None,
    dynamo: bool = True,
    shape: tuple[int, ...] | None = None,
) -> Exported:
    """Export a PyTorch model (:func:`subpixel.models.checkpoints.load_model`) to
    ``path``: its shuffles rewritten for ``lowering`` (every shuffle and unshuffle,
    found by what it does), then ``.onnx`` (``torch.onnx.export``, ``dynamo`` or
    TorchScript, ``opset``; batch and spatial sizes dynamic) or ``.tflite`` (litert-torch,
    the check input's shape fixed; ``lowering`` ``"auto"`` is ``"flat"`` there, and
    ``"native"`` is refused: litert-torch has no depth-to-space op for PyTorch's).  The
    file runs on the check input (:func:`example_input`) in its runtime and must agree
    with the unmodified model; else ``ValueError`` (``FileError``) and nothing is
    written."""
    import torch

    from .rewrite.torch import replace_pixel_shuffle

    runtime = deploy.runtime_of(path)
    if runtime == "tflite":
        if lowering == "native":
            raise ValueError(
                "--lowering native: litert-torch writes PyTorch's shuffles as reshapes and "
                "transposes, not DEPTH_TO_SPACE; expected flat, reshape, conv or auto (flat) "
                "for a .tflite from PyTorch"
            )
        if lowering == "auto":
            lowering = "flat"
    x = example_input(loaded, shape)
    example = torch.from_numpy(x)
    module = loaded.module
    with contextlib.suppress(NotImplementedError):
        module.eval()
    try:
        with torch.no_grad():
            source = module(example).numpy()
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:300]
        raise ValueError(
            f"the model does not run on an input of shape {tuple(x.shape)} ({text}); "
            "expected a float (N, C, H, W) image model: give --shape N,C,H,W"
        ) from None
    if source.ndim != 4:
        raise ValueError(
            f"the model gives an output of shape {tuple(source.shape)} for an input of shape "
            f"{tuple(x.shape)}; expected an (N, C, H, W) image"
        )
    try:
        rewritten = replace_pixel_shuffle(module, lowering=lowering, example=example)
    except ValueError as exc:
        raise ValueError(f"the model's shuffles cannot be rewritten: {exc}") from None
    with _files.staged(path) as tmp:
        try:
            if runtime == "onnx":
                deploy.torch_to_onnx(rewritten, example, tmp, dynamo=dynamo, opset=opset)
                route = f"PyTorch -> torch.onnx ({'dynamo' if dynamo else 'TorchScript'})"
            else:
                deploy.torch_to_tflite(rewritten, example, tmp)
                route = "PyTorch -> litert-torch"
        except (ValueError, ImportError, KeyboardInterrupt):
            raise
        except Exception as exc:  # the exporter's or converter's own error
            text = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:300]
            raise _files.FileError(
                path, f"the exporter refused the model ({text}); another --lowering may pass"
            ) from None
        ops = deploy.onnx_ops(tmp) if runtime == "onnx" else deploy.tflite_ops(tmp)
        exported = run_file(path, tmp, x)
        max_diff = check_outputs(path, exported, source, exact=True)
        ranks = deploy.tensor_ranks(tmp, x)
        files = written_files(path, tmp)
    return Exported(
        ops=set(ops),
        max_diff=max_diff,
        max_rank=max(ranks, default=None),
        input_shape=tuple(x.shape),
        files=files,
        route=route,
        scale=source.shape[-1] // x.shape[-1] if source.shape[-1] % x.shape[-1] == 0 else None,
    )
