"""The NumPy backend's thread pool: safe to resize while shuffles run, and its
settings validated with messages that name them."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import subpixel
from subpixel.backends import numpy as numpy_backend

from reference import reference


def test_set_num_threads_while_shuffling():
    """Resizing the pool never fails a running shuffle (it used to: 'cannot schedule
    new futures after shutdown') and every result stays right."""
    a = np.random.default_rng(0).standard_normal((2, 16, 256, 128)).astype(np.float32)
    expected = reference("shuffle", a, 2)
    errors: list[str] = []
    stop = threading.Event()
    before = numpy_backend.get_num_threads()

    def flip():
        k = 0
        while not stop.is_set():
            numpy_backend.set_num_threads(1 + k % 3)
            k += 1

    def work():
        for _ in range(40):
            try:
                if not np.array_equal(subpixel.shuffle(a, 2), expected):
                    errors.append("wrong values")
            except Exception as exc:  # the test is that nothing is raised
                errors.append(repr(exc))

    flipper = threading.Thread(target=flip)
    flipper.start()
    workers = [threading.Thread(target=work) for _ in range(4)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    stop.set()
    flipper.join()
    numpy_backend.set_num_threads(before)
    assert errors == []


@pytest.mark.parametrize("n", [0, -1, 257, 2.0, "2", True, None])
def test_set_num_threads_refuses(n):
    with pytest.raises(
        ValueError, match=rf"^`n` must be an integer from 1 to 256\. Received: n={n!r}$"
    ):
        numpy_backend.set_num_threads(n)


def test_set_num_threads_takes_numpy_integers():
    before = numpy_backend.get_num_threads()
    numpy_backend.set_num_threads(np.int64(2))
    assert numpy_backend.get_num_threads() == 2
    numpy_backend.set_num_threads(before)


@pytest.mark.parametrize("value", ["abc", "2.5", "0", "100000"])
def test_bad_environment_variable_is_named(value):
    code = "import numpy as np, subpixel; subpixel.shuffle(np.zeros((1, 4, 2, 2)), 2)"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "SUBPIXEL_NUM_THREADS": value},
    )
    assert proc.returncode != 0
    assert (
        f"ValueError: `SUBPIXEL_NUM_THREADS` must be an integer from 1 to 256. "
        f"Received: SUBPIXEL_NUM_THREADS={value!r}"
    ) in proc.stderr


def test_environment_variable_sets_threads():
    code = "from subpixel.backends import numpy as b; print(b.get_num_threads())"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "SUBPIXEL_NUM_THREADS": " 3 "},
    )
    assert proc.stdout.strip() == "3", proc.stderr
