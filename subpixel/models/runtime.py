"""A super-resolution model from a file, run like the bundled one: what ``subpixel upscale
--model FILE`` runs.

* ``.onnx`` in ONNX Runtime, ``.tflite``/``.litert`` in LiteRT: any model with one image
  input, RGB or luminance, NCHW or NHWC, float32, float16 or (LiteRT) quantized, with
  dynamic or fixed sizes.
* ``.pt2``, a program saved by ``torch.export.save``, run on PyTorch.  Loading one
  unpickles (``torch.export.load``), which can run code from the file: only with
  ``allow_pickle``.
* ``.pth``/``.pt``/``.ckpt``/``.safetensors`` checkpoints of the architectures spandrel
  recognises, run on PyTorch: read by :func:`load_checkpoint` (the ``subpixel[models]``
  extra).

When the file is opened, its declared input says what it can take (channels, layout,
fixed or dynamic sizes) and a probe run measures its scale; everything that cannot
work is one :class:`~subpixel._core.files.FileError` naming the file and what was
expected.  The block grid that lets it run on part of an image exactly
(:mod:`.field`) is measured the first time :attr:`RuntimeModel.grid` is asked for.

``SUBPIXEL_NUM_THREADS`` sets the threads of the runtimes (ONNX Runtime's intra-op
threads, LiteRT's, PyTorch's), as it does the NumPy backend's.
"""

from __future__ import annotations

import importlib
import os
import threading
from typing import Any

import numpy as np

from .._core import files as _files
from . import field as _field

__all__ = ["CHECKPOINTS", "PROGRAMS", "RuntimeModel", "load_checkpoint", "model_kind"]

ONNX = (".onnx",)
LITERT = (".tflite", ".litert")
PROGRAMS = (".pt2",)
CHECKPOINTS = (".pth", ".pt", ".ckpt", ".safetensors")
PROBE_SIZES = (32, 64, 128)  # LR sizes tried for the first run, until one runs
_LAYOUTS = ("NCHW", "NHWC")


def model_kind(path: str | os.PathLike) -> str:
    """``"onnx"``, ``"tflite"``, ``"program"`` (``.pt2``) or ``"checkpoint"`` by the
    file's name; :class:`~subpixel._core.files.FileError` for anything else."""
    return _files.kind_by_suffix(
        path,
        {"onnx": ONNX, "tflite": LITERT, "program": PROGRAMS, "checkpoint": CHECKPOINTS},
        "unknown model format (use .onnx, .tflite, a torch.export program .pt2, or a "
        ".pth/.safetensors checkpoint)",
    )


def load_checkpoint(path: str | os.PathLike, *, allow_pickle: bool = False) -> Any:
    """The PyTorch module of a checkpoint (``.pth``, ``.safetensors``, ...): the one seam
    to ``subpixel.models.checkpoints.load_checkpoint`` (spandrel, the
    ``subpixel[models]`` extra), imported only when a checkpoint is opened."""
    try:
        checkpoints = importlib.import_module(f"{__package__}.checkpoints")
    except ImportError:
        raise _files.FileError(
            path,
            "running a checkpoint (.pth, .safetensors) needs subpixel[models] (pip install "
            "'subpixel[models]'); or export it to .onnx or .pt2 first",
        ) from None
    return checkpoints.load_checkpoint(path, allow_pickle=allow_pickle)


def _threads() -> int | None:
    text = os.environ.get("SUBPIXEL_NUM_THREADS", "").strip()
    if not text:
        return None
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"SUBPIXEL_NUM_THREADS must be a positive integer. Received: {text!r}")
    return n


def _first_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return text[0] if text else type(exc).__name__


class _Refused(Exception):
    """A model the runner cannot feed (the reason, for a FileError)."""


class ModelRunError(_files.FileError):
    """The runtime failed on an input (the runtime's message, first line)."""


