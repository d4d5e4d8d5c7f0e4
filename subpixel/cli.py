"""The ``subpixel`` command (also ``python -m subpixel``).

subpixel info     installed backends, their versions and devices
subpixel check    every installed backend against the NumPy reference (default)
subpixel upscale  super-resolve an image with the bundled ESPCN
subpixel bench    shuffle throughput against a plain copy and the native ops
subpixel convert  port sub-pixel conv weights between files, frameworks and orders
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from ._dispatch import BACKEND_NAMES, available_backends, backend_by_name


def _framework_version(name: str) -> str:
    module = importlib.import_module(name)
    return getattr(module, "__version__", "?")


def _devices(name: str) -> str:
    try:
        if name == "torch":
            import torch

            gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
            return "cpu" + (f", cuda x{gpus}" if gpus else "")
        if name == "jax":
            import jax

            return ", ".join(sorted({d.platform for d in jax.devices()}))
        if name == "tensorflow":
            import tensorflow as tf

            return ", ".join(
                sorted({d.device_type.lower() for d in tf.config.list_logical_devices()})
            )
        if name == "cupy":
            import cupy

            return f"cuda x{cupy.cuda.runtime.getDeviceCount()}"
    except Exception as exc:
        return f"unusable: {type(exc).__name__}: {exc}".splitlines()[0]
    return "cpu"


def cmd_info(args: argparse.Namespace) -> int:
    print(f"subpixel {__version__}, Python {sys.version.split()[0]}")
    installed = available_backends()
    for name in BACKEND_NAMES:
        if name not in installed:
            print(f"  {name:<11} not installed")
            continue
        try:
            version = _framework_version(name)
        except Exception as exc:
            print(f"  {name:<11} installed but fails to import: {exc}")
            continue
        print(f"  {name:<11} {version:<12} devices: {_devices(name)}")
    return 0


# Cases for `check`: (op, numpy shape, factor, spatial_dims, layout)
_CHECK_CASES = [
    ("shuffle", (2, 12, 3, 4), (2, 3), 2, "channels_first"),
    ("shuffle", (2, 3, 4, 12), (2, 3), 2, "channels_last"),
    ("unshuffle", (2, 2, 6, 9), 3, 2, "channels_first"),
    ("unshuffle", (3, 8, 2), 2, 1, "channels_last"),
    ("shuffle", (1, 16, 2, 1, 3), 2, 3, "channels_first"),
]


def _known_answer() -> list[str]:
    """The NumPy reference on the worked example of docs/conventions.md."""
    import numpy as np

    from .ops import shuffle

    x = np.arange(8).reshape(1, 8, 1, 1)
    problems = []
    if shuffle(x, 2)[0].tolist() != [[[0, 1], [2, 3]], [[4, 5], [6, 7]]]:
        problems.append("numpy CRD differs from the worked example")
    if shuffle(x, 2, order="DCR")[0].tolist() != [[[0, 2], [4, 6]], [[1, 3], [5, 7]]]:
        problems.append("numpy DCR differs from the worked example")
    return problems


def cmd_check(args: argparse.Namespace) -> int:
    import numpy as np

    from . import ops

    names = args.backend or available_backends()
    problems = _known_answer()
    rows = []
    rng = np.random.default_rng(0)
    for name in names:
        try:
            backend = backend_by_name(name)
        except Exception as exc:
            rows.append((name, "-", f"unusable: {type(exc).__name__}: {exc}".splitlines()[0]))
            continue
        try:
            backend.to_numpy(backend.from_numpy(np.zeros(1, np.float32)))
        except Exception as exc:
            rows.append(
                (
                    name,
                    "-",
                    f"skipped, cannot run here: {type(exc).__name__}: {exc}".splitlines()[0],
                )
            )
            continue
        passed = total = 0
        failures: list[str] = []
        for op, shape, factor, d, layout in _CHECK_CASES:
            for order in ("CRD", "DCR"):
                a = rng.permutation(int(np.prod(shape))).astype(np.float32).reshape(shape)
                kw = dict(spatial_dims=d, layout=layout, order=order)
                expected = getattr(ops, op)(a, factor, **kw)
                total += 1
                try:
                    got = backend.to_numpy(getattr(ops, op)(backend.from_numpy(a), factor, **kw))
                    if got.shape == expected.shape and np.array_equal(got, expected):
                        passed += 1
                    else:
                        failures.append(f"{op} {layout} {order}")
                except Exception as exc:
                    failures.append(f"{op} {layout} {order}: {type(exc).__name__}: {exc}")
        status = "ok" if passed == total else "MISMATCH: " + "; ".join(failures[:3])
        rows.append((name, f"{passed}/{total}", status))
    width = max(len(r[0]) for r in rows) if rows else 7
    print(f"{'backend':<{width}}  cases   result")
    for name, score, status in rows:
        print(f"{name:<{width}}  {score:<7} {status}")
    for p in problems:
        print(f"error: {p}")
    bad = problems or [r for r in rows if r[2] != "ok" and not r[2].startswith("skipped")]
    print("all backends agree with the NumPy reference" if not bad else "check FAILED")
    return 1 if bad else 0


class UserError(Exception):
    """A problem with the command's input: reported in one line, exit status 2."""


