"""``subpixel convert``: port a sub-pixel convolution's weights between files,
frameworks, kernel layouts and channel orders (or turn a transposed convolution
into one).  Everything is checked before anything is written; the output is
written atomically and never over an existing file without ``--force``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .._core import files as _files
from .._core.spec import Order
from ._common import UserError, add_force, input_file, output_file, positive_int

if TYPE_CHECKING:
    from ..layer import SubPixelConv

OUTPUTS = (".safetensors", ".npz", ".pt", ".pth", ".weights.h5")


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "src",
        metavar="SRC",
        help=".safetensors, .npz, .pt/.pth/.bin/.ckpt (with --allow-pickle), "
        ".weights.h5, .h5, .keras",
    )
    p.add_argument(
        "dst", metavar="DST", help=".safetensors or .npz (subpixel format), .pt/.pth, .weights.h5"
    )
    p.add_argument(
        "--factor",
        type=positive_int,
        nargs="+",
        default=None,
        help="shuffle factor(s) of a plain kernel",
    )
    p.add_argument(
        "--src-order",
        choices=("CRD", "DCR"),
        default=None,
        help="channel order of a plain kernel (CRD)",
    )
    p.add_argument(
        "--order",
        choices=("CRD", "DCR"),
        default=None,
        help="channel order of the output (the source's)",
    )
    p.add_argument(
        "--src-layout",
        choices=("torch", "keras", "tensorflow", "flax"),
        default=None,
        help="kernel layout of a plain kernel (keras for Keras files, else torch)",
    )
    p.add_argument(
        "--layer",
        default=None,
        metavar="NAME",
        help="the layer to read: NAME.weight/NAME.bias in state dicts; in Keras files the layer "
        "called NAME (a .keras file knows its layers' names; a .weights.h5 file only its groups, "
        "e.g. conv2d_1)",
    )
    p.add_argument("--weight-key", default=None, help="the array holding the kernel")
    p.add_argument("--bias-key", default=None, help="the array holding the bias")
    p.add_argument(
        "--no-bias", action="store_true", help="the layer has no bias (ignore 1-D arrays)"
    )
    p.add_argument(
        "--from-conv-transpose",
        type=positive_int,
        nargs="+",
        default=None,
        metavar="STRIDE",
        help="SRC is a transposed conv with this stride: convert it to a sub-pixel conv",
    )
    p.add_argument(
        "--padding",
        default=None,
        help="the transposed conv's padding (torch: int, keras: same/valid)",
    )
    p.add_argument("--output-padding", type=int, nargs="+", default=None)
    p.add_argument(
        "--allow-pickle", action="store_true", help="read PyTorch pickle checkpoints (weights only)"
    )
    p.add_argument(
        "--prefix",
        default="",
        help="key prefix of a .pt/.pth output, e.g. 'conv4.' to load into a model's conv4 "
        "(other outputs hold subpixel's one-layer format, whose keys are fixed: refused there)",
    )
    add_force(p)


def _one_or_tuple(values: list | None) -> Any:
    """argparse's list for ``nargs="+"``: one value stays a scalar (every dimension)."""
    if values is None:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def _check_destination(dst: str, prefix: str) -> None:
    if not dst.lower().endswith(OUTPUTS):
        raise UserError(f"{dst}: unknown output format (use {', '.join(OUTPUTS)})")
    if prefix and not dst.lower().endswith((".pt", ".pth")):
        raise UserError(
            f"--prefix {prefix!r}: applies to .pt/.pth outputs (PyTorch state-dict keys); {dst} "
            "holds subpixel's one-layer format, whose keys are fixed"
        )
    if dst.lower().endswith((".pt", ".pth")):
        _needs("torch", dst)
    if dst.lower().endswith(".weights.h5"):
        _needs("keras", dst)


