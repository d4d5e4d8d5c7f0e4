"""PyTorch models from files: programs saved by ``torch.export`` (``.pt2``) and
checkpoints (``.pth``/``.pt``/``.ckpt``/``.bin``, ``.safetensors``) of the
architectures spandrel recognises (ESRGAN/Real-ESRGAN, Compact, SwinIR, RCAN, SPAN,
...; ``pip install "subpixel[models]"``).

Hostile files never run code:

* ``.safetensors`` are read strictly (:func:`subpixel._core.files.open_tensors`);
* pickle checkpoints are refused unless ``allow_pickle``, and even then read with
  ``torch.load(weights_only=True)``, which refuses pickled code;
* ``.pt2`` programs are pickles too (``torch.export.load`` unpickles their weights and
  evaluates their size expressions): refused unless ``allow_pickle``; then every
  tensor is read with ``weights_only=True``, pickled objects that are not tensors are
  refused, and a graph that calls anything but PyTorch's operators is refused before
  it runs.

spandrel's own file reader is never used: it reads the state dict from the bytes read
here (``ModelLoader.load_from_state_dict``).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .. import deploy
from .._core import files as _files

__all__ = ["CHECKPOINTS", "PROGRAMS", "LoadedModel", "load_checkpoint", "load_model"]

CHECKPOINTS = (".pth", ".pt", ".ckpt", ".bin", ".safetensors")
PROGRAMS = (".pt2",)


@dataclass(frozen=True)
class LoadedModel:
    """A PyTorch model read from a file, and what is known of its input: ``kind``
    (``"program"`` or ``"checkpoint"``), ``name`` (the architecture, or ``"torch.export
    program"``), ``in_channels``, ``scale`` (``None`` where unknown until run), and the
    input sizes it takes: at least ``minimum``, a multiple of ``multiple_of``, ``square``;
    ``shape``: the program's input shape with ``None`` for each dynamic size."""

    module: Any
    kind: str
    name: str
    in_channels: int | None = None
    scale: int | None = None
    minimum: int = 1
    multiple_of: int = 1
    square: bool = False
    shape: tuple[int | None, ...] | None = None


def load_checkpoint(path: str | os.PathLike, *, allow_pickle: bool = False) -> Any:
    """The ``torch.nn.Module`` (eval mode, CPU, float32) of a checkpoint of an
    architecture spandrel recognises, or of a ``torch.export`` program (``.pt2``).
    :class:`~subpixel._core.files.FileError` (``"<path>: <reason>"``, one line) for a
    file that is not one, a pickle without ``allow_pickle``, an unknown architecture, or
    spandrel missing.  See :func:`load_model` for what is known of its input."""
    return load_model(path, allow_pickle=allow_pickle).module


def load_model(path: str | os.PathLike, *, allow_pickle: bool = False) -> LoadedModel:
    """:func:`load_checkpoint`, with what the file says of the model's input."""
    path = os.fspath(path)
    name = path.lower()
    if not name.endswith(CHECKPOINTS + PROGRAMS):
        raise _files.FileError(
            path,
            "not a PyTorch model file (expected a torch.export program .pt2, or a checkpoint "
            ".pth/.pt/.ckpt/.bin/.safetensors)",
        )
    if not os.path.isfile(path):
        raise _files.FileError(path, "no such file" if not os.path.exists(path) else "not a file")
    try:
        import torch  # noqa: F401
    except ImportError:
        raise _files.FileError(
            path, "reading PyTorch models needs torch (pip install torch)"
        ) from None
    if name.endswith(PROGRAMS):
        return _load_program(path, allow_pickle)
    return _load_checkpoint(path, allow_pickle)


# ---------------------------------------------------------------------------
# checkpoints, through spandrel
# ---------------------------------------------------------------------------


def _state_dict(path: str, allow_pickle: bool) -> dict[str, Any]:
    import torch

    if path.lower().endswith(".safetensors"):
        with _files.open_tensors(path) as f:
            return {k: torch.from_numpy(f[k].copy()) for k in f.keys()}
    if not allow_pickle:
        raise _files.FileError(
            path,
            "PyTorch checkpoints are pickle files, which can run code; pass --allow-pickle "
            "(allow_pickle=True) to read it with torch.load(weights_only=True)",
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise _files.FileError(path, exc.strerror or str(exc)) from None
    except Exception as exc:  # untrusted bytes: any failure means "not a checkpoint"
        raise _files.FileError(
            path, f"not a PyTorch checkpoint torch.load can read safely ({_reason(exc)})"
        ) from None
    if not isinstance(state, dict):
        raise _files.FileError(path, f"holds a {type(state).__name__}, not a state dict")
    return state


def _load_checkpoint(path: str, allow_pickle: bool) -> LoadedModel:
    state = _state_dict(path, allow_pickle)  # the file is checked before spandrel is asked
    try:
        import spandrel
    except ImportError:
        raise _files.FileError(
            path,
            'loading checkpoints needs spandrel (pip install "subpixel[models]"); or export '
            "the model with torch.export.save and pass the .pt2 program",
        ) from None
    try:
        descriptor = spandrel.ModelLoader("cpu").load_from_state_dict(
            spandrel.canonicalize_state_dict(state)
        )
    except spandrel.UnsupportedModelError:
        raise _files.FileError(
            path, "not a checkpoint of an architecture spandrel recognises"
        ) from None
    except Exception as exc:  # spandrel's detection on keys it half-recognises
        raise _files.FileError(
            path, f"spandrel could not build a model from it ({_reason(exc)})"
        ) from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise _files.FileError(
            path,
            f"a {descriptor.architecture.name} model takes more than one image; expected an "
            "image-to-image model",
        )
    req = descriptor.size_requirements
    module = descriptor.model.float().eval()
    return LoadedModel(
        module,
        "checkpoint",
        descriptor.architecture.name,
        in_channels=descriptor.input_channels,
        scale=descriptor.scale,
        minimum=max(1, req.minimum),
        multiple_of=req.multiple_of,
        square=req.square,
    )


# ---------------------------------------------------------------------------
# torch.export programs
# ---------------------------------------------------------------------------

_LOADING = threading.Lock()


@contextlib.contextmanager
def _tensors_only() -> Iterator[None]:
    """``torch.export.load`` with every unpickling limited to tensors: ``torch.load``
    forced to ``weights_only=True``, pickled objects refused."""
    import torch
    from torch.export.pt2_archive import _package

    def load(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return original_load(*args, **kwargs)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise _Refused("it holds pickled objects that are not tensors")

    class _Pickle:
        loads = staticmethod(refuse)

    original_load = torch.load
    original_obj = torch._C._pickle_load_obj
    original_pickle = _package.pickle
    with _LOADING:
        setattr(torch, "load", load)  # noqa: B010 - patched for the load, restored below
        setattr(torch._C, "_pickle_load_obj", refuse)  # noqa: B010
        setattr(_package, "pickle", _Pickle)  # noqa: B010
        try:
            yield
        finally:
            setattr(torch, "load", original_load)  # noqa: B010
            setattr(torch._C, "_pickle_load_obj", original_obj)  # noqa: B010
            setattr(_package, "pickle", original_pickle)  # noqa: B010


class _Refused(Exception):
    pass


def _check_targets(path: str, gm: Any) -> None:
    """Refuse a graph that calls anything but PyTorch's operators (a hostile program
    could name any function of ``torch``)."""
    import operator

    import torch

    allowed = (torch._ops.OpOverload, torch._ops.OpOverloadPacket, torch._ops.HigherOrderOperator)
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        t = node.target
        if isinstance(t, allowed) or getattr(t, "__module__", None) in ("_operator", "operator"):
            continue
        if t in vars(operator).values():
            continue
        raise _files.FileError(path, f"its graph calls {t!r}, which is not a PyTorch operator")


def _load_program(path: str, allow_pickle: bool) -> LoadedModel:
    import torch

    if not allow_pickle:
        raise _files.FileError(
            path,
            "torch.export programs hold pickled weights and expressions torch.export.load "
            "evaluates; pass --allow-pickle (allow_pickle=True) for a file you trust",
        )
    try:
        with _tensors_only(), deploy.quiet():  # torch logs a traceback where it fails
            ep = torch.export.load(path)
    except _Refused as exc:
        raise _files.FileError(path, f"refused: {exc}") from None
    except OSError as exc:
        raise _files.FileError(path, exc.strerror or str(exc)) from None
    except Exception as exc:
        raise _files.FileError(
            path, f"not a torch.export program this PyTorch reads ({_reason(exc)})"
        ) from None
    if not isinstance(ep, torch.export.ExportedProgram):
        raise _files.FileError(path, "not a torch.export program")
    specs = [
        s
        for s in ep.graph_signature.input_specs
        if s.kind == torch.export.graph_signature.InputKind.USER_INPUT
    ]
    if len(specs) != 1:
        raise _files.FileError(
            path, f"the program takes {len(specs)} inputs; expected one image tensor"
        )
    by_name = {n.name: n for n in ep.graph.nodes}
    arg: Any = specs[0].arg
    val = by_name[arg.name].meta.get("val")
    if val is None or val.dim() != 4 or not val.dtype.is_floating_point:
        raise _files.FileError(
            path, "its input is not a float (N, C, H, W) image tensor; expected one"
        )
    shape = tuple(s if isinstance(s, int) else None for s in val.shape)
    module = ep.module()
    _check_targets(path, module)
    return LoadedModel(
        module,
        "program",
        "torch.export program",
        in_channels=shape[1],
        shape=shape,
    )


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