# ---------------------------------------------------------------------------
# upscale
# ---------------------------------------------------------------------------


def cmd_upscale(args: argparse.Namespace) -> int:
    import numpy as np

    from . import image
    from .models import ESPCN, upscale_image
    from .models.espcn import _DIR

    if args.backend not in available_backends():
        raise UserError(
            f"backend {args.backend!r} is not installed here (installed: {', '.join(available_backends())})"
        )
    if args.tile is not None and args.tile < 1:
        raise UserError(f"--tile must be a positive number of pixels, not {args.tile}")
    sample = args.input == "sample"
    path = _DIR / "sample.png" if sample else Path(args.input)
    if not path.is_file():
        raise UserError(f"{args.input}: no such file")
    try:
        original = image.read_png(path)
    except (ValueError, OSError) as exc:
        raise UserError(str(exc)) from None
    r = args.scale
    model = ESPCN.pretrained(r)
    if sample:  # the demo: make an LR version of the bundled image, then compare with it
        h, w = (original.shape[0] // r) * r, (original.shape[1] // r) * r
        original = original[:h, :w]
        lr = np.clip(np.round(image.resize_bicubic(original, h // r, w // r)), 0, 255).astype(
            np.uint8
        )
        reference = original
    else:
        lr = original
        reference = image.read_png(args.reference) if args.reference else None
    progress = args.tile is not None and sys.stderr.isatty()
    out = upscale_image(lr, model, backend=args.backend, tile=args.tile, progress=progress)
    image.write_png(args.output, out)
    print(
        f"wrote {args.output}: {out.shape[1]}x{out.shape[0]} from {lr.shape[1]}x{lr.shape[0]} "
        f"(ESPCN x{r} on {args.backend}{f', tiles of {args.tile}' if args.tile else ''})"
    )
    if reference is not None:
        if reference.shape[:2] != out.shape[:2]:
            raise UserError(
                f"--reference is {reference.shape[1]}x{reference.shape[0]}, the output "
                f"{out.shape[1]}x{out.shape[0]}: they must match"
            )

        def luma(a):
            a = a[..., :3] if a.ndim == 3 else np.repeat(a[..., None], 3, axis=-1)
            return image.rgb_to_ycbcr(a)[..., 0]

        bicubic = np.clip(
            np.round(image.resize_bicubic(lr[..., :3] if lr.ndim == 3 else lr, *out.shape[:2])),
            0,
            255,
        )
        y_ref = luma(reference)
        print(
            f"PSNR (luminance, {r}-pixel border ignored) against the original: ESPCN "
            f"{image.psnr(luma(out), y_ref, shave=r):.2f} dB, bicubic {image.psnr(luma(bicubic), y_ref, shave=r):.2f} dB"
        )
    return 0


# ---------------------------------------------------------------------------
# bench
# ---------------------------------------------------------------------------


def _bench_ops(name: str, x):
    """(sync, copy, native or None) for a backend's array ``x`` (channels_first)."""
    import numpy as np

    if name == "numpy":
        buf = np.empty_like(x)
        return (lambda: None), (lambda: np.copyto(buf, x)), None
    if name == "torch":
        import torch
        import torch.nn.functional as F

        buf = torch.empty_like(x)
        sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
        return sync, (lambda: buf.copy_(x)), (lambda: F.pixel_shuffle(x, 2))
    if name == "tensorflow":
        import tensorflow as tf

        nhwc = tf.transpose(x, (0, 2, 3, 1))
        return (lambda: None), (lambda: (x + 0).numpy), (lambda: tf.nn.depth_to_space(nhwc, 2))
    if name == "jax":
        import jax
        import jax.numpy as jnp

        copy = jax.jit(jnp.copy)
        return (lambda: None), (lambda: copy(x).block_until_ready()), None
    import cupy

    buf = cupy.empty_like(x)
    return cupy.cuda.Device().synchronize, (lambda: cupy.copyto(buf, x)), None


def cmd_bench(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from . import ops

    def best(fn, sync, repeat):
        fn()
        sync()
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            out = fn()
            if hasattr(out, "block_until_ready"):
                out.block_until_ready()
            sync()
            times.append(time.perf_counter() - t0)
        return min(times)

    shape = tuple(args.shape)
    if len(shape) != 4 or shape[1] % 4:
        raise UserError(
            f"--shape must be N C H W with C divisible by 4, not {' '.join(map(str, shape))}"
        )
    a = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    names = args.backend or available_backends()
    rows = []
    for name in names:
        try:
            backend = backend_by_name(name)
            x = backend.from_numpy(a)
            sync, copy, native = _bench_ops(name, x)
        except Exception as exc:
            print(f"{name}: skipped, cannot run here ({type(exc).__name__})")
            continue
        t_copy = best(copy, sync, args.repeat)
        t_native = best(native, sync, args.repeat) if native else None
        for order in ("CRD", "DCR"):
            t = best(lambda x=x, order=order: ops.shuffle(x, 2, order=order), sync, args.repeat)
            rows.append((name, order, t, t / t_copy, None if t_native is None else t / t_native))
    nbytes = a.nbytes
    print(
        f"shuffle of {shape} float32 ({nbytes / 2**20:.0f} MiB), factor 2, channels_first, "
        f"best of {args.repeat}"
    )
    print(f"{'backend':<11} {'order':<5} {'ms':>8} {'GB/s':>7} {'/ copy':>7} {'/ native':>9}")
    for name, order, t, r_copy, r_native in rows:
        native = "-" if r_native is None else f"{r_native:.2f}"
        print(
            f"{name:<11} {order:<5} {t * 1e3:8.2f} {2 * nbytes / t / 1e9:7.1f} {r_copy:7.2f} {native:>9}"
        )
    if args.plot:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise UserError("--plot needs matplotlib (pip install 'subpixel[plot]')") from None
        fig, ax = plt.subplots(figsize=(7, 3.5))
        labels = [f"{n}\n{o}" for n, o, *_ in rows]
        ax.bar(labels, [r for _, _, _, r, _ in rows], color="tab:blue")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_ylabel("time / plain copy")
        ax.set_title(f"subpixel.shuffle {shape}, factor 2")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"wrote {args.plot}")
    return 0


# ---------------------------------------------------------------------------
# convert
# ---------------------------------------------------------------------------

_PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")


def _read_arrays(path: Path, allow_pickle: bool) -> tuple[dict, dict]:
    """Arrays (NumPy) and metadata of a weights file, by its suffix."""
    import numpy as np

    from . import _safetensors

    name = path.name
    if name.endswith(".safetensors"):
        return _safetensors.load(path)
    if name.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except ValueError as exc:
            raise UserError(f"{path}: refused: it holds pickled objects ({exc})") from None
        meta = {"subpixel": str(arrays.pop("config"))} if "config" in arrays else {}
        return arrays, meta
    if name.endswith(_PICKLE_SUFFIXES):
        if not allow_pickle:
            raise UserError(
                f"{path}: PyTorch checkpoints are pickle files, which can run code; "
                "pass --allow-pickle to read it (with torch.load(weights_only=True))"
            )
        import torch

        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise UserError(f"{path}: expected a state dict, found {type(state).__name__}")
        return {k: v.detach().numpy() for k, v in state.items() if hasattr(v, "detach")}, {}
    if name.endswith((".h5", ".keras")):
        try:
            import h5py
        except ImportError:
            raise UserError("reading Keras files needs h5py (pip install h5py)") from None
        import io
        import zipfile

        if name.endswith(".keras"):
            with zipfile.ZipFile(path) as z:
                raw = io.BytesIO(z.read("model.weights.h5"))
        else:
            raw = path
        arrays = {}
        with h5py.File(raw, "r") as f:
            f.visititems(
                lambda k, v: (
                    arrays.__setitem__(k, np.asarray(v)) if isinstance(v, h5py.Dataset) else None
                )
            )
        return arrays, {}
    raise UserError(
        f"{path}: unknown weights format (use .safetensors, .npz, .pt/.pth, .weights.h5 or .keras)"
    )


def _pick(arrays: dict, key: str | None, ndim_ok, what: str):
    if key is not None:
        if key not in arrays:
            raise UserError(f"no array named {key!r}; the file has: {', '.join(sorted(arrays))}")
        return arrays[key]
    found = [k for k, v in arrays.items() if ndim_ok(v.ndim)]
    if len(found) != 1:
        raise UserError(
            f"cannot tell which array is the {what} ({', '.join(found) or 'none fits'}); "
            f"name it with --{what}-key"
        )
    return arrays[found[0]]


def _one_or_tuple(values):
    """argparse's list for ``nargs="+"``: one value stays a scalar (every dimension)."""
    if values is None:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def cmd_convert(args: argparse.Namespace) -> int:
    import json

    from . import weights
    from .layer import SubPixelConv

    src, dst = Path(args.src), Path(args.dst)
    if not src.is_file():
        raise UserError(f"{src}: no such file")
    arrays, meta = _read_arrays(src, args.allow_pickle)
    try:
        if "subpixel" in meta:
            layer = SubPixelConv.from_weights(
                arrays["weight"], arrays.get("bias"), **json.loads(meta["subpixel"])
            )
        else:
            w = _pick(arrays, args.weight_key, lambda n: n >= 3, "weight")
            b = (
                _pick(arrays, args.bias_key, lambda n: n == 1, "bias")
                if (args.bias_key or any(v.ndim == 1 for v in arrays.values()))
                else None
            )
            transposed = args.from_conv_transpose is not None
            stride = _one_or_tuple(args.from_conv_transpose)
            output_padding = _one_or_tuple(args.output_padding)
            layout = {"tensorflow": "keras"}.get(args.src_layout, args.src_layout)
            if transposed:
                if layout in ("keras", "tensorflow"):
                    w_tf = w
                    layer = SubPixelConv.from_conv_transpose(
                        w_tf,
                        b,
                        stride=stride,
                        padding=args.padding,
                        output_padding=output_padding,
                        source="tensorflow",
                        order=args.order,
                    )
                else:
                    w_t = weights.convert_layout(w, src=layout, dst="torch", transposed=True)
                    layer = SubPixelConv.from_conv_transpose(
                        w_t,
                        b,
                        stride=stride,
                        padding=int(args.padding),
                        output_padding=output_padding,
                        order=args.order,
                    )
            else:
                if args.factor is None:
                    raise UserError("--factor is needed for a plain sub-pixel conv kernel")
                w_t = weights.convert_layout(w, src=layout, dst="torch")
                layer = SubPixelConv.from_weights(
                    w_t, b, factor=_one_or_tuple(args.factor), order=args.src_order
                )
        if args.order != layer.order:
            w_new = weights.reorder_channels(
                layer.weight, layer.factor, src=layer.order, dst=args.order
            )
            b_new = (
                None
                if layer.bias is None
                else weights.reorder_channels(
                    layer.bias, layer.factor, src=layer.order, dst=args.order
                )
            )
            config = layer.config()
            config["order"] = args.order
            layer = SubPixelConv.from_weights(w_new, b_new, **config)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    name = dst.name
    if name.endswith((".safetensors", ".npz")):
        layer.save(dst)
    elif name.endswith((".pt", ".pth")):
        import torch

        torch.save(layer.to_torch().state_dict(), dst)
    elif name.endswith(".weights.h5"):
        import keras

        k = layer.to_keras("channels_last")
        model = keras.Sequential(
            [keras.Input((None,) * layer.spatial_dims + (layer.in_channels,)), k]
        )
        model.save_weights(dst)
    else:
        raise UserError(
            f"{dst}: unknown output format (use .safetensors, .npz, .pt or .weights.h5)"
        )
    print(
        f"wrote {dst}: sub-pixel conv {layer.in_channels} -> {layer.out_channels} channels, "
        f"kernel {'x'.join(map(str, layer.kernel_size))}, factor {'x'.join(map(str, layer.factor))}, "
        f"order {layer.order}{', crop ' + str(layer.crop) if any(a or b for a, b in layer.crop) else ''}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="subpixel",
        description="Pixel shuffle / sub-pixel convolution across NumPy, CuPy, PyTorch, TensorFlow and JAX.",
    )
    parser.add_argument("--version", action="version", version=f"subpixel {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("info", help="installed backends, versions and devices")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser(
        "check", help="compare every installed backend with the NumPy reference (default)"
    )
    p.add_argument(
        "--backend",
        action="append",
        choices=BACKEND_NAMES,
        help="check only this backend (repeatable)",
    )
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("upscale", help="super-resolve an image with the bundled ESPCN")
    p.add_argument(
        "input", metavar="IN", help="a PNG image, or 'sample' for the bundled demo image"
    )
    p.add_argument("output", metavar="OUT", help="where to write the upscaled PNG")
    p.add_argument("--scale", type=int, choices=(2, 3, 4), default=3)
    p.add_argument("--backend", default="numpy", choices=BACKEND_NAMES)
    p.add_argument(
        "--tile",
        type=int,
        default=None,
        metavar="N",
        help="send N x N LR pixels to the backend at a time (rounded up to 128-pixel blocks); "
        "the output is bit-identical to the untiled one",
    )
    p.add_argument("--reference", default=None, help="an HR image to report PSNR against")
    p.set_defaults(func=cmd_upscale)

    p = sub.add_parser("bench", help="shuffle throughput against a plain copy and the native ops")
    p.add_argument(
        "--backend",
        action="append",
        choices=BACKEND_NAMES,
        help="repeatable; default: all installed",
    )
    p.add_argument(
        "--shape", type=int, nargs=4, default=(4, 256, 128, 128), metavar=("N", "C", "H", "W")
    )
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument(
        "--plot",
        default=None,
        metavar="FILE.png",
        help="bar chart of the ratios (needs matplotlib)",
    )
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "convert", help="port sub-pixel conv weights between frameworks and channel orders"
    )
    p.add_argument(
        "src",
        metavar="SRC",
        help=".safetensors, .npz, .pt/.pth (with --allow-pickle), .weights.h5, .keras",
    )
    p.add_argument(
        "dst", metavar="DST", help=".safetensors or .npz (subpixel format), .pt, .weights.h5"
    )
    p.add_argument(
        "--factor", type=int, nargs="+", default=None, help="shuffle factor(s) of a plain kernel"
    )
    p.add_argument("--src-order", choices=("CRD", "DCR"), default="CRD")
    p.add_argument(
        "--order", choices=("CRD", "DCR"), default="CRD", help="channel order of the output"
    )
    p.add_argument(
        "--src-layout", choices=("torch", "keras", "tensorflow", "flax"), default="torch"
    )
    p.add_argument("--weight-key", default=None)
    p.add_argument("--bias-key", default=None)
    p.add_argument(
        "--from-conv-transpose",
        type=int,
        nargs="+",
        default=None,
        metavar="STRIDE",
        help="SRC is a transposed conv with this stride: convert it to a sub-pixel conv",
    )
    p.add_argument(
        "--padding", default=0, help="the transposed conv's padding (torch int, or same/valid)"
    )
    p.add_argument("--output-padding", type=int, nargs="+", default=None)
    p.add_argument(
        "--allow-pickle", action="store_true", help="read PyTorch pickle checkpoints (weights only)"
    )
    p.set_defaults(func=cmd_convert)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["check", *(argv or [])])
    try:
        return args.func(args)
    except UserError as exc:
        print(f"subpixel: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # unwritable output, unreadable input
        print(f"subpixel: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
