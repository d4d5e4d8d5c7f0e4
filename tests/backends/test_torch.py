"""PyTorch specifics: native-op oracle, autograd adjoint, torch.compile, memory
formats, ONNX export.  Runs when ``torch`` is in SUBPIXEL_TEST_BACKENDS."""

from __future__ import annotations

import math

import numpy as np
import pytest

from adapters import devices_for, requested_backends

if "torch" not in requested_backends():
    pytest.skip("torch is not in SUBPIXEL_TEST_BACKENDS", allow_module_level=True)

import torch
import torch.nn.functional as F

import subpixel
from subpixel.layers import torch as torch_layers

from cases import GEOMETRIES, LAYOUTS, ORDERS, lr_shape, shuffle_case
from reference import reference

DEVICES = devices_for("torch")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("r", [2, 3])
@pytest.mark.parametrize("batch", [(), (2,), (2, 3)])
def test_equals_pixel_shuffle(device, r, batch):
    x = torch.randn(*batch, 3 * r * r, 4, 5, device=device)
    torch.testing.assert_close(subpixel.shuffle(x, r), F.pixel_shuffle(x, r), rtol=0, atol=0)
    y = torch.randn(*batch, 3, 4 * r, 5 * r, device=device)
    torch.testing.assert_close(subpixel.unshuffle(y, r), F.pixel_unshuffle(y, r), rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_dcr_equals_pixel_shuffle_after_channel_permutation(device):
    """DCR channel b*C + c is CRD channel c*R + b: permute the channels, then PyTorch's op."""
    C, r = 3, 2
    R = r * r
    x = torch.randn(2, C * R, 4, 5, device=device)
    crd_index = torch.tensor([b * C + c for c in range(C) for b in range(R)], device=device)
    expected = F.pixel_shuffle(x[:, crd_index], r)
    torch.testing.assert_close(subpixel.shuffle(x, r, order="DCR"), expected, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("factor,spatial", GEOMETRIES)
def test_gradient_is_the_adjoint(device, factor, spatial, layout, order):
    """d<shuffle(x), g>/dx == unshuffle(g), and the other way round."""
    shape, kw = shuffle_case(factor, spatial, layout, order)
    x = torch.randn(
        shape,
        device=device,
        dtype=torch.float64,
        requires_grad=True,
    )
    y = subpixel.shuffle(x, factor, **kw)
    g = torch.randn_like(y)
    (grad,) = torch.autograd.grad(y, x, g)
    torch.testing.assert_close(grad, subpixel.unshuffle(g, factor, **kw), rtol=0, atol=0)

    y2 = y.detach().requires_grad_(True)
    x2 = subpixel.unshuffle(y2, factor, **kw)
    h = torch.randn_like(x2)
    (grad2,) = torch.autograd.grad(x2, y2, h)
    torch.testing.assert_close(grad2, subpixel.shuffle(h, factor, **kw), rtol=0, atol=0)


def test_gradcheck():
    x = torch.randn(1, 12, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: subpixel.shuffle(t, (2, 3), order="DCR"), (x,))
    assert torch.autograd.gradgradcheck(
        lambda t: subpixel.unshuffle(t, 2, layout="channels_last"), (x,)
    )


def _compile_cases():
    return [
        ("channels_first", "CRD", 2),
        ("channels_first", "DCR", (2, 3)),
        ("channels_last", "DCR", 2),
        ("channels_last", "CRD", 3),
    ]


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("layout,order,factor", _compile_cases())
def test_compile_fullgraph(layout, order, factor, dynamic):
    torch._dynamo.reset()
    R = math.prod(factor if isinstance(factor, tuple) else (factor, factor))

    def f(x):
        y = subpixel.shuffle(x, factor, layout=layout, order=order)
        return subpixel.unshuffle(y * 2, factor, layout=layout, order=order)

    compiled = torch.compile(f, fullgraph=True, dynamic=dynamic, backend="eager")
    for n, h in ((2, 4), (3, 6), (5, 2)):  # new shapes: recompiles (static) or reuses (dynamic)
        x = torch.randn(lr_shape((n,), 2 * R, (h, h + 1), layout))
        a = x.numpy()
        expected = reference(
            "unshuffle",
            2 * reference("shuffle", a, factor, layout=layout, order=order),
            factor,
            layout=layout,
            order=order,
        )
        np.testing.assert_array_equal(compiled(x).numpy(), expected)


def test_compile_inductor_dynamic():
    """A real compiler backend, dynamic shapes, no graph break, and the bad-input contract."""
    torch._dynamo.reset()

    @torch.compile(fullgraph=True, dynamic=True)
    def f(x):
        return subpixel.shuffle(x, (2, 3), order="DCR", layout="channels_last") + 1

    for n in (2, 3):
        x = torch.randn(n, 3, 4, 12)
        expected = reference("shuffle", x.numpy(), (2, 3), order="DCR", layout="channels_last") + 1
        np.testing.assert_allclose(f(x).numpy(), expected, rtol=0, atol=0)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("op", ["shuffle", "unshuffle"])
def test_channels_last_memory_format(op, order):
    r = 2
    shape = (2, 3 * 4, 5, 6) if op == "shuffle" else (2, 3, 10, 12)
    a = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    x = torch.from_numpy(a).to(memory_format=torch.channels_last)
    y = getattr(subpixel, op)(x, r, order=order)
    np.testing.assert_array_equal(y.numpy(), reference(op, a, r, order=order))
    # keeps the format where PyTorch's own op does (and for DCR too)
    native = getattr(F, f"pixel_{op}")(x, r)
    assert y.is_contiguous(memory_format=torch.channels_last) == native.is_contiguous(
        memory_format=torch.channels_last
    )
    if order == "DCR":
        assert y.is_contiguous(memory_format=torch.channels_last)


def test_channels_last_3d_memory_format():
    a = np.random.default_rng(0).standard_normal((2, 16, 2, 3, 4)).astype(np.float32)
    x = torch.from_numpy(a).to(memory_format=torch.channels_last_3d)
    for order in ORDERS:
        y = subpixel.shuffle(x, 2, spatial_dims=3, order=order)
        np.testing.assert_array_equal(
            y.numpy(), reference("shuffle", a, 2, spatial_dims=3, order=order)
        )
        assert y.is_contiguous(memory_format=torch.channels_last_3d)


def test_out_with_autograd():
    x = torch.randn(1, 8, 2, 2, requires_grad=True)
    out = torch.empty(1, 2, 4, 4)
    y = subpixel.shuffle(x, 2, out=out)
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones_like(x))


@pytest.mark.parametrize(
    "dtype", ["float8_e4m3fn", "float8_e5m2", "complex32", "uint16", "uint32", "uint64"]
)
@pytest.mark.parametrize("nbytes", [256, 2 << 20], ids=["small", "2MiB"])
def test_dtypes_without_a_native_kernel(dtype, nbytes):
    """PyTorch's pixel_shuffle has no kernel for these: whatever the size, they move
    through the other paths (compared bit for bit through a same-size integer view)."""
    td = getattr(torch, dtype)
    as_int = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[td.itemsize]
    n = nbytes // td.itemsize
    side = int((n // 8) ** 0.5)
    bits = torch.randint(0, 100, (1, 8, side, side), dtype=torch.int64).to(as_int)
    x = bits.view(td)
    for order in ORDERS:
        y = subpixel.shuffle(x, 2, order=order)
        assert y.dtype == td
        np.testing.assert_array_equal(
            y.view(as_int).numpy(), reference("shuffle", bits.numpy(), 2, order=order)
        )
        back = subpixel.unshuffle(y, 2, order=order)
        assert torch.equal(back.view(as_int), bits)


def test_quantized_tensors_are_the_contract_error():
    q = torch.quantize_per_tensor(torch.zeros(1, 8, 2, 2), 0.1, 0, torch.qint8)
    with pytest.raises(
        TypeError,
        match=r"^`x` has a dtype the torch backend cannot rearrange .*Received: x.dtype=torch.qint8$",
    ):
        subpixel.shuffle(q, 2)


def test_parameter_and_subclass_inputs():
    p = torch.nn.Parameter(torch.randn(1, 8, 2, 2))
    assert subpixel.backend_name(p) == "torch"
    torch.testing.assert_close(subpixel.shuffle(p, 2), F.pixel_shuffle(p, 2))


@pytest.mark.parametrize("order", ORDERS)
def test_onnx_export_runs_in_onnxruntime(tmp_path, order):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")

    class Model(torch.nn.Module):
        def forward(self, x):
            y = subpixel.shuffle(x, 2, order=order)
            return subpixel.unshuffle(y, (1, 2), order=order) * 3

    model = Model().eval()
    x = torch.randn(2, 12, 3, 4)
    path = tmp_path / f"shuffle_{order}.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["y"], dynamo=True)
    graph = onnx.load(str(path)).graph
    ops = {node.op_type for node in graph.node}
    if order == "CRD":  # PyTorch's pixel_shuffle becomes DepthToSpace(mode="CRD")
        modes = [
            a.s.decode()
            for n in graph.node
            if n.op_type == "DepthToSpace"
            for a in n.attribute
            if a.name == "mode"
        ]
        assert "DepthToSpace" not in ops or modes == ["CRD"], modes
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x": x.numpy()})
    np.testing.assert_array_equal(got, model(x).numpy())
    expected = 3 * reference(
        "unshuffle", reference("shuffle", x.numpy(), 2, order=order), (1, 2), order=order
    )
    np.testing.assert_array_equal(got, expected)


def test_result_on_input_device():
    for device in DEVICES:
        x = torch.randn(1, 8, 2, 2, device=device)
        for order in ORDERS:
            assert subpixel.shuffle(x, 2, order=order).device == x.device


@pytest.mark.parametrize(
    "dtype",
    [
        torch.bool,
        torch.int8,
        torch.bfloat16,
        torch.float16,
        torch.float32,
        torch.float64,
        torch.complex64,
        torch.complex128,
        torch.int64,
    ],
)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_large_tensors_every_dtype(dtype, layout, order):
    """Tensors above 1 MiB take the CPU fast path (raw bytes through NumPy): values must not change."""
    shape = (2, 36, 96, 64) if layout == "channels_first" else (2, 96, 64, 36)
    a = np.random.default_rng(0).permutation(np.prod(shape)).reshape(shape) % 251
    x = torch.from_numpy(a).to(dtype)

    def host(t):
        return (t.float() if t.dtype == torch.bfloat16 else t).numpy()

    for op, factor in (("shuffle", (2, 3)), ("unshuffle", 2)):
        expected = reference(op, host(x), factor, layout=layout, order=order)
        y = getattr(subpixel, op)(x, factor, layout=layout, order=order)
        assert y.dtype == dtype
        np.testing.assert_array_equal(host(y), expected)
        out = torch.empty(y.shape, dtype=dtype)
        assert getattr(subpixel, op)(x, factor, layout=layout, order=order, out=out) is out
        assert torch.equal(out, y)


def test_large_tensor_with_autograd_takes_the_graph_path():
    x = torch.randn(2, 36, 96, 64, requires_grad=True)
    y = subpixel.shuffle(x, (2, 3), order="DCR")
    assert y.grad_fn is not None
    y.backward(torch.ones_like(y))
    torch.testing.assert_close(x.grad, torch.ones_like(x))


@pytest.mark.parametrize("which", ["weight", "bias"])
def test_parameters_on_another_device_are_refused(which):
    x = torch.rand(1, 2, 5, 5)
    w, b = torch.ones(4, 2, 3, 3), torch.ones(4)
    if which == "weight":
        w = w.to("meta")
    else:
        b = b.to("meta")
    with pytest.raises(
        ValueError,
        match=rf"^`{which}` must be on the input's device \(cpu\)\. Received: {which} on device meta$",
    ):
        subpixel.sub_pixel_conv(x, w, b, factor=2)


def test_from_torch_refuses_a_module_without_data():
    conv = torch.nn.Conv2d(2, 8, 3, padding=1).to("meta")
    with pytest.raises(ValueError, match="holds no data"):
        torch_layers.to_agnostic(conv, factor=2)
