"""Whole models: reference architectures written from their published definitions
(random weights, no downloads) in PyTorch, Keras and Flax, ported torch -> Keras,
Keras -> torch and torch -> Flax with `subpixel.port_weights`, and their upsampling
layers rewritten exactly.  Runs in the ``interop`` environment (every framework)."""

from __future__ import annotations

import numpy as np
import pytest

from adapters import requested_backends

if not {"torch", "tensorflow", "jax"} <= set(requested_backends()):
    pytest.skip("needs torch, tensorflow and jax", allow_module_level=True)

import jax
import jax.numpy as jnp
import keras
import torch
import torch.nn.functional as F
from flax import nnx
from torch import nn

import subpixel
from subpixel.layers import flax as flax_layers
from subpixel.layers import keras as keras_layers
from subpixel.layers import torch as torch_layers

L = keras.layers

# ---------------------------------------------------------------------------
# ESPCN: pytorch/examples super_resolution/model.py and the keras.io example
# (3 channels, so that CRD and DCR differ)
# ---------------------------------------------------------------------------


class TorchESPCN(nn.Module):
    def __init__(self, r=3, c=3):
        super().__init__()
        self.conv1 = nn.Conv2d(c, 64, 5, 1, 2)
        self.conv2 = nn.Conv2d(64, 64, 3, 1, 1)
        self.conv3 = nn.Conv2d(64, 32, 3, 1, 1)
        self.conv4 = nn.Conv2d(32, c * r * r, 3, 1, 1)
        self.pixel_shuffle = nn.PixelShuffle(r)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        return self.pixel_shuffle(self.conv4(x))


def keras_espcn(r=3, c=3, dtype="float32"):
    inputs = keras.Input((None, None, c), dtype=dtype)
    kw = dict(padding="same", dtype=dtype)
    h = L.Conv2D(64, 5, activation="relu", **kw)(inputs)
    h = L.Conv2D(64, 3, activation="relu", **kw)(h)
    h = L.Conv2D(32, 3, activation="relu", **kw)(h)
    h = L.Conv2D(c * r * r, 3, **kw)(h)
    outputs = L.Lambda(lambda t: keras.ops.depth_to_space(t, r), dtype=dtype)(h)  # DCR
    return keras.Model(inputs, outputs)


class FlaxESPCN(nnx.Module):
    def __init__(self, r=3, c=3):
        rngs = nnx.Rngs(0)
        self.conv1 = nnx.Conv(c, 64, (5, 5), rngs=rngs)
        self.conv2 = nnx.Conv(64, 64, (3, 3), rngs=rngs)
        self.conv3 = nnx.Conv(64, 32, (3, 3), rngs=rngs)
        self.conv4 = nnx.Conv(32, c * r * r, (3, 3), rngs=rngs)
        self.shuffle = flax_layers.PixelShuffle(r, order="DCR")

    def __call__(self, x):
        x = nnx.relu(self.conv1(x))
        x = nnx.relu(self.conv2(x))
        x = nnx.relu(self.conv3(x))
        return self.shuffle(self.conv4(x))


# ---------------------------------------------------------------------------
# EDSR-baseline's upsampler: stacked conv + PixelShuffle(2) for x4, one x3 stage
# ---------------------------------------------------------------------------


class TorchEDSRUp(nn.Module):
    def __init__(self, scale=4, n=8):
        super().__init__()
        stages = []
        for r in (2, 2) if scale == 4 else (scale,):
            stages += [nn.Conv2d(n, n * r * r, 3, padding=1), nn.PixelShuffle(r)]
        self.head = nn.Conv2d(3, n, 3, padding=1)
        self.up = nn.Sequential(*stages)
        self.tail = nn.Conv2d(n, 3, 3, padding=1)

    def forward(self, x):
        h = self.head(x)
        return self.tail(self.up(h))


def keras_edsr_up(scale=4, n=8):
    inputs = keras.Input((None, None, 3))
    h = L.Conv2D(n, 3, padding="same")(inputs)
    for r in (2, 2) if scale == 4 else (scale,):
        h = L.Conv2D(n * r * r, 3, padding="same")(h)
        h = L.Lambda(lambda t, r=r: keras.ops.depth_to_space(t, r))(h)
    return keras.Model(inputs, L.Conv2D(3, 3, padding="same")(h))


class FlaxEDSRUp(nnx.Module):
    def __init__(self, scale=4, n=8):
        rngs = nnx.Rngs(0)
        self.head = nnx.Conv(3, n, (3, 3), rngs=rngs)
        self.up = nnx.List([])
        for r in (2, 2) if scale == 4 else (scale,):
            self.up.append(nnx.Conv(n, n * r * r, (3, 3), rngs=rngs))
            self.up.append(flax_layers.PixelShuffle(r, order="DCR"))
        self.tail = nnx.Conv(n, 3, (3, 3), rngs=rngs)

    def __call__(self, x):
        h = self.head(x)
        for m in self.up:
            h = m(h)
        return self.tail(h)


# ---------------------------------------------------------------------------
# Real-ESRGAN x2's input stage: pixel_unshuffle(2), then a small RRDB trunk
# ---------------------------------------------------------------------------


class TorchRealESRGANx2(nn.Module):
    def __init__(self, nf=8):
        super().__init__()
        self.unshuffle = nn.PixelUnshuffle(2)
        self.conv_first = nn.Conv2d(12, nf, 3, padding=1)
        self.rdb1 = nn.Conv2d(nf, nf, 3, padding=1)
        self.rdb2 = nn.Conv2d(2 * nf, nf, 3, padding=1)
        self.conv_last = nn.Conv2d(nf, 3, 3, padding=1)

    def forward(self, x):
        f = self.conv_first(self.unshuffle(x))
        a = F.leaky_relu(self.rdb1(f), 0.2)
        b = self.rdb2(torch.cat([f, a], 1))
        return self.conv_last(f + 0.2 * b)


def keras_realesrgan_x2(nf=8):
    inputs = keras.Input((None, None, 3))
    u = L.Lambda(lambda t: keras.ops.space_to_depth(t, 2))(inputs)  # DCR
    f = L.Conv2D(nf, 3, padding="same")(u)
    a = L.LeakyReLU(0.2)(L.Conv2D(nf, 3, padding="same")(f))
    b = L.Conv2D(nf, 3, padding="same")(L.Concatenate()([f, a]))
    out = L.Conv2D(3, 3, padding="same")(L.Add()([f, L.Rescaling(0.2)(b)]))
    return keras.Model(inputs, out)


class FlaxRealESRGANx2(nnx.Module):
    def __init__(self, nf=8):
        rngs = nnx.Rngs(0)
        self.unshuffle = flax_layers.PixelUnshuffle(2, order="DCR")
        self.conv_first = nnx.Conv(12, nf, (3, 3), rngs=rngs)
        self.rdb1 = nnx.Conv(nf, nf, (3, 3), rngs=rngs)
        self.rdb2 = nnx.Conv(2 * nf, nf, (3, 3), rngs=rngs)
        self.conv_last = nnx.Conv(nf, 3, (3, 3), rngs=rngs)

    def __call__(self, x):
        f = self.conv_first(self.unshuffle(x))
        a = nnx.leaky_relu(self.rdb1(f), 0.2)
        b = self.rdb2(jnp.concatenate([f, a], axis=-1))
        return self.conv_last(f + 0.2 * b)


# ---------------------------------------------------------------------------
# DCGAN's generator (pytorch/examples dcgan/main.py, small)
# ---------------------------------------------------------------------------


class TorchDCGAN(nn.Module):
    def __init__(self, nz=8, ngf=4, nc=3):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, x):
        return self.main(x)


def keras_dcgan(nz=8, ngf=4, nc=3, dtype="float32"):
    def bn():
        return L.BatchNormalization(epsilon=1e-5, dtype=dtype)

    kw = dict(use_bias=False, dtype=dtype)
    return keras.Sequential(
        [
            keras.Input((1, 1, nz), dtype=dtype),
            L.Conv2DTranspose(ngf * 4, 4, 1, padding="valid", **kw),
            bn(),
            L.ReLU(dtype=dtype),
            L.Conv2DTranspose(ngf * 2, 4, 2, padding="same", **kw),
            bn(),
            L.ReLU(dtype=dtype),
            L.Conv2DTranspose(ngf, 4, 2, padding="same", **kw),
            bn(),
            L.ReLU(dtype=dtype),
            L.Conv2DTranspose(nc, 4, 2, padding="same", activation="tanh", **kw),
        ]
    )


class FlaxDCGAN(nnx.Module):
    def __init__(self, nz=8, ngf=4, nc=3, dtype=jnp.float32):
        rngs = nnx.Rngs(0)
        pad = ((2, 2), (2, 2))  # PyTorch's padding 1 of a 4-tap kernel: 4 - 1 - 1
        kw = dict(use_bias=False, rngs=rngs, dtype=dtype, param_dtype=dtype)
        bn = dict(use_running_average=True, epsilon=1e-5, rngs=rngs, dtype=dtype, param_dtype=dtype)
        self.layers = nnx.List(
            [
                nnx.ConvTranspose(nz, ngf * 4, (4, 4), padding="VALID", **kw),
                nnx.BatchNorm(ngf * 4, **bn),
                nnx.ConvTranspose(ngf * 4, ngf * 2, (4, 4), (2, 2), padding=pad, **kw),
                nnx.BatchNorm(ngf * 2, **bn),
                nnx.ConvTranspose(ngf * 2, ngf, (4, 4), (2, 2), padding=pad, **kw),
                nnx.BatchNorm(ngf, **bn),
                nnx.ConvTranspose(ngf, nc, (4, 4), (2, 2), padding=pad, **kw),
            ]
        )

    def __call__(self, x):
        for m in self.layers:
            x = m(x)
            if isinstance(m, nnx.BatchNorm):
                x = nnx.relu(x)
        return jnp.tanh(x)


# ---------------------------------------------------------------------------
# a small U-Net with a ConvTranspose2d up path, a skip and a dense head
# ---------------------------------------------------------------------------


class TorchUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Conv2d(3, 8, 3, padding=1)
        self.mid = nn.Conv2d(8, 16, 3, padding=1)
        self.up = nn.ConvTranspose2d(16, 8, 2, 2)
        self.dec = nn.Conv2d(16, 8, 3, padding=1)
        self.head = nn.Linear(8 * 8 * 8, 4)

    def forward(self, x):
        e = F.relu(self.enc(x))
        m = F.relu(self.mid(F.max_pool2d(e, 2)))
        d = F.relu(self.dec(torch.cat([self.up(m), e], 1)))
        return self.head(torch.flatten(d, 1))


def keras_unet():
    inputs = keras.Input((8, 8, 3))
    e = L.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    m = L.Conv2D(16, 3, padding="same", activation="relu")(L.MaxPooling2D(2)(e))
    u = L.Conv2DTranspose(8, 2, 2)(m)
    d = L.Conv2D(8, 3, padding="same", activation="relu")(L.Concatenate()([u, e]))
    return keras.Model(inputs, L.Dense(4)(L.Flatten()(d)))


class FlaxUNet(nnx.Module):
    def __init__(self):
        rngs = nnx.Rngs(0)
        self.enc = nnx.Conv(3, 8, (3, 3), rngs=rngs)
        self.mid = nnx.Conv(8, 16, (3, 3), rngs=rngs)
        self.up = nnx.ConvTranspose(16, 8, (2, 2), (2, 2), padding="VALID", rngs=rngs)
        self.dec = nnx.Conv(16, 8, (3, 3), rngs=rngs)
        self.head = nnx.Linear(8 * 8 * 8, 4, rngs=rngs)

    def __call__(self, x):
        e = nnx.relu(self.enc(x))
        pooled = nnx.max_pool(e, (2, 2), (2, 2))
        m = nnx.relu(self.mid(pooled))
        d = nnx.relu(self.dec(jnp.concatenate([self.up(m), e], axis=-1)))
        return self.head(d.reshape(d.shape[0], -1))


CASES = {
    "espcn": (TorchESPCN, keras_espcn, FlaxESPCN, (1, 3, 6, 7)),
    "edsr-x4": (
        lambda: TorchEDSRUp(4),
        lambda: keras_edsr_up(4),
        lambda: FlaxEDSRUp(4),
        (1, 3, 5, 6),
    ),
    "edsr-x3": (
        lambda: TorchEDSRUp(3),
        lambda: keras_edsr_up(3),
        lambda: FlaxEDSRUp(3),
        (1, 3, 5, 6),
    ),
    "realesrgan-x2": (TorchRealESRGANx2, keras_realesrgan_x2, FlaxRealESRGANx2, (1, 3, 8, 6)),
    "dcgan": (TorchDCGAN, keras_dcgan, FlaxDCGAN, (2, 8, 1, 1)),
    "unet": (TorchUNet, keras_unet, FlaxUNet, (2, 3, 8, 8)),
}


def _randomise_bn(model):
    """Non-trivial running statistics, so that batch norms are really ported."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.uniform_(0.5, 1.5, generator=g)
            m.bias.data.normal_(0, 0.1, generator=g)


def _torch_model(make):
    torch.manual_seed(0)
    model = make().eval()
    with torch.no_grad():
        _randomise_bn(model)
    return model


def _run_torch(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _nhwc(a):
    return np.ascontiguousarray(np.moveaxis(a, 1, -1)) if a.ndim == 4 else a


@pytest.mark.parametrize("name", list(CASES))
def test_torch_to_keras_and_back(name):
    make_torch, make_keras, _, shape = CASES[name]
    source = _torch_model(make_torch)
    target = make_keras()
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    report = subpixel.port_weights(source, target, example=x)
    assert report.max_diff is not None and report.max_diff <= 1e-5, str(report)
    np.testing.assert_allclose(
        np.asarray(target(_nhwc(x), training=False)),
        _nhwc(_run_torch(source, x)),
        rtol=1e-5,
        atol=1e-5,
    )
    back = make_torch().eval()
    report = subpixel.port_weights(target, back, example=_nhwc(x))
    assert report.max_diff is not None and report.max_diff <= 1e-5, str(report)
    np.testing.assert_allclose(_run_torch(back, x), _run_torch(source, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c[2] is not None])
def test_torch_to_flax(name):
    make_torch, _, make_flax, shape = CASES[name]
    source = _torch_model(make_torch)
    target = make_flax()
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    report = subpixel.port_weights(source, target, example=x)
    assert report.max_diff is not None and report.max_diff <= 1e-5, str(report)


def test_float64_ports_to_1e_12():
    source = _torch_model(TorchESPCN).double()
    target = keras_espcn(dtype="float64")
    x = np.random.default_rng(0).standard_normal((1, 3, 6, 5))
    subpixel.port_weights(source, target, example=x)
    np.testing.assert_allclose(
        np.asarray(target(_nhwc(x))), _nhwc(_run_torch(source, x)), rtol=1e-12, atol=1e-12
    )


def test_mismatched_architectures_copy_nothing():
    source = _torch_model(TorchESPCN)
    target = keras_espcn(c=1)  # first conv takes 1 channel, not 3
    before = [w.copy() for w in target.get_weights()]
    with pytest.raises(
        ValueError, match=r"the architectures differ at conv1 -> .*: `weight` is \(64, 3, 5, 5\)"
    ):
        subpixel.port_weights(source, target)
    for a, b in zip(before, target.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(
        ValueError, match=r"has 5 parameterised layers and `target` 3: .*pair 2: up"
    ):
        subpixel.port_weights(_torch_model(TorchUNet), _torch_model(lambda: TorchEDSRUp(3)))
    with pytest.raises(
        TypeError, match=r"^`target` must be a PyTorch nn.Module, a Keras 3 model or a Flax"
    ):
        subpixel.port_weights(source, object())


# ---------------------------------------------------------------------------
# exact rewrites of upsampling layers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dcgan", "unet"])
def test_torch_replace_conv_transpose_is_exact_and_trains_alike(name):
    make, _, _, shape = CASES[name]
    original = _torch_model(make).double()
    rewritten = _torch_model(make).double()
    rewritten.load_state_dict(original.state_dict())
    torch_layers.replace_conv_transpose(rewritten)
    assert not any(
        isinstance(m, nn.ConvTranspose2d) and m.stride[0] > 1 for m in rewritten.modules()
    )
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(shape))
    with torch.no_grad():
        torch.testing.assert_close(rewritten(x), original(x), rtol=1e-12, atol=1e-12)
    original.train()
    rewritten.train()
    original(x).square().sum().backward()
    rewritten(x).square().sum().backward()
    g_old = [p.grad for n, p in original.named_parameters() if "main.0" in n or "enc" in n]
    g_new = [p.grad for n, p in rewritten.named_parameters() if "main.0" in n or "enc" in n]
    for a, b in zip(g_old, g_new):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_torch_replace_pixel_shuffle_and_fastest_mode():
    model = _torch_model(TorchESPCN)
    x = np.random.default_rng(0).standard_normal((1, 3, 6, 7)).astype(np.float32)
    expected = _run_torch(model, x)
    torch_layers.replace_pixel_shuffle(model, lowering="flat")
    assert isinstance(model.pixel_shuffle, torch_layers.PixelShuffle)
    np.testing.assert_array_equal(_run_torch(model, x), expected)
    dcgan = _torch_model(TorchDCGAN)
    z = np.random.default_rng(1).standard_normal((2, 8, 1, 1)).astype(np.float32)
    before = _run_torch(dcgan, z)
    torch_layers.replace_conv_transpose(dcgan, mode="fastest", example=torch.from_numpy(z))
    np.testing.assert_allclose(_run_torch(dcgan, z), before, rtol=1e-5, atol=1e-5)


def test_keras_rewrites_are_exact():
    dcgan = keras_dcgan(dtype="float64")
    z = np.random.default_rng(0).standard_normal((2, 1, 1, 8))
    rewritten = keras_layers.replace_conv_transpose(dcgan)
    assert sum(isinstance(layer, keras_layers.SubPixelConv) for layer in rewritten.layers) == 3
    np.testing.assert_allclose(
        np.asarray(rewritten(z)), np.asarray(dcgan(z)), rtol=1e-12, atol=1e-12
    )
    espcn = keras_espcn()
    x = np.random.default_rng(1).standard_normal((1, 5, 6, 3)).astype(np.float32)
    shuffled = keras_layers.replace_pixel_shuffle(espcn, lowering="flat")
    assert isinstance(shuffled.layers[-1], keras_layers.PixelShuffle)
    np.testing.assert_array_equal(np.asarray(shuffled(x)), np.asarray(espcn(x)))


def test_flax_replace_conv_transpose_is_exact():
    import jax

    with jax.enable_x64(True):
        model = FlaxDCGAN(dtype=jnp.float64)
        z = jnp.asarray(np.random.default_rng(0).standard_normal((2, 1, 1, 8)))
        expected = np.asarray(model(z))
        flax_layers.replace_conv_transpose(model)
        assert sum(isinstance(m, flax_layers.SubPixelConv) for m in model.layers) == 3
        got = np.asarray(model(z))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------
# what tracing must see: per-channel layers between a convolution and its shuffle,
# keras.ops calls in a functional graph, a Flatten that moves channels, and a Lambda
# that only looks like a shuffle
# ---------------------------------------------------------------------------


class TorchNormedShuffles(nn.Module):
    """unshuffle -> BN -> conv, and conv -> BN -> PReLU -> shuffle: the norms' channels
    are in the shuffle's order too."""

    def __init__(self, prelu=True):
        super().__init__()
        self.bn_in = nn.BatchNorm2d(12)
        self.conv1 = nn.Conv2d(12, 12, 3, padding=1)
        self.bn = nn.BatchNorm2d(12)
        self.act = nn.PReLU(12) if prelu else nn.ReLU()
        self.conv2 = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        h = self.conv1(self.bn_in(F.pixel_unshuffle(x, 2)))
        return self.conv2(F.pixel_shuffle(self.act(self.bn(h)), 2))


def keras_normed_shuffles():
    inputs = keras.Input((8, 8, 3))
    h = L.BatchNormalization(epsilon=1e-5)(keras.ops.space_to_depth(inputs, 2))
    h = L.Conv2D(12, 3, padding="same")(h)
    h = L.PReLU(shared_axes=[1, 2])(L.BatchNormalization(epsilon=1e-5)(h))
    return keras.Model(inputs, L.Conv2D(3, 3, padding="same")(keras.ops.depth_to_space(h, 2)))


