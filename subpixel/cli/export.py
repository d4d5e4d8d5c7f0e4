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


def _sample_luma(scale: int):
    """The bundled sample's luminance in [0, 1]: HR (cropped to a multiple of the
    scale) and its bicubic LR, as the demo of `subpixel upscale sample` makes them."""
    import numpy as np

    from .. import image
    from ..models.espcn import SAMPLE

    hr = image.read_image(SAMPLE)
    h, w = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
    hr = hr[:h, :w]
    lr = np.clip(np.round(image.resize_bicubic(hr, h // scale, w // scale)), 0, 255)
    y = lambda a: image.rgb_to_ycbcr(a)[..., 0] / 255.0  # noqa: E731
    return y(hr), y(lr).astype(np.float32)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from .. import image
    from ..models import ESPCN

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
    model = ESPCN.pretrained(args.scale)
    hr_y, lr_y = _sample_luma(args.scale)
    x = lr_y[None, None]
    if runtime == "onnx":
        import torch

        module = model.to_torch(args.lowering)
        example = torch.from_numpy(x)
        deploy.torch_to_onnx(
            module, example, out, dynamo=args.exporter == "dynamo", opset=args.opset
        )
        with torch.no_grad():
            source = module(example).numpy()
        ops = deploy.onnx_ops(out)
        exported = deploy.run_onnx(out, x)
    else:
        keras_model = model.to_keras(args.lowering)
        representative = None
        if args.int8:  # calibrate on LR patches of the sample
            rng = np.random.default_rng(0)
            h, w = lr_y.shape
            representative = [
                lr_y[a : a + 32, b : b + 32][None, :, :, None]
                for a, b in zip(rng.integers(0, h - 32, 32), rng.integers(0, w - 32, 32))
            ]
        blob = deploy.keras_to_tflite(
            keras_model, mode="int8" if args.int8 else "float32", representative=representative
        )
        from .._core.files import atomic_write

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                f.write(blob)

        atomic_write(out, write)
        source = np.moveaxis(np.asarray(keras_model(np.moveaxis(x, 1, -1))), -1, 1)
        ops = deploy.tflite_ops(blob)
        exported = np.moveaxis(deploy.run_tflite(blob, np.moveaxis(x, 1, -1))[0], -1, 1)
    r = args.scale
    print(
        f"wrote {out}: ESPCN x{r}, {runtime}, lowering {args.lowering}{', int8' if args.int8 else ''}"
    )
    print(f"ops: {', '.join(sorted(ops))}")
    print(
        f"max difference from the source framework on the sample: {np.abs(exported - source).max():.3g}"
    )
    psnr = lambda a: image.psnr(np.clip(a[0, 0], 0, 1) * 255, hr_y * 255, shave=r)  # noqa: E731
    print(
        f"Y-PSNR against the original sample: exported {psnr(exported):.2f} dB, "
        f"source framework {psnr(source):.2f} dB ({psnr(exported) - psnr(source):+.2f} dB)"
    )
    return 0
