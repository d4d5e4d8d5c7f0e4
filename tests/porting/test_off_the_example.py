"""Models that agree on the example and not elsewhere: a padding whose rule differs
only at another size parity, a pooling or arrangement that agrees only at the example's
size, an activation that clips beyond the example's values.  Each port is refused and
leaves the target as it was; what really is the same ports (copies of elements through
nearest upsampling, bfloat16 models)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import torch
from torch import nn

import subpixel

L = keras.layers


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _keras(*layers):
    inputs = keras.Input((None, None, 3))
    h = inputs
    for layer in layers:
        h = layer(h)
    return keras.Model(inputs, h)


class HWTransposed(nn.Module):
    """A convolution applied to the image with its rows and columns swapped."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.b(torch.relu(self.a(x.transpose(2, 3)).transpose(2, 3)))


CASES = {
    # PyTorch pads 1 on both sides; 'same' with stride 2 pads (0, 1) on even sizes:
    # alike on the odd example only
    "padding rule, odd example": (
        lambda: nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1)),
        lambda: _keras(L.Conv2D(4, 3, strides=2, padding="same")),
        _x(1, 3, 5, 5),
        r"padding .* for inputs 1 larger than this one",
    ),
    "padding rule, after a pooling": (  # the strided layer sees 3 x 3 of a 6 x 6 example
        lambda: nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, stride=2, padding=1)
        ),
        lambda: _keras(
            L.Conv2D(4, 3, padding="same"),
            L.MaxPooling2D(2),
            L.Conv2D(4, 3, strides=2, padding="same"),
        ),
        _x(1, 3, 6, 6),
        r"padding .* for inputs 1 larger than this one",
    ),
    "a pooling's padding": (
        lambda: nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(3, 2, 1), nn.Conv2d(4, 2, 1)
        ),
        lambda: _keras(
            L.Conv2D(4, 3, padding="same"), L.MaxPooling2D(3, 2, "same"), L.Conv2D(2, 1)
        ),
        _x(1, 3, 5, 5),
        r"on a random input about twice as large on each axis, while on the example it agrees",
    ),
    "adaptive against fixed pooling": (
        lambda: nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(2), nn.Conv2d(4, 2, 1)
        ),
        lambda: _keras(L.Conv2D(4, 3, padding="same"), L.AveragePooling2D(2), L.Conv2D(2, 1)),
        _x(1, 3, 4, 4),
        r"about twice as large on each axis",
    ),
    "rows and columns swapped, 1 x 1 example": (
        HWTransposed,
        lambda: _keras(L.Conv2D(4, 3, padding="same", activation="relu"), L.Conv2D(2, 1)),
        _x(1, 3, 1, 1),
        r"about twice as large on each axis",
    ),
    "a fixed-size upsampling after a pooling": (  # n and n + 1 pool to the same size
        lambda: nn.Sequential(
            nn.Conv2d(3, 2, 3, padding=1),
            nn.MaxPool2d(2),
            nn.Upsample(size=(4, 4)),
            nn.Conv2d(2, 2, 1),
        ),
        lambda: _keras(
            L.Conv2D(2, 3, padding="same"), L.MaxPooling2D(2), L.UpSampling2D(2), L.Conv2D(2, 1)
        ),
        _x(1, 3, 4, 4),
        r"output has shape .* on a random input about twice as large",
    ),
    "a clip far beyond the example's values": (
        lambda: nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.Hardtanh(-300, 300), nn.Conv2d(8, 2, 1)
        ),
        lambda: _keras(L.Conv2D(8, 3, padding="same"), L.Conv2D(2, 1)),
        _x(1, 3, 5, 6),
        r"on a random input of every magnitude up to 1e4 times the example's",
    ),
    "ReLU6 against relu": (
        lambda: nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU6(), nn.Conv2d(8, 2, 1)),
        lambda: _keras(L.Conv2D(8, 3, padding="same", activation="relu"), L.Conv2D(2, 1)),
        _x(1, 3, 5, 6),
        r"on a random input ten times the example's scale",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_models_that_agree_only_on_the_example_are_refused(name):
    make_source, make_target, x, match = CASES[name]
    source, target = make_source().eval(), make_target()
    before = [np.array(v) for v in target.get_weights()]
    with pytest.raises(ValueError, match=match):
        subpixel.port_weights(source, target, example=x)
    assert all(np.array_equal(a, np.array(b)) for a, b in zip(before, target.get_weights()))


