"""Peak memory and time of `subpixel upscale` on image files (docs/benchmarks.md): the
bundled ESPCN at x2, x3, x4 to outputs of 3000 x 3000 and 6000 x 4000 pixels, PNG,
JPEG and TIFF, RGB (and 16-bit grey and float TIFF).  Each run is its own process,
started by a fresh wrapper whose only child it is, so its peak resident memory
(``ru_maxrss`` of the wrapper's children) is its own.  The promise it checks: at most
8 bytes per output pixel + 300 MB.

    python benchmarks/bench_upscale_memory.py
    python benchmarks/bench_upscale_memory.py --sizes 3000x3000 --scales 2 --formats png
    python benchmarks/bench_upscale_memory.py --source /path/to/an/older/checkout  # before
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from subpixel import image  # noqa: E402
from subpixel.models.espcn import SAMPLE  # noqa: E402

from _timing import machine_line, table  # noqa: E402

_WRAPPER = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
sys.stderr.write(done.stderr)
print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""
KINDS = {"png": ("rgb", ".png"), "jpg": ("rgb", ".jpg"), "tif": ("rgb", ".tif"),
         "tif16": ("grey16", ".tif"), "tiff": ("float", ".tif")}  # fmt: skip


def photo(height: int, width: int, kind: str) -> np.ndarray:
    """The bundled sample (a held-out photograph) mirrored to the size: a photo's
    texture everywhere, so that encoders work as hard as on a real one."""
    tile = image.read_image(SAMPLE)
    tile = np.concatenate([tile, tile[::-1]], axis=0)
    tile = np.concatenate([tile, tile[:, ::-1]], axis=1)
    reps = (-(-height // tile.shape[0]), -(-width // tile.shape[1]), 1)
    img = np.tile(tile, reps)[:height, :width]
    if kind == "grey16":
        return image.rgb_to_ycbcr(img)[..., 0].round().astype(np.uint16) * 257
    if kind == "float":
        return (image.rgb_to_ycbcr(img)[..., 0] / 219.0 - 0.05).astype(np.float32)
    return img


def run(source: Path, args: list[str], folder: str) -> tuple[int, float, str]:
    """``(exit status, peak RSS in bytes, stderr)`` of ``python -m subpixel ARGS`` with
    ``source`` on the path, run in ``folder`` (``-m`` puts the working folder first)."""
    env = dict(os.environ, PYTHONPATH=str(source))
    command = [sys.executable, "-m", "subpixel", *args]
    proc = subprocess.run(
        [sys.executable, "-c", _WRAPPER, *command],
        capture_output=True,
        text=True,
        env=env,
        cwd=folder,
    )
    code, kib = proc.stdout.split()
    return int(code), int(kib) * 1024.0, proc.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["3000x3000", "6000x4000"])
    parser.add_argument("--scales", nargs="+", type=int, default=[2, 3, 4])
    parser.add_argument("--formats", nargs="+", default=["png", "jpg", "tif"], choices=KINDS)
    parser.add_argument("--tile", type=int, default=None, help="pass --tile N as well")
    parser.add_argument("--source", type=Path, default=ROOT, help="the checkout to measure")
    args = parser.parse_args()
    print(machine_line(), f"; source {args.source}")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for size in args.sizes:
            width, height = (int(v) for v in size.split("x"))
            for scale in args.scales:
                for fmt in args.formats:
                    kind, suffix = KINDS[fmt]
                    lr = photo(height // scale, width // scale, kind)
                    src = Path(folder) / f"in_{kind}_{lr.shape[1]}x{lr.shape[0]}{suffix}"
                    if not src.exists():
                        image.write_image(src, lr)
                    out = Path(folder) / f"out{suffix}"
                    extra = ["--tile", str(args.tile)] if args.tile else []
                    start = time.perf_counter()
                    code, rss, err = run(
                        args.source,
                        ["upscale", str(src), str(out), "--scale", str(scale), "--force", *extra],
                        folder,
                    )
                    seconds = time.perf_counter() - start
                    if code != 0:
                        raise SystemExit(f"{src.name} x{scale}: exit {code}: {err.strip()}")
                    pixels = lr.shape[0] * lr.shape[1] * scale * scale
                    bound = 8 * pixels + 300e6
                    rows.append(
                        [
                            f"{fmt} {kind}",
                            f"{lr.shape[1]} x {lr.shape[0]}",
                            f"x{scale}",
                            f"{lr.shape[1] * scale} x {lr.shape[0] * scale}",
                            f"{rss / 2**20:.0f}",
                            f"{rss / pixels:.1f}",
                            f"{bound / 2**20:.0f}",
                            "yes" if rss <= bound else "**no**",
                            f"{seconds:.1f}",
                        ]
                    )
                    print("|", " | ".join(rows[-1]), "|", flush=True)
                    out.unlink()
    header = ["format", "input (LR)", "scale", "output", "peak RSS MiB", "bytes / output px",
              "bound MiB (8 B/px + 300 MB)", "within", "seconds"]  # fmt: skip
    print()
    print(table(rows, header))


if __name__ == "__main__":
    main()
