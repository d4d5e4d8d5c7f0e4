"""`subpixel upscale` works region by region into an output of the image's own dtype:
its peak memory is the output and a constant, not the image's floats.  The promise
(docs/benchmarks.md measures it exactly): at most 8 bytes per output pixel + 300 MB for
the bundled models on PNG, JPEG and TIFF.  Whole-image float work, as before, took 127
bytes per output pixel: 730 MB here against a bound of 350 MB."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from subpixel import image
from subpixel.models.espcn import SAMPLE

# peak RSS of the child process only: a fresh wrapper whose one child is the command
_WRAPPER = """
import resource, subprocess, sys
done = subprocess.run([sys.executable, "-m", "subpixel", *sys.argv[1:]], capture_output=True, text=True)
sys.stderr.write(done.stderr)
print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_rss(*args) -> tuple[int, int, str]:
    """``(exit status, peak RSS in bytes, stderr)`` of ``subpixel ARGS`` in its own
    process (Linux reports ``ru_maxrss`` in KiB)."""
    proc = subprocess.run(
        [sys.executable, "-c", _WRAPPER, *map(str, args)], capture_output=True, text=True
    )
    code, kib = proc.stdout.split()
    return int(code), int(kib) * 1024, proc.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux")
@pytest.mark.parametrize(
    "suffix, kind, side, scale",
    [(".png", "rgb", 600, 4), (".jpg", "rgb", 900, 2), (".tif", "grey16", 900, 3)],
)
def test_peak_memory_is_the_output_and_a_constant(tmp_path, suffix, kind, side, scale):
    img = np.tile(image.read_image(SAMPLE), (3, 3, 1))[:side, :side]
    if kind == "grey16":
        img = img[..., 1].astype(np.uint16) * 257
    src, out = tmp_path / ("in.tif" if kind == "grey16" else "in.png"), tmp_path / f"out{suffix}"
    image.write_image(src, img)
    code, rss, err = peak_rss("upscale", src, out, "--scale", scale)
    assert code == 0, err
    pixels = img.shape[0] * img.shape[1] * scale * scale
    assert rss <= 8 * pixels + 300e6, (rss / 2**20, pixels)
    assert image.read_image(out).shape[:2] == (img.shape[0] * scale, img.shape[1] * scale)
