"""``subpixel export [MODEL] OUT``: the bundled ESPCN, a ``torch.export`` program
(``.pt2``) or a checkpoint of an architecture spandrel recognises (``.pth``,
``.safetensors``, ...) as an ONNX or LiteRT/TFLite file, its shuffles rewritten for
``--lowering``, run in its runtime and compared with its source."""

from __future__ import annotations

import argparse
import importlib.util
import os

from .. import deploy
from .._core.lowering import LOWERINGS
from ._common import UserError, add_force, input_file, interrupts_reported, output_file


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model",
        metavar="MODEL",
        nargs="?",
        help="a torch.export program (.pt2) or a checkpoint (.pth/.pt/.ckpt/.bin, "
        ".safetensors) of an architecture spandrel recognises; default: the bundled ESPCN",
    )
    p.add_argument(
        "output",
        metavar="OUT",
        help="model.onnx (torch.onnx) or model.tflite (the bundled ESPCN: from Keras; a "
        "PyTorch model: litert-torch)",
    )
    p.add_argument(
        "--scale", type=int, choices=(2, 3, 4), help="the bundled ESPCN's scale (default 3)"
    )
    p.add_argument(
        "--lowering",
        choices=LOWERINGS,
        default="auto",
        help="how the shuffles are written into the graph (docs/deploy.md)",
    )
    p.add_argument(
        "--int8",
        action="store_true",
        help="full-integer int8 quantization (the bundled ESPCN, .tflite)",
    )
    p.add_argument(
        "--opset",
        type=int,
        help="ONNX opset (.onnx; default 18 with dynamo, 17 with torchscript)",
    )
    p.add_argument(
        "--int8-io",
        choices=("int8", "uint8"),
        help="full-integer int8 with TYPE input and output, for integer-only delegates "
        "(implies --int8; the scale and zero point are printed)",
    )
    p.add_argument(
        "--calibration",
        metavar="DIR",
        help="calibrate --int8/--int8-io on the images in DIR (default: synthetic patches "
        "spanning luminance 0..1)",
    )
    p.add_argument(
        "--exporter",
        choices=("dynamo", "torchscript"),
        default="dynamo",
        help="torch.onnx.export's exporter (.onnx)",
    )
    p.add_argument(
        "--shape",
        metavar="N,C,H,W",
        help="the check input's shape for MODEL (a .tflite keeps it; default 1,C,64,64)",
    )
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="read MODEL when it is a pickle (.pth/.pt/.ckpt/.bin: weights only; .pt2: only "
        "files you trust)",
    )
    add_force(p)


def _needs(*modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        names = " ".join(m.replace("_", "-") for m in missing)
        raise UserError(f"this export needs {', '.join(missing)} (pip install {names})")


def _shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) != 4 or min(shape) < 1:
        raise UserError(f"--shape {text}: expected four positive sizes N,C,H,W")
    return shape


def run(args: argparse.Namespace) -> int:
    runtime = deploy.runtime_of(args.output)
    shape = _shape(args.shape)
    source = None if args.model is None else input_file(args.model)
    out = output_file(args.output, inputs=[source], force=args.force)
    dynamo = args.exporter == "dynamo"
    int8 = args.int8 or args.int8_io is not None
    if args.calibration is not None and not int8:
        raise UserError("--calibration is for --int8 and --int8-io exports")
    if runtime == "onnx":
        if int8:
            flag = "--int8" if args.int8 else "--int8-io"
            raise UserError(f"{flag} is for .tflite outputs (LiteRT's integer quantization)")
        if args.opset is not None:
            try:
                deploy.check_opset(args.opset, dynamo=dynamo)
            except ValueError as exc:
                raise UserError(f"--opset {args.opset}: {str(exc).partition(': ')[2]}") from None
        _needs("torch", "onnx", "onnxruntime", *(["onnxscript"] if dynamo else []))
    elif args.opset is not None or not dynamo:
        raise UserError("--opset and --exporter are for .onnx outputs")
    if source is None:
        if shape is not None or args.allow_pickle:
            raise UserError("--shape and --allow-pickle are for a MODEL given to export")
        return _espcn(args, out, runtime, dynamo)
    if args.scale is not None:
        raise UserError(f"--scale is the bundled ESPCN's; {source} has its own scale")
    if int8:
        raise UserError(
            "--int8 and --int8-io are for the bundled ESPCN (calibrated through Keras); a "
            "PyTorch model is exported in float32"
        )
    if runtime == "tflite":
        _needs("torch", "litert_torch")
    with interrupts_reported():
        from ..exporting import export_torch
        from ..models.checkpoints import load_model

        loaded = load_model(source, allow_pickle=args.allow_pickle)
        done = export_torch(
            loaded, out, lowering=args.lowering, opset=args.opset, dynamo=dynamo, shape=shape
        )
    print(
        f"wrote {_files_text(done.files)}: {loaded.name}{_scale_text(done.scale)}, "
        f"{done.route}, lowering "
        f"{args.lowering}{' (flat)' if runtime == 'tflite' and args.lowering == 'auto' else ''}"
    )
    _report(done, out, runtime)
    print(
        "max difference from the source framework on a random input of shape "
        f"{done.input_shape}: {done.max_diff:.3g}"
    )
    return 0


