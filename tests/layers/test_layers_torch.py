"""subpixel.layers.torch: values, ICNR, training, gradients, ONNX, compile, DDP."""

from __future__ import annotations

import math
import os
import socket

import numpy as np
import pytest

from adapters import requested_backends

if "torch" not in requested_backends():
    pytest.skip("torch is not in SUBPIXEL_TEST_BACKENDS", allow_module_level=True)

import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

import subpixel
from subpixel.layers import torch as torch_layers
from subpixel.layers.torch import (
    PixelShuffle,
    PixelUnshuffle,
    SubPixelConv1d,
    SubPixelConv2d,
    SubPixelConv3d,
)

from reference import sub_pixel_conv_ref


@pytest.mark.parametrize("order", ["CRD", "DCR"])
@pytest.mark.parametrize(
    "cls,spatial,kernel,factor,padding",
    [
        (SubPixelConv1d, (7,), 3, 3, "same"),
        (SubPixelConv2d, (5, 6), (3, 2), (2, 3), "same"),
        (SubPixelConv2d, (5, 6), 3, 2, "valid"),
        (SubPixelConv3d, (3, 4, 2), 3, (1, 2, 2), 1),
    ],
)
def test_values(cls, spatial, kernel, factor, padding, order):
    torch.manual_seed(0)
    layer = cls(3, 2, kernel, factor, order=order, padding=padding, init="default").double()
    x = torch.randn(2, 3, *spatial, dtype=torch.float64)
    w, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    from subpixel._core import spec as _spec

    expected = sub_pixel_conv_ref(
        x.numpy(), w, b, layer.factor, _spec.normalize_padding(padding, w.shape[2:]), order=order
    )
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("order", ["CRD", "DCR"])
def test_icnr_starts_as_nearest_neighbour_upsampling(order):
    torch.manual_seed(0)
    layer = SubPixelConv2d(4, 3, 3, (2, 3), order=order)
    y = layer(torch.randn(2, 4, 5, 5)).detach()
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(y[..., i::2, j::3], y[..., ::2, ::3])


def test_pixel_shuffle_modules():
    x = torch.randn(2, 3 * 8, 2, 3, 4)
    shuffle = PixelShuffle(2, spatial_dims=3, order="DCR")
    y = shuffle(x)
    assert y.shape == (2, 3, 4, 6, 8)
    torch.testing.assert_close(PixelUnshuffle(2, spatial_dims=3, order="DCR")(y), x)
    torch.testing.assert_close(PixelShuffle(2)(x[:, :, 0]), F.pixel_shuffle(x[:, :, 0], 2))
    assert "order='DCR'" in repr(shuffle)


def test_optimizer_step_decreases_loss():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), SubPixelConv2d(8, 1, 3, 2)
    )
    x, target = torch.rand(4, 1, 8, 8), torch.rand(4, 1, 16, 16)
    losses = _train(model, torch.optim.Adam(model.parameters(), lr=1e-2), x, target, 5)
    assert losses[-1] < losses[0]