def _nearest():
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.Upsample(scale_factor=2), nn.Conv2d(4, 2, 3, padding=1)
    ).eval()


@pytest.mark.parametrize("target", ["torch", "keras"])
def test_nearest_upsampling_ports(target):
    """Each element is copied four times: the copies pair in the order they lie."""
    source = _nearest()
    other = (
        _nearest()
        if target == "torch"
        else _keras(
            L.Conv2D(4, 3, padding="same"), L.UpSampling2D(2), L.Conv2D(2, 3, padding="same")
        )
    )
    report = subpixel.port_weights(source, other, example=_x(1, 3, 4, 5))
    assert report.max_diff <= report.tolerance
    x = _x(2, 3, 7, 6, seed=1)
    with torch.no_grad():
        want = source(torch.from_numpy(x)).numpy()
    got = (
        other(torch.from_numpy(x)).detach().numpy()
        if target == "torch"
        else np.moveaxis(np.asarray(other(np.moveaxis(x, 1, -1))), -1, 1)
    )
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_bfloat16_models_port():
    source = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1)).to(torch.bfloat16)
    target = _keras(L.Conv2D(4, 3, padding="same", dtype="bfloat16"))
    report = subpixel.port_weights(source, target, example=_x(1, 3, 5, 6))
    assert report.max_diff <= report.tolerance
    back = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1)).to(torch.bfloat16)
    subpixel.port_weights(target, back, example=np.moveaxis(_x(1, 3, 5, 6), 1, -1))
    assert torch.equal(back[0].weight, source[0].weight)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_relu6_against_relu_in_16_bit_floats_is_refused(dtype):
    def model(act):
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), act, nn.Conv2d(8, 2, 1)).to(dtype)

    source, target = model(nn.ReLU6()), model(nn.ReLU())
    before = [p.clone() for p in target.parameters()]
    with pytest.raises(ValueError, match="ten times the example's scale"):
        subpixel.port_weights(source, target, example=_x(1, 3, 5, 6))
    assert all(torch.equal(a, b) for a, b in zip(before, target.parameters()))


class _Skip(nn.Module):
    """A wide skip path beside a branch clipped at ``clip``."""

    def __init__(self, clip, features):
        super().__init__()
        self.clip = clip
        self.skip, self.a, self.b = nn.Linear(16, 4), nn.Linear(16, 32), nn.Linear(32, 4)
        if not features:
            self.skip = nn.Conv2d(3, 4, 3, padding=1)
            self.a, self.b = nn.Conv2d(3, 32, 3, padding=1), nn.Conv2d(32, 4, 1)
        with torch.no_grad():
            self.skip.weight.mul_(30)

    def forward(self, x):
        return self.skip(x) + self.b(torch.clamp(self.a(x), -self.clip, self.clip))


@pytest.mark.parametrize(
    "clips, features, match",
    [
        ((3.0, 6.0), True, "ten times the example's scale"),
        ((30.0, 60.0), False, "a hundred times the example's scale"),
    ],
    ids=["near, features", "far, image"],
)
def test_a_clip_beside_a_larger_path_is_refused(clips, features, match):
    """The probe of every magnitude measures against its largest output (the skip path's
    huge values): the uniform probes see a bounded difference in the branch."""
    torch.manual_seed(0)
    source = _Skip(clips[0], features).eval()
    torch.manual_seed(1)
    target = _Skip(clips[1], features).eval()
    x = _x(8, 16) if features else _x(1, 3, 12, 12)
    with pytest.raises(ValueError, match=match):
        subpixel.port_weights(source, target, example=x)


