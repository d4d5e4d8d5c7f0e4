"""The ``subpixel`` command: exit codes and output."""

from __future__ import annotations

import numpy as np

from subpixel import cli
from subpixel.backends import numpy as np_backend

from commands import run


def test_check_default_passes_for_numpy():
    proc = run("check", "--backend", "numpy")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "numpy" in proc.stdout and "10/10" in proc.stdout
    assert "agree with the NumPy reference" in proc.stdout


def test_no_command_runs_check():
    proc = run()
    assert proc.returncode in (0, 1)
    assert "cases" in proc.stdout


def test_info_lists_numpy():
    proc = run("info")
    assert proc.returncode == 0
    assert "numpy" in proc.stdout and np.__version__ in proc.stdout


def test_check_detects_a_wrong_backend(monkeypatch, capsys):
    real = np_backend.backend.from_numpy
    # a backend that hands back the data reversed: every case must mismatch
    monkeypatch.setattr(
        np_backend.backend, "from_numpy", lambda a, like=None: real(a)[..., ::-1].copy()
    )
    assert cli.main(["check", "--backend", "numpy"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and "check FAILED" in out


def test_unknown_backend_is_a_usage_error():
    proc = run("check", "--backend", "nope")
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr
