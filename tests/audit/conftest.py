"""Session-scoped audit fixtures, built once per test session into a tmp folder:

- ``fixture_matrix``: ``list[factory.Fixture]``, every file of the default matrix
  (``factory.default_specs()``; ``SUBPIXEL_AUDIT_FULL=1``: ``factory.full_specs()``),
  each checked in its runtime;
- ``verified_fixtures``: those whose ground truth holds (``Fixture.verified``);
- ``fixture_conversion_failures``: the matrix points whose converter refused the model;
- ``fixtures_by_name``: ``{fixture.name: fixture}``, failures included;
- ``swapped_pairs``: ``list[factory.SwappedPair]`` for ``--against``.

They skip where the converters are not installed (every environment but ``tox -e
audit``), so that the other environments collect this folder for free.  Nothing is cached
outside the session's tmp folders.
"""

from __future__ import annotations

import os
import time

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# what building the matrix imports: the exporters, converters and both runtimes
NEEDS = (
    "torch",
    "tensorflow",
    "keras",
    "einops",
    "onnx",
    "onnxruntime",
    "ai_edge_litert",
    "onnx2tf",
    "tf2onnx",
    "litert_torch",
)

_built: dict[str, tuple[list, float]] = {}


def require_converters() -> None:
    """Skip unless every exporter, converter and runtime the factory uses imports."""
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        pytest.skip("the audit fixtures need KERAS_BACKEND=tensorflow")
    for name in NEEDS:
        pytest.importorskip(name)


@pytest.fixture(scope="session")
def fixture_matrix(tmp_path_factory):
    """Every file of the matrix (converter findings included), built and checked once
    per session."""
    require_converters()
    return [f for f in _matrix(tmp_path_factory) if f.error is None]


@pytest.fixture(scope="session")
def verified_fixtures(fixture_matrix):
    """The files whose ground truth holds (``Fixture.verified``): they run, agree with
    their source, and every site was found exactly by the runtime's tensors.  The rest of
    ``fixture_matrix`` are converter findings (``faithful=False``, a runtime that refuses
    the file): test hazards and error paths with them, not classification."""
    return [f for f in fixture_matrix if f.verified]


@pytest.fixture(scope="session")
def fixture_conversion_failures(tmp_path_factory):
    """The matrix points whose exporter or converter refused the model (``error`` set)."""
    require_converters()
    return [f for f in _matrix(tmp_path_factory) if f.error is not None]


def _matrix(tmp_path_factory) -> list:
    if "matrix" not in _built:
        from audit import factory

        t = time.perf_counter()
        fixtures = factory.build_matrix(tmp_path_factory.mktemp("audit_matrix"))
        _built["matrix"] = (fixtures, time.perf_counter() - t)
    return _built["matrix"][0]


@pytest.fixture(scope="session")
def fixtures_by_name(tmp_path_factory):
    """Every matrix point by name, conversion failures included."""
    require_converters()
    return {f.name: f for f in _matrix(tmp_path_factory)}


@pytest.fixture(scope="session")
def swapped_pairs(tmp_path_factory):
    """Swapped (order, layout) and unswapped pairs of files, measured in their runtimes."""
    require_converters()
    from audit import factory

    t = time.perf_counter()
    pairs = factory.build_pairs(tmp_path_factory.mktemp("audit_pairs"))
    _built["pairs"] = (pairs, time.perf_counter() - t)
    return pairs


def pytest_terminal_summary(terminalreporter):
    if "matrix" in _built:
        from audit import factory

        fixtures, seconds = _built["matrix"]
        terminalreporter.write_sep(
            "-", f"audit fixture matrix: {len(fixtures)} files in {seconds:.0f} s"
        )
        terminalreporter.write_line(factory.summary(fixtures))
    if "pairs" in _built:
        pairs, seconds = _built["pairs"]
        terminalreporter.write_sep("-", f"audit pairs: {len(pairs)} in {seconds:.0f} s")
        for p in pairs:
            terminalreporter.write_line(
                f"{p.name}: kind={p.kind} site={p.site_index} max diff {p.max_diff:.3g}"
            )