# ---------------------------------------------------------------------------
# runners: one input array in the model's own layout and dtype -> its first output
# ---------------------------------------------------------------------------


class _Onnx:
    runtime = "ONNX Runtime"
    preferred = "NCHW"

    def __init__(self, path: str) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 4  # the runtime's errors are reported as ours
        threads = _threads()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            path, sess_options=options, providers=["CPUExecutionProvider"]
        )
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs)
            raise _Refused(f"takes {len(inputs)} inputs ({names}); an image model takes one")
        spec = inputs[0]
        self.input = spec.name
        self.shape = tuple(d if isinstance(d, int) and d > 0 else None for d in spec.shape)
        dtypes = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
        if spec.type not in dtypes:
            raise _Refused(f"takes {spec.type} input; expected float32 or float16 pixels")
        self.dtype = np.dtype(dtypes[spec.type])

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: x.astype(self.dtype)})[0]


class _LiteRT:
    runtime = "LiteRT"
    preferred = "NHWC"

    def __init__(self, path: str) -> None:
        from .. import deploy

        with open(path, "rb") as f:
            blob = f.read()
        if blob[4:8] != b"TFL3":  # (told before a runtime is needed)
            raise ValueError("no TFL3 identifier")
        self.interpreter = deploy.tflite_interpreter(blob, delegates=False, num_threads=_threads())
        self.q_in, self.q_out = deploy.tflite_quantization(blob)
        inputs = self.interpreter.get_input_details()
        if len(inputs) != 1:
            raise _Refused(f"takes {len(inputs)} inputs; an image model takes one")
        spec = inputs[0]
        signature = spec.get("shape_signature", spec["shape"])
        self.shape = tuple(int(d) if d > 0 else None for d in signature)
        self.index = spec["index"]
        self.dtype = np.dtype(spec["dtype"])
        if self.dtype not in (np.float32, np.int8, np.uint8):
            raise _Refused(f"takes {self.dtype} input; expected float32, int8 or uint8")
        self._lock = threading.Lock()  # an interpreter runs one input at a time
        self._current: tuple[int, ...] | None = None

    def run(self, x: np.ndarray) -> np.ndarray:
        it = self.interpreter
        with self._lock:
            if self._current != x.shape:
                it.resize_tensor_input(self.index, list(x.shape))
                it.allocate_tensors()
                self._current = x.shape
            if self.q_in is not None:  # quantized as LiteRT's own QUANTIZE does
                x = self.q_in.quantize(x)
            it.set_tensor(self.index, x.astype(self.dtype))
            it.invoke()
            y = it.get_tensor(it.get_output_details()[0]["index"])
            if self.q_out is not None:
                y = self.q_out.dequantize(y)
            return np.array(y, np.float32)


