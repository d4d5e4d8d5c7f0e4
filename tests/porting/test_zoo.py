"""A cross-framework zoo written the way people write it: one small super-resolution
network (conv 3x3 to ``C * r1 * r2`` channels -> PReLU / ReLU / nothing -> a pixel
shuffle by ``r`` -> conv 3x3 to 3 channels; optionally a Real-ESRGAN-x2-like input
stage, a pixel unshuffle by 2 first) in many styles of PyTorch, Keras 3 and Flax NNX,
ported between every pair of frameworks in both directions and across styles within
one.  A port either gives the source's outputs on a fresh random input (of another
size than the example) or raises ``ValueError`` with the target's weights bit for bit
as they were; anything else is "silent", and none may be.

``benchmarks/port_zoo.py`` runs the same cases and prints a table per pair."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
import tensorflow as tf
import torch
import torch.nn.functional as F
from flax import nnx
from torch import nn

import subpixel
from subpixel.layers import flax as flax_layers
from subpixel.layers import keras as keras_layers

L = keras.layers
ATOL = 1e-4
EXAMPLE_HW, FRESH_HW = (6, 8), (8, 6)  # even: the unshuffle stage divides by 2


@dataclass(frozen=True)
class Arch:
    """The network: ``stem`` "u2" unshuffles the input by 2 first (Real-ESRGAN x2),
    ``r`` the shuffle's factor, ``c`` its output channels, ``act`` between the
    first convolution and the shuffle: "prelu" (one alpha per channel), "prelu1"
    (one alpha for all), "relu" or "linear" (none); or "post": a PReLU of one alpha
    per channel after the shuffle (SRGAN's upsample block)."""

    r: tuple[int, int] = (2, 2)
    c: int = 3
    act: str = "prelu"
    stem: str = ""

    @property
    def square(self) -> bool:
        return self.r[0] == self.r[1]

    @property
    def cin(self) -> int:
        return 12 if self.stem == "u2" else 3

    @property
    def mid(self) -> int:
        return self.c * self.r[0] * self.r[1]

    def __str__(self) -> str:
        r = f"x{self.r[0]}" if self.square else f"x{self.r[0]}{self.r[1]}"
        return f"{self.stem + '-' if self.stem else ''}{r}c{self.c}-{self.act}"


# ---------------------------------------------------------------- PyTorch (NCHW)


def _torch_act(act: str, n: int) -> nn.Module:
    return {"prelu": nn.PReLU(n), "prelu1": nn.PReLU(), "relu": nn.ReLU()}.get(act, nn.Identity())


def _torch_post(a: Arch) -> nn.Module:
    return nn.PReLU(a.c) if a.act == "post" else nn.Identity()


def basicsr_pixel_unshuffle(x: torch.Tensor, scale: int) -> torch.Tensor:
    """BasicSR's ``pixel_unshuffle`` (basicsr/archs/arch_util.py), as Real-ESRGAN x2 calls it."""
    b, c, hh, hw = x.size()
    out_channel = c * (scale**2)
    h, w = hh // scale, hw // scale
    x_view = x.view(b, c, h, scale, w, scale)
    return x_view.permute(0, 1, 3, 5, 2, 4).reshape(b, out_channel, h, w)


def rearrange_to_space(x: torch.Tensor, r: tuple[int, int], order: str) -> torch.Tensor:
    """``einops.rearrange(x, "b (c r1 r2) h w -> b c (h r1) (w r2)")`` (CRD) or
    ``"b (r1 r2 c) h w -> ..."`` (DCR), written out."""
    b, ch, h, w = x.shape
    r1, r2 = r
    c = ch // (r1 * r2)
    if order == "CRD":
        x = x.view(b, c, r1, r2, h, w).permute(0, 1, 4, 2, 5, 3)
    else:
        x = x.view(b, r1, r2, c, h, w).permute(0, 3, 4, 1, 5, 2)
    return x.reshape(b, c, h * r1, w * r2)


def torch_sequential(a: Arch) -> nn.Module:
    stem = [nn.PixelUnshuffle(2)] if a.stem else []
    return nn.Sequential(
        *stem,
        nn.Conv2d(a.cin, a.mid, 3, padding=1),
        _torch_act(a.act, a.mid),
        nn.PixelShuffle(a.r[0]),
        _torch_post(a),
        nn.Conv2d(a.c, 3, 3, padding=1),
    )


class TorchSR(nn.Module):
    """Subclassed; ``how`` the shuffle (and the unshuffle stage) is written."""

    def __init__(self, a: Arch, how: str):
        super().__init__()
        self.a, self.how = a, how
        self.conv_first = nn.Conv2d(a.cin, a.mid, 3, padding=1)
        self.act = _torch_act(a.act, a.mid)
        self.post = _torch_post(a)
        self.conv_last = nn.Conv2d(a.c, 3, 3, padding=1)

    def forward(self, x):
        if self.a.stem == "u2":
            if self.how == "basicsr":
                x = basicsr_pixel_unshuffle(x, scale=2)
            else:
                x = F.pixel_unshuffle(x, 2)
        h = self.act(self.conv_first(x))
        if self.how == "F":
            h = F.pixel_shuffle(h, self.a.r[0])
        elif self.how == "basicsr":
            h = torch.pixel_shuffle(h, self.a.r[0])
        elif self.how == "nhwc":  # TensorFlow code ported by hand: its depth_to_space
            b, ch, hh, ww = h.shape
            r1, r2 = self.a.r
            h = h.permute(0, 2, 3, 1).reshape(b, hh, ww, r1, r2, ch // (r1 * r2))
            h = h.permute(0, 1, 3, 2, 4, 5).reshape(b, hh * r1, ww * r2, -1)
            h = h.permute(0, 3, 1, 2).contiguous()
        else:
            h = rearrange_to_space(h, self.a.r, self.how)
        return self.conv_last(self.post(h))


# ---------------------------------------------------------------- Keras 3 (NHWC)


def _keras_act(act: str) -> keras.layers.Layer | None:
    if act in ("prelu", "post"):
        return L.PReLU(shared_axes=[1, 2])
    if act == "prelu1":
        return L.PReLU(shared_axes=[1, 2, 3])
    return L.ReLU() if act == "relu" else None


def keras_functional(a: Arch, layer: bool = False) -> keras.Model:
    """keras.ops.depth_to_space, or (``layer``) subpixel's PixelShuffle (CRD)."""
    inputs = keras.Input((None, None, 3))
    h = inputs
    if a.stem:
        h = keras_layers.PixelUnshuffle(2)(h) if layer else keras.ops.space_to_depth(h, 2)
    h = L.Conv2D(a.mid, 3, padding="same")(h)
    act = _keras_act(a.act)
    h = act(h) if act is not None and a.act != "post" else h
    h = keras_layers.PixelShuffle(a.r)(h) if layer else keras.ops.depth_to_space(h, a.r[0])
    h = act(h) if a.act == "post" else h
    return keras.Model(inputs, L.Conv2D(3, 3, padding="same")(h))


def keras_lambda_crd(a: Arch) -> keras.Model:
    """PyTorch code ported by hand: its pixel_shuffle (CRD) in tf.reshape/tf.transpose."""

    def to_space(t):
        s, (r1, r2) = tf.shape(t), a.r
        t = tf.transpose(tf.reshape(t, [s[0], s[1], s[2], a.c, r1, r2]), [0, 1, 4, 2, 5, 3])
        return tf.reshape(t, [s[0], s[1] * r1, s[2] * r2, a.c])

    inputs = keras.Input((None, None, 3))
    h = L.Lambda(lambda t: tf.nn.space_to_depth(t, 2))(inputs) if a.stem else inputs
    h = L.Conv2D(a.mid, 3, padding="same")(h)
    act = _keras_act(a.act)
    h = act(h) if act is not None and a.act != "post" else h
    h = L.Lambda(to_space)(h)
    h = act(h) if a.act == "post" else h
    return keras.Model(inputs, L.Conv2D(3, 3, padding="same")(h))


def keras_sequential_lambda(a: Arch) -> keras.Model:
    r = a.r[0]
    stem = [L.Lambda(lambda t: tf.nn.space_to_depth(t, 2))] if a.stem else []
    act = _keras_act(a.act)
    return keras.Sequential(
        [
            keras.Input((None, None, 3)),
            *stem,
            L.Conv2D(a.mid, 3, padding="same"),
            *([act] if act is not None and a.act != "post" else []),
            L.Lambda(lambda t: tf.nn.depth_to_space(t, r)),
            *([act] if a.act == "post" else []),
            L.Conv2D(3, 3, padding="same"),
        ]
    )


class KerasSR(keras.Model):
    """Subclassed; the shuffle in call() by tf.nn ("tf") or keras.ops ("ops"); a ReLU
    fused into the convolution."""

    def __init__(self, a: Arch, how: str):
        super().__init__()
        self.a, self.how = a, how
        fused = "relu" if a.act == "relu" else None
        self.conv_first = L.Conv2D(a.mid, 3, padding="same", activation=fused)
        self.act = None if fused else _keras_act(a.act)
        self.conv_last = L.Conv2D(3, 3, padding="same")

    def call(self, x):
        ops = tf.nn if self.how == "tf" else keras.ops
        if self.a.stem:
            x = ops.space_to_depth(x, 2)
        h = self.conv_first(x)
        h = self.act(h) if self.act is not None and self.a.act != "post" else h
        h = ops.depth_to_space(h, self.a.r[0])
        h = self.act(h) if self.a.act == "post" else h
        return self.conv_last(h)


def _built(model: keras.Model) -> keras.Model:
    model(np.zeros((1, 4, 4, 3), np.float32))
    return model


# ---------------------------------------------------------------- Flax NNX (NHWC)


def flax_depth_to_space(x: jax.Array, r: tuple[int, int], order: str) -> jax.Array:
    """depth_to_space by hand: DCR (TensorFlow's) or CRD (PyTorch's), channels last."""
    b, h, w, ch = x.shape
    r1, r2 = r
    c = ch // (r1 * r2)
    if order == "DCR":
        x = x.reshape(b, h, w, r1, r2, c).transpose(0, 1, 3, 2, 4, 5)
    else:
        x = x.reshape(b, h, w, c, r1, r2).transpose(0, 1, 4, 2, 5, 3)
    return x.reshape(b, h * r1, w * r2, c)


def flax_space_to_depth(x: jax.Array, s: int) -> jax.Array:
    """space_to_depth by hand, DCR (TensorFlow's), channels last."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // s, s, w // s, s, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h // s, w // s, s * s * c)


class FlaxSR(nnx.Module):
    """``how``: "DCR" or "CRD" by hand, or "layer" (subpixel's PixelShuffle, CRD)."""

    def __init__(self, a: Arch, how: str):
        rngs = nnx.Rngs(0)
        self.a, self.how = a, how
        self.conv_first = nnx.Conv(a.cin, a.mid, (3, 3), rngs=rngs)
        self.act = nnx.PReLU(0.25) if a.act == "prelu1" else None
        self.conv_last = nnx.Conv(a.c, 3, (3, 3), rngs=rngs)
        if how == "layer":
            self.unshuffle = flax_layers.PixelUnshuffle(2)
            self.shuffle = flax_layers.PixelShuffle(a.r)

    def __call__(self, x):
        if self.a.stem:
            x = self.unshuffle(x) if self.how == "layer" else flax_space_to_depth(x, 2)
        h = self.conv_first(x)
        if self.act is not None:
            h = self.act(h)
        elif self.a.act == "relu":
            h = nnx.relu(h)
        if self.how == "layer":
            h = self.shuffle(h)
        else:
            h = flax_depth_to_space(h, self.a.r, self.how)
        return self.conv_last(h)


# ---------------------------------------------------------------- the styles


@dataclass(frozen=True)
class Style:
    fw: str
    name: str
    build: Callable[[Arch], object]
    square_only: bool = False
    stems: tuple[str, ...] = ("", "u2")
    acts: tuple[str, ...] = ("prelu", "prelu1", "relu", "linear", "post")

    def fits(self, a: Arch) -> bool:
        return (a.square or not self.square_only) and a.stem in self.stems and a.act in self.acts

    def __str__(self) -> str:
        return self.name


FLAX_ACTS = ("prelu1", "relu", "linear")  # nnx.PReLU has one alpha
STYLES = [
    Style("torch", "nn.Sequential", torch_sequential, square_only=True),
    Style("torch", "F.pixel_shuffle", lambda a: TorchSR(a, "F"), square_only=True),
    Style("torch", "basicsr", lambda a: TorchSR(a, "basicsr"), square_only=True, stems=("u2",)),
    Style("torch", "rearrange-CRD", lambda a: TorchSR(a, "CRD")),
    Style("torch", "rearrange-DCR", lambda a: TorchSR(a, "DCR")),
    Style("torch", "nhwc-by-hand", lambda a: TorchSR(a, "nhwc")),
    Style("keras", "functional-ops", keras_functional, square_only=True),
    Style("keras", "Sequential-tf.nn", keras_sequential_lambda, square_only=True),
    Style("keras", "subclassed-tf.nn", lambda a: _built(KerasSR(a, "tf")), square_only=True),
    Style("keras", "subclassed-ops", lambda a: _built(KerasSR(a, "ops")), square_only=True),
    Style("keras", "subpixel-layer", lambda a: keras_functional(a, layer=True)),
    Style("keras", "Lambda-tf-CRD", keras_lambda_crd),
    Style("flax", "hand-DCR", lambda a: FlaxSR(a, "DCR"), acts=FLAX_ACTS),
    Style("flax", "hand-CRD", lambda a: FlaxSR(a, "CRD"), acts=FLAX_ACTS),
    Style("flax", "subpixel-layer", lambda a: FlaxSR(a, "layer"), acts=FLAX_ACTS),
]
FRAMEWORKS = ("torch", "keras", "flax")
ARCHS = [
    Arch((2, 2), 3, "prelu"),
    Arch((3, 3), 2, "relu"),
    Arch((4, 4), 3, "prelu1"),
    Arch((2, 3), 2, "prelu"),
    Arch((2, 2), 2, "linear"),
    Arch((2, 2), 3, "prelu1", "u2"),
    Arch((4, 4), 2, "relu", "u2"),
    Arch((3, 2), 3, "relu"),
    Arch((3, 3), 3, "prelu1"),
    Arch((2, 4), 2, "prelu1", "u2"),
    Arch((2, 2), 3, "post"),
    Arch((2, 3), 2, "post", "u2"),
]


@dataclass(frozen=True)
class Case:
    """``example``: "random" (NCHW for a PyTorch source, NHWC otherwise), "zeros" (the
    port must check on a random input itself), "tiny" (2 x 2 pixels, one after the
    unshuffle stage: the example shows little of the kernels) or "made" (none: made by
    port_weights).  ``tgt_arch``: another network with the same parameter shapes."""

    src: Style
    tgt: Style
    arch: Arch
    example: str = "random"
    tgt_arch: Arch | None = None
    expect: str = "ported"

    @property
    def pair(self) -> str:
        return f"{self.src.fw} -> {self.tgt.fw}"

    @property
    def id(self) -> str:
        tgt = f"{self.tgt}[{self.tgt_arch}]" if self.tgt_arch else str(self.tgt)
        extra = {"random": "", "made": "-no-example"}.get(self.example, f"-{self.example}-example")
        return f"{self.src.fw}:{self.src}->{self.tgt.fw}:{tgt}-{self.arch}{extra}"


def _styles(fw: str) -> list[Style]:
    return [s for s in STYLES if s.fw == fw]


def _pick(styles: list[Style], a: Arch, used: dict[Style, int], avoid: Style | None = None):
    """The least used style that can write ``a`` (not ``avoid``), first listed first."""
    fits = [s for s in styles if s.fits(a) and s != avoid]
    return min(fits, key=lambda s: used[s]) if fits else None


def _pair_cases() -> list[Case]:
    """Every ordered pair of frameworks, and each framework with itself across styles:
    every architecture that both can write, each side's styles in turn, so that every
    style is a source and a target at least once."""
    cases = []
    for sf in FRAMEWORKS:
        for tf_ in FRAMEWORKS:
            as_src, as_tgt = dict.fromkeys(STYLES, 0), dict.fromkeys(STYLES, 0)
            for a in ARCHS:
                src = _pick(_styles(sf), a, as_src)
                tgt = src and _pick(_styles(tf_), a, as_tgt, avoid=src)
                if src is None or tgt is None:
                    continue
                as_src[src] += 1
                as_tgt[tgt] += 1
                cases.append(Case(src, tgt, a))
    return cases


def _style(fw: str, name: str) -> Style:
    return next(s for s in STYLES if s.fw == fw and s.name == name)


T_F, T_SEQ, T_BASICSR = (
    _style("torch", n) for n in ("F.pixel_shuffle", "nn.Sequential", "basicsr")
)
T_CRD, T_DCR = _style("torch", "rearrange-CRD"), _style("torch", "rearrange-DCR")
K_OPS, K_TF = _style("keras", "functional-ops"), _style("keras", "subclassed-tf.nn")
K_SEQ, K_LAYER = _style("keras", "Sequential-tf.nn"), _style("keras", "subpixel-layer")
X_DCR, X_CRD, X_LAYER = (_style("flax", n) for n in ("hand-DCR", "hand-CRD", "subpixel-layer"))

EXAMPLES = [  # the example made by port_weights, a constant one, a tiny one
    Case(T_F, K_OPS, Arch((2, 2)), "made"),
    Case(K_OPS, X_DCR, Arch((3, 3), 2, "relu"), "made"),
    Case(X_CRD, T_DCR, Arch((2, 3), 3, "linear"), "made"),
    Case(K_TF, T_SEQ, Arch(), "made"),
    # made from the layers' input channels: (2, 12, 32, 32) does not run through the
    # unshuffle stage; (2, C, 32, 32) does where C = 3, else nothing does
    Case(T_BASICSR, X_DCR, Arch(c=3, act="relu", stem="u2"), "made"),
    Case(T_BASICSR, X_DCR, Arch(c=2, act="relu", stem="u2"), "made", expect="refused"),
    Case(T_DCR, X_LAYER, Arch((3, 3), 2, "prelu1"), "zeros"),
    Case(X_LAYER, K_SEQ, Arch((2, 2), 3, "relu", "u2"), "zeros"),
    Case(K_LAYER, T_CRD, Arch((2, 3), 2, "prelu"), "zeros"),
    Case(T_CRD, K_TF, Arch((2, 2), 3, "prelu"), "tiny"),
    Case(K_SEQ, X_CRD, Arch((4, 4), 2, "prelu1", "u2"), "tiny"),
    Case(X_DCR, T_CRD, Arch((2, 3), 3, "relu"), "tiny"),
]

OTHER = [  # other networks with the same parameter shapes: refused, never ported wrong
    Case(T_CRD, K_LAYER, Arch((2, 3), 2), tgt_arch=Arch((3, 2), 2), expect="refused"),
    Case(X_DCR, T_DCR, Arch((1, 4), 2, "relu"), tgt_arch=Arch((2, 2), 2, "relu"),
         expect="refused"),
    Case(K_OPS, X_LAYER, Arch((2, 2), 3, "relu"), tgt_arch=Arch((2, 2), 3, "linear"),
         expect="refused"),
    Case(T_CRD, X_CRD, Arch((2, 3), 2, "relu"), "made", Arch((3, 2), 2, "relu"), "refused"),
    # a subclassed model never called has no weights yet: refused, nothing built
    Case(T_F, Style("keras", "subclassed-unbuilt", lambda a: KerasSR(a, "tf")), Arch(),
         expect="refused"),
]  # fmt: skip

CASES = _pair_cases() + EXAMPLES + OTHER


# ---------------------------------------------------------------- running a case


def _randomise(model, seed: int) -> None:
    rng = np.random.default_rng(seed)
    if isinstance(model, nn.Module):
        model.eval()
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.from_numpy(rng.normal(0, 0.3, p.shape).astype(np.float32)))
    elif isinstance(model, keras.Model):
        model.set_weights(
            [rng.normal(0, 0.3, w.shape).astype(w.dtype) for w in model.get_weights()]
        )
    else:
        state = nnx.state(model, nnx.Param)
        nnx.update(
            model,
            jax.tree.map(lambda v: jnp.asarray(rng.normal(0, 0.3, v.shape), v.dtype), state),
        )


def _weights(model) -> list[np.ndarray]:
    if isinstance(model, nn.Module):
        return [t.detach().numpy().copy() for t in model.state_dict().values()]
    if isinstance(model, keras.Model):
        return [np.array(keras.ops.convert_to_numpy(v)) for v in model.variables]
    return [np.array(v) for v in jax.tree.leaves(nnx.state(model))]


def _unchanged(before: list[np.ndarray], after: list[np.ndarray]) -> bool:
    return len(before) == len(after) and all(
        a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
        for a, b in zip(before, after)
    )


def _run(model, x_nhwc: np.ndarray) -> np.ndarray:
    """The model's output on an NHWC input, NHWC."""
    if isinstance(model, nn.Module):
        with torch.no_grad():
            y = model(torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))))
        return y.numpy().transpose(0, 2, 3, 1)
    if isinstance(model, keras.Model):
        return np.asarray(keras.ops.convert_to_numpy(model(x_nhwc, training=False)))
    return np.asarray(model(jnp.asarray(x_nhwc)))


