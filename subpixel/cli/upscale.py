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


def _to_255(a):
    """An 8-bit, 16-bit or [0, 1] float image on the 0..255 scale (float64)."""
    import numpy as np

    scale = {"uint8": 1.0, "uint16": 255.0 / 65535.0}.get(a.dtype.name, 255.0)
    return np.asarray(a, np.float64) * scale


def _luma(a255):
    """Luminance (BT.601, 0..255) of grey, grey + alpha, RGB or RGBA pixels."""
    from .. import image

    if a255.ndim == 2:
        return a255
    if a255.shape[2] in (1, 2):
        return a255[..., 0]
    return image.rgb_to_ycbcr(a255[..., :3])[..., 0]


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from .. import image
    from ..models import ESPCN, upscale_image
    from ..models.espcn import SAMPLE

    usable_backend(args.backend)
    runtime_model = None
    if args.model is not None:
        from ..deploy import RuntimeModel

        if args.backend != "numpy":
            raise UserError("--model runs in its own runtime: --backend does not apply")
        runtime_model = RuntimeModel(input_file(args.model))
        args.scale = runtime_model.scale
    sample = args.input == "sample"
    if not sample and (_is_zarr(args.input) or _is_zarr(args.output)):
        return _run_lazy(args, runtime_model)
    if args.scheduler:
        raise UserError("--scheduler runs .zarr inputs and outputs (images larger than memory)")
    path = SAMPLE if sample else input_file(args.input)
    if sample and args.reference:
        raise UserError(
            "--reference cannot be used with IN=sample: the demo compares with the original"
        )
    out_path = output_file(args.output, inputs=[path, args.reference, args.model], force=args.force)
    original = image.read_image(path)
    if original.dtype.kind == "f" and not np.isfinite(original).all():
        raise UserError(f"{args.input}: holds NaN or infinite samples, which have no brightness")
    r = args.scale
    if sample:  # the demo: make an LR version of the bundled image, then compare with it
        h, w = (original.shape[0] // r) * r, (original.shape[1] // r) * r
        original = original[:h, :w]
        lr = np.clip(np.round(image.resize_bicubic(original, h // r, w // r)), 0, 255)
        lr = lr.astype(np.uint8)
        reference = original
    else:
        lr = original
        reference = None
        if args.reference:
            reference = image.read_image(input_file(args.reference))
            expected = (lr.shape[0] * r, lr.shape[1] * r)
            if reference.shape[:2] != expected:
                raise UserError(
                    f"{args.reference}: is {reference.shape[1]}x{reference.shape[0]}, the output "
                    f"will be {expected[1]}x{expected[0]}: they must match"
                )
    image.check_writable(out_path, lr)  # before the work: the format must take this image
    model = runtime_model or ESPCN.pretrained(r)
    progress = args.tile is not None and sys.stderr.isatty()
    out = upscale_image(lr, model, backend=args.backend, tile=args.tile, progress=progress)
    image.write_image(out_path, out)
    print(
        f"wrote {args.output}: {out.shape[1]}x{out.shape[0]} from {lr.shape[1]}x{lr.shape[0]} "
        f"(ESPCN x{r} on {args.backend if runtime_model is None else args.model}"
        f"{f', tiles of {args.tile}' if args.tile else ''})"
    )
    if reference is not None:  # bicubic: the same resize, rounded to 8 bits as an image would be
        bicubic = np.clip(np.round(image.resize_bicubic(_to_255(lr), *out.shape[:2])), 0, 255)
        y_ref = _luma(_to_255(reference))
        print(
            f"PSNR (luminance, {r}-pixel border ignored) against the original: ESPCN "
            f"{image.psnr(_luma(_to_255(out)), y_ref, shave=r):.2f} dB, bicubic "
            f"{image.psnr(_luma(bicubic), y_ref, shave=r):.2f} dB"
        )
    return 0


def _is_zarr(path: str) -> bool:
    return str(path).rstrip("/").lower().endswith(".zarr")


def _run_lazy(args: argparse.Namespace, runtime_model) -> int:
    """Images larger than memory: read, upscale and write chunk by chunk with Dask."""
    import importlib.util

    for needed in ("dask", "zarr"):
        if importlib.util.find_spec(needed) is None:
            raise UserError(
                f"a .zarr input or output needs {needed} (pip install 'subpixel[dask]')"
            )
    import dask.array as da

    from .. import image
    from ..models import ESPCN
    from ..models.espcn import BLOCK
    from ..models.large import DEFAULT_CHUNK, open_lazy, upscale_lazy, write_zarr

    if args.reference:
        raise UserError("--reference is for images in memory, not .zarr inputs or outputs")
    if _is_zarr(args.input):
        if not os.path.isdir(args.input):
            raise UserError(f"{args.input}: no such Zarr store")
        lr = open_lazy(args.input)
    else:
        lr = da.from_array(image.read_image(input_file(args.input)))
    out_path = output_file(
        args.output, inputs=[args.input, args.model], force=args.force, folder_ok=True
    )
    model = runtime_model or ESPCN.pretrained(args.scale)
    hr = upscale_lazy(lr, model, chunk=args.tile, backend=args.backend)
    chunk = -(-(args.tile or DEFAULT_CHUNK) // BLOCK) * BLOCK
    client = None
    if args.scheduler:
        from distributed import Client

        client = Client(args.scheduler)
    progress = sys.stderr.isatty()
    try:
        if _is_zarr(args.output):
            write_zarr(hr, out_path, force=args.force, progress=progress, client=client)
        else:
            result = client.compute(hr).result() if client is not None else hr.compute()
            image.write_image(out_path, result)
    finally:
        if client is not None:
            client.close()
    print(
        f"wrote {args.output}: {hr.shape[1]}x{hr.shape[0]} from {lr.shape[1]}x{lr.shape[0]} "
        f"(ESPCN x{model.scale}, chunks of up to {chunk} LR pixels"
        f"{', on ' + args.scheduler if args.scheduler else ''})"
    )
    return 0