class _Torch:
    runtime = "PyTorch"
    preferred = "NCHW"

    def __init__(self, module: Any, shape: tuple[int | None, ...] | None, dtype: Any) -> None:
        import torch

        threads = _threads()
        if threads:
            torch.set_num_threads(threads)
        self.module, self.shape, self.torch_dtype = module, shape, dtype
        self.dtype = np.dtype(np.float32)

    @classmethod
    def program(cls, path: str) -> _Torch:
        """A ``torch.export`` program (``.pt2``)."""
        import torch

        program = torch.export.load(path)
        inputs = [
            node
            for node in program.graph.nodes
            if node.op == "placeholder" and node.name in program.graph_signature.user_inputs
        ]
        if len(inputs) != 1:
            raise _Refused(f"takes {len(inputs)} inputs; an image model takes one")
        value = inputs[0].meta.get("val")
        shape = None
        dtype = torch.float32
        if value is not None:
            shape = tuple(d if isinstance(d, int) else None for d in value.shape)
            dtype = value.dtype
        return cls(program.module(), shape, dtype)

    @classmethod
    def checkpoint(cls, path: str, allow_pickle: bool) -> _Torch:
        """A checkpoint, through :func:`load_checkpoint`."""
        import torch

        module = load_checkpoint(path, allow_pickle=allow_pickle)
        params = list(module.parameters())
        dtype = params[0].dtype if params else torch.float32
        return cls(module.eval(), None, dtype)

    def run(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            y = self.module(torch.from_numpy(np.ascontiguousarray(x)).to(self.torch_dtype))
        if isinstance(y, (tuple, list)):
            y = y[0]
        return y.detach().to(torch.float32).numpy()


def _open(kind: str, path: str, allow_pickle: bool) -> Any:
    if kind == "onnx":
        return _Onnx(path)
    if kind == "tflite":
        return _LiteRT(path)
    if kind == "program":
        if not allow_pickle:
            raise _Refused(
                "a torch.export program is loaded with pickle (torch.export.load), which can "
                "run code from the file: pass --allow-pickle (allow_pickle=True) if you trust it"
            )
        return _Torch.program(path)
    return _Torch.checkpoint(path, allow_pickle)


def _channel_axis(layout: str) -> int:
    return 1 if layout == "NCHW" else 3


def _spatial(layout: str) -> tuple[int, int]:
    return (2, 3) if layout == "NCHW" else (1, 2)


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


# ---------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------


class RuntimeModel:
    """A super-resolution model in a file (see the module's docstring), callable like
    :class:`~subpixel.models.ESPCN` on NumPy arrays: ``(N, C, H, W)`` float32 in [0, 1]
    -> ``(N, C, H * scale, W * scale)`` float32, whatever the file's own layout and
    dtype.

    Attributes: ``path`` (also ``name``, for messages); ``runtime`` (``"ONNX
    Runtime"``, ``"LiteRT"``, ``"PyTorch"``); ``channels``, 1 (a luminance model: fed
    BT.601 Y) or 3 (RGB); ``layout``, ``"NCHW"`` or ``"NHWC"`` (the file's);
    ``scale``, measured by probe runs; ``fixed``, the input height and width the file
    declares (``None`` for a dynamic axis).  ``allow_pickle``: open ``.pt2`` programs and
    pickle checkpoints (which can run code from the file)."""

    def __init__(self, path: str | os.PathLike, *, allow_pickle: bool = False) -> None:
        self.path = os.fspath(path)
        self.name = self.path
        self.kind = model_kind(path)
        self.allow_pickle = allow_pickle
        if not os.path.isfile(self.path):
            raise _files.FileError(path, "no such file")
        try:
            runner = _open(self.kind, self.path, allow_pickle)
        except _files.FileError:
            raise
        except _Refused as exc:
            raise _files.FileError(path, str(exc)) from None
        except ImportError as exc:
            raise _files.FileError(path, f"running it needs {exc.name} (pip install it)") from None
        except Exception as exc:  # the runtime's own error: not a model it opens
            raise _files.FileError(
                path, f"not a model {self._runtime_name()} opens ({_first_line(exc)})"
            ) from None
        self._runner = runner
        self.runtime: str = runner.runtime
        self.layout, self.channels, self.fixed, self.scale = self._decide(runner)
        self._field: _field.Field | None = None

    def _runtime_name(self) -> str:
        return {"onnx": "ONNX Runtime", "tflite": "LiteRT"}.get(self.kind, "PyTorch")

    # -- what the file takes -------------------------------------------------------

    def _candidates(self, shape: tuple[int | None, ...] | None) -> list[tuple[str, int]]:
        """``(layout, channels)`` pairs the declared input allows, the runtime's usual
        layout first; a FileError if it allows none."""
        preferred = self._runner.preferred
        layouts = sorted(_LAYOUTS, key=lambda layout: layout != preferred)
        if shape is None:
            return [(layout, c) for layout in layouts for c in (3, 1)]
        if len(shape) != 4:
            raise _files.FileError(
                self.path,
                f"takes a {len(shape)}-D input {_shape_text(shape)}; expected an image batch "
                "(N, C, H, W) or (N, H, W, C)",
            )
        if shape[0] not in (None, 1):
            raise _files.FileError(
                self.path, f"takes batches of exactly {shape[0]} {_shape_text(shape)}; expected 1"
            )
        # a channel count is declared where a spatial size rarely is: a fixed dimension
        # at one of the two places, the other free, says the layout
        fixed_at = [layout for layout in layouts if shape[_channel_axis(layout)] is not None]
        if len(fixed_at) == 2:  # both fixed (a fixed-size model): the one that is 1 or 3
            fixed_at = [lay for lay in fixed_at if shape[_channel_axis(lay)] in (1, 3)] or fixed_at
        if len(fixed_at) >= 1:
            layout = fixed_at[0]
            c = shape[_channel_axis(layout)]
            if c not in (1, 3):
                raise _files.FileError(
                    self.path,
                    f"takes input {_shape_text(shape)}: {c} channels ({layout}); expected "
                    "C = 1 (luminance) or 3 (RGB)",
                )
            return [(layout, int(c))]
        return [(layout, c) for layout in layouts for c in (3, 1)]

    def _decide(self, runner: Any) -> tuple[str, int, tuple[int | None, int | None], int]:
        """The layout, channels, fixed size and scale: the first ``(layout, channels)``
        the declared input allows that runs and gives an image enlarged by a whole
        factor; else the first problem met, as a FileError."""
        shape = runner.shape
        problems: list[str] = []
        for layout, channels in self._candidates(shape):
            fixed: tuple[int | None, int | None] = (None, None)
            if shape is not None:
                fixed = (shape[_spatial(layout)[0]], shape[_spatial(layout)[1]])
            self.layout, self.channels, self.fixed = layout, channels, fixed
            for n in PROBE_SIZES:
                h, w = fixed[0] or n, fixed[1] or n
                try:
                    out = self._run_raw(self._probe_input(channels, h, w))
                except ModelRunError as exc:
                    problems.append(exc.reason)
                    continue  # another size may suit it (a multiple of 64, say)
                try:
                    scale = self._scale_of(out, channels, h, w, layout)
                except _Refused as exc:
                    problems.append(str(exc))
                    break  # another layout or channel count may be the right guess
                if fixed == (None, None):
                    self._check_scale(channels, 2 * h, 2 * w, scale)
                return layout, channels, fixed, scale
        raise _files.FileError(self.path, problems[0])

    @staticmethod
    def _probe_input(channels: int, h: int, w: int) -> np.ndarray:
        return np.random.default_rng(0).random((1, channels, h, w), dtype=np.float32)

    def _scale_of(self, out: np.ndarray, channels: int, h: int, w: int, layout: str) -> int:
        """The scale a probe output shows; :class:`_Refused` for an output that is not
        the input enlarged by a whole factor with the same channels."""
        got = _shape_text(out.shape)
        given = f"(1, {channels}, {h}, {w})" if layout == "NCHW" else f"(1, {h}, {w}, {channels})"
        if out.ndim != 4 or out.shape[0] != 1:
            raise _Refused(f"maps {given} to {got}; expected a 4-D image of batch 1")
        c_out = out.shape[_channel_axis(layout)]
        oh, ow = out.shape[_spatial(layout)[0]], out.shape[_spatial(layout)[1]]
        if c_out != channels:
            raise _Refused(
                f"maps {given} to {got}: {channels} channel(s) in, {c_out} out; expected the "
                "same count (1, luminance, or 3, RGB) in and out"
            )
        if oh % h or ow % w or oh // h != ow // w or oh < h:
            raise _Refused(
                f"maps {given} to {got}: the output is not the input enlarged by one whole factor"
            )
        return oh // h

    def _check_scale(self, channels: int, h: int, w: int, scale: int) -> None:
        """A second size must give the same scale (a model with a fixed output does not)."""
        try:
            out = self._run_raw(self._probe_input(channels, h, w))
        except ModelRunError:
            return  # too large for it: the sizes it takes are checked where it runs
        try:
            got = self._scale_of(out, channels, h, w, self.layout)
        except _Refused as exc:
            raise _files.FileError(self.path, str(exc)) from None
        if got != scale:
            raise _files.FileError(
                self.path,
                f"enlarges a {w}x{h} input by {got} but a {w // 2}x{h // 2} one by {scale}: "
                "expected one scale for every size",
            )

    # -- running ---------------------------------------------------------------------

    def _run_raw(self, x: np.ndarray) -> np.ndarray:
        """``x`` NCHW float32 -> the output in the file's layout (float32); a
        :class:`ModelRunError` with the runtime's message, a FileError for NaN/inf."""
        if self.layout == "NHWC":
            x = np.moveaxis(x, 1, -1)
        try:
            out = np.asarray(self._runner.run(np.ascontiguousarray(x)), np.float32)
        except Exception as exc:  # the runtime's own error
            given = _shape_text(tuple(x.shape))
            raise ModelRunError(
                self.path, f"{self.runtime} failed on a {given} input ({_first_line(exc)})"
            ) from None
        if not np.isfinite(out).all():
            raise _files.FileError(
                self.path,
                "its output holds NaN or infinite values (on an input in [0, 1]); nothing was "
                "written",
            )
        return out

    def __call__(self, x: Any) -> Any:
        """``(N, C, H, W)`` in [0, 1] -> ``(N, C, H * scale, W * scale)``, float32."""
        x = np.asarray(x, np.float32)
        h, w = x.shape[-2:]
        for fixed, n in zip(self.fixed, (h, w)):
            if fixed is not None and fixed != n:
                size = f"{self.fixed[1] or 'any'}x{self.fixed[0] or 'any'}"
                raise _files.FileError(
                    self.path,
                    f"takes only inputs of {size} pixels (a fixed size); asked to run on {w}x{h}",
                )
        out = self._run_raw(x)
        if self.layout == "NHWC":
            out = np.moveaxis(out, -1, 1)
        expected = (x.shape[0], self.channels, h * self.scale, w * self.scale)
        if out.shape != expected:
            raise _files.FileError(
                self.path,
                f"gave {_shape_text(out.shape)} for a {w}x{h} input; expected "
                f"{_shape_text(expected)} (x{self.scale})",
            )
        return np.ascontiguousarray(out)

    # -- running on part of an image -------------------------------------------------

    @property
    def field(self) -> _field.Field:
        """The receptive field and period measured by :func:`.field.measure` (probe runs
        the first time it is asked for)."""
        if self._field is None:
            if self.fixed != (None, None):
                self._field = _field.Field(
                    None, None, f"it takes only one input size ({self._fixed_text()})"
                )
            else:
                self._field = _field.measure(self._probe, self.channels, self.scale)
        return self._field

    def _fixed_text(self) -> str:
        h, w = self.fixed
        return f"{w or 'any'}x{h or 'any'} pixels"

    def _probe(self, x: np.ndarray) -> np.ndarray:
        try:
            return self(x)
        except ModelRunError as exc:
            raise _field.ProbeError(exc.reason) from None

    @property
    def grid(self) -> _field.Grid | None:
        """The block grid that runs this model on part of an image exactly (None: only
        on the whole image; :attr:`untiled_reason` says why)."""
        return self.field.grid

    @property
    def untiled_reason(self) -> str | None:
        return self.field.reason

    def describe(self) -> str:
        kind = "RGB" if self.channels == 3 else "luminance"
        return f"{kind} model x{self.scale} in {self.runtime}"

    # -- pickling (Dask's distributed workers reopen the file) ------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_runner"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._runner = _open(self.kind, self.path, self.allow_pickle)
