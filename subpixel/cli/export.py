"""``subpixel export``: the bundled ESPCN as an ONNX or LiteRT/TFLite file, run in its
runtime on the bundled sample and compared with the source framework."""

from __future__ import annotations

import argparse
import importlib.util
import os

from .. import deploy
from .._core.lowering import LOWERINGS
from ._common import UserError, add_force, output_file, positive_int


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export the bundled ESPCN to ONNX or LiteRT/TFLite and check it runs right"
    )
    p.add_argument(
        "output", metavar="OUT", help="model.onnx (from PyTorch) or model.tflite (from Keras)"
    )
    p.add_argument("--scale", type=int, choices=(2, 3, 4), default=3)
    p.add_argument(
        "--lowering",
        choices=LOWERINGS,
        default="auto",
        help="how the shuffle is written into the graph (docs/deploy.md)",
    )
    p.add_argument(
        "--int8",
        action="store_true",
        help="full-integer int8 quantization, float input and output (.tflite)",
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
    p.add_argument("--opset", type=positive_int, default=17, help="ONNX opset (.onnx)")
    p.add_argument(
        "--exporter",
        choices=("dynamo", "torchscript"),
        default="dynamo",
        help="torch.onnx.export's exporter (.onnx)",
    )
    add_force(p)
    p.set_defaults(run=run)


def _needs(*modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"this export needs {', '.join(missing)} (pip install {' '.join(missing)})")


def run(args: argparse.Namespace) -> int:
    from ..models.export import export_espcn

    runtime = deploy.runtime_of(args.output)
    out = output_file(args.output, inputs=[], force=args.force)
    int8 = args.int8 or args.int8_io is not None
    if args.calibration is not None and not int8:
        raise UserError("--calibration is for --int8 and --int8-io exports")
    if runtime == "onnx":
        if int8:
            flag = "--int8" if args.int8 else "--int8-io"
            raise UserError(f"{flag} is for .tflite outputs (LiteRT's integer quantization)")
        _needs(
            "torch", "onnx", "onnxruntime", *(["onnxscript"] if args.exporter == "dynamo" else [])
        )
    else:
        if args.opset != 17 or args.exporter != "dynamo":
            raise UserError("--opset and --exporter are for .onnx outputs")
        backend = os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        if backend != "tensorflow":
            raise UserError(f"a .tflite export needs KERAS_BACKEND=tensorflow, not {backend!r}")
        _needs("tensorflow", "keras")
    done = export_espcn(
        out,
        args.scale,
        lowering=args.lowering,
        int8=int8,
        int8_io=args.int8_io,
        calibration=args.calibration,
        opset=args.opset,
        dynamo=args.exporter == "dynamo",
    )
    kind = f", int8 ({args.int8_io or 'float'} input and output)" if int8 else ""
    print(f"wrote {out}: ESPCN x{args.scale}, {runtime}, lowering {args.lowering}{kind}")
    if done.calibration is not None:
        print(f"calibrated on {done.calibration.source}")
    for name, q in zip(("input", "output"), done.quantization):
        if q is not None:
            print(
                f"{name}: {q.dtype}, scale {q.scale!r}, zero point {q.zero_point} "
                "(real = scale * (q - zero point))"
            )
    print(f"ops: {', '.join(sorted(done.ops))}")
    print(f"max difference from the source framework on the sample: {done.max_diff:.3g}")
    print(
        f"Y-PSNR against the original sample: exported {done.psnr_exported:.2f} dB, "
        f"source framework {done.psnr_source:.2f} dB "
        f"({done.psnr_exported - done.psnr_source:+.2f} dB)"
    )
    return 0
