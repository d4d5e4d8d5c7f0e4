"""``subpixel upscale``: super-resolve an image with the bundled ESPCN."""

from __future__ import annotations

import argparse
import os
import sys

from ..backends import LIBRARY_BACKENDS
from ._common import UserError, add_force, input_file, output_file, positive_int, usable_backend


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("upscale", help="super-resolve an image with the bundled ESPCN")
    p.add_argument(
        "input",
        metavar="IN",
        help="an image file (PNG, TIFF, JPEG, WebP, ...: 8-bit, 16-bit grey or float; alpha "
        "is kept), or 'sample' for the bundled demo image",
    )
    p.add_argument(
        "output", metavar="OUT", help="the upscaled image; its extension sets the format"
    )
    p.add_argument("--scale", type=int, choices=(2, 3, 4), default=3)
    p.add_argument("--backend", default="numpy", choices=LIBRARY_BACKENDS)
    p.add_argument(
        "--tile",
        type=positive_int,
        default=None,
        metavar="N",
        help="send N x N LR pixels to the backend at a time (rounded up to 128-pixel blocks); "
        "the output is bit-identical to the untiled one",
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
        help="run an exported model.onnx or model.tflite (`subpixel export`) instead of the "
        "bundled one; its scale is read from the file",
    )
    add_force(p)
    p.set_defaults(run=run)


def _model(args: argparse.Namespace):
    """The bundled ESPCN at ``--scale``, or the exported file ``--model`` (its scale is
    read from the file)."""
    if args.model is None:
        from ..models import ESPCN

        return ESPCN.pretrained(args.scale)
    if args.backend != "numpy":
        raise UserError("--model runs in its own runtime: --backend does not apply")
    from ..models.runtime import RuntimeModel

    return RuntimeModel(input_file(args.model))


def run(args: argparse.Namespace) -> int:
    from ..models.espcn import SAMPLE
    from ..models.large import is_zarr
    from ..models.upscale import upscale_file

    usable_backend(args.backend)
    model = _model(args)
    sample = args.input == "sample"
    if not sample and (is_zarr(args.input) or is_zarr(args.output)):
        return _run_large(args, model)
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
        f"(ESPCN x{model.scale} on {args.backend if args.model is None else args.model}"
        f"{f', tiles of {args.tile}' if args.tile else ''})"
    )
    if done.psnr is not None:
        print(
            f"PSNR (luminance, {model.scale}-pixel border ignored) against the original: "
            f"ESPCN {done.psnr[0]:.2f} dB, bicubic {done.psnr[1]:.2f} dB"
        )
    return 0


def _run_large(args: argparse.Namespace, model) -> int:
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
        f"(ESPCN x{model.scale}, chunks of up to {done.chunk} LR pixels"
        f"{', on ' + args.scheduler if args.scheduler else ''})"
    )
    return 0
