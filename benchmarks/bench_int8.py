"""The int8 table of docs/deploy.md: Y-PSNR of the bundled ESPCN in float, exported
by ``subpixel export --int8`` (float input and output) and ``--int8-io uint8``, and
of plain bicubic, on photos that neither trained the models nor calibrate the int8
export (scikit-image's, not the training ones of examples/train_espcn.py), per scale.

    pip install scikit-image==0.26.0       # the images; not a dependency of subpixel
    python benchmarks/bench_int8.py [--scales 2 3 4] [--ablation]

Each HR image (cropped to a multiple of the scale) is made LR by subpixel's bicubic
and rounded to 8 bits, as ``subpixel upscale`` demos do; the network sees the LR
luminance (BT.601 Y); every output luminance is rounded to 8 bits and compared with
the HR luminance, a ``scale``-pixel border ignored.  The int8 files run whole in the
LiteRT interpreter (builtin kernels).  ``--ablation`` adds the causes of the old
loss one by one (docs/deploy.md, "Why int8 lost").
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from subpixel import deploy, image
from subpixel.models import ESPCN
from subpixel.models import calibration as cal
from subpixel.models.export import export_espcn, sample_luma
from subpixel.models.keras import espcn_int8
from subpixel.models.upscale import low_resolution

from _timing import machine_line, table

# photos scikit-image ships that examples/train_espcn.py does not train on (chelsea,
# coffee, rocket are its held-out images; the bundled sample is a crop of chelsea,
# which no longer calibrates anything), and two very smooth ones, a limit case
PHOTOS = ("chelsea", "coffee", "rocket", "motorcycle")
SMOOTH = ("moon", "clock")


def _tflite(model, **kw) -> bytes:
    """A Keras model as LiteRT bytes (written to a temporary file and read back)."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.tflite")
        deploy.keras_to_tflite(model, path, **kw)
        return Path(path).read_bytes()


def hr_image(name: str) -> np.ndarray:
    import skimage.data

    img = (
        skimage.data.stereo_motorcycle()[0]
        if name == "motorcycle"
        else getattr(skimage.data, name)()
    )
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    return img[..., :3]


def luma_pair(name: str, scale: int) -> tuple[np.ndarray, np.ndarray]:
    hr, lr = low_resolution(hr_image(name), scale)
    y = lambda a: image.rgb_to_ycbcr(np.asarray(a, np.float64))[..., 0] / 255.0  # noqa: E731
    return y(hr), y(lr).astype(np.float32)


def psnr(out: np.ndarray, hr: np.ndarray, scale: int) -> float:
    q = np.clip(np.round(np.asarray(out, np.float64) * 255), 0, 255)
    return image.psnr(q, hr * 255, shave=scale)


def run(blob: bytes, lr: np.ndarray) -> np.ndarray:
    return np.asarray(deploy.run_litert(blob, lr[None, :, :, None]))[0, :, :, 0]


def exported(scale: int, **kw: object) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.tflite")
        export_espcn(path, scale, **kw)  # type: ignore[arg-type]
        return Path(path).read_bytes()


def ablation(model: ESPCN) -> dict[str, bytes]:
    """The old export and the fixes added one at a time."""
    scale = model.scale
    rng = np.random.default_rng(0)
    _, lr_s = sample_luma(scale)
    h, w = lr_s.shape
    old = [
        lr_s[a : a + 32, b : b + 32][None, :, :, None]
        for a, b in zip(rng.integers(0, h - 32, 32), rng.integers(0, w - 32, 32))
    ]
    patches = cal.synthetic()
    synthetic = [p[None, :, :, None] for p in patches]
    one = cal.calibrate(model, patches, groups=1)
    four = cal.calibrate(model, patches)

    def grouped(c: cal.Calibration) -> bytes:
        k = espcn_int8(model.params, scale, model.mean, c.conv1, c.conv2)
        return _tflite(k, mode="int8", representative=synthetic[:8])

    plain = model.to_keras()
    return {
        "old: the sample's patches, LiteRT's min/max": _tflite(
            plain, mode="int8", representative=old
        ),
        "+ synthetic 0..1 patches": _tflite(plain, mode="int8", representative=synthetic),
        "+ 8-bit grid in/out, mean folded, ranges by error (1 group)": grouped(one),
        "+ 4 channel groups per layer (shipped)": grouped(four),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--ablation", action="store_true")
    args = parser.parse_args()
    import ai_edge_litert
    import skimage
    import tensorflow as tf

    print(
        f"{machine_line()}; TensorFlow {tf.__version__}, ai-edge-litert "
        f"{getattr(ai_edge_litert, '__version__', '?')}, scikit-image {skimage.__version__}\n"
    )
    rows, ablations = [], []
    for scale in args.scales:
        model = ESPCN.pretrained(scale)
        int8 = exported(scale, int8=True)
        int8_io = exported(scale, int8_io="uint8")
        variants = ablation(model) if args.ablation else {}
        for name in PHOTOS + SMOOTH:
            hr, lr = luma_pair(name, scale)
            fl = psnr(model(lr[None, None])[0, 0], hr, scale)
            a, b = psnr(run(int8, lr), hr, scale), psnr(run(int8_io, lr), hr, scale)
            bic = psnr(image.resize_bicubic(lr.astype(np.float64), *hr.shape), hr, scale)
            rows.append(
                [
                    f"x{scale}",
                    name,
                    f"{fl:.2f}",
                    f"{a:.2f} ({a - fl:+.2f})",
                    f"{b:.2f} ({b - fl:+.2f})",
                    f"{bic:.2f}",
                ]
            )
            for label, blob in variants.items():
                v = psnr(run(blob, lr), hr, scale)
                ablations.append([f"x{scale}", name, label, f"{v - fl:+.2f}"])
    print(
        table(
            rows,
            [
                "scale",
                "image",
                "float (dB)",
                "int8 (dB, vs float)",
                "int8-io uint8 (dB, vs float)",
                "bicubic (dB)",
            ],
        )
    )
    if ablations:
        print()
        print(table(ablations, ["scale", "image", "int8 export", "vs float (dB)"]))


if __name__ == "__main__":
    main()
