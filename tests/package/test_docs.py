"""The examples in docstrings and in docs/*.md run and print what they say."""

from __future__ import annotations

import doctest
import importlib
import inspect
import os
import pathlib
import re

import pytest

from adapters import requested_backends

ROOT = pathlib.Path(__file__).resolve().parents[2]
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
    "subpixel._core.compare",
]
PAGES = ["conventions.md", "weights.md"]


# modules whose examples need a framework: (module, the backend that must be requested)
FRAMEWORK_MODULES = [
    ("subpixel.layers.torch", "torch"),
    ("subpixel.rewrite.torch", "torch"),
    ("subpixel.layers.keras", os.environ.get("KERAS_BACKEND", "tensorflow")),
    ("subpixel.rewrite.keras", os.environ.get("KERAS_BACKEND", "tensorflow")),
    ("subpixel.layers.flax", "jax"),
    ("subpixel.rewrite.flax", "jax"),
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("name, backend", FRAMEWORK_MODULES)
def test_framework_docstring_examples(name, backend):
    if backend not in requested_backends():
        pytest.skip(f"{backend} is not in SUBPIXEL_TEST_BACKENDS")
    test_docstring_examples(name)


def heading(shown: str, obj: object) -> str:
    """The reference page's heading for ``obj``, shown as ``shown``: its signature
    without annotations (the site renders those), or ``= value`` for a constant."""
    if (
        not callable(obj)
        or getattr(obj, "__origin__", None) is not None
        or type(obj).__module__ == "typing"
    ):
        value = "" if not isinstance(obj, (int, float, str)) else f" = {obj!r}"
        return f"### `{shown}{value}`"
    sig = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj)  # type: ignore[misc]
    params = [p.replace(annotation=inspect.Parameter.empty) for p in sig.parameters.values()]
    if inspect.isclass(obj):
        params = params[1:]  # self (Flax modules' metaclass hides __init__ from signature())
    text = str(sig.replace(parameters=params, return_annotation=inspect.Signature.empty))
    text = re.sub(r"<class '([\w.]+)'>", r"\1", text)
    return f"### {'class ' if inspect.isclass(obj) else ''}`{shown}{text}`"


def test_reference_headings_are_the_signatures():
    """docs/reference.md: every heading carries the signature of the name it documents
    (the ``:::`` line under it), as the code has it now."""
    text = (DOCS / "reference.md").read_text()
    pairs = re.findall(r"^(### .*)\n\n::: (\S+)$", text, flags=re.M)
    assert len(pairs) > 60
    needs = {"layers.torch": "torch", "rewrite.torch": "torch", "layers.flax": "jax",
             "rewrite.flax": "jax", "layers.keras": os.environ.get("KERAS_BACKEND", "tensorflow"),
             "rewrite.keras": os.environ.get("KERAS_BACKEND", "tensorflow"),
             "models.keras": os.environ.get("KERAS_BACKEND", "tensorflow")}  # fmt: skip
    checked = 0
    for line, path in pairs:
        if any(k in path and b not in requested_backends() for k, b in needs.items()):
            continue
        module, _, name = path.rpartition(".")
        shown = re.match(r"### (?:class )?`([\w.]+)", line).group(1)
        assert line == heading(shown, getattr(importlib.import_module(module), name)), path
        checked += 1
    assert checked > 30


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