class FlaxNormedShuffles(nnx.Module):
    def __init__(self):
        rngs = nnx.Rngs(0)
        self.unshuffle = flax_layers.PixelUnshuffle(2, order="DCR")
        self.bn_in = nnx.BatchNorm(12, use_running_average=True, epsilon=1e-5, rngs=rngs)
        self.conv1 = nnx.Conv(12, 12, (3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(12, use_running_average=True, epsilon=1e-5, rngs=rngs)
        self.shuffle = flax_layers.PixelShuffle(2, order="DCR")
        self.conv2 = nnx.Conv(3, 3, (3, 3), rngs=rngs)

    def __call__(self, x):
        h = self.bn(self.conv1(self.bn_in(self.unshuffle(x))))
        return self.conv2(self.shuffle(nnx.relu(h)))


def _randomise_prelu(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.PReLU):
                m.weight.copy_(torch.linspace(-0.5, 0.5, m.num_parameters))


def test_norms_between_conv_and_shuffle_are_reordered():
    source = _torch_model(TorchNormedShuffles)
    _randomise_prelu(source)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    target = keras_normed_shuffles()
    report = subpixel.port_weights(source, target, example=x)
    assert report.max_diff is not None and report.max_diff <= 1e-5, str(report)
    back = TorchNormedShuffles().eval()
    report = subpixel.port_weights(target, back, example=_nhwc(x))
    np.testing.assert_allclose(_run_torch(back, x), _run_torch(source, x), rtol=1e-5, atol=1e-5)
    # Flax (module order): the same model with a ReLU
    relu = _torch_model(lambda: TorchNormedShuffles(prelu=False))
    report = subpixel.port_weights(relu, FlaxNormedShuffles(), example=x)
    assert report.max_diff is not None and report.max_diff <= 1e-5, str(report)


class TorchFlattenHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 5, 7)

    def forward(self, x):
        return self.fc(torch.flatten(F.relu(self.conv(x)), 1))


@pytest.mark.parametrize("flatten_format", ["channels_last", "channels_first"])
def test_flatten_orders(flatten_format):
    """Keras's Flatten(data_format="channels_first") moves axis 1 last before
    flattening: on NHWC data that is a (W, C, H) order, ported all the same."""
    inputs = keras.Input((4, 5, 3))
    h = L.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    target = keras.Model(inputs, L.Dense(7)(L.Flatten(data_format=flatten_format)(h)))
    source = _torch_model(TorchFlattenHead)
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    report = subpixel.port_weights(source, target, example=x)
    assert report.max_diff is not None and report.max_diff <= 1e-5, str(report)
    back = TorchFlattenHead().eval()
    subpixel.port_weights(target, back)
    np.testing.assert_allclose(_run_torch(back, x), _run_torch(source, x), rtol=1e-5, atol=1e-5)


def test_keras_shuffles_are_found_by_what_they_do():
    inputs = keras.Input((None, None, 12))
    a = keras.ops.depth_to_space(inputs, 2)  # a graph operation, not a layer
    b = L.Lambda(lambda t: 2.0 * keras.ops.depth_to_space(t, 2))(inputs)  # not a shuffle
    c = L.Lambda(lambda t: keras.ops.space_to_depth(t, 2))(a)
    model = keras.Model(inputs, [a, b, c])
    found = [keras_layers.shuffle_op(op) for op in model.operations[1:]]
    assert found == [
        ("shuffle", "DCR", (2, 2), "channels_last"),
        None,
        ("unshuffle", "DCR", (2, 2), "channels_last"),
    ]
    rewritten = keras_layers.replace_pixel_shuffle(model, lowering="flat")
    kinds = [type(op).__name__ for op in rewritten.operations[1:]]
    assert kinds == ["PixelShuffle", "Lambda", "PixelUnshuffle"]
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 12)).astype(np.float32)
    for got, want in zip(rewritten(x), model(x)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_fastest_mode_in_keras_and_flax_keeps_outputs_and_the_original():
    dcgan = keras_dcgan()
    z = np.random.default_rng(0).standard_normal((2, 1, 1, 8)).astype(np.float32)
    expected = np.asarray(dcgan(z))
    nodes = [len(layer._inbound_nodes) for layer in dcgan.layers]
    fastest = keras_layers.replace_conv_transpose(dcgan, mode="fastest", example=z)
    assert [len(layer._inbound_nodes) for layer in dcgan.layers] == nodes  # untouched
    assert sum(isinstance(layer, keras_layers.SubPixelConv) for layer in fastest.layers) <= 3
    np.testing.assert_allclose(np.asarray(fastest(z)), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(dcgan(z)), expected)

    model = FlaxDCGAN()
    zj = jnp.asarray(z)
    expected = np.asarray(model(zj))
    flax_layers.replace_conv_transpose(model, mode="fastest", example=z)
    assert all(isinstance(m, (nnx.ConvTranspose, flax_layers.SubPixelConv, nnx.BatchNorm))
               for m in model.layers)  # fmt: skip
    np.testing.assert_allclose(np.asarray(model(zj)), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rewrite", [keras_layers.replace_conv_transpose,
                                     flax_layers.replace_conv_transpose,
                                     torch_layers.replace_conv_transpose])  # fmt: skip
def test_rewrite_modes_are_checked(rewrite):
    with pytest.raises(
        ValueError, match=r"^`mode` must be 'subpixel'.* or 'fastest'. Received: mode='fast'$"
    ):
        rewrite(object(), mode="fast")
    with pytest.raises(ValueError, match=r"^`mode='fastest'` needs an `example` input"):
        rewrite(object(), mode="fastest")


def test_a_channels_first_depth_to_space_keeps_the_backends_order():
    """Keras's channels_first depth_to_space order depends on the backend: the probe
    reads what it does, and the rewrite gives the same numbers."""
    inputs = keras.Input((12, None, None))
    model = keras.Model(inputs, keras.ops.depth_to_space(inputs, 2, data_format="channels_first"))
    op, order, factor, data_format = keras_layers.shuffle_op(model.operations[-1])
    assert (op, factor, data_format) == ("shuffle", (2, 2), "channels_first")
    x = np.random.default_rng(0).standard_normal((1, 12, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(
        np.asarray(model(x)), subpixel.shuffle(x, 2, layout="channels_first", order=order)
    )
    rewritten = keras_layers.replace_pixel_shuffle(model)
    np.testing.assert_array_equal(np.asarray(rewritten(x)), np.asarray(model(x)))


# ---------------------------------------------------------------------------
# hostile but ordinary models (each test fails on the first release of porting)
# ---------------------------------------------------------------------------


def _bn_state(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "batches" in k}


class FlaxConvBN(nnx.Module):
    def __init__(self):
        rngs = nnx.Rngs(0)
        self.conv = nnx.Conv(3, 4, (3, 3), padding="SAME", rngs=rngs)
        self.bn = nnx.BatchNorm(4, epsilon=1e-5, momentum=0.9, rngs=rngs)  # training mode

    def __call__(self, x):
        return self.bn(self.conv(x))


def test_porting_and_rewriting_never_change_a_models_state():
    """Batch norms in training mode: the runs that trace and compare use eval mode (on
    a copy in Flax), so no running statistics move and every mode is restored."""
    source = _torch_model(lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)))
    source.train()
    before = _bn_state(source)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    keras_target = keras.Sequential(
        [keras.Input((8, 8, 3)), L.Conv2D(4, 3, padding="same"), L.BatchNormalization(epsilon=1e-5)]
    )
    flax_target = FlaxConvBN()
    for target in (keras_target, flax_target):
        report = subpixel.port_weights(source, target, example=x)
        assert report.max_diff is not None and report.max_diff <= 1e-5, str(report)
    for k, v in _bn_state(source).items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    assert source.training and source[1].training
    want = before["1.running_mean"].numpy()
    np.testing.assert_array_equal(np.asarray(keras_target.layers[1].moving_mean), want)
    np.testing.assert_array_equal(np.asarray(flax_target.bn.mean[...]), want)
    assert not flax_target.bn.use_running_average  # still in training mode

    dcgan = _torch_model(TorchDCGAN).train()
    before = _bn_state(dcgan)
    z = np.random.default_rng(0).standard_normal((2, 8, 1, 1))  # float64, as NumPy makes it
    torch_layers.replace_conv_transpose(dcgan, mode="fastest", example=z)
    for k, v in _bn_state(dcgan).items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    assert all(m.training for m in dcgan.modules())

    model = FlaxDCGAN()
    for m in model.layers:
        if isinstance(m, nnx.BatchNorm):
            m.use_running_average = False
    means = [np.asarray(m.mean[...]) for m in model.layers if isinstance(m, nnx.BatchNorm)]
    flax_layers.replace_conv_transpose(model, mode="fastest", example=z.transpose(0, 2, 3, 1))
    after = [np.asarray(m.mean[...]) for m in model.layers if isinstance(m, nnx.BatchNorm)]
    for a, b in zip(means, after):
        np.testing.assert_array_equal(a, b)


class FlaxFlattenHead(nnx.Module):
    def __init__(self):
        rngs = nnx.Rngs(0)
        self.conv = nnx.Conv(3, 2, (3, 3), padding="SAME", rngs=rngs)
        self.fc = nnx.Linear(32, 5, rngs=rngs)

    def __call__(self, x):
        h = self.conv(x)
        return self.fc(h.reshape(h.shape[0], -1))