def _train(model, opt, x, target, steps: int) -> list[float]:
    """``steps`` optimizer steps on the MSE to ``target``: the losses."""
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = F.mse_loss(model(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("order", ["CRD", "DCR"])
def test_gradients_match_finite_differences(order):
    torch.manual_seed(0)
    layer = SubPixelConv2d(2, 2, 3, (2, 1), order=order, blur=True, init="default").double()
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda t, w, b: subpixel.sub_pixel_conv(t, w, b, factor=(2, 1), order=order, blur=True),
        (x, layer.weight, layer.bias),
    )


def test_onnx_export(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    for order in ("CRD", "DCR"):
        model = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), SubPixelConv2d(8, 3, 3, 3, order=order)
        ).eval()
        x = torch.randn(1, 3, 6, 5)
        path = str(tmp_path / f"espcn_{order}.onnx")
        torch.onnx.export(model, (x,), path, input_names=["x"], dynamo=True)
        (got,) = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(
            None, {"x": x.numpy()}
        )
        np.testing.assert_allclose(got, model(x).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_compile_fullgraph():
    torch._dynamo.reset()
    torch.manual_seed(0)
    layer = SubPixelConv2d(4, 2, 3, 2, order="DCR")
    compiled = torch.compile(layer, fullgraph=True, dynamic=True, backend="eager")
    for n in (1, 3):
        x = torch.randn(n, 4, 5, 6)
        torch.testing.assert_close(compiled(x), layer(x))


def test_from_conv_transpose_equals_conv_transpose2d():
    torch.manual_seed(0)
    deconv = torch.nn.ConvTranspose2d(8, 3, kernel_size=5, stride=2, padding=2, output_padding=1)
    layer = subpixel.SubPixelConv.from_conv_transpose(
        deconv.weight.detach(), deconv.bias.detach(), stride=2, padding=2, output_padding=1
    )
    x = torch.randn(2, 8, 7, 6)
    torch.testing.assert_close(layer(x), deconv(x), rtol=1e-5, atol=1e-5)
    native = torch_layers.from_agnostic(layer)
    torch.testing.assert_close(native(x), deconv(x), rtol=1e-5, atol=1e-5)
    ct = layer.to_conv_transpose()
    back = torch.nn.ConvTranspose2d(
        8,
        3,
        ct.weight.shape[2:],
        stride=ct.stride,
        padding=ct.padding,
        output_padding=ct.output_padding,
    )
    with torch.no_grad():
        back.weight.copy_(torch.from_numpy(ct.weight))
        back.bias.copy_(torch.from_numpy(ct.bias))
    torch.testing.assert_close(back(x), deconv(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_port_through_a_file(tmp_path, suffix):
    pytest.importorskip("safetensors") if suffix == ".safetensors" else None
    torch.manual_seed(0)
    layer = SubPixelConv3d(2, 3, (3, 1, 2), (2, 1, 3), order="DCR", init="default")
    path = tmp_path / f"layer{suffix}"
    torch_layers.to_agnostic(layer).save(path)
    back = torch_layers.from_agnostic(subpixel.SubPixelConv.load(path))
    x = torch.randn(1, 2, 3, 4, 2)
    torch.testing.assert_close(back(x), layer(x))
    np.testing.assert_allclose(
        subpixel.SubPixelConv.load(path)(x.numpy()), layer(x).detach().numpy(), rtol=1e-5, atol=1e-5
    )


def test_from_plain_conv():
    conv = torch.nn.Conv2d(3, 12, 3, padding=1)
    layer = torch_layers.to_agnostic(conv, factor=2, order="CRD")
    x = torch.randn(1, 3, 4, 4)
    torch.testing.assert_close(layer(x), F.pixel_shuffle(conv(x), 2))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, results) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = DDP(
        torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), SubPixelConv2d(4, 1, 3, 2))
    )
    g = torch.Generator().manual_seed(rank)
    x, target = torch.rand(2, 1, 6, 6, generator=g), torch.rand(2, 1, 12, 12, generator=g)
    losses = _train(model, torch.optim.SGD(model.parameters(), lr=0.1), x, target, 3)
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    results[rank] = (losses, flat.numpy())
    dist.destroy_process_group()


def test_distributed_data_parallel_gloo():
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        results = manager.dict()
        port = _free_port()
        procs = [ctx.Process(target=_ddp_worker, args=(r, 2, port, results)) for r in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=180)
        for p in procs:
            if p.is_alive():
                p.kill()
                pytest.fail("DDP worker did not finish in 180 s")
            assert p.exitcode == 0
        (l0, p0), (l1, p1) = results[0], results[1]
    assert l0[-1] < l0[0] and l1[-1] < l1[0]
    np.testing.assert_allclose(p0, p1, rtol=1e-6)  # gradients were averaged: same parameters
    assert math.isfinite(l0[-1])


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_from_torch_refuses_other_padding_modes(mode):
    conv = torch.nn.Conv2d(4, 12, 3, padding=1, padding_mode=mode)
    with pytest.raises(ValueError, match=rf"padding_mode='{mode}'"):
        torch_layers.to_agnostic(conv, factor=2)


@pytest.mark.parametrize("bias", [True, False])
def test_from_torch_points_a_transposed_conv_to_from_conv_transpose(bias):
    with pytest.raises(ValueError, match=r"transposed convolution .*from_conv_transpose"):
        torch_layers.to_agnostic(torch.nn.ConvTranspose2d(4, 12, 3, bias=bias), factor=2)