def _needs(module: str, path: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise UserError(f"{path}: writing this format needs {module} (pip install {module})")


def _from_metadata(f: _files.TensorFile, args: argparse.Namespace):
    """The layer a subpixel file describes; flags may repeat but not contradict it."""
    from ..layer import CONFIG_KEY, SubPixelConv

    layer = SubPixelConv.from_file(f)
    clashes = []
    if args.factor is not None:
        r = _one_or_tuple(args.factor)
        if (r,) * layer.spatial_dims != layer.factor and tuple(args.factor) != layer.factor:
            clashes.append(f"--factor {' '.join(map(str, args.factor))} (the file: {layer.factor})")
    if args.src_order not in (None, layer.order):
        clashes.append(f"--src-order {args.src_order} (the file: {layer.order})")
    if args.src_layout not in (None, "torch"):
        clashes.append(f"--src-layout {args.src_layout} (the file holds PyTorch layout)")
    if args.from_conv_transpose is not None:
        clashes.append("--from-conv-transpose (the file already holds a sub-pixel conv)")
    for flag in ("padding", "output_padding"):
        if getattr(args, flag) is not None:
            clashes.append(f"--{flag.replace('_', '-')} (the file's layer has its own)")
    for flag in ("layer", "weight_key", "bias_key"):
        if getattr(args, flag):
            clashes.append(f"--{flag.replace('_', '-')} (the file holds one layer: {CONFIG_KEY})")
    if args.no_bias and layer.bias is not None:
        clashes.append("--no-bias (the file's layer has a bias)")
    if clashes:
        raise UserError(
            f"{f.path}: carries its own layer config; these flags contradict it: {'; '.join(clashes)}"
        )
    return layer


def _keys(f: _files.TensorFile, args: argparse.Namespace) -> tuple[str, str | None]:
    """The names of the kernel and the bias (None: no bias), from the flags or the file."""
    names = f.keys()
    if args.no_bias and args.bias_key:
        raise UserError("--no-bias and --bias-key contradict each other")
    if args.layer is not None:
        if args.weight_key or args.bias_key:
            raise UserError("--layer picks both arrays; drop --weight-key/--bias-key")
        candidates = [(f"{args.layer}.weight", f"{args.layer}.bias")]
        group = f.layer_group(args.layer)
        if group is not None:
            candidates.append((f"{group}/vars/0", f"{group}/vars/1"))
        for w, b in candidates:
            if w in names:
                return w, (None if args.no_bias or b not in names else b)
        known = sorted(
            {n.rsplit(".", 1)[0] for n in names if n.endswith(".weight")} | set(f.layer_names())
        )
        raise UserError(
            f"{f.path}: no layer {args.layer!r}; it has: {', '.join(known) or ', '.join(names)}"
        )

    def pick(key: str | None, ndim_ok, what: str) -> str:
        if key is not None:
            if key not in names:
                raise UserError(
                    f"{f.path}: no array named {key!r}; the file has: {', '.join(names)}"
                )
            return key
        found = [k for k in names if ndim_ok(len(f.shape(k)))]
        if len(found) != 1:
            raise UserError(
                f"{f.path}: cannot tell which array is the {what} ({', '.join(found) or 'none fits'}); "
                f"name it with --{what}-key or --layer"
            )
        return found[0]

    weight = pick(args.weight_key, lambda n: n >= 3, "weight")
    if args.no_bias:
        return weight, None
    if args.bias_key is None and not any(len(f.shape(k)) == 1 for k in names):
        return weight, None
    return weight, pick(args.bias_key, lambda n: n == 1, "bias")


def _from_arrays(f: _files.TensorFile, args: argparse.Namespace):
    from .. import weights
    from ..layer import SubPixelConv

    weight_key, bias_key = _keys(f, args)
    w = f[weight_key]
    b = None if bias_key is None else f[bias_key]
    keras_file = _files.kind_of(f.path) == "keras"
    layout = args.src_layout or ("keras" if keras_file else "torch")
    layout = {"tensorflow": "keras"}.get(layout, layout)
    order: Order = args.src_order or "CRD"
    if args.from_conv_transpose is not None:
        stride = _one_or_tuple(args.from_conv_transpose)
        output_padding = _one_or_tuple(args.output_padding)
        if layout == "keras":
            return SubPixelConv.from_conv_transpose(
                w,
                b,
                stride=stride,
                padding=args.padding or "valid",
                output_padding=output_padding,
                source="tensorflow",
                order=order,
            )
        try:
            padding = int(args.padding or 0)
        except ValueError:
            raise UserError(
                f"--padding must be an integer for a {layout} kernel, not {args.padding!r}"
            ) from None
        return SubPixelConv.from_conv_transpose(
            weights.convert_layout(w, src=layout, dst="torch", transposed=True),
            b,
            stride=stride,
            padding=padding,
            output_padding=output_padding,
            order=order,
        )
    if args.padding is not None or args.output_padding is not None:
        raise UserError(
            "--padding and --output-padding describe a transposed conv: add --from-conv-transpose"
        )
    if args.factor is None:
        raise UserError("--factor is needed for a plain sub-pixel conv kernel")
    return SubPixelConv.from_weights(
        weights.convert_layout(w, src=layout, dst="torch"),
        b,
        factor=_one_or_tuple(args.factor),
        order=order,
    )


def _write(layer: SubPixelConv, dst: str, args: argparse.Namespace) -> None:
    name = dst.lower()
    if name.endswith((".safetensors", ".npz")):
        layer.save(dst)
    elif name.endswith((".pt", ".pth")):
        from ..layers.torch import from_agnostic

        state = from_agnostic(layer).state_dict()
        _files.write_state_dict(dst, {f"{args.prefix}{k}": v for k, v in state.items()})
    else:  # .weights.h5, through a one-layer Keras model
        try:
            import keras

            from ..layers.keras import from_agnostic as to_keras
        except ImportError as exc:  # Keras present but its backend is not
            raise UserError(
                f"{dst}: writing .weights.h5 needs Keras with an installed backend "
                f"(KERAS_BACKEND): {exc}"
            ) from None

        k = to_keras(layer, "channels_last")
        model = keras.Sequential(
            [keras.Input((None,) * layer.spatial_dims + (layer.in_channels,)), k]
        )
        blob = _weights_h5(model)

        def write(tmp: str) -> None:
            if blob is None:
                model.save_weights(tmp)
                return
            with open(tmp, "wb") as f:
                f.write(blob)

        _files.atomic_write(dst, write)


def _weights_h5(model: Any) -> bytes | None:
    """The ``.weights.h5`` file of a Keras model, built in memory (Keras's own writer,
    on an ``io.BytesIO``), so that the disk is written by plain file I/O: HDF5 writing
    to a full disk leaves file handles that crash the interpreter when collected.
    ``None`` where this Keras lacks the writer (then Keras writes the file itself)."""
    import io

    try:
        from keras.src.saving import saving_lib

        buffer = io.BytesIO()
        store = saving_lib.H5IOStore(buffer, mode="w")
    except (ImportError, AttributeError, TypeError):
        return None
    try:
        saving_lib._save_state(
            model, weights_store=store, assets_store=None, inner_path="", visited_saveables=set()
        )
    finally:
        store.close()
    return buffer.getvalue()


def run(args: argparse.Namespace) -> int:
    from .. import weights
    from ..layer import CONFIG_KEY, SubPixelConv

    src = input_file(args.src)
    dst = output_file(args.dst, inputs=[src], force=args.force)
    _check_destination(str(dst), args.prefix)
    with _files.open_tensors(src, allow_pickle=args.allow_pickle) as f:
        try:
            layer = _from_metadata(f, args) if CONFIG_KEY in f.metadata else _from_arrays(f, args)
        except ValueError as exc:  # the arrays' problem: say which file holds them
            message = str(exc)
            raise UserError(
                message if message.startswith(str(src)) else f"{src}: {message}"
            ) from None
    if args.order is not None and args.order != layer.order:
        w = weights.reorder_channels(layer.weight, layer.factor, src=layer.order, dst=args.order)
        b = (
            None
            if layer.bias is None
            else weights.reorder_channels(layer.bias, layer.factor, src=layer.order, dst=args.order)
        )
        layer = SubPixelConv.from_spec(layer.spec.replace(order=args.order), w, b)
    _write(layer, str(dst), args)
    crop = f", crop {layer.crop}" if layer.spec.has_crop else ""
    print(
        f"wrote {dst}: sub-pixel conv {layer.in_channels} -> {layer.out_channels} channels, "
        f"kernel {'x'.join(map(str, layer.kernel_size))}, factor {'x'.join(map(str, layer.factor))}, "
        f"order {layer.order}{'' if layer.bias is not None else ', no bias'}{crop}"
    )
    return 0
