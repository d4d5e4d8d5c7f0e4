"""Running the ``subpixel`` command in the tests: in a subprocess (exit status and the
real streams) or in this process (``main``, output read from ``capsys``)."""

from __future__ import annotations

import subprocess
import sys

from subpixel import cli


def run(*args, cwd=None) -> subprocess.CompletedProcess:
    """``python -m subpixel ARGS`` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "subpixel", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


def main(capsys, *args) -> tuple[int, str, str]:
    """``subpixel ARGS`` in this process: ``(exit status, stdout, stderr)``."""
    code = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(code: int, out: str, err: str) -> str:
    """The one line of a user error (exit status 2, no traceback), checked."""
    lines = err.strip().splitlines()
    assert code == 2, (code, out, err)
    assert len(lines) == 1 and lines[0].startswith("subpixel: error: "), err
    assert "Traceback" not in err
    return lines[0]


def one_line(capsys, *args) -> str:
    """The one-line error of ``subpixel ARGS`` run in this process."""
    return one_line_error(*main(capsys, *args))