def test_flattens_are_found_through_dropouts_or_refused_when_unknown():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    source = _torch_model(
        lambda: nn.Sequential(
            nn.Conv2d(3, 2, 3, padding=1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(32, 5)
        )
    )
    target = keras.Sequential(
        [keras.Input((4, 4, 3)), L.Conv2D(2, 3, padding="same"), L.Flatten(), L.Dropout(0.5),
         L.Dense(5)]
    )  # fmt: skip
    subpixel.port_weights(source, target)  # Keras knows its shapes: no example needed
    np.testing.assert_allclose(
        np.asarray(target(_nhwc(x))), _run_torch(source, x), rtol=1e-5, atol=1e-5
    )
    # Flax reshapes in code and PyTorch's shapes need an example: refused without one
    source = _torch_model(
        lambda: nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.Flatten(), nn.Linear(32, 5))
    )
    flax_target = FlaxFlattenHead()
    kernel = np.asarray(flax_target.fc.kernel[...]).copy()
    with pytest.raises(ValueError, match=r"a flatten feeds the dense layer 2 .*pass `example=`"):
        subpixel.port_weights(source, flax_target)
    np.testing.assert_array_equal(np.asarray(flax_target.fc.kernel[...]), kernel)
    report = subpixel.port_weights(source, flax_target, example=x.astype(np.float64))
    assert report.max_diff is not None and report.max_diff <= 1e-5, str(report)
    # a pooled head (1 x 1 features) has one order: no example needed
    pooled = _torch_model(
        lambda: nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 5)
        )
    )
    subpixel.port_weights(pooled, keras.Sequential(
        [keras.Input((4, 4, 3)), L.Conv2D(32, 3, padding="same"), L.GlobalAveragePooling2D(),
         L.Dense(5)]))  # fmt: skip


def test_prelu_axes_settings_and_dtypes():
    x = np.random.default_rng(0).standard_normal((1, 4, 6, 6)).astype(np.float32)
    source = _torch_model(lambda: nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.PReLU(4)))
    _randomise_prelu(source)
    # a channels_first Keras PReLU keeps alpha as (C, 1, 1)
    cf = keras.Sequential(
        [keras.Input((4, 6, 6)), L.Conv2D(4, 3, padding="same", data_format="channels_first"),
         L.PReLU(shared_axes=[2, 3])]
    )  # fmt: skip
    subpixel.port_weights(source, cf)
    np.testing.assert_allclose(np.asarray(cf(x)), _run_torch(source, x), rtol=1e-5, atol=1e-5)
    back = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.PReLU(4)).eval()
    subpixel.port_weights(cf, back)
    torch.testing.assert_close(back[1].weight, source[1].weight, rtol=0, atol=0)
    per_position = keras.Sequential(
        [keras.Input((6, 6, 4)), L.Conv2D(4, 3, padding="same"), L.PReLU()]
    )
    with pytest.raises(
        ValueError, match=r"PReLU .* alpha of shape \(6, 6, 4\) \(one per position\)"
    ):
        subpixel.port_weights(source, per_position)
    # settings that change the numbers are compared
    bn = _torch_model(lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)))
    default_eps = keras.Sequential(
        [keras.Input((8, 8, 3)), L.Conv2D(4, 3, padding="same"), L.BatchNormalization()]
    )
    with pytest.raises(ValueError, match=r"`eps` \(epsilon\) is 1e-05 in the source and 0.001"):
        subpixel.port_weights(bn, default_eps)
    with pytest.raises(ValueError, match=r"`groups` is 1 in the source and 2 in the target"):
        # the same weight shape (4, 2, 3, 3): 2 input channels, or 4 in two groups
        subpixel.port_weights(nn.Conv2d(2, 4, 3), nn.Conv2d(4, 4, 3, groups=2))
    # bfloat16 parameters (ml_dtypes in NumPy) convert; a float16 target takes them
    bf16 = keras.Sequential(
        [keras.Input((6, 6, 4)), L.Conv2D(4, 3, padding="same", dtype="bfloat16")]
    )
    conv = nn.Conv2d(4, 4, 3, padding=1)
    subpixel.port_weights(bf16, conv)
    want = np.asarray(keras.ops.cast(bf16.layers[0].kernel, "float32"))
    np.testing.assert_array_equal(conv.weight.detach().numpy(), want.transpose(3, 2, 0, 1))
    half = nn.Conv2d(4, 4, 3, padding=1).half()
    subpixel.port_weights(bf16, half)
    assert half.weight.dtype == torch.float16


def test_examples_are_checked_before_anything_is_copied():
    source = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1))
    target = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(4, 3, padding="same")])
    kernel = np.asarray(target.layers[0].kernel).copy()
    with pytest.raises(
        ValueError,
        match=r"^`example` does not run through the source model \(RuntimeError: .*"
        r"Received: example of shape \(1, 5, 8, 8\) and dtype float32$",
    ):
        subpixel.port_weights(source, target, example=np.zeros((1, 5, 8, 8), np.float32))
    np.testing.assert_array_equal(np.asarray(target.layers[0].kernel), kernel)
    # token ids stay integers; a sequence of features keeps its axes
    tokens = np.random.default_rng(0).integers(0, 10, (2, 5))
    embed = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2))
    k_embed = keras.Sequential([keras.Input((5,), dtype="int32"), L.Embedding(10, 4), L.Dense(2)])
    report = subpixel.port_weights(embed, k_embed, example=tokens)
    assert report.max_diff is not None and report.max_diff <= 1e-6, str(report)
    seq = np.random.default_rng(0).standard_normal((2, 5, 4)).astype(np.float32)
    report = subpixel.port_weights(
        nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8)),
        keras.Sequential([keras.Input((5, 4)), L.Dense(8), L.LayerNormalization(epsilon=1e-5)]),
        example=seq,
    )
    assert report.max_diff is not None and report.max_diff <= 1e-5, str(report)


class FlaxShared(nnx.Module):
    def __init__(self):
        self.conv = nnx.Conv(4, 4, (3, 3), padding="SAME", rngs=nnx.Rngs(0))
        self.again = self.conv  # one module under two names
        self.act = nnx.PReLU()

    def __call__(self, x):
        return self.act(self.again(self.conv(x)))


class KerasSubclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = L.Conv2D(2 * 9, 3, padding="same")
        self.shuffle = keras_layers.PixelShuffle(3, order="DCR")

    def call(self, x):
        return self.shuffle(self.conv(x))


def test_depthwise_shared_modules_subclassed_and_nested_models():
    x = np.random.default_rng(0).standard_normal((1, 4, 6, 6)).astype(np.float32)
    for multiplier in (1, 2):  # Keras DepthwiseConv2D is a grouped conv, groups = channels
        source = _torch_model(lambda m=multiplier: nn.Conv2d(4, 4 * m, 3, padding=1, groups=4))
        target = keras.Sequential(
            [
                keras.Input((6, 6, 4)),
                L.DepthwiseConv2D(3, padding="same", depth_multiplier=multiplier),
            ]
        )
        subpixel.port_weights(source, target)
        np.testing.assert_allclose(
            np.asarray(target(_nhwc(x))), _nhwc(_run_torch(source, x)), rtol=1e-5, atol=1e-5
        )
        back = nn.Conv2d(4, 4 * multiplier, 3, padding=1, groups=4)
        subpixel.port_weights(target, back)
        torch.testing.assert_close(back.weight, source.weight, rtol=0, atol=0)
    # Flax: a module shared by two attributes is one layer; nnx.PReLU is ported
    source = _torch_model(lambda: nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.PReLU()))
    with torch.no_grad():
        source[1].weight.fill_(0.3)
    shared = FlaxShared()
    subpixel.port_weights(source, shared)
    assert float(shared.act.negative_slope[...]) == pytest.approx(0.3)
    # a subclassed Keras model: the order of its layers tells the shuffle's
    torch_shuffle = _torch_model(
        lambda: nn.Sequential(nn.Conv2d(4, 18, 3, padding=1), nn.PixelShuffle(3))
    )
    sub = KerasSubclassed()
    sub(_nhwc(x))
    subpixel.port_weights(torch_shuffle, sub)
    np.testing.assert_allclose(
        np.asarray(sub(_nhwc(x))), _nhwc(_run_torch(torch_shuffle, x)), rtol=1e-5, atol=1e-5
    )
    # a nested Keras model feeding a depth_to_space (DCR) after it
    inner_in = keras.Input((6, 6, 4))
    inner = keras.Model(inner_in, L.Conv2D(18, 3, padding="same")(inner_in))
    outer_in = keras.Input((6, 6, 4))
    outer = keras.Model(outer_in, keras.ops.depth_to_space(inner(outer_in), 3))
    report = subpixel.port_weights(torch_shuffle, outer, example=x)
    assert report.max_diff is not None and report.max_diff <= 1e-5, str(report)


def test_torch_rewrites_keep_sharing_ties_and_memory_format():
    ct = nn.ConvTranspose2d(3, 3, 4, stride=2, padding=1)
    holder = nn.Module()
    holder.a, holder.b = ct, ct
    torch_layers.replace_conv_transpose(holder)
    assert holder.a is holder.b and isinstance(holder.a, torch_layers.SubPixelConv2d)
    enc = nn.Conv2d(3, 4, 4, stride=2, padding=1)
    dec = nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1)
    dec.weight = enc.weight  # tied (an autoencoder)
    model = nn.Sequential(enc, dec)
    torch_layers.replace_conv_transpose(model, mode="phases")
    assert model[1].weight is model[0].weight
    bare = nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1).double()
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    for mode in ("subpixel", "phases"):
        new = torch_layers.replace_conv_transpose(bare, mode=mode)
        assert not isinstance(new, nn.ConvTranspose2d)
        y = new(x)
        assert y.is_contiguous(memory_format=torch.channels_last), mode
        torch.testing.assert_close(y, bare(x), rtol=1e-12, atol=1e-12)


class FlaxOddTransposes(nnx.Module):
    def __init__(self):
        rngs = nnx.Rngs(0)
        kw = dict(strides=(2, 2), rngs=rngs)
        self.int_pad = nnx.ConvTranspose(3, 3, (4, 4), padding=2, **kw)
        self.circular = nnx.ConvTranspose(3, 3, (4, 4), padding="CIRCULAR", **kw)
        self.too_wide = nnx.ConvTranspose(3, 3, (3, 3), padding=((3, 3), (3, 3)), **kw)
        self.half = nnx.ConvTranspose(3, 3, (4, 4), padding="SAME", dtype=jnp.bfloat16, **kw)
        self.again = self.half

    def __call__(self, x):
        return self.int_pad(x), self.circular(x), self.too_wide(x), self.again(self.half(x))


