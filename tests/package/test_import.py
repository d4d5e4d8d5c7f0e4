"""``import subpixel`` imports no framework; using one backend imports no other."""

from __future__ import annotations

import json
import subprocess
import sys

FRAMEWORKS = [
    "numpy",
    "torch",
    "tensorflow",
    "jax",
    "jaxlib",
    "cupy",
    "keras",
    "flax",
    "onnx",
    "dask",
    "array_api_strict",
    "safetensors",
    "PIL",
]


def _modules_after(code: str) -> list[str]:
    script = (
        code
        + f"\nimport json, sys\nprint(json.dumps([m for m in {FRAMEWORKS!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_subpixel_imports_no_framework():
    assert _modules_after("import subpixel") == []


def test_available_backends_imports_nothing():
    assert _modules_after("import subpixel; assert 'numpy' in subpixel.available_backends()") == []


def test_numpy_use_imports_only_numpy():
    code = "import numpy as np, subpixel; subpixel.shuffle(np.zeros((1, 4, 2, 2)), 2)"
    assert _modules_after(code) == ["numpy"]


def test_public_names():
    import subpixel

    for name in subpixel.__all__:
        assert hasattr(subpixel, name), name
