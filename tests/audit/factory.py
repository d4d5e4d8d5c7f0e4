"""A fixture factory for ``subpixel audit``: model files with depth-to-space /
space-to-depth sites, written by real exporters and converters, each with ground truth
established without any audit code.

Ground truth comes twice:

1. by construction: each source model (PyTorch or Keras) is built here with known sites
   (:class:`ExpectedSite`: kind, factor per spatial axis, channel order, layout);
2. by the file's own runtime (ONNX Runtime; the LiteRT interpreter with every tensor
   kept): the file's output is compared with the source model's (``max_diff``,
   ``faithful``), and at each site the runtime's tensors where the site starts and ends
   are read and ``subpixel.shuffle``/``unshuffle`` of the first must equal the second
   exactly, for the expected order and layout, and (with more than one channel) differ
   for the other order (:class:`SiteCheck`).  Where a producer legitimately changes a
   site's order (a channel permutation folded into a kernel), ``sites`` holds what the
   file does and ``findings`` says so; a site that is neither order fails the build.

Where the sites lie in a file is found from the file's graph alone: a site is a chain of
data-movement ops (reshape, transpose, depth/space ops, gathers, squeezes, and the
one-hot convolutions of ``lowering="conv"``) between two other ops (or the graph's
input/output); a layout transpose at either end of the chain (perm (0, 2, 3, 1) or
(0, 3, 1, 2)) is not part of the site.  ``ExpectedSite.layout`` is the layout of the
data the site itself moves; ``boundary_layouts`` the layouts of the chain's ends (they
differ where a producer wraps the site in layout transposes: litert-torch).

Every framework is imported inside the functions: importing this module needs NumPy only.

>>> fixtures = build_matrix(tmp_folder)                  # doctest: +SKIP
>>> pairs = build_pairs(tmp_folder / "pairs")            # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import math
import os
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "KERAS_STYLES",
    "PRODUCERS",
    "TORCH_STYLES",
    "ExpectedSite",
    "Fixture",
    "SiteCheck",
    "Spec",
    "SwappedPair",
    "build",
    "build_matrix",
    "build_pairs",
    "check_file_sites",
    "default_specs",
    "describe_ops",
    "full_specs",
    "manifest",
    "summary",
]

CF, CL = "channels_first", "channels_last"

# producers, as Fixture.producer names them
TS, DYNAMO, ONNX2TF, LITERT_TORCH = (
    "torch.onnx torchscript",
    "torch.onnx dynamo",
    "onnx2tf",
    "litert-torch",
)
TF2ONNX, TFLITE = "tf2onnx", "tflite converter"
PRODUCERS = (TS, DYNAMO, ONNX2TF, LITERT_TORCH, TF2ONNX, TFLITE)
TORCH_PRODUCERS = (TS, DYNAMO, ONNX2TF, LITERT_TORCH)
KERAS_PRODUCERS = (TF2ONNX, TFLITE)

# how a site is written: style -> (kinds, orders, square factors only)
TORCH_STYLES: dict[str, tuple[tuple[str, ...], tuple[str, ...], bool]] = {
    "nn.PixelShuffle": (("shuffle",), ("CRD",), True),
    "F.pixel_shuffle": (("shuffle",), ("CRD",), True),
    "nn.PixelUnshuffle": (("unshuffle",), ("CRD",), True),
    "torch.pixel_unshuffle": (("unshuffle",), ("CRD",), True),
    # BasicSR's hand-written pixel_unshuffle (view/permute/reshape), and the same for a shuffle
    "view/permute": (("shuffle", "unshuffle"), ("CRD",), False),
    "einops.rearrange": (("shuffle", "unshuffle"), ("CRD", "DCR"), False),
    "subpixel:native": (("shuffle", "unshuffle"), ("CRD", "DCR"), True),
    "subpixel:reshape": (("shuffle", "unshuffle"), ("CRD", "DCR"), False),
    "subpixel:flat": (("shuffle", "unshuffle"), ("CRD", "DCR"), False),
    "subpixel:conv": (("shuffle", "unshuffle"), ("CRD", "DCR"), False),
    "subpixel:SubPixelConv2d": (("shuffle",), ("CRD", "DCR"), False),
}
KERAS_STYLES: dict[str, tuple[tuple[str, ...], tuple[str, ...], bool]] = {
    "tf.nn": (("shuffle", "unshuffle"), ("DCR",), True),
    "keras.ops": (("shuffle", "unshuffle"), ("DCR",), True),
    "subpixel:native": (("shuffle", "unshuffle"), ("CRD", "DCR"), True),
    "subpixel:reshape": (("shuffle", "unshuffle"), ("CRD", "DCR"), False),
    "subpixel:flat": (("shuffle", "unshuffle"), ("CRD", "DCR"), False),
    "subpixel:conv": (("shuffle", "unshuffle"), ("CRD", "DCR"), False),
    "subpixel:SubPixelConv": (("shuffle",), ("CRD", "DCR"), False),
}
FACTORS: tuple[tuple[int, int], ...] = ((2, 2), (3, 3), (4, 4), (2, 3))
NEGATIVES = {
    # name -> (family, movements it holds)
    "channel_shuffle": ("torch", ("channel permutation",)),
    "flatten_nchw": ("torch", ("flatten",)),
    "flatten_nhwc": ("torch", ("layout transpose", "flatten")),
    "layout_transpose": ("torch", ("layout transpose",)),
    "plain_reshape": ("torch", ("reshape",)),
    "keras_channel_shuffle": ("keras", ("channel permutation",)),
    "keras_flatten": ("keras", ("flatten",)),
    "keras_reshape": ("keras", ("reshape",)),
}
ARCHS = {
    # name -> (constructor config, input size (H, W))
    "RRDBNet_x2": ("RRDBNet", {"scale": 2, "feat": 8, "blocks": 1, "grow": 4}, (12, 10)),
    "SRVGGNetCompact_x4": ("SRVGGNetCompact", {"feat": 8, "convs": 2, "scale": 4}, (6, 5)),
    "RCAN_x4": ("RCAN", {"scale": 4, "feat": 8, "groups": 1, "blocks": 1}, (6, 5)),
    "EDSR_x3": ("EDSR", {"scale": 3, "feat": 8, "blocks": 2}, (6, 5)),
    "SPAN_x2": ("SPAN", {"feat": 8, "blocks": 2, "scale": 2}, (6, 5)),
}

N = 2  # batch of every example (N > 1)
CIN = 3  # input channels of the site models
COUT = 4  # output channels of the conv after a site
LR_SIZE = (5, 7)  # spatial size of a shuffle model's input
HR_SIZE = (12, 24)  # spatial size of an unshuffle model's input (divisible by 2, 3, 4)
LR_SIZE2, HR_SIZE2, N2 = (6, 4), (24, 12), 3  # the second size a dynamic file runs at
# float tolerances of `faithful`, relative to max(1, max |source output|)
# (int8: measured here at most ~2.5 % once calibration covers the inputs; a swapped
# site is off by the signal itself)
TOLERANCE = {"float32": 1e-4, "float16": 2e-2, "int8": 0.05}


# ---------------------------------------------------------------------------
# what a fixture is
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectedSite:
    """One depth-to-space (``"shuffle"``) or space-to-depth (``"unshuffle"``) site.

    ``factor``: per spatial axis (H, W).  ``order``: ``"CRD"`` or ``"DCR"``, the channel
    order the site applies in its own ``layout`` (``"channels_first"`` or
    ``"channels_last"``: the layout of the data the site moves).  ``channels``: C, the
    channel count on the high-resolution side (the orders agree when it is 1, so a file
    cannot tell them apart there).  ``boundary_layouts``: the layouts of the tensors where
    the chain of data-movement ops starts and ends in the file (different from
    ``layout`` where the producer wraps the site in layout transposes)."""

    kind: str
    factor: tuple[int, ...]
    order: str
    layout: str
    channels: int = 0
    boundary_layouts: tuple[str, str] | None = None

    def without_channels(self) -> tuple[str, tuple[int, ...], str, str]:
        return (self.kind, self.factor, self.order, self.layout)


@dataclass
class SiteCheck:
    """What the runtime showed at one site: the tensors read (names as in the file), the
    ops of the chain between them, and whether ``shuffle/unshuffle(input)`` equals the
    output exactly for the expected order (``exact``) and differs for the other one
    (``other_order_differs``; None where C == 1)."""

    input_tensor: str
    output_tensor: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    ops: tuple[str, ...]
    exact: bool
    other_order_differs: bool | None
    max_rank: int
    requantized: bool = False


@dataclass
class Fixture:
    """A model file and the truth about it.

    ``path``: the ``.onnx``/``.tflite`` file.  ``producer``: one of :data:`PRODUCERS`.
    ``sites``: expected sites in data-flow order (``[]`` for the negatives).
    ``input_shape``: the file's input shape for ``file_example`` (in its own layout).
    ``dynamic``: batch and spatial sizes are dynamic in the file.  ``source`` /
    ``example``: the PyTorch module or Keras model it was made from and an input for it
    (in the source's layout; ``file_example`` is the same data in the file's layout).
    ``movements``: the non-site data movements a negative holds ("channel
    permutation", "flatten", "layout transpose", "reshape").  ``faithful`` / ``max_diff``
    / ``tolerance``: the file's output against the source's, at every size it ran.
    ``site_checks``: one per site, parallel to ``sites``.  ``findings``: anything the
    file does that its source does not say (an order changed by a producer, an
    unfaithful converter); ``notes``: layout choices of the producer (a site or output
    left in the source's layout).  ``intermediate``: the ONNX file an onnx2tf fixture was
    converted from.  ``spec``: the matrix point it was built from.  ``error``: the
    exporter's or converter's error where it refused the model (then there is no file;
    ``build_matrix`` keeps such points, the ``fixture_matrix`` test fixture leaves them
    out)."""

    name: str
    path: Path
    producer: str
    sites: list[ExpectedSite]
    input_shape: tuple[int, ...]
    dynamic: bool
    description: str
    source: Any = None
    example: Any = None
    file_example: Any = None
    input_layout: str = CF
    output_layout: str = CF
    precision: str = "float32"
    movements: tuple[str, ...] = ()
    source_sites: list[ExpectedSite] = field(default_factory=list)
    faithful: bool | None = None
    max_diff: float | None = None
    tolerance: float | None = None
    site_checks: list[SiteCheck] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ops: tuple[str, ...] = ()
    max_rank: int = 0
    intermediate: Path | None = None
    spec: Spec | None = None
    error: str | None = None
    convert_seconds: float = 0.0
    verify_seconds: float = 0.0

    @property
    def format(self) -> str:
        return "onnx" if self.path.suffix == ".onnx" else "tflite"

    @property
    def verified(self) -> bool:
        """The file ran, agrees with its source, every site was found by its runtime
        tensors, exactly, and no shuffle where none is expected: ground truth holds."""
        return (
            self.error is None
            and bool(self.faithful)
            and len(self.site_checks) == len(self.sites)
            and all(c.exact for c in self.site_checks)
        )


@dataclass
class SwappedPair:
    """Two files of the same model for ``--against``.  ``kind``: ``"order"`` (a CRD<->DCR
    swap), ``"layout"`` (the site applied to data in the other layout), or None (no
    swap: the target differs by float noise only and no diagnosis must appear).
    ``site_index``: the first divergent site of ``source``'s sites (None when unswapped).
    ``source_model`` / ``example``: the PyTorch/Keras model behind ``source_path`` and an
    input for it (for the Python API's ``against=model``).  ``max_diff``: target output
    against source output, measured in their runtimes."""

    name: str
    source_path: Path
    target_path: Path
    site_index: int | None
    kind: str | None
    description: str
    source_sites: list[ExpectedSite] = field(default_factory=list)
    target_sites: list[ExpectedSite] = field(default_factory=list)
    source_model: Any = None
    example: Any = None
    max_diff: float | None = None


@dataclass(frozen=True)
class Spec:
    """One point of the matrix.  ``family``: ``"torch"`` / ``"keras"`` (a site model:
    conv -> site -> conv, conv -> site at the output, or site -> conv at the input),
    ``"arch"`` (``style`` names one of :data:`ARCHS`), ``"negative"`` (``style`` names
    one of :data:`NEGATIVES`)."""

    family: str
    style: str
    producer: str
    kind: str = ""
    factor: tuple[int, int] = (2, 2)
    order: str = "CRD"
    channels: int = 3
    position: str = "middle"
    dynamic: bool = False
    precision: str = "float32"

    @property
    def name(self) -> str:
        prod = self.producer.replace("torch.onnx ", "").replace(" ", "-")
        prec = "" if self.precision == "float32" else f"-{self.precision}"
        dyn = "-dyn" if self.dynamic else ""
        if self.family in ("arch", "negative"):
            return f"{self.style}-{prod}{prec}{dyn}"
        f = "x".join(map(str, self.factor))
        style = self.style.replace("subpixel:", "sp-").replace(".", "_").replace("/", "_")
        return f"{style}-{self.kind}-{f}-{self.order}-C{self.channels}-{self.position}-{prod}{prec}{dyn}"


# ---------------------------------------------------------------------------
# the matrix
# ---------------------------------------------------------------------------


def _supports_dynamic(producer: str) -> bool:
    return producer != LITERT_TORCH  # litert-torch writes static shapes here


def _variants(family: str, style: str, producer: str) -> list[Spec]:
    """Every valid matrix point of one writing style and producer."""
    kinds, orders, square = (TORCH_STYLES if family == "torch" else KERAS_STYLES)[style]
    precisions = ("float32", "float16", "int8") if producer == TFLITE else ("float32",)
    out = []
    for kind, order, factor, channels, dynamic, precision in itertools.product(
        kinds, orders, FACTORS, (3, 1), (False, True), precisions
    ):
        if square and factor[0] != factor[1]:
            continue
        if dynamic and not _supports_dynamic(producer):
            continue
        positions = ("middle", "output") if kind == "shuffle" else ("input", "middle")
        if style.startswith("subpixel:SubPixelConv"):
            positions = ("middle", "output")
        for position in positions:
            out.append(
                Spec(
                    family,
                    style,
                    producer,
                    kind,
                    factor,
                    order,
                    channels,
                    position,
                    dynamic,
                    precision,
                )
            )
    return out


def full_specs() -> list[Spec]:
    """The complete matrix (``SUBPIXEL_AUDIT_FULL=1``): every style x producer x kind x
    order x factor x C x static/dynamic x position (x precision for the TFLite
    converter), every architecture and negative with each of its producers."""
    specs: list[Spec] = []
    for style in TORCH_STYLES:
        for producer in TORCH_PRODUCERS:
            specs += _variants("torch", style, producer)
    for style in KERAS_STYLES:
        for producer in KERAS_PRODUCERS:
            specs += _variants("keras", style, producer)
    specs += _arch_specs(full=True) + _negative_specs(full=True)
    return specs


def _arch_specs(full: bool) -> list[Spec]:
    specs = []
    for name in ARCHS:
        for producer in (TS, DYNAMO, ONNX2TF) + ((LITERT_TORCH,) if full else ()):
            specs.append(Spec("arch", name, producer))
            if full and _supports_dynamic(producer):
                specs.append(Spec("arch", name, producer, dynamic=True))
    return specs


def _negative_specs(full: bool) -> list[Spec]:
    """Each negative with each of its producers, static; dynamic too (where the model
    allows other sizes) with every producer in the full matrix and with the TorchScript
    exporter and the TFLite converter in the default one."""
    specs = []
    for name, (family, _) in NEGATIVES.items():
        producers = TORCH_PRODUCERS if family == "torch" else KERAS_PRODUCERS
        resizable = "flatten" not in name
        for producer in producers:
            specs.append(Spec("negative", name, producer))
            if resizable and _supports_dynamic(producer) and (full or producer in (TS, TFLITE)):
                specs.append(Spec("negative", name, producer, dynamic=True))
    return specs


def default_specs() -> list[Spec]:
    """The CI matrix: one point per writing style x kind x order x producer (x precision
    for the TFLite converter), with factor, C, static/dynamic and position rotating
    through their values on a counter of each producer (C = 3 twice as often as C = 1,
    since one channel hides the order), plus every architecture (torch.onnx both
    exporters, onnx2tf) and the negatives."""
    specs: list[Spec] = []
    turns: dict[tuple, int] = {}
    families = [("torch", s, TORCH_PRODUCERS) for s in TORCH_STYLES]
    families += [("keras", s, KERAS_PRODUCERS) for s in KERAS_STYLES]
    for family, style, producers in families:
        kinds, orders, square = (TORCH_STYLES if family == "torch" else KERAS_STYLES)[style]
        factors = [f for f in FACTORS if not square or f[0] == f[1]]
        for kind, order in itertools.product(kinds, orders):
            for producer in producers:
                precisions = ("float32", "float16", "int8") if producer == TFLITE else ("float32",)
                for precision in precisions:
                    k = turns.get((producer, precision), 0)
                    turns[producer, precision] = k + 1
                    factor = factors[(k + k // 4) % len(factors)]
                    channels = (3, 3, 1)[k % 3]
                    dynamic = _supports_dynamic(producer) and k % 2 == 1
                    if producer == ONNX2TF:  # most of its dynamic files do not run (FINDINGS)
                        dynamic = k % 4 == 3
                    positions = ("middle", "output") if kind == "shuffle" else ("input", "middle")
                    if style.startswith("subpixel:SubPixelConv"):
                        positions = ("middle", "output")
                    j = turns.get((producer, precision, kind), 0)
                    turns[producer, precision, kind] = j + 1
                    position = positions[(j + j // 2) % 2]
                    specs.append(
                        Spec(
                            family,
                            style,
                            producer,
                            kind,
                            factor,
                            order,
                            channels,
                            position,
                            dynamic,
                            precision,
                        )
                    )
    return specs + _arch_specs(full=False) + _negative_specs(full=False)


# ---------------------------------------------------------------------------
# building
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Exporters' and converters' chatter, silenced (Python-level output only)."""
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        yield


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(_stable_seed(name))


def _stable_seed(text: str) -> int:
    import zlib

    return zlib.crc32(text.encode())


def build_matrix(
    folder: str | os.PathLike, specs: Iterable[Spec] | None = None, *, full: bool | None = None
) -> list[Fixture]:
    """Build ``specs`` (default: :func:`default_specs`, or :func:`full_specs` with
    ``full=True`` or ``SUBPIXEL_AUDIT_FULL=1``) into ``folder``, each verified."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if specs is None:
        if full is None:
            full = os.environ.get("SUBPIXEL_AUDIT_FULL") == "1"
        specs = full_specs() if full else default_specs()
    fixtures = [build(spec, folder) for spec in specs]
    import json

    (folder / "manifest.json").write_text(json.dumps(manifest(fixtures), indent=1))
    return fixtures


def manifest(fixtures: list[Fixture]) -> list[dict]:
    """The matrix as JSON-able records (``manifest.json`` beside the files): what each
    file is, its sites and what the runtime showed at each."""
    out = []
    for f in fixtures:
        out.append(
            {
                "name": f.name,
                "path": str(f.path),
                "producer": f.producer,
                "description": f.description,
                "dynamic": f.dynamic,
                "input_shape": list(f.input_shape),
                "input_layout": f.input_layout,
                "output_layout": f.output_layout,
                "precision": f.precision,
                "movements": list(f.movements),
                "sites": [dataclasses.asdict(s) for s in f.sites],
                "source_sites": [dataclasses.asdict(s) for s in f.source_sites],
                "site_checks": [dataclasses.asdict(c) for c in f.site_checks],
                "faithful": f.faithful,
                "max_diff": f.max_diff,
                "tolerance": f.tolerance,
                "ops": list(f.ops),
                "max_rank": f.max_rank,
                "findings": f.findings,
                "notes": f.notes,
                "error": f.error,
                "convert_seconds": round(f.convert_seconds, 3),
                "intermediate": str(f.intermediate) if f.intermediate else None,
            }
        )
    return out


def build(spec: Spec, folder: str | os.PathLike) -> Fixture:
    """One fixture: its source model, the file, and the verification."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if spec.family in ("torch", "keras"):
        src = _site_source(spec)
    elif spec.family == "arch":
        src = _arch_source(spec)
    elif spec.family == "negative":
        src = _negative_source(spec)
    else:
        raise ValueError(f"unknown family {spec.family!r}")
    try:
        fixture = _produce(spec, src, folder)
    except (Exception, SystemExit) as exc:  # the exporter or converter refuses the model
        text = f"{type(exc).__name__}: {exc}".strip().splitlines()
        return Fixture(
            name=spec.name,
            path=folder / spec.name,
            producer=spec.producer + ("" if spec.precision == "float32" else f" {spec.precision}"),
            sites=[],
            input_shape=tuple(src.example.shape),
            dynamic=spec.dynamic,
            description=f"{src.description}; {_producer_note(spec)}",
            source=src.model,
            example=src.example,
            precision=spec.precision,
            movements=src.movements,
            source_sites=list(src.sites),
            spec=spec,
            error=" ".join(line.strip() for line in text)[:400],
        )
    t = time.perf_counter()
    verify(fixture, src)
    fixture.verify_seconds = time.perf_counter() - t
    return fixture


@dataclass
class _Source:
    """A source model and what construction says about it."""

    framework: str  # "torch" | "keras"
    model: Any
    example: Any  # NumPy, the source's layout
    example2: Any  # a second size (dynamic files run at both)
    sites: list[ExpectedSite]  # in the source's own layout
    description: str
    movements: tuple[str, ...] = ()


def _example(spec_name: str, shape: tuple[int, ...]) -> np.ndarray:
    return _rng(spec_name + str(shape)).standard_normal(shape).astype(np.float32)


def _site_shapes(spec: Spec) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Input shapes (channels-first) of a site model at its two sizes."""
    cin = CIN
    if spec.kind == "unshuffle" and spec.position == "input":
        cin = spec.channels
    size, size2 = (HR_SIZE, HR_SIZE2) if spec.kind == "unshuffle" else (LR_SIZE, LR_SIZE2)
    return (N, cin, *size), (N2, cin, *size2)


# ---- PyTorch site models -------------------------------------------------------


def _torch_site_module(style: str, kind: str, factor: tuple[int, int], order: str) -> Any:
    import torch
    import torch.nn.functional as F
    from torch import nn

    r = factor[0]
    sh, sw = factor

    class ViewPermute(nn.Module):
        """BasicSR's hand-written pixel_unshuffle (view -> permute -> reshape), and the
        same written for a shuffle; any factor per axis, CRD."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, c, h, w = x.shape
            if kind == "unshuffle":
                hh, hw = h // sh, w // sw
                x = x.view(b, c, hh, sh, hw, sw)
                return x.permute(0, 1, 3, 5, 2, 4).reshape(b, c * sh * sw, hh, hw)
            oc = c // (sh * sw)
            x = x.view(b, oc, sh, sw, h, w)
            return x.permute(0, 1, 4, 2, 5, 3).reshape(b, oc, h * sh, w * sw)

    class Einops(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            from einops import rearrange

            chan = "(c a b)" if order == "CRD" else "(a b c)"
            if kind == "shuffle":
                return rearrange(x, f"n {chan} h w -> n c (h a) (w b)", a=sh, b=sw)
            return rearrange(x, f"n c (h a) (w b) -> n {chan} h w", a=sh, b=sw)

    class Functional(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if style == "F.pixel_shuffle":
                return F.pixel_shuffle(x, r)
            return torch.pixel_unshuffle(x, r)

    if style in ("nn.PixelShuffle", "nn.PixelUnshuffle"):
        return nn.PixelShuffle(r) if kind == "shuffle" else nn.PixelUnshuffle(r)
    if style in ("F.pixel_shuffle", "torch.pixel_unshuffle"):
        return Functional()
    if style == "view/permute":
        return ViewPermute()
    if style == "einops.rearrange":
        return Einops()
    if style.startswith("subpixel:"):
        from subpixel.layers import torch as sp

        lowering = style.split(":")[1]
        cls = sp.PixelShuffle if kind == "shuffle" else sp.PixelUnshuffle
        return cls(factor, order=order, lowering=lowering)
    raise ValueError(f"unknown PyTorch style {style!r}")


def _torch_site_source(spec: Spec) -> _Source:
    import torch
    from torch import nn

    torch.manual_seed(_stable_seed(spec.name))
    R = math.prod(spec.factor)
    C = spec.channels
    shape, shape2 = _site_shapes(spec)
    layers: list[nn.Module] = []
    if spec.style == "subpixel:SubPixelConv2d":
        from subpixel.layers.torch import SubPixelConv2d

        lowering = "native" if spec.factor[0] == spec.factor[1] else "reshape"
        layers.append(
            SubPixelConv2d(
                CIN, C, 3, spec.factor, order=spec.order, init="default", lowering=lowering
            )
        )
        with torch.no_grad():
            for p in layers[-1].parameters():
                p.uniform_(-0.5, 0.5)
        if spec.position == "middle":
            layers.append(nn.Conv2d(C, COUT, 3, padding=1))
        desc = f"SubPixelConv2d(order={spec.order}, lowering={lowering})"
    else:
        site = _torch_site_module(spec.style, spec.kind, spec.factor, spec.order)
        if spec.kind == "shuffle":
            layers += [nn.Conv2d(CIN, C * R, 3, padding=1), site]
            if spec.position == "middle":
                layers.append(nn.Conv2d(C, COUT, 3, padding=1))
        else:
            if spec.position == "middle":
                layers.append(nn.Conv2d(CIN, C, 3, padding=1))
            layers += [site, nn.Conv2d(C * R, COUT, 3, padding=1)]
        desc = f"{spec.style} {spec.kind}"
    model = nn.Sequential(*layers).eval()
    site = ExpectedSite(spec.kind, tuple(spec.factor), spec.order, CF, C)
    where = {
        "middle": "conv -> site -> conv",
        "output": "conv -> site (output)",
        "input": "site (input) -> conv",
    }
    return _Source(
        "torch",
        model,
        _example(spec.name, shape),
        _example(spec.name + "2", shape2),
        [site],
        f"{desc}, factor {spec.factor}, {spec.order}, C={C}, {where[spec.position]}",
    )


# ---- Keras site models ---------------------------------------------------------


def _keras_site_layer(style: str, kind: str, factor: tuple[int, int], order: str) -> Any:
    import keras

    r = factor[0]

    class TfNn(keras.layers.Layer):
        """``tf.nn.depth_to_space`` / ``space_to_depth`` in a subclassed layer's call()."""

        def call(self, x):
            import tensorflow as tf

            if kind == "shuffle":
                return tf.nn.depth_to_space(x, r)
            return tf.nn.space_to_depth(x, r)

        def compute_output_shape(self, s):
            if kind == "shuffle":
                return (s[0], _mul(s[1], r), _mul(s[2], r), s[3] // (r * r))
            return (s[0], _div(s[1], r), _div(s[2], r), s[3] * r * r)

    class KerasOps(TfNn):
        def call(self, x):
            if kind == "shuffle":
                return keras.ops.depth_to_space(x, r)
            return keras.ops.space_to_depth(x, r)

    if style == "tf.nn":
        return TfNn()
    if style == "keras.ops":
        return KerasOps()
    if style.startswith("subpixel:"):
        from subpixel.layers import keras as sp

        lowering = style.split(":")[1]
        cls = sp.PixelShuffle if kind == "shuffle" else sp.PixelUnshuffle
        return cls(factor, order=order, lowering=lowering)
    raise ValueError(f"unknown Keras style {style!r}")


def _mul(a: Any, r: int) -> Any:
    return None if a is None else a * r


def _div(a: Any, r: int) -> Any:
    return None if a is None else a // r


def _keras_site_source(spec: Spec) -> _Source:
    import keras

    keras.utils.set_random_seed(_stable_seed(spec.name) % (2**31))
    R = math.prod(spec.factor)
    C = spec.channels
    shape, shape2 = _site_shapes(spec)
    nhwc, nhwc2 = _to_nhwc_shape(shape), _to_nhwc_shape(shape2)
    batch = None if spec.dynamic else N
    inp = keras.Input(
        (None, None, nhwc[3]) if spec.dynamic else nhwc[1:], batch_size=batch, name="x"
    )
    init = {"kernel_initializer": "glorot_uniform", "bias_initializer": "random_normal"}
    h = inp
    if spec.style == "subpixel:SubPixelConv":
        from subpixel.layers.keras import SubPixelConv

        lowering = "native" if spec.factor[0] == spec.factor[1] else "reshape"
        h = SubPixelConv(C, 3, spec.factor, order=spec.order, lowering=lowering, **init)(h)
        if spec.position == "middle":
            h = keras.layers.Conv2D(COUT, 3, padding="same", **init)(h)
        desc = f"SubPixelConv(order={spec.order}, lowering={lowering})"
    else:
        site = _keras_site_layer(spec.style, spec.kind, spec.factor, spec.order)
        if spec.kind == "shuffle":
            h = keras.layers.Conv2D(C * R, 3, padding="same", **init)(h)
            h = site(h)
            if spec.position == "middle":
                h = keras.layers.Conv2D(COUT, 3, padding="same", **init)(h)
        else:
            if spec.position == "middle":
                h = keras.layers.Conv2D(C, 3, padding="same", **init)(h)
            h = site(h)
            h = keras.layers.Conv2D(COUT, 3, padding="same", **init)(h)
        desc = f"Keras {spec.style} {spec.kind}"
    model = keras.Model(inp, h)
    site = ExpectedSite(spec.kind, tuple(spec.factor), spec.order, CL, C)
    where = {
        "middle": "conv -> site -> conv",
        "output": "conv -> site (output)",
        "input": "site (input) -> conv",
    }
    return _Source(
        "keras",
        model,
        _example(spec.name, nhwc),
        _example(spec.name + "2", nhwc2),
        [site],
        f"{desc}, factor {spec.factor}, {spec.order}, C={C}, {where[spec.position]}",
    )


def _to_nhwc_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[0], *shape[2:], shape[1])


def _site_source(spec: Spec) -> _Source:
    return _torch_site_source(spec) if spec.family == "torch" else _keras_site_source(spec)


# ---- architectures ----------------------------------------------------------------


def _arch_source(spec: Spec) -> _Source:
    from _support import architectures

    arch, config, (h, w) = ARCHS[spec.style]
    model = architectures.build(arch, seed=_stable_seed(spec.style), **config)
    sites = [
        ExpectedSite(kind, factor, "CRD", CF, channels)
        for kind, factor, channels in architectures.expected_sites(model)
    ]
    h2, w2 = (h * 2, w + 2) if arch != "RRDBNet" else (h + 4, w * 2)
    return _Source(
        "torch",
        model,
        _example(spec.name, (N, 3, h, w)),
        _example(spec.name + "2", (N2, 3, h2, w2)),
        sites,
        f"{arch}({', '.join(f'{k}={v}' for k, v in config.items())}), random weights",
    )


# ---- negatives -----------------------------------------------------------------------


def _negative_source(spec: Spec) -> _Source:
    family, movements = NEGATIVES[spec.style]
    return (_torch_negative if family == "torch" else _keras_negative)(spec, movements)


def _torch_negative(spec: Spec, movements: tuple[str, ...]) -> _Source:
    import torch
    from torch import nn

    torch.manual_seed(_stable_seed(spec.name))
    kind = spec.style
    H, W = LR_SIZE

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(CIN, 6, 3, padding=1)
            self.conv2 = nn.Conv2d(6, COUT, 3, padding=1)
            self.linear = nn.Linear(6 * H * W, 5)
            self.mix = nn.Linear(6, 6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.conv1(x)
            n, c, hh, ww = h.shape
            if kind == "channel_shuffle":  # ShuffleNet: 2 groups of 3 channels interleaved
                h = h.view(n, 2, c // 2, hh, ww).transpose(1, 2).reshape(n, c, hh, ww)
                return self.conv2(h)
            if kind == "flatten_nchw":
                return self.linear(h.flatten(1))
            if kind == "flatten_nhwc":
                return self.linear(h.permute(0, 2, 3, 1).flatten(1))
            if kind == "layout_transpose":
                h = self.mix(h.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
                return self.conv2(h)
            if kind == "plain_reshape":
                h = torch.softmax(h.reshape(n, c, hh * ww), -1).reshape(n, c, hh, ww)
                return self.conv2(h)
            raise ValueError(kind)

    desc = {
        "channel_shuffle": "ShuffleNet channel shuffle (view/transpose/reshape within the channel axis, 2 groups)",
        "flatten_nchw": "NCHW flatten -> Linear head",
        "flatten_nhwc": "permute to NHWC, flatten -> Linear head",
        "layout_transpose": "NCHW -> NHWC permute, Linear over channels, permute back",
        "plain_reshape": "reshape (N, C, H*W), softmax over space, reshape back",
    }[kind]
    dynamic_ok = kind not in ("flatten_nchw", "flatten_nhwc")  # a Linear fixes H and W
    shape2 = (N2, CIN, *LR_SIZE2) if dynamic_ok else (N2, CIN, H, W)
    return _Source(
        "torch",
        Net().eval(),
        _example(spec.name, (N, CIN, H, W)),
        _example(spec.name + "2", shape2),
        [],
        desc,
        movements,
    )


def _keras_negative(spec: Spec, movements: tuple[str, ...]) -> _Source:
    import keras

    keras.utils.set_random_seed(_stable_seed(spec.name) % (2**31))
    H, W = LR_SIZE
    kind = spec.style
    fixed = kind == "keras_flatten" or not spec.dynamic
    shape = (H, W, CIN) if fixed else (None, None, CIN)
    inp = keras.Input(shape, batch_size=None if spec.dynamic else N, name="x")
    h = keras.layers.Conv2D(6, 3, padding="same")(inp)
    if kind == "keras_channel_shuffle":
        h = keras.layers.Reshape((H, W, 2, 3))(h) if fixed else _dyn_channel_shuffle(h)
        if fixed:
            h = keras.layers.Permute((1, 2, 4, 3))(h)
            h = keras.layers.Reshape((H, W, 6))(h)
        h = keras.layers.Conv2D(COUT, 3, padding="same")(h)
        desc = "Keras channel shuffle (Reshape/Permute/Reshape within the channel axis, 2 groups)"
    elif kind == "keras_flatten":
        h = keras.layers.Dense(5)(keras.layers.Flatten()(h))
        desc = "Keras NHWC Flatten -> Dense head"
    else:
        h = _keras_softmax_reshape(h)
        h = keras.layers.Conv2D(COUT, 3, padding="same")(h)
        desc = "Keras reshape (N, H*W, C), softmax over space, reshape back"
    model = keras.Model(inp, h)
    s2 = (N2, H, W, CIN) if kind == "keras_flatten" else (N2, *LR_SIZE2, CIN)
    return _Source(
        "keras",
        model,
        _example(spec.name, (N, H, W, CIN)),
        _example(spec.name + "2", s2),
        [],
        desc,
        movements,
    )


def _dyn_channel_shuffle(h: Any) -> Any:
    import keras

    class ChannelShuffle(keras.layers.Layer):
        def call(self, x):
            s = keras.ops.shape(x)
            x = keras.ops.reshape(x, (s[0], s[1], s[2], 2, 3))
            x = keras.ops.transpose(x, (0, 1, 2, 4, 3))
            return keras.ops.reshape(x, (s[0], s[1], s[2], 6))

    return ChannelShuffle()(h)


def _keras_softmax_reshape(h: Any) -> Any:
    import keras

    class SoftmaxOverSpace(keras.layers.Layer):
        def call(self, x):
            s = keras.ops.shape(x)
            y = keras.ops.reshape(x, (s[0], s[1] * s[2], s[3]))
            return keras.ops.reshape(keras.ops.softmax(y, axis=1), s)

    return SoftmaxOverSpace()(h)


# ---------------------------------------------------------------------------
# producers
# ---------------------------------------------------------------------------


def export_torch_onnx(
    model: Any, example: np.ndarray, path: Path, *, dynamo: bool, dynamic: bool, opset: int = 17
) -> None:
    """``torch.onnx.export`` with either exporter; ``dynamic``: batch and spatial sizes."""
    import torch

    x = torch.from_numpy(example)
    kw: dict[str, Any] = {}
    dims = [0, *range(2, x.dim())]
    if dynamic and dynamo:
        kw["dynamic_shapes"] = ({i: torch.export.Dim.AUTO for i in dims},)
    elif dynamic:
        kw["dynamic_axes"] = {"x": {i: f"x{i}" for i in dims}, "y": {0: "y0"}}
    with _quiet(), torch.no_grad():
        torch.onnx.export(
            model.eval(),
            (x,),
            str(path),
            dynamo=dynamo,
            opset_version=opset,
            input_names=["x"],
            output_names=["y"],
            **kw,
        )


CALIBRATION_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"


def onnx2tf_convert(
    onnx_path: Path, out_folder: Path, *, onnxsim_in_process: bool | None = None
) -> dict[str, Path]:
    """onnx2tf on a copy of ``onnx_path`` (onnx2tf simplifies its input in place), in a
    working folder that holds a random calibration sample (else onnx2tf downloads
    one).  onnx2tf simplifies its input with onnxsim first, as three ``onnxsim``
    subprocesses (about 6 s each on this 2-core machine, 90 % of a conversion);
    ``onnxsim_in_process`` (default, unless ``SUBPIXEL_AUDIT_ONNXSIM=subprocess``) runs
    the same simplification once in this process and tells onnx2tf to skip its own.
    Returns ``{"float32": path, "float16": path}``."""
    if onnxsim_in_process is None:
        onnxsim_in_process = os.environ.get("SUBPIXEL_AUDIT_ONNXSIM") != "subprocess"
    import shutil

    import onnx2tf

    out_folder.mkdir(parents=True, exist_ok=True)
    work = out_folder / "work"
    work.mkdir(exist_ok=True)
    calib = work / CALIBRATION_FILE
    if not calib.exists():
        np.save(calib, np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32))
    copy = work / onnx_path.name
    if onnxsim_in_process:
        import onnx
        import onnxsim

        with _quiet():
            simplified, ok = onnxsim.simplify(onnx.load(str(onnx_path)))
        onnx.save(simplified if ok else onnx.load(str(onnx_path)), str(copy))
    else:
        shutil.copyfile(onnx_path, copy)
    cwd, path_env = os.getcwd(), os.environ.get("PATH", "")
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + path_env
    said = io.StringIO()
    try:
        os.chdir(work)
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(said),
            contextlib.redirect_stderr(said),
        ):
            warnings.simplefilter("ignore")
            onnx2tf.convert(
                input_onnx_file_path=str(copy),
                output_folder_path=str(out_folder / "saved_model"),
                non_verbose=True,
                not_use_onnxsim=onnxsim_in_process,
            )
    except SystemExit as exc:  # onnx2tf ends the process on some conversion errors
        lines = [line for line in said.getvalue().splitlines() if line.strip()]
        raise RuntimeError(f"onnx2tf exited ({exc.code}): {' | '.join(lines[-3:])}") from None
    finally:
        os.chdir(cwd)
        os.environ["PATH"] = path_env
    out = {}
    for prec in ("float32", "float16"):
        made = out_folder / "saved_model" / f"{copy.stem}_{prec}.tflite"
        target = out_folder / f"{copy.stem}_{prec}.tflite"
        shutil.move(str(made), target)
        out[prec] = target
    shutil.rmtree(out_folder / "saved_model", ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    return out


def litert_torch_convert(model: Any, example: np.ndarray, path: Path) -> None:
    import litert_torch
    import torch

    with _quiet():
        edge = litert_torch.convert(model.eval(), (torch.from_numpy(example),))
        edge.export(str(path))


def tf2onnx_convert(model: Any, example: np.ndarray, path: Path, *, dynamic: bool) -> None:
    import tensorflow as tf
    import tf2onnx

    shape = tuple(model.inputs[0].shape) if dynamic else example.shape
    spec = (tf.TensorSpec(shape, tf.float32, name="x"),)
    with _quiet():
        tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, output_path=str(path))


def tflite_convert(
    model: Any, path: Path, *, precision: str, representative: Iterable[np.ndarray] | None = None
) -> None:
    """TensorFlow's TFLiteConverter on a Keras model, builtin ops only: float32,
    float16 (weights) or int8 (full integer, float input/output, calibrated on
    ``representative``)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if precision == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        batch = model.inputs[0].shape[0] or 1
        samples = [
            np.repeat(s[None], batch, 0)
            for s in (representative if representative is not None else [])
        ]
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([s] for s in samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with _quiet():
        blob = converter.convert()
    path.write_bytes(blob)


def _produce(spec: Spec, src: _Source, folder: Path) -> Fixture:
    name = spec.name
    producer = spec.producer
    base = folder / name
    intermediate = None
    sites = [dataclasses.replace(s) for s in src.sites]
    in_layout = out_layout = CF if src.framework == "torch" else CL
    dynamic = spec.dynamic
    t = time.perf_counter()
    if producer in (TS, DYNAMO):
        path = base.with_suffix(".onnx")
        export_torch_onnx(src.model, src.example, path, dynamo=producer == DYNAMO, dynamic=dynamic)
        convert_seconds = time.perf_counter() - t
    elif producer == ONNX2TF:
        intermediate = base.with_suffix(".onnx")
        export_torch_onnx(src.model, src.example, intermediate, dynamo=False, dynamic=dynamic)
        t = time.perf_counter()
        made = onnx2tf_convert(intermediate, folder / f"{name}.onnx2tf")
        convert_seconds = time.perf_counter() - t
        path = base.with_suffix(".tflite")
        made[spec.precision].rename(path)
        for p in made.values():
            if p.exists():
                p.unlink()
        (folder / f"{name}.onnx2tf").rmdir()
        # onnx2tf makes 4-D inputs and outputs NHWC and runs every 4-D op in NHWC
        in_layout = out_layout = CL
        sites = [dataclasses.replace(s, layout=CL) for s in sites]
    elif producer == LITERT_TORCH:
        path = base.with_suffix(".tflite")
        litert_torch_convert(src.model, src.example, path)
        convert_seconds = time.perf_counter() - t
    elif producer == TF2ONNX:
        path = base.with_suffix(".onnx")
        tf2onnx_convert(src.model, src.example, path, dynamic=dynamic)
        convert_seconds = time.perf_counter() - t
        # ONNX ops are NCHW: tf2onnx transposes at the graph's input and output only
        sites = [dataclasses.replace(s, layout=CF) for s in sites]
    elif producer == TFLITE:
        path = base.with_suffix(".tflite")
        rep = None
        if spec.precision == "int8":  # calibrated on the examples' images and 6 more
            more = _rng(name + "rep").standard_normal((6, *src.example.shape[1:]))
            rep = [*src.example, *more.astype(np.float32)]
            if dynamic:  # the second size a dynamic file runs at, too
                rep += list(src.example2)
        tflite_convert(src.model, path, precision=spec.precision, representative=rep)
        convert_seconds = time.perf_counter() - t
    else:
        raise ValueError(f"unknown producer {producer!r}")
    file_example = src.example
    if in_layout != (CF if src.framework == "torch" else CL) and src.example.ndim == 4:
        file_example = np.ascontiguousarray(src.example.transpose(0, 2, 3, 1))
    return Fixture(
        name=name,
        path=path,
        producer=producer + ("" if spec.precision == "float32" else f" {spec.precision}"),
        sites=sites,
        input_shape=tuple(file_example.shape),
        dynamic=dynamic,
        description=f"{src.description}; {_producer_note(spec)}",
        source=src.model,
        example=src.example,
        file_example=file_example,
        input_layout=in_layout,
        output_layout=out_layout,
        precision=spec.precision,
        movements=src.movements,
        source_sites=list(src.sites),
        intermediate=intermediate,
        spec=spec,
        convert_seconds=convert_seconds,
    )


def _producer_note(spec: Spec) -> str:
    dyn = "dynamic batch and spatial sizes" if spec.dynamic else "static shapes"
    return {
        TS: f"torch.onnx.export(dynamo=False, opset 17), {dyn}",
        DYNAMO: f"torch.onnx.export(dynamo=True, opset 17 asked), {dyn}",
        ONNX2TF: f"torch.onnx TorchScript export ({dyn}) converted by onnx2tf (NHWC), {spec.precision}",
        LITERT_TORCH: "litert_torch.convert (NCHW interface), static shapes",
        TF2ONNX: f"tf2onnx.convert.from_keras (opset 17, NHWC interface), {dyn}",
        TFLITE: f"tf.lite.TFLiteConverter.from_keras_model, {spec.precision}, {dyn}",
    }[spec.producer]


# ---------------------------------------------------------------------------
# running a file with every tensor kept
# ---------------------------------------------------------------------------


@dataclass
class _Op:
    type: str
    inputs: list[Any]
    outputs: list[Any]
    attrs: dict[str, Any]


@dataclass
class _Run:
    """A file run on one input with every tensor kept: ops in execution order,
    tensor values by id, names, quantization."""

    ops: list[_Op]
    values: dict[Any, np.ndarray]
    names: dict[Any, str]
    inputs: list[Any]
    outputs: list[Any]
    quant: dict[Any, tuple[float, int]] = field(default_factory=dict)

    def output(self) -> np.ndarray:
        return self.values[self.outputs[0]]


ONNX_MOVES = {
    "Reshape",
    "Transpose",
    "DepthToSpace",
    "SpaceToDepth",
    "Gather",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
    "Identity",
    "ConvTranspose",
}
TFLITE_MOVES = {
    "RESHAPE": 0,
    "TRANSPOSE": 0,
    "DEPTH_TO_SPACE": 0,
    "SPACE_TO_DEPTH": 0,
    "GATHER": 0,
    "SQUEEZE": 0,
    "EXPAND_DIMS": 0,
    "TRANSPOSE_CONV": 2,
}


def _run_onnx(path: Path, x: np.ndarray, *, keep_all: bool) -> _Run:
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    outputs = [o.name for o in graph.output]
    if keep_all:
        for node in graph.node:
            for o in node.output:
                if o and o not in outputs:
                    graph.output.append(onnx.ValueInfoProto(name=o))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if keep_all:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    inp = session.get_inputs()[0].name
    got = session.run(None, {inp: x})
    values = dict(zip([o.name for o in session.get_outputs()], got))
    values[inp] = x
    for init in graph.initializer:
        values[init.name] = numpy_helper.to_array(init)
    ops = []
    for node in graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        for key, value in list(attrs.items()):
            if isinstance(value, bytes):
                attrs[key] = value.decode()
        if node.op_type == "Constant" and "value" in attrs:
            values[node.output[0]] = numpy_helper.to_array(attrs["value"])
        ops.append(_Op(node.op_type, list(node.input), list(node.output), attrs))
    names = {k: k for k in values}
    return _Run(ops, values, names, [inp], outputs[:1])


def _interpreter(path: Path, *, keep_all: bool) -> Any:
    from ai_edge_litert import interpreter as litert

    kw: dict[str, Any] = {}
    if keep_all:
        kw["experimental_op_resolver_type"] = (
            litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        )
        kw["experimental_preserve_all_tensors"] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return litert.Interpreter(model_path=str(path), **kw)


def _run_tflite(path: Path, x: np.ndarray, *, keep_all: bool) -> _Run:
    it = _interpreter(path, keep_all=keep_all)
    inp = it.get_input_details()[0]
    if tuple(inp["shape"]) != tuple(x.shape):
        it.resize_tensor_input(inp["index"], list(x.shape))
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    if inp["dtype"] != np.float32:
        scale, zero = inp["quantization"]
        info = np.iinfo(inp["dtype"])
        x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(inp["dtype"])
    it.set_tensor(inp["index"], x)
    it.invoke()
    out = it.get_output_details()[0]
    values: dict[Any, np.ndarray] = {}
    names: dict[Any, str] = {}
    quant: dict[Any, tuple[float, int]] = {}
    for d in it.get_tensor_details():
        i = d["index"]
        names[i] = d["name"]
        quant[i] = d["quantization"]
        if keep_all or i == out["index"]:
            with contextlib.suppress(ValueError):
                values[i] = np.array(it.get_tensor(i))
    ops = []
    if keep_all:
        for op in it._get_ops_details():
            if op["op_name"] == "DELEGATE":
                continue
            ops.append(
                _Op(
                    op["op_name"],
                    [int(i) for i in op["inputs"]],
                    [int(i) for i in op["outputs"]],
                    {},
                )
            )
    y = values[out["index"]]
    if out["dtype"] != np.float32:
        scale, zero = out["quantization"]
        values[out["index"]] = (y.astype(np.float32) - zero) * scale
    return _Run(ops, values, names, [inp["index"]], [out["index"]], quant)


def _run(path: Path, x: np.ndarray, *, keep_all: bool = False) -> _Run:
    x = np.ascontiguousarray(x, np.float32)
    if path.suffix == ".onnx":
        return _run_onnx(path, x, keep_all=keep_all)
    return _run_tflite(path, x, keep_all=keep_all)


def describe_ops(
    path: str | os.PathLike, x: np.ndarray
) -> list[tuple[str, list[tuple], list[tuple]]]:
    """``(op type, input shapes, output shapes)`` of every op of a file run on ``x``:
    what a producer writes."""
    run = _run(Path(path), x, keep_all=True)
    shape = lambda t: tuple(run.values[t].shape) if t in run.values else None  # noqa: E731
    return [
        (
            op.type,
            [shape(t) for t in op.inputs if t not in ("", -1)],
            [shape(t) for t in op.outputs],
        )
        for op in run.ops
    ]


# ---------------------------------------------------------------------------
# verification
# ---------------------------------------------------------------------------


def _source_output(src_model: Any, framework: str, x: np.ndarray) -> np.ndarray:
    if framework == "torch":
        import torch

        with torch.no_grad():
            return src_model(torch.from_numpy(x)).numpy()
    return np.asarray(src_model(x, training=False))


def _to_file_layout(y: np.ndarray, source_layout: str, file_layout: str) -> np.ndarray:
    if y.ndim != 4 or source_layout == file_layout:
        return y
    return y.transpose(0, 2, 3, 1) if file_layout == CL else y.transpose(0, 3, 1, 2)


def verify(fixture: Fixture, src: _Source | None = None) -> Fixture:
    """The runtime's word on ``fixture``: output against the source (at the second size
    too where the file is dynamic), then each site from the file's own tensors."""
    framework = "torch" if _is_torch(fixture.source) else "keras"
    source_layout = CF if framework == "torch" else CL
    sizes = [fixture.example]
    if fixture.dynamic and src is not None:
        sizes.append(src.example2)
    worst = 0.0
    scale = 1.0
    for x in sizes:
        ref = _source_output(fixture.source, framework, x)
        fx = (
            x
            if fixture.input_layout == source_layout or x.ndim != 4
            else _to_file_layout(x, source_layout, fixture.input_layout)
        )
        try:
            got = _run(fixture.path, fx).output()
        except Exception as exc:  # the runtime refuses the file at this size
            fixture.findings.append(
                f"runtime failed at input {fx.shape}: {type(exc).__name__}: {str(exc)[:200]}"
            )
            worst = math.inf
            continue
        if ref.ndim == 4 and got.shape == ref.shape and fixture.output_layout != source_layout:
            # onnx2tf keeps an output in the source's layout where a reshape or transpose
            # makes it (it cannot know the layout of a reshape's result)
            fixture.output_layout = source_layout
            fixture.notes.append(f"output kept in {source_layout}")
        ref = _to_file_layout(ref, source_layout, fixture.output_layout)
        if got.shape != ref.shape:
            fixture.findings.append(
                f"output shape {got.shape} != source {ref.shape} at input {fx.shape}"
            )
            worst = math.inf
            continue
        worst = max(worst, float(np.max(np.abs(got.astype(np.float64) - ref))))
        scale = max(scale, float(np.max(np.abs(ref))))
    fixture.max_diff = worst
    fixture.tolerance = TOLERANCE[fixture.precision] * scale
    fixture.faithful = worst <= fixture.tolerance
    if not fixture.faithful:
        fixture.findings.append(
            f"NOT FAITHFUL: max diff {worst:.3g} > tolerance {fixture.tolerance:.3g}"
        )
    try:
        run = _run(fixture.path, fixture.file_example, keep_all=True)
    except Exception as exc:  # the reference kernels refuse what the default ones ran
        text = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:300]
        fixture.findings.append(f"runtime without delegates failed: {text}")
        fixture.site_checks = [SiteCheck("", "", (), (), (), False, None, 0) for _ in fixture.sites]
        return fixture
    fixture.ops = tuple(sorted({op.type for op in run.ops}))
    fixture.max_rank = max((v.ndim for v in run.values.values()), default=0)
    _check_sites(fixture, run)
    return fixture


def _is_torch(model: Any) -> bool:
    return type(model).__module__.startswith("torch") or any(
        c.__module__.startswith("torch.nn") for c in type(model).__mro__
    )


@dataclass
class _Chain:
    ops: list[_Op]
    entry: Any
    exit: Any
    first: int  # position of its first op in execution order
    linear: bool = True  # each op moves the previous op's output


def _is_move(run: _Run, op: _Op, onnx_file: bool) -> int | None:
    """The data input's position when ``op`` only moves data, else None."""
    if onnx_file:
        if op.type in ONNX_MOVES:
            return 0
        if op.type == "Conv":  # the one-hot convolution of lowering="conv": stride = kernel > 1
            strides = op.attrs.get("strides", [1])
            return (
                0
                if max(strides) > 1 and list(strides) == list(op.attrs.get("kernel_shape", []))
                else None
            )
        return None
    if op.type in TFLITE_MOVES:
        return TFLITE_MOVES[op.type]
    if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D"):  # kernel = stride > 1: input = output x kernel
        a, w, b = (run.values.get(t) for t in (op.inputs[0], op.inputs[1], op.outputs[0]))
        if a is not None and w is not None and b is not None and w.ndim == 4:
            kernel = tuple(w.shape[1:3])
            if kernel != (1, 1) and a.shape[1:3] == (
                b.shape[1] * kernel[0],
                b.shape[2] * kernel[1],
            ):
                return 0
    return None


def _chains(run: _Run, onnx_file: bool) -> list[_Chain]:
    """Maximal chains of data-movement ops linked through their data inputs."""
    producer: dict[Any, int] = {}
    for i, op in enumerate(run.ops):
        for t in op.outputs:
            producer[t] = i
    consumers: dict[Any, list[int]] = {}
    data_in: dict[int, list[Any]] = {}
    for i, op in enumerate(run.ops):
        if op.type in ("Concat", "CONCATENATION", "Split", "SPLIT"):
            # a grouped one-hot convolution split per group (onnx2tf) and joined again
            data_in[i] = [t for t in op.inputs if t in run.values and run.values[t].ndim >= 3]
            if op.type == "SPLIT":
                data_in[i] = [op.inputs[1]]
        else:
            pos = _is_move(run, op, onnx_file)
            if pos is not None and pos < len(op.inputs):
                data_in[i] = [op.inputs[pos]]
        for t in op.inputs:
            consumers.setdefault(t, []).append(i)
    parent = {i: i for i in data_in}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, ts in data_in.items():
        for t in ts:
            p = producer.get(t)
            if p is not None and p in data_in:
                parent[find(i)] = find(p)
    groups: dict[int, list[int]] = {}
    for i in data_in:
        groups.setdefault(find(i), []).append(i)
    chains = []
    outputs = set(run.outputs)
    for members in groups.values():
        members.sort()
        mset = set(members)
        entries = list(
            dict.fromkeys(t for i in members for t in data_in[i] if producer.get(t) not in mset)
        )
        exits = [  # a size read by a Shape op does not end a chain
            run.ops[i].outputs[0]
            for i in members
            if run.ops[i].outputs[0] in outputs
            or any(
                c not in mset and run.ops[c].type not in ("Shape", "SHAPE")
                for c in consumers.get(run.ops[i].outputs[0], [])
            )
        ]
        if len(entries) == 1 and len(exits) == 1:
            ops = [run.ops[i] for i in members]
            linear = all(data_in[members[k]] == [ops[k - 1].outputs[0]] for k in range(1, len(ops)))
            chains.append(_Chain(ops, entries[0], exits[0], members[0], linear))
    chains.sort(key=lambda c: c.first)
    return chains


def _layout_perm(run: _Run, op: _Op, onnx_file: bool) -> tuple[int, ...] | None:
    if op.type not in ("Transpose", "TRANSPOSE"):
        return None
    perm = op.attrs.get("perm") if onnx_file else run.values.get(op.inputs[1])
    if perm is None:
        return None
    perm = tuple(int(p) for p in np.asarray(perm).ravel())
    return perm if perm in ((0, 2, 3, 1), (0, 3, 1, 2)) else None


def _boundaries(
    run: _Run, chain: _Chain, onnx_file: bool
) -> list[tuple[Any, Any, tuple[str, ...]]]:
    """Candidate (entry, exit, ops) of a chain: as it is, and without a layout transpose
    at either end."""
    starts = [(chain.entry, 0)]
    if len(chain.ops) > 1 and _layout_perm(run, chain.ops[0], onnx_file):
        starts.append((chain.ops[0].outputs[0], 1))
    ends = [(chain.exit, len(chain.ops))]
    if len(chain.ops) > 1 and _layout_perm(run, chain.ops[-1], onnx_file):
        ends.append((chain.ops[-1].inputs[0], len(chain.ops) - 1))
    out = []
    for (a, i), (b, j) in itertools.product(starts, ends):
        if j > i:
            out.append((a, b, tuple(op.type for op in chain.ops[i:j])))
    # then every shorter run of the chain's ops (a site followed by a reshape, ...)
    n = len(chain.ops)
    if chain.linear:
        for i, j in itertools.combinations(range(n + 1), 2):
            a = chain.entry if i == 0 else chain.ops[i - 1].outputs[0]
            b = chain.ops[j - 1].outputs[0]
            if (a, b) not in {(x, y) for x, y, _ in out}:
                out.append((a, b, tuple(op.type for op in chain.ops[i:j])))
    return out


def _apply(
    kind: str, x: np.ndarray, factor: tuple[int, ...], order: str, layout: str
) -> np.ndarray | None:
    import subpixel

    fn = subpixel.shuffle if kind == "shuffle" else subpixel.unshuffle
    if x.ndim != 4:
        return None
    try:
        return np.asarray(fn(x, factor, layout=layout, order=order))
    except (ValueError, TypeError):
        return None


def _equal(run: _Run, a: Any, b: Any, y: np.ndarray | None) -> tuple[bool, bool]:
    """(equal, requantized): ``y`` (moved from ``a``) against tensor ``b``.  A
    one-channel result equals a tensor of the other layout with the same elements (one
    channel: NCHW and NHWC are the same memory, and producers reshape between them)."""
    got = run.values[b]
    if y is not None and y.shape != got.shape and y.ndim == got.ndim == 4:
        one = 1 in (y.shape[1], y.shape[3]) and 1 in (got.shape[1], got.shape[3])
        if one and y.squeeze().shape == got.squeeze().shape:
            y = y.reshape(got.shape)
    if y is None or y.shape != got.shape:
        return False, False
    if np.array_equal(y, got):
        return True, False
    qa, qb = run.quant.get(a), run.quant.get(b)
    if qa and qb and qa != qb and qa[0] and qb[0] and got.dtype.kind in "iu":
        deq_y = (y.astype(np.float64) - qa[1]) * qa[0]
        deq_b = (got.astype(np.float64) - qb[1]) * qb[0]
        return bool(np.max(np.abs(deq_y - deq_b)) <= max(qa[0], qb[0])), True
    return False, False


def _check_sites(fixture: Fixture, run: _Run) -> None:
    onnx_file = fixture.format == "onnx"
    chains = _chains(run, onnx_file)
    fixture.sites, fixture.site_checks, findings = _match_sites(
        run, chains, fixture.sites, onnx_file
    )
    fixture.findings += [f for f in findings if not f.startswith("note: ")]
    fixture.notes += [f[6:] for f in findings if f.startswith("note: ")]
    if not fixture.sites:
        _check_no_site(fixture, run, chains, onnx_file)


def check_file_sites(
    path: str | os.PathLike, x: np.ndarray, sites: list[ExpectedSite], layout: str | None = None
) -> tuple[list[ExpectedSite], list[SiteCheck]]:
    """Run ``path`` on ``x`` (in the file's layout) and find ``sites`` (kind, factor,
    channels; in ``layout`` if given) in data-flow order by the runtime's tensors: the
    sites as the file applies them (its order) and the checks."""
    path = Path(path)
    run = _run(path, x, keep_all=True)
    onnx_file = path.suffix == ".onnx"
    if layout is not None:
        sites = [dataclasses.replace(s, layout=layout) for s in sites]
    found, checks, _ = _match_sites(run, _chains(run, onnx_file), sites, onnx_file)
    return found, checks


def _match_sites(
    run: _Run, chains: list[_Chain], sites: list[ExpectedSite], onnx_file: bool
) -> tuple[list[ExpectedSite], list[SiteCheck], list[str]]:
    checks: list[SiteCheck] = []
    actual: list[ExpectedSite] = []
    findings: list[str] = []
    pos = 0
    for site in sites:
        other = "DCR" if site.order == "CRD" else "CRD"
        found = None
        # the layout construction says first, then the other one (a converter may keep a
        # part of the graph in the source's layout: onnx2tf before a graph output that
        # a reshape makes, litert-torch's one-channel tensors)
        for layout, k in itertools.product(
            (site.layout, _FLIP[site.layout]), range(pos, len(chains))
        ):
            for a, b, ops in _boundaries(run, chains[k], onnx_file):
                if a not in run.values or b not in run.values:
                    continue
                x = run.values[a]
                if x.ndim != 4 or x.shape[1 if layout == CF else 3] != site.channels * (
                    math.prod(site.factor) if site.kind == "shuffle" else 1
                ):
                    continue  # not the whole site (a group of a grouped one, ...)
                res = {
                    order: _equal(run, a, b, _apply(site.kind, x, site.factor, order, layout))
                    for order in ("CRD", "DCR")
                }
                if res[site.order][0] or res[other][0]:
                    found = (k, a, b, ops, res)
                    break
            if found:
                break
        if not found:
            checks.append(SiteCheck("", "", (), (), (), False, None, 0))
            actual.append(site)
            findings.append(f"site {len(actual) - 1} {site} not found in the runtime's tensors")
            continue
        k, a, b, ops, res = found
        pos = k + 1
        order = site.order if res[site.order][0] else other
        multi = site.channels > 1
        if order != site.order and multi:
            findings.append(
                f"site {len(actual)}: the file applies {order}, the source {site.order} "
                "(a channel permutation folded into a neighbouring kernel)"
            )
        chain = chains[k]
        if layout != site.layout:
            findings.append(f"note: site {len(actual)} runs in {layout}, not {site.layout}")
        la = layout if a == chain.entry else _FLIP[layout]
        lb = layout if b == chain.exit else _FLIP[layout]
        actual.append(
            dataclasses.replace(site, order=order, layout=layout, boundary_layouts=(la, lb))
        )
        other_order = "DCR" if order == "CRD" else "CRD"
        checks.append(
            SiteCheck(
                input_tensor=str(run.names.get(a, a)),
                output_tensor=str(run.names.get(b, b)),
                input_shape=tuple(run.values[a].shape),
                output_shape=tuple(run.values[b].shape),
                ops=ops,
                exact=True,
                other_order_differs=(not res[other_order][0]) if multi else None,
                max_rank=max(
                    [run.values[t].ndim for op in chain.ops for t in op.outputs if t in run.values]
                    + [0]
                ),
                requantized=res[order][1],
            )
        )
    return actual, checks, findings


_FLIP = {CF: CL, CL: CF}


def _check_no_site(fixture: Fixture, run: _Run, chains: list[_Chain], onnx_file: bool) -> None:
    """A negative holds no chain that is a shuffle or unshuffle of any factor, order or
    layout (brute force over factors 2..4 per axis)."""
    for chain in chains:
        for a, b, _ops in _boundaries(run, chain, onnx_file):
            if a not in run.values or b not in run.values:
                continue
            x = run.values[a]
            for kind, f1, f2, order, layout in itertools.product(
                ("shuffle", "unshuffle"), (1, 2, 3, 4), (1, 2, 3, 4), ("CRD", "DCR"), (CF, CL)
            ):
                if f1 == f2 == 1:
                    continue
                if _equal(run, a, b, _apply(kind, x, (f1, f2), order, layout))[0]:
                    fixture.findings.append(
                        f"negative holds a {kind} {(f1, f2)} {order} {layout} between "
                        f"{run.names.get(a, a)} and {run.names.get(b, b)}"
                    )
                    fixture.site_checks.append(SiteCheck(str(a), str(b), (), (), (), True, None, 0))
                    return


# ---------------------------------------------------------------------------
# swapped and unswapped pairs for --against
# ---------------------------------------------------------------------------


def _torch_to_keras_naive(torch_model: Any, factor: int, C: int, example_shape: tuple) -> Any:
    """The same conv -> shuffle -> conv in Keras, weights copied as they are (OIHW ->
    HWIO, no channel reordering) and ``tf.nn.depth_to_space`` (DCR): the classic port."""
    import keras

    conv1, _, conv2 = torch_model
    layer = _keras_site_layer("tf.nn", "shuffle", (factor, factor), "DCR")
    inp = keras.Input(example_shape[1:], batch_size=None, name="x")
    c1 = keras.layers.Conv2D(conv1.out_channels, 3, padding="same")
    c2 = keras.layers.Conv2D(conv2.out_channels, 3, padding="same")
    model = keras.Model(inp, c2(layer(c1(inp))))
    for torch_conv, keras_conv in ((conv1, c1), (conv2, c2)):
        w = torch_conv.weight.detach().numpy().transpose(2, 3, 1, 0)
        keras_conv.set_weights([w, torch_conv.bias.detach().numpy()])
    return model


def build_pairs(folder: str | os.PathLike) -> list[SwappedPair]:
    """Swapped and unswapped pairs, each measured in its runtimes:

    - ``order-keras-naive``: PyTorch conv -> PixelShuffle(2) -> conv (CRD, C=3) exported
      to ONNX, against a Keras model with the same weights copied as they are and
      ``tf.nn.depth_to_space`` (DCR), converted to .tflite: the classic porting bug;
    - ``order-keras-source``: the same two the other way round (the Keras model is
      the source);
    - ``order-onnx-mode``: the same ONNX file with its DepthToSpace mode flipped to DCR by
      ``onnx.helper`` (nothing else changed);
    - ``order-second-site``: RCAN x4 (two PixelShuffle(2)) with only the second
      DepthToSpace flipped: site_index 1;
    - ``layout``: the same PyTorch model whose shuffle is applied to the NCHW tensor as
      if it were NHWC (``subpixel.layers.torch.PixelShuffle(2, layout="channels_last")``
      on the (N, 12, 6, 8) conv output, then a reshape to the (N, 3, 12, 16) the next
      conv expects), exported to ONNX, and that file converted by onnx2tf;
    - unswapped: ONNX against onnx2tf float32 and float16, against litert-torch, and a
      Keras model against its float16 .tflite (float noise only)."""
    import onnx
    import torch
    from torch import nn

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pairs: list[SwappedPair] = []
    torch.manual_seed(7)
    C, r = 3, 2
    model = nn.Sequential(
        nn.Conv2d(CIN, C * r * r, 3, padding=1),
        nn.PixelShuffle(r),
        nn.Conv2d(C, COUT, 3, padding=1),
    ).eval()
    x = _example("pairs", (N, CIN, 6, 8))
    crd = ExpectedSite("shuffle", (r, r), "CRD", CF, C)
    src = folder / "crd_source.onnx"
    export_torch_onnx(model, x, src, dynamo=False, dynamic=False)
    ref = _source_output(model, "torch", x)
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))

    def diff(path: Path, layout: str) -> float:
        got = _run(path, nhwc if layout == CL else x).output()
        return float(np.max(np.abs(got - _to_file_layout(ref, CF, layout))))

    # (a) order: the naive Keras port, converted by TensorFlow's converter
    keras_model = _torch_to_keras_naive(model, r, C, nhwc.shape)
    tgt = folder / "dcr_keras_naive.tflite"
    tflite_convert(keras_model, tgt, precision="float32")
    pairs.append(
        SwappedPair(
            "order-keras-naive",
            src,
            tgt,
            0,
            "order",
            "PyTorch CRD model (ONNX, NCHW) vs Keras with the weights copied as they are and "
            "tf.nn.depth_to_space (DCR), .tflite NHWC",
            [crd],
            [dataclasses.replace(crd, order="DCR", layout=CL)],
            model,
            x,
            diff(tgt, CL),
        )
    )
    # the same the other way round: the Keras model (and its .tflite) is the source
    kref = _source_output(keras_model, "keras", nhwc)
    pairs.append(
        SwappedPair(
            "order-keras-source",
            tgt,
            src,
            0,
            "order",
            "the naive Keras port as the source (source_model: the Keras model, NHWC) "
            "against the PyTorch CRD model's ONNX file",
            [dataclasses.replace(crd, order="DCR", layout=CL)],
            [crd],
            keras_model,
            nhwc,
            float(np.max(np.abs(_to_file_layout(_run(src, x).output(), CF, CL) - kref))),
        )
    )
    # (a) order: the mode attribute flipped in the ONNX file
    flipped = onnx.load(str(src))
    for node in flipped.graph.node:
        if node.op_type == "DepthToSpace":
            for a in node.attribute:
                if a.name == "mode":
                    a.s = b"DCR"
    tgt = folder / "dcr_mode_flipped.onnx"
    onnx.save(flipped, str(tgt))
    pairs.append(
        SwappedPair(
            "order-onnx-mode",
            src,
            tgt,
            0,
            "order",
            "the same ONNX file with DepthToSpace mode CRD -> DCR (onnx.helper edit)",
            [crd],
            [dataclasses.replace(crd, order="DCR")],
            model,
            x,
            diff(tgt, CF),
        )
    )
    # (a) order at the second of two sites
    from _support import architectures

    rcan = architectures.build("RCAN", seed=3, scale=4, feat=8, groups=1, blocks=1)
    xr = _example("rcan-pair", (N, 3, 6, 5))
    rsrc = folder / "rcan_x4.onnx"
    export_torch_onnx(rcan, xr, rsrc, dynamo=False, dynamic=False)
    rflip = onnx.load(str(rsrc))
    d2s = [n for n in rflip.graph.node if n.op_type == "DepthToSpace"]
    for a in d2s[1].attribute:
        if a.name == "mode":
            a.s = b"DCR"
    rtgt = folder / "rcan_x4_second_flipped.onnx"
    onnx.save(rflip, str(rtgt))
    rsites = [ExpectedSite("shuffle", (2, 2), "CRD", CF, 8)] * 2
    rref = _source_output(rcan, "torch", xr)
    pairs.append(
        SwappedPair(
            "order-second-site",
            rsrc,
            rtgt,
            1,
            "order",
            "RCAN x4 (two conv + PixelShuffle(2)), only the second DepthToSpace flipped to DCR",
            rsites,
            [rsites[0], dataclasses.replace(rsites[1], order="DCR")],
            rcan,
            xr,
            float(np.max(np.abs(_run(rtgt, xr).output() - rref))),
        )
    )
    # (b) layout: the shuffle applied to NCHW data as if it were NHWC
    from subpixel.layers.torch import PixelShuffle as SpShuffle

    class LayoutSwapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.conv2 = model[0], model[2]
            self.shuffle = SpShuffle(r, layout="channels_last", order="CRD", lowering="reshape")

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            h = self.conv1(t)
            n, k, hh, ww = h.shape
            h = self.shuffle(h)  # (N, K*r, H*r, W/R): W taken for channels
            return self.conv2(h.reshape(n, k // (r * r), hh * r, ww * r))

    swapped = LayoutSwapped().eval()
    tgt = folder / "layout_swapped.onnx"
    export_torch_onnx(swapped, x, tgt, dynamo=False, dynamic=False)
    # W (8) read as channels: the misapplied shuffle sees 8 / 4 = 2 output channels
    lsite = ExpectedSite("shuffle", (r, r), "CRD", CL, 8 // (r * r))
    pairs.append(
        SwappedPair(
            "layout-onnx",
            src,
            tgt,
            0,
            "layout",
            "the shuffle applied to the NCHW conv output as if it were NHWC (W read as "
            "channels), then reshaped to the shape the next conv expects",
            [crd],
            [lsite],
            model,
            x,
            diff(tgt, CF),
        )
    )
    made = onnx2tf_convert(tgt, folder / "layout_swapped.onnx2tf")
    ltgt = folder / "layout_swapped_onnx2tf.tflite"
    made["float32"].rename(ltgt)
    made["float16"].unlink()
    (folder / "layout_swapped.onnx2tf").rmdir()
    pairs.append(
        SwappedPair(
            "layout-onnx2tf",
            src,
            ltgt,
            0,
            "layout",
            "the layout-swapped ONNX file converted by onnx2tf (NHWC .tflite)",
            [crd],
            [],
            model,
            x,
            diff(ltgt, CL),
        )
    )
    # unswapped: float noise only
    made = onnx2tf_convert(src, folder / "crd_source.onnx2tf")
    for prec, p in made.items():
        target = folder / f"crd_source_onnx2tf_{prec}.tflite"
        p.rename(target)
        pairs.append(
            SwappedPair(
                f"unswapped-onnx2tf-{prec}",
                src,
                target,
                None,
                None,
                f"the ONNX file and its onnx2tf conversion ({prec}, NHWC)",
                [crd],
                [dataclasses.replace(crd, layout=CL)],
                model,
                x,
                diff(target, CL),
            )
        )
    (folder / "crd_source.onnx2tf").rmdir()
    lt = folder / "crd_source_litert_torch.tflite"
    litert_torch_convert(model, x, lt)
    pairs.append(
        SwappedPair(
            "unswapped-litert-torch",
            src,
            lt,
            None,
            None,
            "the ONNX file and litert-torch's .tflite of the same PyTorch model",
            [crd],
            [crd],
            model,
            x,
            diff(lt, CF),
        )
    )
    import keras

    keras.utils.set_random_seed(11)
    inp = keras.Input((6, 8, CIN), name="x")
    h = keras.layers.Conv2D(C * 4, 3, padding="same", bias_initializer="random_normal")(inp)
    h = _keras_site_layer("tf.nn", "shuffle", (2, 2), "DCR")(h)
    kmodel = keras.Model(inp, keras.layers.Conv2D(COUT, 3, padding="same")(h))
    k32, k16 = folder / "keras_float32.tflite", folder / "keras_float16.tflite"
    tflite_convert(kmodel, k32, precision="float32")
    tflite_convert(kmodel, k16, precision="float16")
    kref = _source_output(kmodel, "keras", nhwc)
    dcr = ExpectedSite("shuffle", (2, 2), "DCR", CL, C)
    pairs.append(
        SwappedPair(
            "unswapped-keras-float16",
            k32,
            k16,
            None,
            None,
            "a Keras tf.nn.depth_to_space model's float32 .tflite against its float16 one "
            "(source_model: the Keras model)",
            [dcr],
            [dcr],
            kmodel,
            nhwc,
            float(np.max(np.abs(_run(k16, nhwc).output() - kref))),
        )
    )
    return pairs


# ---------------------------------------------------------------------------
# reporting
# ---------------------------------------------------------------------------


def summary(fixtures: list[Fixture]) -> str:
    """Counts, conversion and verification time per producer, and every finding."""
    rows: dict[str, list[Fixture]] = {}
    for f in fixtures:
        rows.setdefault(f.producer, []).append(f)
    lines = [
        f"{'producer':<26} {'files':>5} {'sites':>5} {'convert s':>10} {'per file':>9} {'verify s':>9}"
    ]
    for producer, fs in sorted(rows.items()):
        conv = sum(f.convert_seconds for f in fs)
        ver = sum(f.verify_seconds for f in fs)
        lines.append(
            f"{producer:<26} {len(fs):>5} {sum(len(f.sites) for f in fs):>5} "
            f"{conv:>10.1f} {conv / len(fs):>9.2f} {ver:>9.1f}"
        )
    for f in fixtures:
        if f.error:
            lines.append(f"conversion failed: {f.name}: {f.error}")
        for note in f.findings:
            lines.append(f"finding: {f.name}: {note}")
    return "\n".join(lines)
