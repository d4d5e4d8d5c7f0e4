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