def test_flax_rewrite_takes_what_is_exact_and_keeps_the_rest():
    model = FlaxOddTransposes()
    x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 5, 5, 3)).astype(np.float32))
    expected = model(x)
    flax_layers.replace_conv_transpose(model)
    assert isinstance(model.int_pad, flax_layers.SubPixelConv)
    assert isinstance(model.circular, nnx.ConvTranspose)  # no zero-padding equivalent
    assert isinstance(model.too_wide, nnx.ConvTranspose)
    assert isinstance(model.half, flax_layers.SubPixelConv) and model.half is model.again
    got = model(x)
    for a, b in zip(got[:3], expected[:3]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
    assert got[3].dtype == expected[3].dtype == jnp.bfloat16  # the compute dtype is kept


def test_keras_rewrite_reaches_nested_models_and_refuses_subclassed_ones():
    inner_in = keras.Input((4, 4, 3))
    inner = keras.Model(inner_in, L.Conv2DTranspose(2, 4, strides=2, padding="same")(inner_in))
    outer_in = keras.Input((4, 4, 3))
    outer = keras.Model(outer_in, L.ReLU()(inner(outer_in)))
    x = np.random.default_rng(0).standard_normal((1, 4, 4, 3)).astype(np.float32)
    rewritten = keras_layers.replace_conv_transpose(outer)
    kinds = [type(layer).__name__ for layer in rewritten.layers[1].layers]
    assert "SubPixelConv" in kinds, kinds
    np.testing.assert_allclose(np.asarray(rewritten(x)), np.asarray(outer(x)), rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match=r"^`model` must be a functional or Sequential Keras model"):
        keras_layers.replace_conv_transpose(KerasSubclassed())


def test_keras_fastest_times_the_layers_of_nested_models(monkeypatch):
    """`fastest` times a nested model's transposed convolution on the input it gets
    there (timing made to pick the sub-pixel form, and to check what it runs)."""
    from subpixel._core import timing as _timing

    timed = []

    def pick_sub_pixel(runs, **_):
        timed.append([np.asarray(run()).shape for run in runs])  # both forms run
        return 1

    monkeypatch.setattr(_timing, "fastest", pick_sub_pixel)
    inner_in = keras.Input((6, 6, 5))
    inner = keras.Model(inner_in, L.Conv2DTranspose(2, 4, strides=2, padding="same")(inner_in))
    outer_in = keras.Input((3, 3, 3))
    h = L.Conv2DTranspose(5, 4, strides=2, padding="same")(outer_in)
    outer = keras.Model(outer_in, L.ReLU()(inner(h)))
    x = np.random.default_rng(0).standard_normal((2, 3, 3, 3)).astype(np.float32)
    rewritten = keras_layers.replace_conv_transpose(outer, mode="fastest", example=x)
    assert timed == [[(2, 6, 6, 5)] * 2, [(2, 12, 12, 2)] * 2]
    assert isinstance(rewritten.layers[1], keras_layers.SubPixelConv)
    kinds = [type(layer).__name__ for layer in rewritten.layers[2].layers]
    assert "SubPixelConv" in kinds, kinds
    np.testing.assert_allclose(np.asarray(rewritten(x)), np.asarray(outer(x)), rtol=1e-5, atol=1e-5)
    assert all("call" not in vars(layer) for layer in (*outer.layers, *inner.layers))


class TorchUntraceable(nn.Module):
    """Data-dependent control flow (torch.fx cannot trace it) and one PixelShuffle
    module called after two convolutions."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 12, 3, padding=1)
        self.c2 = nn.Conv2d(3, 12, 3, padding=1)
        self.ps = nn.PixelShuffle(2)

    def forward(self, x):
        if x.shape[1] != 3:
            raise ValueError("three channels")
        return self.ps(self.c2(self.ps(self.c1(x))))


def test_an_untraceable_model_is_read_in_the_order_its_modules_run():
    inputs = keras.Input((4, 4, 3))
    h = keras.ops.depth_to_space(L.Conv2D(12, 3, padding="same")(inputs), 2)
    target = keras.Model(inputs, keras.ops.depth_to_space(L.Conv2D(12, 3, padding="same")(h), 2))
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 4)).astype(np.float32)
    with pytest.warns(UserWarning, match=r"^torch.fx cannot trace TorchUntraceable"):
        report = subpixel.port_weights(_torch_model(TorchUntraceable), target, example=x)
    assert report.max_diff is not None and report.max_diff <= 1e-5, str(report)


class TorchUntraceableCalls(nn.Module):
    """Untraceable, with its shuffles called as functions between subpixel's own
    layers and PyTorch's (which call F.pixel_shuffle inside: not the model's calls)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 12, 3, padding=1)
        self.up = torch_layers.SubPixelConv2d(3, 3, 3, 2)
        self.c2 = nn.Conv2d(12, 12, 3, padding=1)
        self.down = nn.PixelUnshuffle(2)
        self.c3 = nn.Conv2d(48, 12, 3, padding=1)

    def forward(self, x):
        if x.shape[1] != 3:
            raise ValueError("three channels")
        h = F.pixel_unshuffle(self.up(F.pixel_shuffle(self.c1(x), 2)), downscale_factor=2)
        return F.pixel_shuffle(self.c3(self.down(self.c2(h))), upscale_factor=2)


def test_shuffles_called_as_functions_in_an_untraceable_model_are_seen():
    """With `example`, the F.pixel_shuffle/pixel_unshuffle calls of a model torch.fx
    cannot trace are seen where they run (a TorchFunctionMode), and those inside
    subpixel's and PyTorch's shuffle layers are not counted twice."""
    inputs = keras.Input((4, 4, 3))
    h = keras.ops.depth_to_space(L.Conv2D(12, 3, padding="same")(inputs), 2)
    h = keras.ops.space_to_depth(keras_layers.SubPixelConv(3, 3, 2, order="DCR")(h), 2)
    h = keras.ops.space_to_depth(L.Conv2D(12, 3, padding="same")(h), 2)
    target = keras.Model(inputs, keras.ops.depth_to_space(L.Conv2D(12, 3, padding="same")(h), 2))
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 4)).astype(np.float32)
    source = _torch_model(TorchUntraceableCalls)
    with pytest.warns(UserWarning, match=r"followed to the convolution whose channels it takes$"):
        report = subpixel.port_weights(source, target, example=x)
    assert report.max_diff is not None and report.max_diff <= 1e-5, str(report)
    with pytest.warns(UserWarning, match=r"are not seen: pass `example=`$"):
        subpixel.port_weights(source, keras.models.clone_model(target))


