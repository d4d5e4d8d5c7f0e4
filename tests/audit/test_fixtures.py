"""The audit fixture factory's own claims, so that it cannot rot silently: every file of
the default matrix agrees with its source model in its runtime, every expected site is
where the runtime's tensors say, in the order and layout said, and the negatives hold no
shuffle of any factor, order or layout.  Nothing here uses audit code: these tests check
the factory, the audit's tests use what it builds (conftest.py)."""

from __future__ import annotations

import collections
import os

import numpy as np
import pytest

from audit import factory

FULL = os.environ.get("SUBPIXEL_AUDIT_FULL") == "1"
SPECS = factory.full_specs() if FULL else factory.default_specs()

# Converters found here not to be faithful, or to move a site's order on purpose, with
# the exact case (tests/audit/README.md): the fixtures stay in the matrix with
# faithful=False / the file's own order.
KNOWN_UNFAITHFUL: dict[str, str] = {}
KNOWN_ORDER_CHANGES = {
    # TFLite's DEPTH_TO_SPACE is DCR only: subpixel's CRD SubPixelConv(lowering="native")
    # permutes its kernel's output channels at conversion, so the file's site is DCR
    "subpixel:SubPixelConv",
}


def test_matrix_enumerations_are_consistent():
    names = [s.name for s in SPECS]
    assert len(names) == len(set(names))
    full = factory.full_specs()
    assert len({s.name for s in full}) == len(full)
    assert {s.name for s in SPECS if s.family in ("torch", "keras")} <= {s.name for s in full}
    # the default matrix covers every producer, style, factor, C, both sizes modes, positions
    assert {s.producer for s in SPECS} == set(factory.PRODUCERS)
    assert {s.style for s in SPECS if s.family == "torch"} == set(factory.TORCH_STYLES)
    assert {s.style for s in SPECS if s.family == "keras"} == set(factory.KERAS_STYLES)
    sites = [s for s in SPECS if s.family in ("torch", "keras")]
    assert {s.factor for s in sites} == set(factory.FACTORS)
    assert {s.channels for s in sites} == {1, 3}
    assert {s.dynamic for s in sites} == {False, True}
    assert {s.position for s in sites} == {"middle", "output", "input"}
    assert {s.precision for s in sites} == {"float32", "float16", "int8"}
    assert {s.order for s in sites} == {"CRD", "DCR"}
    assert {s.style for s in SPECS if s.family == "arch"} == set(factory.ARCHS)
    assert {s.style for s in SPECS if s.family == "negative"} == set(factory.NEGATIVES)
    for producer in factory.PRODUCERS:  # C > 1 everywhere: one channel hides the order
        assert any(s.channels == 3 for s in sites if s.producer == producer)


def test_architectures_name_their_sites():
    pytest.importorskip("torch")
    import torch
    from _support import architectures

    cases = {  # the default feature width is 8
        ("RRDBNet", 2): [("unshuffle", (2, 2), 3)],
        ("RRDBNet", 4): [],
        ("SRVGGNetCompact", 4): [("shuffle", (4, 4), 3)],
        ("RCAN", 4): [("shuffle", (2, 2), 8), ("shuffle", (2, 2), 8)],
        ("RCAN", 3): [("shuffle", (3, 3), 8)],
        ("EDSR", 2): [("shuffle", (2, 2), 8)],
        ("SPAN", 2): [("shuffle", (2, 2), 3)],
    }
    for (name, scale), sites in cases.items():
        model = architectures.build(name, scale=scale)
        assert architectures.expected_sites(model) == sites
        with torch.no_grad():
            y = model(torch.randn(2, 3, 8, 12))
        assert tuple(y.shape) == (2, 3, 8 * scale, 12 * scale)


@pytest.fixture(scope="module")
def built(fixtures_by_name):
    return fixtures_by_name


# Converters that refuse a model of the matrix, by (producer, style, kind): the error
# must still be the one recorded, so that a fixed converter shows here
KNOWN_CONVERSION_FAILURES = {
    # litert-torch 0.9.4 lowers a grouped conv_transpose2d (subpixel's lowering="conv"
    # for a CRD shuffle: one group per output channel) with the wrong kernel feature
    # dimension: MLIR verification fails ("feature_group_count")
    (factory.LITERT_TORCH, "subpixel:conv", "shuffle", "CRD"): "feature_group_count",
    # onnx2tf 1.29.24 on a grouped (group = C > 1) Conv with a non-square kernel = stride
    # (subpixel's lowering="conv" CRD unshuffle by (2, 3)): its saved_model step refuses
    # an op name ("/0/Conv/kernel") and the converter exits; square factors convert
    (factory.ONNX2TF, "subpixel:conv", "unshuffle", "CRD"): "OP name does not match",
}


