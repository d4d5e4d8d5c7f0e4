"""The committed scripts still run: the GPU check (its CPU dry run) and the cost model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600
    )


def test_gpu_check_dry_run():
    proc = _run("benchmarks/gpu_check.py", "--dry-run-cpu", "--quick")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pytest numpy: 1/1" in proc.stdout


def test_cost_model_prints_the_seed_example():
    proc = _run("benchmarks/cost_model.py")
    assert proc.returncode == 0, proc.stderr
    assert "151.0 M" in proc.stdout and "9216" in proc.stdout and "2304" in proc.stdout


def test_the_gallery_is_what_its_script_makes(tmp_path):
    """docs/gallery.md's crops come from examples/make_gallery.py: rerun, the same
    pixels (within one level: another machine's BLAS may round a sum the other way)
    and the table the page shows."""
    import numpy as np
    import pytest

    pytest.importorskip("skimage")
    from PIL import Image

    proc = _run("examples/make_gallery.py", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    page = (ROOT / "docs" / "gallery.md").read_text()
    for row in proc.stdout.strip().splitlines()[2:]:  # the same rows, within 0.02 dB
        cells = row.split("|")
        shown = next(line for line in page.splitlines() if line.startswith("|".join(cells[:4])))
        for a, b in zip(cells[4:7], shown.split("|")[4:7]):
            assert abs(float(a) - float(b)) <= 0.02, (row, shown)
    made = sorted(p.name for p in tmp_path.iterdir())
    assert made and made == sorted(p.name for p in (ROOT / "docs" / "img").glob("gallery_*.png"))
    for name in made:
        new = np.asarray(Image.open(tmp_path / name), np.int16)
        old = np.asarray(Image.open(ROOT / "docs" / "img" / name), np.int16)
        assert new.shape == old.shape and np.abs(new - old).max() <= 1, name