@pytest.mark.parametrize("module", [torch.nn.Linear(4, 4), None, torch.nn.ReLU()], ids=str)
def test_from_torch_refuses_what_is_not_a_conv(module):
    with pytest.raises(
        ValueError, match=r"^`module` must be a subpixel SubPixelConv1d/2d/3d or a torch"
    ):
        torch_layers.to_agnostic(module, factor=2)


@pytest.mark.parametrize("crop", [None, ((1, 0), (0, 2))])
def test_output_is_contiguous_for_a_contiguous_input(crop):
    """A drop-in replacement for a ConvTranspose2d: `.view` works on the output."""
    layer = SubPixelConv2d(4, 3, 3, 3, crop=crop)
    y = layer(torch.randn(2, 4, 6, 6))
    assert y.is_contiguous()
    y.view(2, -1)
    cl = torch.randn(2, 4, 6, 6).contiguous(memory_format=torch.channels_last)
    assert layer(cl).shape == y.shape


def test_state_dict_round_trip_and_spec():
    layer = SubPixelConv2d(4, 3, 3, (2, 3), order="DCR", bias=False)
    back = torch_layers.from_agnostic(torch_layers.to_agnostic(layer))
    assert back.spec == layer.spec
    back.load_state_dict(layer.state_dict())
    x = torch.randn(1, 4, 5, 5)
    torch.testing.assert_close(back(x), layer(x))
    with pytest.raises(ValueError, match=r"^`in_channels` must be an integer"):
        SubPixelConv2d(2.5, 3, 3, 2)


# ---------------------------------------------------------------------------
# a transposed convolution computed phase by phase, against PyTorch's own
# ---------------------------------------------------------------------------


def _phase_cases():
    for d, cls in ((1, torch.nn.ConvTranspose1d), (2, torch.nn.ConvTranspose2d)):
        for k, s, p in ((4, 2, 1), (3, 2, 1), (5, 3, 2), (1, 2, 0), (2, 3, 0), (6, 2, 2)):
            for op in range(s):
                yield cls, d, k, s, p, op
    yield torch.nn.ConvTranspose2d, 2, (4, 3), (2, 3), (1, 0), (1, 2)  # per-axis values
    yield torch.nn.ConvTranspose3d, 3, 3, 2, 1, 1


@pytest.mark.parametrize("cls, d, k, s, p, op", list(_phase_cases()))
def test_phased_conv_transpose_matches_pytorch(cls, d, k, s, p, op):
    from subpixel.layers.torch import PhasedConvTranspose

    torch.manual_seed(0)
    m = cls(3, 2, k, stride=s, padding=p, output_padding=op).double()
    for size in (1, 4, 5):
        x = torch.randn(2, 3, *(size,) * d, dtype=torch.float64, requires_grad=True)
        try:
            want = m(x)
        except RuntimeError:  # PyTorch refuses the size (an empty output): so do we
            continue
        phased = PhasedConvTranspose(m)
        got = phased(x)
        assert got.shape == want.shape
        # the same products summed in another order: float64 rounding only
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        g = torch.randn_like(want)
        (gx_want, gw_want) = torch.autograd.grad(want, (x, m.weight), g)
        (gx_got, gw_got) = torch.autograd.grad(got, (x, phased.weight), g)
        torch.testing.assert_close(gx_got, gx_want, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(gw_got, gw_want, rtol=1e-12, atol=1e-12)


def test_phased_conv_transpose_whose_outputs_are_all_bias_still_reads_its_input():
    """k=1, stride 2, padding 3 on 4 samples: the one output is a structural zero plus
    the bias; the input still gets a (zero) gradient, as from ConvTranspose1d."""
    from subpixel.layers.torch import PhasedConvTranspose

    ct = torch.nn.ConvTranspose1d(2, 3, 1, stride=2, padding=3).double()
    x = torch.randn(1, 2, 4, dtype=torch.float64, requires_grad=True)
    phased = PhasedConvTranspose(ct)
    torch.testing.assert_close(phased(x), ct(x), rtol=0, atol=0)
    (grad,) = torch.autograd.grad(phased(x).sum(), x)
    (want,) = torch.autograd.grad(ct(x).sum(), x)
    torch.testing.assert_close(grad, want, rtol=0, atol=0)
