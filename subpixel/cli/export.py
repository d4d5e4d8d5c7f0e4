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
    p.add_argument("--int8", action="store_true", help="full-integer int8 quantization (.tflite)")
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
    if runtime == "onnx":
        if args.int8:
            raise UserError("--int8 is for .tflite outputs (LiteRT's integer quantization)")
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
        int8=args.int8,
        opset=args.opset,
        dynamo=args.exporter == "dynamo",
    )
    print(
        f"wrote {out}: ESPCN x{args.scale}, {runtime}, lowering {args.lowering}"
        f"{', int8' if args.int8 else ''}"
    )
    print(f"ops: {', '.join(sorted(done.ops))}")
    print(f"max difference from the source framework on the sample: {done.max_diff:.3g}")
    print(
        f"Y-PSNR against the original sample: exported {done.psnr_exported:.2f} dB, "
        f"source framework {done.psnr_source:.2f} dB "
        f"({done.psnr_exported - done.psnr_source:+.2f} dB)"
    )
    return 0
