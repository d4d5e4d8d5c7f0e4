"""PyTorch: a tensor as NumPy, a model in evaluation mode, an input for a model."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["as_input", "evaluating", "to_numpy"]


def to_numpy(t: torch.Tensor | None) -> Any:
    """A tensor's values as NumPy (bfloat16 widened to float32, exactly); None stays
    None (an absent bias).  The array may share the tensor's memory on the CPU."""
    if t is None:
        return None
    t = t.detach().cpu()
    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()


def as_input(model: nn.Module, example: Any) -> torch.Tensor:
    """``example`` (a tensor or an array) as an input for ``model``: on its device, a
    float in its parameters' dtype (integers, token ids say, as they are)."""
    x = torch.as_tensor(np.asarray(example) if not isinstance(example, torch.Tensor) else example)
    param = next(model.parameters(), None)
    if param is not None:
        x = x.to(device=param.device)
        if x.is_floating_point() and param.is_floating_point():
            x = x.to(dtype=param.dtype)
    return x


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode without gradients (no batch-norm statistics move) for a while; each
    module's own mode is restored after."""
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            yield
    finally:
        for m, mode in modes.items():
            m.training = mode