def _image(hw: tuple[int, int], seed: int, batch: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, *hw, 3)).astype(np.float32)


@dataclass
class Outcome:
    kind: str  # "ported", "refused" or "silent"
    detail: str
    seconds: float


def attempt(case: Case) -> Outcome:
    """Build, randomise, port; classify by the fresh input and the target's weights."""
    source, target = case.src.build(case.arch), case.tgt.build(case.tgt_arch or case.arch)
    _randomise(source, 1)
    _randomise(target, 2)
    before = _weights(target)
    x = {
        "random": _image(EXAMPLE_HW, 3),
        "zeros": np.zeros((2, *EXAMPLE_HW, 3), np.float32),
        "tiny": _image((2, 2), 3, batch=1),
    }.get(case.example)
    if x is not None and case.src.fw == "torch":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    start = time.perf_counter()
    try:
        subpixel.port_weights(source, target, example=x)
    except ValueError as e:
        seconds = time.perf_counter() - start
        if _unchanged(before, _weights(target)):
            return Outcome("refused", str(e), seconds)
        return Outcome("silent", f"raised, target changed: {e}", seconds)
    seconds = time.perf_counter() - start
    fresh = _image(FRESH_HW, 4, batch=3)
    try:
        y_s, y_t = _run(source, fresh), _run(target, fresh)
    except Exception as e:  # the target no longer runs: as wrong as can be
        return Outcome("silent", f"ported, then {type(e).__name__}: {e}", seconds)
    diff = float(np.max(np.abs(y_s - y_t))) if y_s.shape == y_t.shape else np.inf
    if not diff <= ATOL:
        return Outcome("silent", f"ported, fresh input differs by {diff:.3g}", seconds)
    return Outcome("ported", f"fresh input within {diff:.1e}", seconds)


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_a_port_is_right_or_refused_never_silently_wrong(case):
    outcome = attempt(case)
    assert outcome.kind != "silent", outcome.detail
    assert outcome.kind == case.expect, outcome.detail


def test_the_zoo_covers_every_pair_both_ways_and_every_style():
    pairs = {(c.src.fw, c.tgt.fw) for c in CASES if c.example == "random" and c.expect == "ported"}
    assert pairs == {(s, t) for s in FRAMEWORKS for t in FRAMEWORKS}
    used = {c.src for c in CASES} & {c.tgt for c in CASES}
    assert used == set(STYLES)
    for s, t in pairs:  # factors 2, 3, 4 and a non-square one in every pair and direction
        factors = {c.arch.r for c in CASES if (c.src.fw, c.tgt.fw) == (s, t)}
        assert {(2, 2), (3, 3), (4, 4)} <= factors and any(a != b for a, b in factors)