# onnx2tf 1.29.24 on a TorchScript ONNX file with dynamic batch and spatial sizes: where
# the site is a Reshape/Transpose chain in the ONNX file, the .tflite's RESHAPE gets a
# wrong target shape and the file does not run at any size ("num_input_elements !=
# num_output_elements"), or the conversion itself fails (torch.pixel_unshuffle:
# "Keras symbolic inputs/outputs do not implement `__len__`"); DepthToSpace/SpaceToDepth
# and convolution sites convert and run.  A one-channel lowering="conv" shuffle runs
# with the default XNNPACK delegate but TFLite's reference TRANSPOSE_CONV refuses it
# ("computed_input_height != SizeOfDimension"), so its tensors cannot be read.
ONNX2TF_DYNAMIC_BROKEN = {
    "view/permute": "num_input_elements != num_output_elements",
    "einops.rearrange": "num_input_elements != num_output_elements",
    "subpixel:reshape": "num_input_elements != num_output_elements",
    "subpixel:flat": "num_input_elements != num_output_elements",
    "nn.PixelUnshuffle": "do not implement `__len__`",
    "torch.pixel_unshuffle": "do not implement `__len__`",
    "subpixel:conv": "computed_input_height != SizeOfDimension",
    # a non-square factor: lowering="reshape" (a square one is DepthToSpace and runs)
    "subpixel:SubPixelConv2d": "num_input_elements != num_output_elements",
}


# the same onnx2tf on the dynamic architectures and negatives (full matrix): RRDBNet,
# RCAN and EDSR do not convert, SRVGGNetCompact's ADD gets shapes that do not broadcast,
# the channel shuffle and plain reshape get wrong RESHAPE shapes, the layout transpose
# gets Flex (Select TF) ops that the builtin interpreter does not run
ONNX2TF_DYNAMIC_MODELS_BROKEN = (
    "do not implement `__len__`",
    "Dimensions must be equal",
    "not broadcastable",
    "num_input_elements != num_output_elements",
    "Select TensorFlow op(s)",
)


def _known_broken(f) -> tuple[str, ...] | None:
    spec = f.spec
    known = KNOWN_CONVERSION_FAILURES.get((spec.producer, spec.style, spec.kind, spec.order))
    if known is not None:
        return (known,)
    if spec.producer == factory.ONNX2TF and spec.dynamic:
        if spec.family in ("arch", "negative"):
            return ONNX2TF_DYNAMIC_MODELS_BROKEN
        if spec.style in ONNX2TF_DYNAMIC_BROKEN:
            return (ONNX2TF_DYNAMIC_BROKEN[spec.style],)
    return None


@pytest.mark.parametrize("name", [s.name for s in SPECS])
def test_fixture_claims(built, name):
    f = built[name]
    spec = f.spec
    known = _known_broken(f)
    if known is not None and not f.verified:
        said = " ".join([f.error or "", *f.findings])
        assert any(k in said for k in known), (f.error, f.findings)
        return
    assert f.error is None, f.error
    assert f.path.exists() and f.path.stat().st_size > 0
    assert f.producer.split(" float")[0].split(" int8")[0] == spec.producer
    # (i) the file's output against the source model's, at every size it ran
    if name in KNOWN_UNFAITHFUL:
        assert not f.faithful, f"{name} is faithful now: drop it from KNOWN_UNFAITHFUL"
    else:
        assert f.faithful, f"{name}: max diff {f.max_diff} > {f.tolerance}; {f.findings}"
    # (ii) every site found in the runtime's own tensors, exactly, in data-flow order
    assert len(f.sites) == len(f.source_sites) == len(f.site_checks)
    for site, source_site, check in zip(f.sites, f.source_sites, f.site_checks):
        assert check.exact, f.findings
        assert (site.kind, site.factor, site.channels) == (
            source_site.kind,
            source_site.factor,
            source_site.channels,
        )
        if site.channels > 1:
            assert check.other_order_differs, "with C > 1 the other order must not match"
            if site.order != source_site.order:
                assert spec.style in KNOWN_ORDER_CHANGES, f.findings
        assert site.boundary_layouts is not None
    # negatives: no shuffle of any factor, order or layout anywhere
    if spec.family == "negative":
        assert f.sites == [] and f.movements
        assert f.site_checks == [], f.findings