class TorchNHWCHead(nn.Module):
    """Flattens in NHWC order itself (x.permute(0, 2, 3, 1)), 4 channels on 4 x 4: every
    order of the features has the same shape."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(64, 5)

    def forward(self, x):
        return self.fc(self.conv(x).permute(0, 2, 3, 1).contiguous().flatten(1))


@pytest.mark.parametrize("example", [False, True])
def test_a_flatten_after_a_permute_is_channels_last(example):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    source = _torch_model(TorchNHWCHead)
    target = keras.Sequential(
        [keras.Input((4, 4, 3)), L.Conv2D(4, 3, padding="same"), L.Flatten(), L.Dense(5)]
    )
    subpixel.port_weights(source, target, example=x if example else None)
    np.testing.assert_allclose(
        np.asarray(target(_nhwc(x))), _run_torch(source, x), rtol=1e-5, atol=1e-5
    )
    flax_target = FlaxFlattenHead()
    flax_target.conv = nnx.Conv(3, 4, (3, 3), padding="SAME", rngs=nnx.Rngs(0))
    flax_target.fc = nnx.Linear(64, 5, rngs=nnx.Rngs(0))
    subpixel.port_weights(source, flax_target, example=x if example else None)
    np.testing.assert_allclose(
        np.asarray(flax_target(jnp.asarray(_nhwc(x)))), _run_torch(source, x), rtol=1e-5, atol=1e-5
    )


class FlaxTokens(nnx.Module):
    def __init__(self):
        self.e = nnx.Embed(10, 4, rngs=nnx.Rngs(0))
        self.fc = nnx.Linear(16, 3, rngs=nnx.Rngs(0))

    def __call__(self, ids):
        h = self.e(ids)
        return self.fc(h.reshape(h.shape[0], -1))


def test_models_without_images_keep_their_flatten_order():
    """(N, L, E) with L == E: no channels move, in any framework."""
    tokens = np.random.default_rng(0).integers(0, 10, (2, 4))
    source = _torch_model(
        lambda: nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(16, 3))
    )
    want = source(torch.from_numpy(tokens)).detach().numpy()
    k_tokens = keras.Sequential(
        [keras.Input((4,), dtype="int32"), L.Embedding(10, 4), L.Flatten(), L.Dense(3)]
    )
    for target, run in (
        (k_tokens, lambda: np.asarray(k_tokens(tokens))),
        (FlaxTokens(), None),
    ):
        for example in (None, tokens):
            subpixel.port_weights(source, target, example=example)
            got = run() if run else np.asarray(target(jnp.asarray(tokens)))
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    x = np.random.default_rng(0).standard_normal((2, 4, 4)).astype(np.float32)
    mlp = _torch_model(lambda: nn.Sequential(nn.Flatten(), nn.Linear(16, 3)))
    k_mlp = keras.Sequential([keras.Input((4, 4)), L.Flatten(), L.Dense(3)])
    report = subpixel.port_weights(mlp, k_mlp, example=x)
    assert report.max_diff is not None and report.max_diff <= 1e-5, str(report)


def test_layers_it_cannot_convert_are_refused():
    source = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.GroupNorm(2, 4), nn.Conv2d(4, 2, 1))
    target = keras.Sequential(
        [keras.Input((8, 8, 3)), L.Conv2D(4, 3, padding="same"), L.GroupNormalization(2),
         L.Conv2D(2, 1)]
    )  # fmt: skip
    before = [w.copy() for w in target.get_weights()]
    with pytest.raises(
        ValueError, match=r"^`source` has parameters port_weights cannot convert: 1 \(GroupNorm\)"
    ):
        subpixel.port_weights(source, target)
    with pytest.raises(ValueError, match=r"^`source` .* \(GroupNormalization\) holds"):
        subpixel.port_weights(target, source)
    for a, b in zip(before, target.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_layer_norms_over_images_and_square_reports():
    for c, h, w in ((4, 4, 4), (2, 4, 5)):
        source = _torch_model(
            lambda c=c, h=h, w=w: nn.Sequential(nn.Conv2d(3, c, 1), nn.LayerNorm([c, h, w]))
        )
        with torch.no_grad():
            source[1].weight.normal_()
            source[1].bias.normal_()
        target = keras.Sequential(
            [
                keras.Input((h, w, 3)),
                L.Conv2D(c, 1),
                L.LayerNormalization(axis=[1, 2, 3], epsilon=1e-5),
            ]
        )
        x = np.random.default_rng(0).standard_normal((2, 3, h, w)).astype(np.float32)
        report = subpixel.port_weights(source, target, example=x)  # square output: (4, 4, 4)
        assert report.max_diff is not None and report.max_diff <= 1e-5, str(report)
        assert all(d <= 1e-5 for d in report.layer_max_diff.values()), str(report)
        np.testing.assert_allclose(
            np.asarray(target(_nhwc(x))), _nhwc(_run_torch(source, x)), rtol=1e-5, atol=1e-5
        )
        back = nn.Sequential(nn.Conv2d(3, c, 1), nn.LayerNorm([c, h, w]))
        subpixel.port_weights(target, back)
        torch.testing.assert_close(back[1].weight, source[1].weight, rtol=0, atol=0)


def test_keras_shuffle_rewrite_keeps_what_follows_and_what_a_lambda_adds():
    inputs = keras.Input((4, 4, 12))
    h = keras.ops.depth_to_space(inputs, 2)
    h = L.Conv2D(3, 3, padding="same")(h)  # weights after a rewritten graph operation
    relu = L.Lambda(lambda t: keras.ops.relu(keras.ops.depth_to_space(t, 2)))(inputs)
    model = keras.Model(inputs, [h, relu])
    assert keras_layers.shuffle_op(model.operations[-1]) is None  # a shuffle and a relu
    rewritten = keras_layers.replace_pixel_shuffle(model)
    x = np.random.default_rng(0).standard_normal((1, 4, 4, 12)).astype(np.float32)
    for got, want in zip(rewritten(x), model(x)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    frozen = keras.Sequential(
        [
            keras.Input((4, 4, 3)),
            L.Conv2DTranspose(2, 4, strides=2, padding="same", trainable=False),
        ]
    )
    assert not keras_layers.replace_conv_transpose(frozen).layers[-1].trainable


def test_torch_rewrites_keep_precision_trainability_and_output_size():
    torch.manual_seed(0)
    ct = nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1).double()
    with torch.no_grad():
        ct.weight.normal_()  # float64 values that float32 cannot hold
    ct.weight.requires_grad_(False)
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64)
    new = torch_layers.replace_conv_transpose(ct)
    torch.testing.assert_close(new(x), ct(x), rtol=1e-12, atol=1e-12)
    assert not new.weight.requires_grad and new.bias.requires_grad
    # output_size: PhasedConvTranspose takes it as ConvTranspose does, SubPixelConv checks it
    phased = torch_layers.PhasedConvTranspose(ct)
    for size in ((10, 12), (11, 13)):
        torch.testing.assert_close(
            phased(x, output_size=size), ct(x, output_size=size), rtol=1e-12, atol=1e-12
        )
    with pytest.raises(
        ValueError, match=r"^`output_size` must be between \(10, 12\) and \(11, 13\)"
    ):
        phased(x, output_size=(12, 12))
    with pytest.raises(ValueError, match=r"^`output_size` must be this layer's output size"):
        new(x, output_size=(11, 13))
    # a re-parametrised weight (weight norm) is computed each call: kept as it is
    normed = nn.utils.parametrizations.weight_norm(nn.ConvTranspose2d(4, 3, 4, stride=2))
    model = nn.Sequential(normed)
    torch_layers.replace_conv_transpose(model, mode="phases")
    assert model[0] is normed


class FlaxSubPixelThenShuffle(nnx.Module):
    def __init__(self):
        self.up = flax_layers.SubPixelConv(3, 8, 3, 2, order="DCR", rngs=nnx.Rngs(0))
        self.shuffle = flax_layers.PixelShuffle(2, order="DCR")

    def __call__(self, x):
        return self.shuffle(self.up(x))


def test_shuffles_in_a_row():
    """A subpixel layer then a shuffle, or a shuffle of a shuffle: the convolution's
    channels go through both, reordered for each framework's orders (CRD in PyTorch,
    DCR in Keras's depth_to_space)."""
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 5)).astype(np.float32)
    source = _torch_model(
        lambda: nn.Sequential(torch_layers.SubPixelConv2d(3, 8, 3, 2), nn.PixelShuffle(2))
    )
    inputs = keras.Input((4, 5, 3))
    target = keras.Model(
        inputs, keras.ops.depth_to_space(keras_layers.SubPixelConv(8, 3, 2)(inputs), 2)
    )
    report = subpixel.port_weights(source, target, example=x)
    assert report.max_diff is not None and report.max_diff <= 1e-5, str(report)
    flax_target = FlaxSubPixelThenShuffle()
    report = subpixel.port_weights(source, flax_target, example=x)
    assert report.max_diff is not None and report.max_diff <= 1e-5, str(report)
    twice = _torch_model(
        lambda: nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.PixelShuffle(2), nn.PixelShuffle(2)
        )
    )
    h = keras.ops.depth_to_space(L.Conv2D(32, 3, padding="same")(inputs), 2)
    report = subpixel.port_weights(
        twice, keras.Model(inputs, keras.ops.depth_to_space(h, 2)), example=x
    )
    assert report.max_diff is not None and report.max_diff <= 1e-5, str(report)
    normed = _torch_model(
        lambda: nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.PixelShuffle(2),
            nn.BatchNorm2d(8),
            nn.PixelShuffle(2),
        )
    )
    h = L.BatchNormalization(epsilon=1e-5)(
        keras.ops.depth_to_space(L.Conv2D(32, 3, padding="same")(inputs), 2)
    )
    with pytest.raises(ValueError, match=r"a batch norm or PReLU between two shuffles"):
        subpixel.port_weights(normed, keras.Model(inputs, keras.ops.depth_to_space(h, 2)))


def test_settings_of_subpixel_layers_and_strides_must_agree():
    blurred = keras_layers.SubPixelConv(4, 3, 2, blur=True)
    blurred.build((None, 6, 6, 3))
    with pytest.raises(ValueError, match=r"`blur` is False in the source and True in the target"):
        subpixel.port_weights(torch_layers.SubPixelConv2d(3, 4, 3, 2), blurred)
    strided = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(4, 3, strides=2)])
    with pytest.raises(ValueError, match=r"the stride is \(1, 1\) in the source and \(2, 2\)"):
        subpixel.port_weights(nn.Sequential(nn.Conv2d(3, 4, 3)), strided)
    # a layer passed alone is a model of one layer, in every framework
    x = np.random.default_rng(0).standard_normal((1, 3, 5, 6)).astype(np.float32)
    alone = _torch_model(lambda: torch_layers.SubPixelConv2d(3, 4, 3, 2, order="DCR"))
    for target in (
        flax_layers.SubPixelConv(3, 4, 3, 2, rngs=nnx.Rngs(0)),
        nnx.Conv(3, 16, (3, 3), rngs=nnx.Rngs(0)),
    ):
        if isinstance(target, nnx.Conv):
            alone_src = _torch_model(lambda: nn.Conv2d(3, 16, 3, padding=1))
            subpixel.port_weights(alone_src, target)
            want = _nhwc(_run_torch(alone_src, x))
        else:
            subpixel.port_weights(alone, target)
            want = _nhwc(_run_torch(alone, x))
        np.testing.assert_allclose(
            np.asarray(target(jnp.asarray(_nhwc(x)))), want, rtol=1e-5, atol=1e-5
        )


class FlaxUpOutOfOrder(nnx.Module):
    """Attributes not in alphabetical order (nnx.clone would sort them)."""

    def __init__(self, dtype=jnp.float32):
        rngs = nnx.Rngs(0)
        kw = dict(strides=(2, 2), padding="SAME", rngs=rngs, param_dtype=dtype, dtype=dtype)
        self.up1 = nnx.ConvTranspose(4, 3, (4, 4), **kw)
        self.final = nnx.ConvTranspose(3, 2, (4, 4), **kw)

    def __call__(self, x):
        return self.final(self.up1(x))


def test_flax_and_keras_fastest_modes_on_awkward_models_and_examples():
    model = FlaxUpOutOfOrder()
    x = np.random.default_rng(0).standard_normal((1, 4, 4, 4)).astype(np.float32)
    expected = model(jnp.asarray(x))
    with pytest.raises(
        ValueError,
        match=r"^`example` does not run through the model \(.*Received: example of shape \(1, 4, 4, 3\)$",
    ):
        flax_layers.replace_conv_transpose(model, mode="fastest", example=x[..., :3])
    assert isinstance(model.up1, nnx.ConvTranspose)  # unchanged
    flax_layers.replace_conv_transpose(model, mode="fastest", example=x)
    np.testing.assert_allclose(
        np.asarray(model(jnp.asarray(x))), np.asarray(expected), rtol=1e-5, atol=1e-5
    )
    half = FlaxUpOutOfOrder(jnp.bfloat16)
    flax_layers.replace_conv_transpose(half)
    assert half.up1.kernel[...].dtype == jnp.bfloat16
    dcgan = keras_dcgan()
    with pytest.raises(ValueError, match=r"^`example` does not run through the model"):
        keras_layers.replace_conv_transpose(dcgan, mode="fastest", example=np.zeros((1, 2, 2, 3)))
    with pytest.raises(
        TypeError, match=r"^`model` must be a PyTorch nn.Module. Received: model of type keras"
    ):
        torch_layers.replace_conv_transpose(dcgan)
    with pytest.raises(TypeError, match=r"^`module` must be a Flax NNX module"):
        flax_layers.replace_conv_transpose(dcgan)
    with pytest.raises(ValueError, match=r"^`model` must be built"):
        keras_layers.replace_conv_transpose(keras.Sequential([L.Conv2DTranspose(2, 4, strides=2)]))


def test_models_without_values_are_refused():
    meta = nn.Sequential(nn.Conv2d(3, 4, 3)).to("meta")
    with pytest.raises(ValueError, match=r"^`source` holds tensors on the meta device"):
        subpixel.port_weights(meta, nn.Sequential(nn.Conv2d(3, 4, 3)))
    unbuilt = keras.Sequential([L.Conv2D(4, 3)])
    with pytest.raises(ValueError, match=r"^`target` is not built"):
        subpixel.port_weights(nn.Sequential(nn.Conv2d(3, 4, 3)), unbuilt)