def _scale_text(scale: int | None) -> str:
    return f" x{scale}" if scale else ""


def _files_text(files: tuple[str, ...]) -> str:
    if len(files) < 2:
        return files[0] if files else "?"
    return f"{files[0]} (weights in {', '.join(files[1:])}: keep them beside it)"


def _report(done: object, out: os.PathLike, runtime: str) -> None:
    """The ops, the highest tensor rank and the audit's sites of the written file."""
    ops = sorted(getattr(done, "ops", ()))
    print(f"ops: {', '.join(ops)}")
    rank = getattr(done, "max_rank", None)
    print(f"max tensor rank: {rank if rank is not None else 'unknown'}")
    try:
        from ..auditing import audit

        shape = getattr(done, "input_shape", None)
        report = audit(out, shapes=shape if runtime == "onnx" else None)
        sites = [
            f"{s.kind} {'x'.join(map(str, s.factor))} {s.order} {s.layout} ({', '.join(s.ops)})"
            + (f" [{'; '.join(h.split(':')[0] for h in s.hazards)}]" if s.hazards else "")
            for s in report.sites
        ]
        print(f"sites (subpixel audit): {'; '.join(sites) if sites else 'none'}")
    except Exception as exc:  # the audit is a report: its failure does not fail the export
        print(f"sites (subpixel audit): not analysed ({type(exc).__name__})")


def _espcn(args: argparse.Namespace, out: os.PathLike, runtime: str, dynamo: bool) -> int:
    from ..models.export import export_espcn

    scale = args.scale or 3
    if runtime == "tflite":
        backend = os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        if backend != "tensorflow":
            raise UserError(f"a .tflite export needs KERAS_BACKEND=tensorflow, not {backend!r}")
        _needs("tensorflow", "keras")
        with deploy.quiet():  # TensorFlow's C++ start-up lines
            import tensorflow  # noqa: F401
    int8 = args.int8 or args.int8_io is not None
    with interrupts_reported():
        done = export_espcn(
            out,
            scale,
            lowering=args.lowering,
            int8=int8,
            int8_io=args.int8_io,
            calibration=args.calibration,
            opset=args.opset,
            dynamo=dynamo,
        )
    kind = f", int8 ({args.int8_io or 'float'} input and output)" if int8 else ""
    print(
        f"wrote {_files_text(done.files)}: ESPCN x{scale}, {runtime}, lowering "
        f"{args.lowering}{kind}"
    )
    if done.calibration is not None:
        print(f"calibrated on {done.calibration.source}")
    for name, q in zip(("input", "output"), done.quantization):
        if q is not None:
            print(
                f"{name}: {q.dtype}, scale {q.scale!r}, zero point {q.zero_point} "
                "(real = scale * (q - zero point))"
            )
    _report(done, out, runtime)
    print(f"max difference from the source framework on the sample: {done.max_diff:.3g}")
    assert done.psnr_exported is not None and done.psnr_source is not None
    print(
        f"Y-PSNR against the original sample: exported {done.psnr_exported:.2f} dB, "
        f"source framework {done.psnr_source:.2f} dB "
        f"({done.psnr_exported - done.psnr_source:+.2f} dB)"
    )
    return 0