def test_site_layouts_per_producer(fixture_matrix):
    """Where each producer's sites run (C > 1; with one channel NCHW and NHWC are the
    same memory and producers reshape between them freely)."""
    seen = collections.defaultdict(set)
    for f in fixture_matrix:
        producer = f.producer.split(" float")[0].split(" int8")[0]
        for site, check in zip(f.sites, f.site_checks):
            if site.channels > 1:
                seen[producer].add((site.layout, site.boundary_layouts, check.ops))
    cf, cl = factory.CF, factory.CL
    convs = {"CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV"}
    for producer in (factory.TS, factory.DYNAMO):
        assert {layout for layout, _, _ in seen[producer]} == {cf}
    # tf2onnx moves the NHWC interface's transposes inward to the first/last conv; a
    # reshape/transpose site next to the input or output stays NHWC before that transpose
    assert cf in {layout for layout, _, _ in seen[factory.TF2ONNX]}
    for layout, ends, _ in seen[factory.TF2ONNX]:
        assert layout == cf or cf in ends
    assert {layout for layout, _, _ in seen[factory.TFLITE]} == {cl}
    # onnx2tf: NHWC, but a site that makes the graph's output runs NCHW after a transpose
    assert cl in {layout for layout, _, _ in seen[factory.ONNX2TF]}
    for layout, ends, _ in seen[factory.ONNX2TF]:
        assert layout == cl or ends == (cl, cf)
    # litert-torch: reshape/transpose sites run NCHW between NHWC convolutions
    # (TRANSPOSE on both sides); lowering="conv" sites are NHWC convolutions
    assert (cf, (cl, cl)) in {(layout, ends) for layout, ends, _ in seen[factory.LITERT_TORCH]}
    for layout, _, ops in seen[factory.LITERT_TORCH]:
        assert layout == cf or set(ops) & convs


def test_the_checker_sees_a_flipped_mode(fixture_matrix, tmp_path):
    """The runtime check is not vacuous: flip a DepthToSpace's mode in a built file and
    the same check reports the other order."""
    import onnx

    f = next(
        f
        for f in fixture_matrix
        if f.format == "onnx" and "DepthToSpace" in f.ops and f.sites and f.sites[0].channels > 1
    )
    model = onnx.load(str(f.path))
    for node in model.graph.node:
        if node.op_type == "DepthToSpace":
            mode = next((a for a in node.attribute if a.name == "mode"), None)
            if mode is None:
                node.attribute.append(onnx.helper.make_attribute("mode", "CRD"))
            else:
                mode.s = b"CRD" if mode.s == b"DCR" else b"DCR"
    path = tmp_path / "flipped.onnx"
    onnx.save(model, str(path))
    sites, checks = factory.check_file_sites(
        path, f.file_example, f.source_sites, f.sites[0].layout
    )
    assert checks[0].exact
    assert sites[0].order != f.sites[0].order


def test_swapped_pairs(swapped_pairs):
    by = {p.name: p for p in swapped_pairs}
    assert {p.kind for p in swapped_pairs} == {"order", "layout", None}
    for p in swapped_pairs:
        assert p.source_path.exists() and p.target_path.exists()
        if p.kind is None:
            assert p.site_index is None
            assert p.max_diff < (2e-2 if "float16" in p.name else 1e-4), p
        else:
            assert p.max_diff > 0.05, f"{p.name}: a swap must show in the output ({p.max_diff})"
    # the swapped targets really hold what they claim, by their runtime tensors
    for name in (
        "order-onnx-mode",
        "order-second-site",
        "order-keras-naive",
        "order-keras-source",
        "layout-onnx",
    ):
        p = by[name]
        layout = p.target_sites[0].layout
        x = p.example
        if p.target_path.suffix == ".tflite" and p.example.shape[1] == 3:  # NCHW example
            x = p.example.transpose(0, 2, 3, 1)
        elif p.target_path.suffix == ".onnx" and p.example.shape[-1] == 3:  # NHWC example
            x = p.example.transpose(0, 3, 1, 2)
        sites, checks = factory.check_file_sites(
            p.target_path, np.ascontiguousarray(x), p.target_sites, layout
        )
        if name == "layout-onnx":  # the shuffle applies to NCHW data read as NHWC
            assert checks[0].exact and sites[0].layout == factory.CL
            continue
        assert all(c.exact for c in checks), name
        assert [s.order for s in sites] == [s.order for s in p.target_sites]
        assert sites[p.site_index].order != p.source_sites[p.site_index].order
