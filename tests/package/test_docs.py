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
    "subpixel.deploy",
    "subpixel._core.lowering",
    "subpixel._core.layer_spec",
    "subpixel._core.phases",
    "subpixel._core.channels",
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


def _subcommands():
    from subpixel.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return sub.choices


def test_every_command_and_option_is_documented():
    """A subcommand or option missing from docs/cli.md, docs/api.md's list or the cli
    module's docstring fails here."""
    import subpixel.cli

    cli_page = (DOCS / "cli.md").read_text()
    api_page = (DOCS / "api.md").read_text()
    missing = []
    for name, parser in _subcommands().items():
        for where, text in (
            ("docs/cli.md", cli_page),
            ("docs/api.md", api_page),
            ("subpixel.cli docstring", subpixel.cli.__doc__),
        ):
            if f"subpixel {name}" not in text:
                missing.append(f"`subpixel {name}` in {where}")
        for action in parser._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help" and option not in cli_page:
                    missing.append(f"`subpixel {name} {option}` in docs/cli.md")
    assert missing == []


@pytest.mark.parametrize(
    "module,page", [("subpixel", "api.md"), ("subpixel.weights", "weights.md")]
)
def test_every_public_name_is_documented(module, page):
    names = importlib.import_module(module).__all__
    text = (DOCS / page).read_text()
    assert [n for n in names if not re.search(rf"\b{re.escape(n)}\b", text)] == []
