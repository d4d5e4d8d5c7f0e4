"""``subpixel upscale``: super-resolve an image with the bundled ESPCN, or with a model
from a file (ONNX, LiteRT, a ``torch.export`` program, a checkpoint)."""

from __future__ import annotations

import argparse
import os
import sys

from ..backends import LIBRARY_BACKENDS
from ._common import UserError, add_force, input_file, output_file, positive_int, usable_backend


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "input",
        metavar="IN",
        help="an image file (PNG, TIFF, JPEG, WebP, ...: 8-bit, 16-bit grey or float; alpha "
        "is kept), or 'sample' for the bundled demo image",
    )
    p.add_argument(
        "output", metavar="OUT", help="the upscaled image; its extension sets the format"
    )
    p.add_argument(
        "--scale",
        type=int,
        choices=(2, 3, 4),
        default=None,
        help="the bundled model's scale (default 3); with --model, the model's own scale, checked",
    )
    p.add_argument("--backend", default="numpy", choices=LIBRARY_BACKENDS)
    p.add_argument(
        "--tile",
        type=positive_int,
        default=None,
        metavar="N",
        help="work on N x N LR pixels at a time (rounded up to whole blocks of the model's "
        "grid, 128 pixels or more); the output is bit-identical to the untiled one",
    )
    p.add_argument(
        "--reference", default=None, help="an HR image of the output's size to report PSNR against"
    )
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run on an existing dask.distributed cluster (for .zarr inputs and outputs)",
    )
    p.add_argument(
        "--model",
        default=None,
        metavar="FILE",
        help="run a model file instead of the bundled one: .onnx (ONNX Runtime), .tflite "
        "(LiteRT), .pt2 (a torch.export program) or a .pth/.safetensors checkpoint (PyTorch), "
        "RGB or luminance; its scale, channels and sizes are read from the file",
    )
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="let --model load files that unpickle (.pt2 programs, .pth checkpoints), which "
        "can run code from the file: only for files you trust",
    )
    add_force(p)


def _model(args: argparse.Namespace):
    """The bundled ESPCN at ``--scale``, or the model file ``--model`` (its scale is
    read from the file; a ``--scale`` that says otherwise is refused)."""
    if args.model is None:
        from ..models import ESPCN

        if args.allow_pickle:
            raise UserError("--allow-pickle applies to --model files")
        return ESPCN.pretrained(args.scale or 3)
    if args.backend != "numpy":
        raise UserError("--model runs in its own runtime: --backend does not apply")
    from ..models.runtime import RuntimeModel

    model = RuntimeModel(input_file(args.model), allow_pickle=args.allow_pickle)
    if args.scale is not None and args.scale != model.scale:
        raise UserError(
            f"--scale {args.scale}: {args.model} is a x{model.scale} model (its scale is its own)"
        )
    return model


def _what(args: argparse.Namespace, model) -> str:
    if args.model is None:
        return f"ESPCN x{model.scale} on {args.backend}"
    return f"{args.model}: {model.describe()}"


def run(args: argparse.Namespace) -> int:
    from ..models.espcn import SAMPLE
    from ..models.large import is_zarr
    from ..models.upscale import upscale_file

    usable_backend(args.backend)
    sample = args.input == "sample"
    if not sample and (is_zarr(args.input) or is_zarr(args.output)):
        return _run_large(args)
    if args.scheduler:
        raise UserError("--scheduler runs .zarr inputs and outputs (images larger than memory)")
    source = None if sample else input_file(args.input)
    if sample and args.reference:
        raise UserError(
            "--reference cannot be used with IN=sample: the demo compares with the original"
        )
    reference = None if args.reference is None else input_file(args.reference)
    inputs = [source or SAMPLE, args.reference, args.model]
    out_path = output_file(args.output, inputs=inputs, force=args.force)
    model = _model(args)  # after the paths: opening a model file runs it
    progress = args.tile is not None and sys.stderr.isatty()
    done = upscale_file(
        source,
        out_path,
        model,
        reference=reference,
        backend=args.backend,
        tile=args.tile,
        progress=progress,
    )
    (h, w), (hr_h, hr_w) = done.lr_size, done.hr_size
    print(
        f"wrote {args.output}: {hr_w}x{hr_h} from {w}x{h} "
        f"({_what(args, model)}{f', tiles of {args.tile}' if args.tile else ''})"
    )
    if done.psnr is not None:
        name = "ESPCN" if args.model is None else "model"
        print(
            f"PSNR (luminance, {model.scale}-pixel border ignored) against the original: "
            f"{name} {done.psnr[0]:.2f} dB, bicubic {done.psnr[1]:.2f} dB"
        )
    return 0


def _run_large(args: argparse.Namespace) -> int:
    """Images larger than memory: read, upscale and write chunk by chunk with Dask."""
    import importlib.util

    from ..models.large import is_zarr, upscale_store

    for needed in ("dask", "zarr"):
        if importlib.util.find_spec(needed) is None:
            raise UserError(
                f"a .zarr input or output needs {needed} (pip install 'subpixel[dask]')"
            )
    if args.reference:
        raise UserError("--reference is for images in memory, not .zarr inputs or outputs")
    if is_zarr(args.input):
        if not os.path.isdir(args.input):
            raise UserError(f"{args.input}: no such Zarr store")
    else:
        input_file(args.input)
    out_path = output_file(
        args.output, inputs=[args.input, args.model], force=args.force, folder_ok=True
    )
    model = _model(args)
    done = upscale_store(
        args.input,
        out_path,
        model,
        tile=args.tile,
        backend=args.backend,
        scheduler=args.scheduler,
        force=args.force,
        progress=sys.stderr.isatty(),
    )
    (h, w), (hr_h, hr_w) = done.lr_size, done.hr_size
    print(
        f"wrote {args.output}: {hr_w}x{hr_h} from {w}x{h} "
        f"({_what(args, model)}, chunks of up to {done.chunk} LR pixels"
        f"{', on ' + args.scheduler if args.scheduler else ''})"
    )
    return 0
