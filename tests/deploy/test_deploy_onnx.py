"""ONNX from PyTorch: every layer x order x lowering, with both exporters, dynamic batch
and spatial sizes, run in ONNX Runtime at two input sizes and compared with PyTorch;
the op lists checked per lowering; opsets 11, 13, 17 and the newest each exporter
supports.  Runs in the ``deploy`` tox environment."""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import pytest

from adapters import requested_backends

if "torch" not in requested_backends():
    pytest.skip("torch is not in SUBPIXEL_TEST_BACKENDS", allow_module_level=True)
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import torch
from torch.onnx import _constants

from subpixel.layers.torch import (
    PixelShuffle,
    PixelUnshuffle,
    SubPixelConv1d,
    SubPixelConv2d,
    SubPixelConv3d,
)

from reference import reference

NEWEST = {False: _constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET, True: _constants.ONNX_MAX_OPSET}
EXPORTERS = [False, True]
LOWERINGS = ["native", "reshape", "flat", "conv", "auto"]

# (id, module factory(order, lowering), input shape, spatial dims, is a convolution)
LAYERS = [
    (
        "PixelShuffle",
        lambda o, low: PixelShuffle(2, order=o, lowering=low),
        (1, 12, 3, 4),
        2,
        False,
    ),
    (
        "PixelShuffle-r3",
        lambda o, low: PixelShuffle(3, order=o, lowering=low),
        (1, 18, 2, 3),
        2,
        False,
    ),
    (
        "PixelUnshuffle",
        lambda o, low: PixelUnshuffle(2, order=o, lowering=low),
        (1, 3, 6, 8),
        2,
        False,
    ),
    (
        "SubPixelConv1d",
        lambda o, low: SubPixelConv1d(3, 2, 3, 3, order=o, lowering=low, init="default"),
        (1, 3, 5),
        1,
        True,
    ),
    (
        "SubPixelConv2d",
        lambda o, low: SubPixelConv2d(4, 3, 3, 3, order=o, lowering=low, init="default"),
        (1, 4, 5, 6),
        2,
        True,
    ),
    (
        "SubPixelConv3d",
        lambda o, low: SubPixelConv3d(2, 2, 3, (1, 2, 2), order=o, lowering=low, init="default"),
        (1, 2, 2, 3, 4),
        3,
        True,
    ),
]


def export(module, x, dynamo: bool, opset: int, path) -> object:
    """Export with batch and spatial sizes dynamic; the exporters' chatter silenced."""
    dims = [0, *range(2, x.dim())]
    kw: dict = {}
    if dynamo:
        kw["dynamic_shapes"] = ({i: torch.export.Dim.AUTO for i in dims},)
    else:
        kw["dynamic_axes"] = {"x": {i: f"d{i}" for i in dims}}
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (x,), str(path), dynamo=dynamo, opset_version=opset, input_names=["x"], **kw
        )
    return onnx.load(str(path))


def max_rank(model) -> int:
    inferred = onnx.shape_inference.infer_shapes(model)
    values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    return max(
        len(v.type.tensor_type.shape.dim) for v in values if v.type.tensor_type.HasField("shape")
    )


def check_runs_like_torch(module, path, shape, is_conv) -> None:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    bigger = (2, shape[1], *(2 * s for s in shape[2:]))
    for size in (shape, bigger):
        x = torch.randn(*size)
        (got,) = session.run(None, {"x": x.numpy()})
        with torch.no_grad():
            expected = module(x).numpy()
        if is_conv:  # ONNX Runtime's convolution sums in its own order: float32 rounding
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
        else:  # data only moves: bit for bit
            np.testing.assert_array_equal(got, expected)


def check_ops(model, lowering: str, in_rank: int) -> None:
    ops = {n.op_type for n in model.graph.node}
    if lowering == "native":
        assert ops & {"DepthToSpace", "SpaceToDepth"}, ops
        assert "Transpose" not in ops, ops  # no Transpose pair around the op
    if lowering == "flat":
        assert max_rank(model) <= in_rank
    if lowering == "conv":
        assert "Transpose" not in ops and ops & {"Conv", "ConvTranspose"}, ops
    if lowering == "reshape":
        assert "Transpose" in ops, ops