def test_the_tolerance_is_relative_to_a_small_output():
    """An output of scale 3e-4 whose tanh became a hardtanh: 20 % off, on the example."""

    class Small(nn.Module):
        def __init__(self, hard):
            super().__init__()
            self.hard = hard
            self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 2, 3, padding=1)

        def forward(self, x):
            z = self.b(torch.relu(self.a(x)))
            return 3e-4 * (nn.functional.hardtanh(z) if self.hard else torch.tanh(z))

    torch.manual_seed(0)
    with pytest.raises(ValueError, match="on `example`"):
        subpixel.port_weights(Small(False), Small(True), example=_x(1, 3, 16, 16))


def test_a_forward_that_moves_statistics_leaves_both_models_as_they_were():
    """A source whose forward always updates its batch statistics, a target whose
    call() does: neither moves by the port's runs (the target keeps what was written)."""

    class Source(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.bn, self.o = (
                nn.Conv2d(3, 8, 3, padding=1),
                nn.BatchNorm2d(8, eps=1e-3),
                nn.Conv2d(8, 3, 3, padding=1),
            )

        def forward(self, x):
            bn = self.bn
            h = nn.functional.batch_norm(
                self.c(x), bn.running_mean, bn.running_var, bn.weight, bn.bias, True, 0.1, 1e-3
            )
            return self.o(torch.relu(h))

    class Target(keras.Model):
        def __init__(self):
            super().__init__()
            self.c, self.bn = L.Conv2D(8, 3, padding="same"), L.BatchNormalization()
            self.o = L.Conv2D(3, 3, padding="same")

        def call(self, x, training=None):
            return self.o(keras.ops.relu(self.bn(self.c(x), training=True)))

    torch.manual_seed(0)
    source, target = Source(), Target()
    target(np.zeros((1, 8, 8, 3), np.float32))
    with torch.no_grad():
        source.bn.running_var.uniform_(0.5, 2.0)
    stats = source.bn.running_var.clone()
    subpixel.port_weights(source, target, example=_x(2, 3, 12, 12))
    assert torch.equal(source.bn.running_var, stats)
    np.testing.assert_array_equal(np.asarray(target.bn.moving_variance), stats.numpy())


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_keras_targets_port(policy):
    """float32 weights, 16-bit arithmetic: the tolerance is the arithmetic's."""
    source = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        target = _keras(
            L.Conv2D(8, 3, padding="same", activation="relu"), L.Conv2D(3, 3, padding="same")
        )
    finally:
        keras.config.set_dtype_policy(previous)
    report = subpixel.port_weights(source.eval(), target, example=_x(1, 3, 12, 12))
    assert report.max_diff <= report.tolerance


def _espcn_like():
    return nn.Sequential(
        nn.Conv2d(3, 12, 3, padding=1),
        nn.PReLU(12),
        nn.PixelShuffle(2),
        nn.Conv2d(3, 3, 3, padding=1),
    ).eval()


def _keras_espcn_like(size=None):
    inputs = keras.Input((size, size, 3))
    h = L.PReLU(shared_axes=[1, 2])(L.Conv2D(12, 3, padding="same")(inputs))
    h = keras.ops.depth_to_space(h, 2)
    return keras.Model(inputs, L.Conv2D(3, 3, padding="same")(h))


@pytest.mark.parametrize("fixed", [False, True], ids=["any size", "fixed input size"])
def test_a_large_example_is_analysed_on_a_crop_and_checked_whole(fixed):
    """The reorders are the same at every size of the same parity: they are found on a
    crop of a large example, and the outputs compared on all of it; a target that takes
    only the example's size is ported from the whole example."""
    source = _espcn_like()
    with torch.no_grad():
        source[1].weight.uniform_(-0.5, 0.5)
    target = _keras_espcn_like(45 if fixed else None)
    x = _x(2, 3, 45, 45)
    report = subpixel.port_weights(source, target, example=x)
    assert report.max_diff <= report.tolerance
    assert ("crop" in report.example) is (not fixed), report.example
    with torch.no_grad():
        want = source(torch.from_numpy(x * 3)).numpy()
    got = np.moveaxis(np.asarray(target(np.moveaxis(x * 3, 1, -1))), -1, 1)
    np.testing.assert_allclose(got, want, atol=1e-4)


class Gated(nn.Module):
    """A ReLU6 where the input is at least ``size`` wide or holds ``batch`` images or
    more, a relu elsewhere."""

    def __init__(self, size=10**9, batch=10**9, six=True):
        super().__init__()
        self.conv, self.size, self.batch, self.six = nn.Conv2d(3, 4, 3, padding=1), size, batch, six

    def forward(self, x):
        y = self.conv(x)
        gated = x.shape[-1] >= self.size or x.shape[0] >= self.batch
        return nn.functional.relu6(y) if self.six and gated else torch.relu(y)


@pytest.mark.parametrize(
    "gate, x",
    [
        ({"size": 40}, _x(1, 3, 48, 48)),  # only at the whole example's size, not its crop's
        ({"batch": 2}, _x(2, 3, 40, 40)),  # only at the whole example's batch
        ({"batch": 2}, _x(1, 3, 8, 8)),  # only with more images than the example has
    ],
    ids=["size of the whole example", "batch of the whole example", "a larger batch"],
)
def test_what_a_model_does_only_at_some_size_or_batch_is_seen(gate, x):
    source, target = Gated(**gate).eval(), Gated(six=False).eval()
    before = [t.clone() for t in target.state_dict().values()]
    with pytest.raises(ValueError, match=r"differs from the source's by .* on a random input"):
        subpixel.port_weights(source, target, example=x)
    assert all(torch.equal(a, b) for a, b in zip(before, target.state_dict().values()))


def test_each_output_channel_is_held_to_its_own_scale():
    """Box coordinates (x 1280) beside class probabilities whose sigmoid became a hard
    sigmoid: 0.04 off in a channel of scale 1, far below a tolerance from 1280."""

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.h = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 8, 1)

        def forward(self, x):
            z = self.h(torch.relu(self.a(x)))
            return torch.cat([1280 * torch.sigmoid(z[:, :4]), torch.sigmoid(z[:, 4:])], 1)

    inputs = keras.Input((None, None, 3))
    z = L.Conv2D(8, 1)(L.Conv2D(16, 3, padding="same", activation="relu")(inputs))
    box = L.Lambda(lambda z: 1280 * keras.ops.sigmoid(z[..., :4]))(z)
    cls = L.Lambda(lambda z: keras.ops.hard_sigmoid(z[..., 4:]))(z)
    target = keras.Model(inputs, L.Concatenate()([box, cls]))
    torch.manual_seed(0)
    before = [np.array(v) for v in target.get_weights()]
    with pytest.raises(ValueError, match="output channel 4 differs"):
        subpixel.port_weights(Head(), target, example=_x(2, 3, 16, 16))
    assert all(np.array_equal(a, np.array(b)) for a, b in zip(before, target.get_weights()))


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_with_a_float32_head_ports(policy):
    """Keras's recipe: 16-bit arithmetic, float32 weights and a float32 last layer: the
    tolerance is that of the arithmetic the trace shows."""
    source = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        hidden = L.Conv2D(8, 3, padding="same", activation="relu")
    finally:
        keras.config.set_dtype_policy(previous)
    target = _keras(hidden, L.Conv2D(3, 3, padding="same", dtype="float32"))
    report = subpixel.port_weights(source.eval(), target, example=_x(1, 3, 12, 12))
    assert report.max_diff <= report.tolerance


def test_a_source_sharing_a_layer_with_the_target_keeps_its_own_statistics():
    """The shared layer is the target's (written); the rest of the source is put back."""

    class BatchStats(nn.BatchNorm2d):
        def forward(self, x):
            return nn.functional.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, True, 0.1, self.eps
            )

    class Model(nn.Module):
        def __init__(self, stem=None):
            super().__init__()
            self.stem = stem or nn.Conv2d(3, 8, 3, padding=1)
            self.bn, self.o = BatchStats(8), nn.Conv2d(8, 3, 3, padding=1)

        def forward(self, x):
            return self.o(torch.relu(self.bn(self.stem(x))))

    torch.manual_seed(0)
    source = Model()
    target = Model(stem=source.stem)
    stats = source.bn.running_var.clone()
    subpixel.port_weights(source, target, example=_x(2, 3, 16, 16))
    assert torch.equal(source.bn.running_var, stats)
    assert torch.equal(target.bn.running_var, stats)  # as written