# ---------------------------------------------------------------------------
# pairing in the order layers run: models whose code defines them in another order
# ---------------------------------------------------------------------------


class TorchRunsOutOfOrder(nn.Module):
    """Runs head, mid_b, mid_a, up, shuffle; defines them in another order."""

    def __init__(self):
        super().__init__()
        self.up = nn.Conv2d(8, 12, 3, padding=1)
        self.mid_a = nn.Conv2d(8, 8, 3, padding=1)
        self.mid_b = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x):
        x = F.relu(self.mid_b(F.relu(self.head(x))))
        return self.shuffle(self.up(F.relu(self.mid_a(x))))


class FlaxRunsInOrder(nnx.Module):
    """The same network, defined in the order it runs (DCR shuffle): nnx.split/merge
    sorts the attributes to head, mid_a, mid_b, shuffle, up, so that mid_a and mid_b
    (same shape) swap and the shuffle comes before the convolution feeding it."""

    def __init__(self):
        rngs = nnx.Rngs(0)
        self.head = nnx.Conv(3, 8, (3, 3), padding="SAME", rngs=rngs)
        self.mid_b = nnx.Conv(8, 8, (3, 3), padding="SAME", rngs=rngs)
        self.mid_a = nnx.Conv(8, 8, (3, 3), padding="SAME", rngs=rngs)
        self.up = nnx.Conv(8, 12, (3, 3), padding="SAME", rngs=rngs)
        self.shuffle = flax_layers.PixelShuffle(2, order="DCR")

    def __call__(self, x):
        x = nnx.relu(self.mid_b(nnx.relu(self.head(x))))
        return self.shuffle(self.up(nnx.relu(self.mid_a(x))))


class KerasRunsOutOfOrder(keras.Model):
    """Subclassed, created in yet another order than it runs."""

    def __init__(self):
        super().__init__()
        self.mid_a = L.Conv2D(8, 3, padding="same", activation="relu")
        self.up = L.Conv2D(12, 3, padding="same")
        self.head = L.Conv2D(8, 3, padding="same", activation="relu")
        self.mid_b = L.Conv2D(8, 3, padding="same", activation="relu")
        self.shuffle = keras_layers.PixelShuffle(2, order="DCR")

    def call(self, x):
        return self.shuffle(self.up(self.mid_a(self.mid_b(self.head(x)))))


def keras_runs_in_order():
    inputs = keras.Input((None, None, 3))
    h = inputs
    for _ in range(3):
        h = L.Conv2D(8, 3, padding="same", activation="relu")(h)
    h = L.Conv2D(12, 3, padding="same")(h)
    return keras.Model(inputs, keras.ops.depth_to_space(h, 2))


def test_layers_pair_in_the_order_they_run():
    """With `example`, layers pair in the order they run in each model, whatever order
    the code defines them in: a Flax model rebuilt by nnx.split/merge (attributes
    sorted), a PyTorch model and a subclassed Keras model defined out of order."""
    x = np.random.default_rng(0).standard_normal((1, 3, 5, 6)).astype(np.float32)
    source = _torch_model(TorchRunsOutOfOrder)
    want = _nhwc(_run_torch(source, x))
    rebuilt = nnx.merge(*nnx.split(FlaxRunsInOrder()))
    assert [k for k in vars(rebuilt) if not k.startswith("_")] == sorted(
        ["head", "mid_b", "mid_a", "up", "shuffle"]
    )
    report = subpixel.port_weights(source, rebuilt, example=x)
    assert report.pairs == [("head", "head"), ("mid_b", "mid_b"), ("mid_a", "mid_a"), ("up", "up")]
    assert report.max_diff is not None and report.max_diff <= 1e-5, str(report)
    np.testing.assert_allclose(np.asarray(rebuilt(jnp.asarray(_nhwc(x)))), want, atol=1e-5)
    # and back, from the rebuilt Flax model into a fresh PyTorch one
    back = TorchRunsOutOfOrder()
    report = subpixel.port_weights(rebuilt, back, example=_nhwc(x))
    assert report.max_diff is not None and report.max_diff <= 1e-5, str(report)
    np.testing.assert_allclose(_nhwc(_run_torch(back, x)), want, atol=1e-5)
    # without an example, the rebuilt module's order is all there is: a warning says so
    # (here, PyTorch's definition order does not fit it either: refused)
    with (
        pytest.warns(UserWarning, match=r"rebuilt by nnx.split/merge.*pass `example=`"),
        pytest.raises(ValueError, match=r"^the architectures differ at up -> head"),
    ):
        subpixel.port_weights(source, nnx.clone(FlaxRunsInOrder()))
    # with an example that leaves a layer unused, the attribute order is all there is
    spare = FlaxRunsInOrder()
    spare.spare = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
    with (
        pytest.warns(
            UserWarning, match=r"rebuilt by .*: not every layer.s run on `example` could be"
        ),
        pytest.raises(ValueError, match=r"^the architectures differ: spare \(dense"),
    ):
        subpixel.port_weights(nnx.clone(spare), spare, example=_nhwc(x))
    # PyTorch's definition order does not fit the functional Keras model: one error
    # without an example, the right pairs with one
    functional = keras_runs_in_order()
    with pytest.raises(ValueError, match=r"^the architectures differ at up -> "):
        subpixel.port_weights(source, functional)
    report = subpixel.port_weights(source, functional, example=x)
    assert report.max_diff is not None and report.max_diff <= 1e-5, str(report)
    # a subclassed Keras model created out of order, and back into PyTorch
    sub = KerasRunsOutOfOrder()
    sub(_nhwc(x))
    report = subpixel.port_weights(source, sub, example=x)
    assert report.max_diff is not None and report.max_diff <= 1e-5, str(report)
    np.testing.assert_allclose(np.asarray(sub(_nhwc(x))), want, atol=1e-5)
    assert "call" not in vars(sub.up)  # each layer's own `call` is back
    back = TorchRunsOutOfOrder()
    subpixel.port_weights(sub, back, example=_nhwc(x))
    np.testing.assert_allclose(_nhwc(_run_torch(back, x)), want, atol=1e-5)


# the second hostile pass on run-order pairing: each model's own order is only used
# where both models ran every layer, and the outputs decide between two fitting orders


