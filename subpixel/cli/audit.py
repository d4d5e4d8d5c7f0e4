"""``subpixel audit``: every depth-to-space and space-to-depth of an ONNX or LiteRT
file, with the channel order and layout it really implements, hazards, and with
``--against`` where and why the model departs from its source."""

from __future__ import annotations

import argparse

from ._common import UserError, input_file


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(t) for t in text.replace("x", ",").split(",") if t.strip())
    except ValueError:
        dims = ()
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"must be sizes like 1,3,64,64, not {text!r}")
    return dims


def arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "List every depth-to-space/space-to-depth site of MODEL (found by running "
        "index arrays through its data-movement ops) with its factor, channel order (CRD/DCR) "
        "and layout, and hazards. Exit status: 0 every site classified (and agreeing with "
        "--against), 1 a site not classified or a difference found, 2 an error."
    )
    p.add_argument("model", metavar="MODEL", help="an .onnx or .tflite/.litert file")
    p.add_argument(
        "--against",
        metavar="SOURCE",
        help="another .onnx/.tflite file (also in the other layout) to run on the same probe "
        "input and compare site by site",
    )
    p.add_argument(
        "--shape",
        type=_shape,
        help="the probe input's shape for a model with dynamic sizes (default: batch 2, "
        "then 48, 72, ... for the open dimensions)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run(args: argparse.Namespace) -> int:
    from ..auditing import audit

    input_file(args.model)
    if args.against is not None:
        input_file(args.against)
    try:
        report = audit(args.model, against=args.against, shapes=args.shape)
    except ImportError as e:
        raise UserError(f"{args.model}: {e}") from None
    print(report.to_json() if args.json else report)
    return report.exit_status
