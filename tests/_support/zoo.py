"""The model zoo of the porting and rewrite tests: reference architectures written
from their published definitions (random weights, no downloads) in PyTorch, Keras and
Flax, the hostile but ordinary models each rule was found with, and the helpers that
run them.  Imports every framework: only for tests gated on all three."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import keras
import numpy as np
import torch
import torch.nn.functional as F
from flax import nnx
from torch import nn

import subpixel
from subpixel.layers import flax as flax_layers
from subpixel.layers import keras as keras_layers
from subpixel.layers import torch as torch_layers

L = keras.layers


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


def randomise_bn(model):
    """Non-trivial running statistics, so that batch norms are really ported."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.uniform_(0.5, 1.5, generator=g)
            m.bias.data.normal_(0, 0.1, generator=g)


def torch_model(make):
    torch.manual_seed(0)
    model = make().eval()
    with torch.no_grad():
        randomise_bn(model)
    return model


def run_torch(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def nhwc(a):
    return np.ascontiguousarray(np.moveaxis(a, 1, -1)) if a.ndim == 4 else a


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


def randomise_prelu(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.PReLU):
                m.weight.copy_(torch.linspace(-0.5, 0.5, m.num_parameters))


class TorchFlattenHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 5, 7)

    def forward(self, x):
        return self.fc(torch.flatten(F.relu(self.conv(x)), 1))


def bn_state(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "batches" in k}


class FlaxConvBN(nnx.Module):
    def __init__(self):
        rngs = nnx.Rngs(0)
        self.conv = nnx.Conv(3, 4, (3, 3), padding="SAME", rngs=rngs)
        self.bn = nnx.BatchNorm(4, epsilon=1e-5, momentum=0.9, rngs=rngs)  # training mode

    def __call__(self, x):
        return self.bn(self.conv(x))


class FlaxFlattenHead(nnx.Module):
    def __init__(self):
        rngs = nnx.Rngs(0)
        self.conv = nnx.Conv(3, 2, (3, 3), padding="SAME", rngs=rngs)
        self.fc = nnx.Linear(32, 5, rngs=rngs)

    def __call__(self, x):
        h = self.conv(x)
        return self.fc(h.reshape(h.shape[0], -1))


class FlaxShared(nnx.Module):
    def __init__(self, twice=False):
        self.conv = nnx.Conv(4, 4, (3, 3), padding="SAME", rngs=nnx.Rngs(0))
        self.again = self.conv  # one module under two names
        self.act = nnx.PReLU()
        self.twice = twice

    def __call__(self, x):
        return self.act(self.again(self.conv(x)) if self.twice else self.again(x))


class KerasSubclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = L.Conv2D(2 * 9, 3, padding="same")
        self.shuffle = keras_layers.PixelShuffle(3, order="DCR")

    def call(self, x):
        return self.shuffle(self.conv(x))


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


class TorchNHWCHead(nn.Module):
    """Flattens in NHWC order itself (x.permute(0, 2, 3, 1)), 4 channels on 4 x 4: every
    order of the features has the same shape."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(64, 5)

    def forward(self, x):
        return self.fc(self.conv(x).permute(0, 2, 3, 1).contiguous().flatten(1))


class FlaxTokens(nnx.Module):
    def __init__(self):
        self.e = nnx.Embed(10, 4, rngs=nnx.Rngs(0))
        self.fc = nnx.Linear(16, 3, rngs=nnx.Rngs(0))

    def __call__(self, ids):
        h = self.e(ids)
        return self.fc(h.reshape(h.shape[0], -1))


class FlaxSubPixelThenShuffle(nnx.Module):
    def __init__(self):
        self.up = flax_layers.SubPixelConv(3, 8, 3, 2, order="DCR", rngs=nnx.Rngs(0))
        self.shuffle = flax_layers.PixelShuffle(2, order="DCR")

    def __call__(self, x):
        return self.shuffle(self.up(x))


class FlaxUpOutOfOrder(nnx.Module):
    """Attributes not in alphabetical order (nnx.clone would sort them)."""

    def __init__(self, dtype=jnp.float32):
        rngs = nnx.Rngs(0)
        kw = dict(strides=(2, 2), padding="SAME", rngs=rngs, param_dtype=dtype, dtype=dtype)
        self.up1 = nnx.ConvTranspose(4, 3, (4, 4), **kw)
        self.final = nnx.ConvTranspose(3, 2, (4, 4), **kw)

    def __call__(self, x):
        return self.final(self.up1(x))


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
    """`call` is a tf.function; built eagerly, or (``built=False``) by its first call,
    inside the tf.function: Keras then bakes the initial values into the function,
    which never reads the variables again (its weights do not change its output)."""

    def __init__(self, built=True):
        super().__init__()
        self.stem = L.Conv2D(8, 3, padding="same", activation="relu")
        self.tail = L.Conv2D(8, 3, padding="same", activation="relu")
        self.body = L.Conv2D(8, 3, padding="same", activation="relu")
        self.a = L.Conv2D(8, 3, padding="same")
        self.b = L.Conv2D(8, 3, padding="same", activation="sigmoid")
        self.up = L.Conv2D(12, 3, padding="same")
        self.shuffle = keras_layers.PixelShuffle(2, order="DCR")
        if built:
            for layer, c in ((self.stem, 3), (self.tail, 8), (self.body, 8), (self.a, 8),
                             (self.b, 8), (self.up, 8)):  # fmt: skip
                layer.build((None, None, None, c))

    @tf_function
    def call(self, x):
        h = self.tail(self.body(self.stem(x)))
        return self.shuffle(self.up(self.a(h) * self.b(h)))


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
        # control flow on the data (torch.fx cannot trace it) that keeps the function
        # the Keras twin computes
        if not torch.isfinite(x).all():
            raise ValueError("the input is not finite")
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
        # control flow on the data (torch.fx cannot trace it) that keeps the function
        # the Keras twin computes
        if not torch.isfinite(x).all():
            raise ValueError("the input is not finite")
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


def ported(source, target, example=None, tol=1e-5):
    """``subpixel.port_weights(source, target, example=example)``, its report checked:
    the outputs (where there is an example) within ``tol``."""
    report = subpixel.port_weights(source, target, example=example)
    if example is not None:
        assert report.max_diff is not None and report.max_diff <= tol, str(report)
    return report
