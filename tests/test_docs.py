"""The examples in docstrings and in docs/*.md run and print what they say."""

from __future__ import annotations

import doctest
import importlib
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MODULES = [
    "subpixel.ops",
    "subpixel.weights",
    "subpixel.layer",
    "subpixel.image",
    "subpixel.models.espcn",
]
PAGES = ["conventions.md", "weights.md"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("page", PAGES)
def test_page_examples(page):
    result = doctest.testfile(str(DOCS / page), module_relative=False)
    assert result.attempted > 0 and result.failed == 0


def test_readme_tour_runs():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks
    namespace: dict = {}  # the tour's blocks continue each other
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)


def test_layers_page_examples():
    """Run the docs/layers.md blocks whose framework this environment has."""
    import os

    from adapters import requested_backends

    wanted = {
        "numpy": "numpy",
        "torch": "torch",
        "flax": "jax",
        "keras": os.environ.get("KERAS_BACKEND"),
    }
    text = (DOCS / "layers.md").read_text()
    ran = 0
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        framework = re.match(r"# framework: (\w+)", block).group(1)
        if framework == "numpy" or wanted[framework] in requested_backends():
            exec(compile(block, "docs/layers.md", "exec"), {})
            ran += 1
    assert ran > 0