class TorchGated(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.tail = nn.Conv2d(8, 8, 3, padding=1)  # defined before body, runs after it
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.up = nn.Conv2d(8, 12, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x):
        h = F.relu(self.tail(F.relu(self.body(F.relu(self.stem(x))))))
        h = self.a(h) * torch.sigmoid(self.b(h))  # a runs before b
        return self.shuffle(self.up(h))


def _apply(module, x):
    return module(x)


class FlaxGated(nnx.Module):
    """The same network; `b` runs before `a`, `body` goes through nnx.remat, and its
    call moves state (a counter, an Rngs stream) that porting must leave alone."""

    def __init__(self):
        rngs = nnx.Rngs(1)
        conv = dict(kernel_size=(3, 3), padding="SAME", rngs=rngs)
        self.stem = nnx.Conv(3, 8, **conv)
        self.tail = nnx.Conv(8, 8, **conv)
        self.body = nnx.Conv(8, 8, **conv)
        self.a = nnx.Conv(8, 8, **conv)
        self.b = nnx.Conv(8, 8, **conv)
        self.up = nnx.Conv(8, 12, **conv)
        self.shuffle = flax_layers.PixelShuffle(2, order="DCR")
        self.noise = nnx.Rngs(noise=0)
        self.calls = nnx.Variable(jnp.array(0))

    def __call__(self, x):
        self.calls[...] += 1
        h = nnx.relu(self.stem(x)) + 0.0 * jax.random.normal(self.noise.noise(), (1,))
        h = nnx.relu(self.tail(nnx.relu(nnx.remat(_apply)(self.body, h))))
        gate = nnx.sigmoid(self.b(h))
        return self.shuffle(self.up(self.a(h) * gate))


def tf_function(f):
    import tensorflow as tf

    return tf.function(f)


class KerasGated(keras.Model):
    def __init__(self):
        super().__init__()
        self.stem = L.Conv2D(8, 3, padding="same", activation="relu")
        self.tail = L.Conv2D(8, 3, padding="same", activation="relu")
        self.body = L.Conv2D(8, 3, padding="same", activation="relu")
        self.a = L.Conv2D(8, 3, padding="same")
        self.b = L.Conv2D(8, 3, padding="same", activation="sigmoid")
        self.up = L.Conv2D(12, 3, padding="same")
        self.shuffle = keras_layers.PixelShuffle(2, order="DCR")

    @tf_function
    def call(self, x):
        h = self.tail(self.body(self.stem(x)))
        return self.shuffle(self.up(self.a(h) * self.b(h)))


def test_orders_that_only_one_model_knows_or_that_differ_still_pair_right():
    x = np.random.default_rng(0).standard_normal((1, 3, 5, 6)).astype(np.float32)
    source = _torch_model(TorchGated)
    want = _nhwc(_run_torch(source, x))
    # Flax: its layers' runs cannot all be noted (nnx.remat), and a, b run in another
    # order than in PyTorch: definition order, on both sides
    target = FlaxGated()
    state = (int(target.calls[...]), int(target.noise.noise.count[...]))
    report = subpixel.port_weights(source, target, example=x)
    assert report.max_diff is not None and report.max_diff <= 1e-5, str(report)
    assert (int(target.calls[...]), int(target.noise.noise.count[...])) == state  # untouched
    np.testing.assert_allclose(np.asarray(target(jnp.asarray(_nhwc(x)))), want, atol=1e-5)
    # rebuilt, its layers' runs still not all noted: the sorted order, with a warning
    # (here it does not fit: refused)
    with (
        pytest.warns(UserWarning, match=r"rebuilt by .*could be noted \(a layer in a tuple"),
        pytest.raises(ValueError, match=r"^the architectures differ at stem -> a"),
    ):
        subpixel.port_weights(source, nnx.merge(*nnx.split(FlaxGated())), example=x)
    # Keras: a `call` that is a tf.function traced before still has its layers' calls
    # noted (run as Python for that run)
    keras_model = KerasGated()
    want = np.asarray(keras_model(_nhwc(x)))
    back = TorchGated()
    report = subpixel.port_weights(keras_model, back, example=_nhwc(x))
    assert report.max_diff is not None and report.max_diff <= 1e-5, str(report)
    np.testing.assert_allclose(_nhwc(_run_torch(back, x)), want, atol=1e-5)


class TorchUntraceableFeedsByData(nn.Module):
    """Untraceable; `feat` is shuffled after `gate` ran, an F.pixel_shuffle of a skip
    path (not a convolution's output) runs between `feat` and its shuffle module, and
    `tail`'s output goes through subpixel.shuffle in the given order."""

    def __init__(self, order):
        super().__init__()
        self.order = order
        self.feat = nn.Conv2d(3, 12, 3, padding=1)
        self.gate = nn.Conv2d(3, 1, 3, padding=1)
        self.conv = nn.Conv2d(3, 12, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.tail = nn.Conv2d(3, 12, 3, padding=1)

    def forward(self, x):
        if x.mean() > 100:
            x = x * 0.5
        f = self.feat(x)
        g = torch.sigmoid(self.gate(x))
        h = F.pixel_shuffle(f, 2) * F.interpolate(g, scale_factor=2.0, mode="nearest")
        c = self.conv(x)
        skip = F.pixel_shuffle(x.repeat(1, 4, 1, 1), 2)
        h = h + self.shuffle(c) + skip
        return subpixel.shuffle(self.tail(h), 2, order=self.order)


def keras_feeds_by_data(order):
    inputs = keras.Input((None, None, 3))
    f = L.Conv2D(12, 3, padding="same")(inputs)
    g = L.Conv2D(1, 3, padding="same", activation="sigmoid")(inputs)
    h = keras.ops.depth_to_space(f, 2) * L.UpSampling2D(2)(g)
    c = L.Conv2D(12, 3, padding="same")(inputs)
    skip = keras_layers.PixelShuffle(2)(L.Lambda(lambda t: keras.ops.tile(t, (1, 1, 1, 4)))(inputs))
    h = h + keras.ops.depth_to_space(c, 2) + skip
    other = "DCR" if order == "CRD" else "CRD"
    return keras.Model(
        inputs, keras_layers.PixelShuffle(2, order=other)(L.Conv2D(12, 3, padding="same")(h))
    )


@pytest.mark.parametrize("order, size", [("CRD", 8), ("DCR", 8), ("CRD", 160)])
def test_shuffles_called_as_functions_are_seen_by_what_they_take(order, size):
    """In a model torch.fx cannot trace, a shuffle called as a function marks the
    convolution whose output it takes itself, not the last one that ran; subpixel.shuffle
    is seen in either order and at any size (not through the torch calls inside it)."""
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    source = _torch_model(lambda: TorchUntraceableFeedsByData(order))
    target = keras_feeds_by_data(order)
    with pytest.warns(UserWarning, match=r"^torch.fx cannot trace"):
        report = subpixel.port_weights(source, target, example=x)
    assert report.max_diff is not None and report.max_diff <= 1e-5, str(report)


class TorchGateFirst(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.up = nn.Conv2d(8, 12, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x):
        h = F.relu(self.stem(x))
        gate = torch.sigmoid(self.b(h))  # b runs before a
        return self.shuffle(self.up(self.a(h) * gate))


class FlaxGateLast(nnx.Module):
    def __init__(self):
        rngs = nnx.Rngs(1)
        conv = dict(kernel_size=(3, 3), padding="SAME", rngs=rngs)
        self.stem = nnx.Conv(3, 8, **conv)
        self.a = nnx.Conv(8, 8, **conv)
        self.b = nnx.Conv(8, 8, **conv)
        self.up = nnx.Conv(8, 12, **conv)
        self.shuffle = flax_layers.PixelShuffle(2, order="DCR")

    def __call__(self, x):
        h = nnx.relu(self.stem(x))
        return self.shuffle(self.up(self.a(h) * nnx.sigmoid(self.b(h))))


def test_outputs_decide_between_two_fitting_orders_even_with_nan_pixels():
    """Both orders fit (a and b run in another order in each model): the outputs
    decide, comparing a NaN in both outputs as agreement (a missing pixel)."""
    x = np.random.default_rng(0).standard_normal((1, 3, 12, 12)).astype(np.float32)
    x[0, :, 0, 0] = np.nan
    source = _torch_model(TorchGateFirst)
    target = FlaxGateLast()
    report = subpixel.port_weights(source, target, example=x)
    assert report.pairs == [("stem", "stem"), ("a", "a"), ("b", "b"), ("up", "up")]
    assert report.max_diff is not None and report.max_diff <= 1e-5, str(report)
    clean = np.nan_to_num(x)
    np.testing.assert_allclose(
        np.asarray(target(jnp.asarray(_nhwc(clean)))), _nhwc(_run_torch(source, clean)), atol=1e-5
    )


class TorchUntraceableAfter(nn.Module):
    """Untraceable; the convolution's output reaches a shuffle called as a function
    through `how` (an activation, a batch norm, a view, a scaling, a second shuffle, a
    keyword call), or an unshuffle's output reaches the convolution through a relu."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        r = 3 if how == "relu" else 2
        cin = 12 if how == "unshuffle" else 3
        cout = 3 if how == "unshuffle" else (48 if how == "twice" else 3 * r * r)
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn = nn.BatchNorm2d(cout) if how == "bn" else None

    def forward(self, x):
        if x.mean() > 100:
            x = x * 0.5
        if self.how == "unshuffle":
            return self.conv(F.pixel_unshuffle(F.relu(x), 2))
        c = self.conv(x)
        if self.how == "relu":
            return F.pixel_shuffle(F.relu(c), 3)
        if self.how == "bn":
            return F.pixel_shuffle(self.bn(c), 2)
        if self.how == "view":
            return F.pixel_shuffle(c.view(c.shape), 2)
        if self.how == "scaled":
            return subpixel.shuffle(c * 2.0, 2)
        if self.how == "twice":
            return F.pixel_shuffle(F.pixel_shuffle(c, 2), 2)
        if self.how == "silu":  # written out: both operands carry the conv's channels
            return F.pixel_shuffle(c * torch.sigmoid(c), 2)
        if self.how == "dcr":  # DCR by hand: channels moved before a CRD shuffle
            return F.pixel_shuffle(F.channel_shuffle(c, 4), 2)
        if self.how == "type_as":  # a tensor that only borrows the conv output's dtype
            base = F.pixel_shuffle(x.repeat_interleave(4, 1).type_as(c), 2)
            return F.pixel_shuffle(c, 2) + base
        return F.pixel_shuffle(input=c, upscale_factor=2)  # keyword


def keras_after(how):
    inputs = keras.Input((None, None, 3))
    if how == "unshuffle":
        h = keras.ops.space_to_depth(keras.ops.relu(inputs), 2)
        return keras.Model(inputs, L.Conv2D(3, 3, padding="same")(h))
    r = 3 if how == "relu" else 2
    c = L.Conv2D(48 if how == "twice" else 3 * r * r, 3, padding="same")(inputs)
    if how == "relu":
        return keras.Model(inputs, keras.ops.depth_to_space(keras.ops.relu(c), 3))
    if how == "bn":
        c = L.BatchNormalization(epsilon=1e-5)(c)
    elif how == "scaled":
        c = c * 2.0
    elif how == "twice":
        c = keras.ops.depth_to_space(c, 2)
    elif how == "silu":
        c = keras.activations.silu(c)
    elif how == "type_as":  # nearest upsampling in DCR: the input's channels repeated
        base = keras.ops.depth_to_space(keras.ops.concatenate([inputs] * 4, axis=-1), 2)
        return keras.Model(inputs, keras.ops.depth_to_space(c, 2) + base)
    return keras.Model(inputs, keras.ops.depth_to_space(c, 2))


@pytest.mark.parametrize(
    "how",
    ["relu", "bn", "view", "scaled", "twice", "keyword", "unshuffle", "silu", "dcr", "type_as"],
)
def test_function_shuffles_are_followed_through_what_keeps_the_channels(how):
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    source = _torch_model(lambda: TorchUntraceableAfter(how))
    with pytest.warns(UserWarning, match=r"^torch.fx cannot trace"):
        report = subpixel.port_weights(source, keras_after(how), example=x)
    assert report.max_diff is not None and report.max_diff <= 1e-5, str(report)


def test_keyword_shuffles_and_scalar_outputs_in_traceable_models():
    class Traceable(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 12, 3, padding=1)

        def forward(self, x):
            return F.pixel_shuffle(input=self.conv(x), upscale_factor=2).mean()

    x = np.random.default_rng(0).standard_normal((1, 3, 6, 6)).astype(np.float32)
    report = subpixel.port_weights(_torch_model(Traceable), Traceable(), example=x)
    assert report.max_diff == 0.0


def test_grouped_convolutions_next_to_a_shuffle_of_another_order_are_refused():
    """Reordering their channels for the shuffle's order would move channels between
    groups (silently wrong before): one line instead; the same order ports."""
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 4)).astype(np.float32)
    source = _torch_model(
        lambda: nn.Sequential(nn.Conv2d(3, 12, 3, padding=1, groups=3), nn.PixelShuffle(2))
    )
    inputs = keras.Input((4, 4, 3))
    grouped = L.Conv2D(12, 3, padding="same", groups=3)(inputs)
    with pytest.raises(ValueError, match=r"^cannot port 0 -> .*grouped convolution \(groups=3\)"):
        subpixel.port_weights(source, keras.Model(inputs, keras.ops.depth_to_space(grouped, 2)))
    same = keras.Model(inputs, keras_layers.PixelShuffle(2, order="CRD")(grouped))
    report = subpixel.port_weights(source, same, example=x)
    assert report.max_diff is not None and report.max_diff <= 1e-5, str(report)
    unshuffled = _torch_model(
        lambda: nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(12, 6, 3, padding=1, groups=3))
    )
    h = L.Conv2D(6, 3, padding="same", groups=3)(keras.ops.space_to_depth(inputs, 2))
    with pytest.raises(ValueError, match=r"^cannot port 1 -> .*grouped convolution"):
        subpixel.port_weights(unshuffled, keras.Model(inputs, h))