def _cases():
    for name, make, shape, d, is_conv in LAYERS:
        for lowering in LOWERINGS:
            if lowering == "native" and d != 2:
                continue
            yield pytest.param(name, make, shape, is_conv, lowering, id=f"{name}-{lowering}")


@pytest.mark.parametrize("dynamo", EXPORTERS, ids=["torchscript", "dynamo"])
@pytest.mark.parametrize("order", ["CRD", "DCR"])
@pytest.mark.parametrize("name,make,shape,is_conv,lowering", list(_cases()))
def test_every_layer_order_lowering_exports_and_runs(
    tmp_path, name, make, shape, is_conv, lowering, order, dynamo
):
    torch.manual_seed(0)
    module = make(order, lowering).eval()
    path = tmp_path / "m.onnx"
    model = export(module, torch.randn(*shape), dynamo, 17, path)
    check_ops(model, lowering, len(shape))
    check_runs_like_torch(module, path, shape, is_conv)


@pytest.mark.parametrize("dynamo", EXPORTERS, ids=["torchscript", "dynamo"])
@pytest.mark.parametrize("opset", [11, 13, "newest"])
@pytest.mark.parametrize("order", ["CRD", "DCR"])
@pytest.mark.parametrize("lowering", ["native", "flat"])
@pytest.mark.parametrize("name", ["PixelShuffle", "PixelUnshuffle", "SubPixelConv2d"])
def test_opsets(tmp_path, name, lowering, order, opset, dynamo):
    """The dynamo exporter writes opset 18 or newer (it converts older requests up, as
    it warns); the TorchScript exporter writes what is asked."""
    _, make, shape, _, is_conv = next(c for c in LAYERS if c[0] == name)
    opset = NEWEST[dynamo] if opset == "newest" else opset
    torch.manual_seed(0)
    module = make(order, lowering).eval()
    path = tmp_path / "m.onnx"
    model = export(module, torch.randn(*shape), dynamo, opset, path)
    written = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert written == (opset if not dynamo else max(opset, 18))
    check_ops(model, lowering, len(shape))
    check_runs_like_torch(module, path, shape, is_conv)


@pytest.mark.parametrize("dynamo", EXPORTERS, ids=["torchscript", "dynamo"])
def test_pixel_unshuffle_is_right_whatever_the_exporter(tmp_path, dynamo):
    """PyTorch's own PixelUnshuffle has been exported as a bare SpaceToDepth (DCR)
    by some exporter versions: ours always gives the CRD answer, checked against the
    index-formula oracle."""
    module = PixelUnshuffle(2, lowering="native").eval()
    path = tmp_path / "u.onnx"
    export(module, torch.randn(1, 3, 4, 6), dynamo, 17, path)
    a = np.arange(2 * 3 * 8 * 6, dtype=np.float32).reshape(2, 3, 8, 6)
    (got,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": a})
    np.testing.assert_array_equal(got, reference("unshuffle", a, 2))


def test_native_needs_a_square_2d_factor():
    with pytest.raises(ValueError, match=r"`lowering='native'` needs 2-D data and a square factor"):
        PixelShuffle((2, 3), lowering="native")
    with pytest.raises(ValueError, match=r"`lowering` must be 'auto', 'native'"):
        SubPixelConv2d(2, 2, 3, 2, lowering="fast")


@pytest.mark.parametrize("lowering", LOWERINGS)
def test_eager_numbers_are_the_same_in_every_lowering(lowering):
    """Outside an export every lowering computes exactly the shuffle."""
    for order in ("CRD", "DCR"):
        x = torch.randn(2, 12, 3, 4)
        torch.testing.assert_close(
            PixelShuffle(2, order=order, lowering=lowering)(x),
            torch.from_numpy(reference("shuffle", x.numpy(), 2, order=order)),
            rtol=0,
            atol=0,
        )
