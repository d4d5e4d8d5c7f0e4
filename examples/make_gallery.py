"""The before/after crops of docs/gallery.md: bicubic | ESPCN | original.

Each image is made low-resolution as `subpixel upscale sample` makes the bundled sample
(subpixel's bicubic, rounded to 8 bits), upscaled back by bicubic and by the bundled
ESPCN, and a crop of the three is drawn side by side (enlarged 2x, nearest neighbour,
so that the pixels can be seen), with the luminance PSNR of the crop and of the whole
image.  The images are scikit-image's bundled photographs that the training run held
out (docs/models.md): none was used for training; the float network has no
calibration.

    python examples/make_gallery.py            # writes docs/img/gallery_*.png, prints the table
    python examples/make_gallery.py --out DIR  # elsewhere

Needs scikit-image (the images) and Pillow.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from subpixel import image  # noqa: E402
from subpixel.models import ESPCN, upscale_image  # noqa: E402
from subpixel.models.upscale import low_resolution  # noqa: E402

OUT = ROOT / "docs" / "img"
# (scikit-image name, its licence as scikit-image states it, scale, crop top, left, size)
SHOTS = [
    ("coffee", "CC0, Rachel Michetti", 2, 60, 300, 120),
    ("rocket", "public domain, SpaceX", 2, 130, 0, 120),
    ("rocket", "public domain, SpaceX", 3, 90, 270, 120),
    ("coffee", "CC0, Rachel Michetti", 4, 150, 120, 120),
]
ZOOM = 2  # display enlargement of the crops
GAP = 6  # pixels between panels


def photo(name: str) -> np.ndarray:
    import skimage.data

    return np.asarray(getattr(skimage.data, name)())


def luma(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64)
    return a if a.ndim == 2 else image.rgb_to_ycbcr(a[..., :3])[..., 0]


def psnr(a: np.ndarray, b: np.ndarray, shave: int) -> float:
    return image.psnr(luma(a), luma(b), shave=shave)


def panel(crops: list[np.ndarray], labels: list[str]) -> object:
    """The crops side by side, enlarged, each with its label above."""
    from PIL import Image, ImageDraw

    big = [np.repeat(np.repeat(c, ZOOM, 0), ZOOM, 1) for c in crops]
    h, w = big[0].shape[:2]
    title = 16
    sheet = Image.new("RGB", (len(big) * w + (len(big) - 1) * GAP, h + title), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (b, label) in enumerate(zip(big, labels)):
        tile = Image.fromarray(b if b.ndim == 3 else np.repeat(b[..., None], 3, 2))
        x = i * (w + GAP)
        sheet.paste(tile, (x, title))
        draw.text((x + 2, 2), label, fill="black")
    return sheet


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="folder of the images")
    folder = parser.parse_args().out
    rows = []
    for name, licence, r, top, left, size in SHOTS:
        hr, lr = low_resolution(photo(name), r)
        bicubic = np.clip(np.round(image.resize_bicubic(lr, *hr.shape[:2])), 0, 255)
        bicubic = bicubic.astype(np.uint8)
        espcn = upscale_image(lr, ESPCN.pretrained(r))
        window = (slice(top, top + size), slice(left, left + size))
        crops = [bicubic[window], espcn[window], hr[window]]
        whole = [psnr(x, hr, r) for x in (bicubic, espcn)]
        part = [psnr(x, hr[window], 0) for x in crops[:2]]
        labels = [f"bicubic {part[0]:.2f} dB", f"ESPCN x{r} {part[1]:.2f} dB", "original"]
        path = folder / f"gallery_{name}_x{r}.png"
        panel(crops, labels).save(path, optimize=True)
        rows.append(
            f"| {name} ({licence}) | x{r} | {hr.shape[1]} x {hr.shape[0]} | "
            f"{whole[0]:.2f} | {whole[1]:.2f} | {whole[1] - whole[0]:+.2f} | "
            f"[{path.name}](img/{path.name}) |"
        )
        print(f"wrote {path}", file=sys.stderr)
    print("| image (licence) | scale | size | bicubic PSNR (dB) | ESPCN PSNR (dB) | gain | crops |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
