"""Flax NNX modules and plain JAX functions read into the movement graph as jaxprs
(subpixel.movement.jaxpr): every site found with its kind, factor, order and layout
(oracles: the index formula of tests/reference.py and the modules' own
construction), no false sites (channel shuffles, flattens, layout transposes),
parameters named by their state paths, values of a run equal to a forward pass, the
module and its modes unchanged."""

from __future__ import annotations

import math

import numpy as np
import pytest

jax = pytest.importorskip("jax")
nnx = pytest.importorskip("flax.nnx")
import jax.numpy as jnp
from jax import lax

from subpixel.layers.flax import PixelShuffle, PixelUnshuffle, SubPixelConv
from subpixel.movement import find_chains, reader_for, steps
from subpixel.movement import jaxpr as reader

from reference import shuffle_gather, unshuffle_gather

FACTORS = [2, 3, 4, (2, 3)]


def _r(f):
    return (f, f) if isinstance(f, int) else tuple(f)


def _x(shape, seed=0):
    return np.random.default_rng(seed).random(shape).astype("float32")


def _sites(graph):
    return [
        (c.movement.kind, tuple(c.movement.factor), c.movement.order, c.movement.layout)
        for c in find_chains(graph)
        if c.movement is not None and c.movement.is_site
    ]


def _non_sites(graph):
    return [c.movement.kind for c in find_chains(graph) if c.movement and not c.movement.is_site]


def _params(graph):
    return {v.param for v in graph.values.values() if v.param}


def _paths(module):
    """The state paths of the module's parameters and batch statistics."""
    return {
        "/".join(str(k) for k in path)
        for path, var in nnx.to_flat_state(nnx.state(module))
        if isinstance(var, (nnx.Param, nnx.BatchStat))
    }


def _leaves(module):
    return [
        np.asarray(a).copy() for a in jax.tree_util.tree_leaves(nnx.state(module)) if _is_array(a)
    ]


def _is_array(a):
    return hasattr(a, "dtype") and not jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key)


def _forward(module, *xs):
    ref = nnx.clone(module)
    ref.eval()
    return ref(*xs)


def _check_run(traced, xs, want, exact=False):
    """run() gives the forward's outputs; each site's output is the formula applied to
    its input; each movement node's step moves the run's values as the model did."""
    g = traced.graph
    chains = [c for c in find_chains(g) if c.movement is not None]
    movers = [n for n in g.nodes if n.kind in ("move", "maybe") and n.step is not None]
    names = {*g.outputs, *(v for c in chains for v in (c.input, c.output))}
    names |= {v for n in movers for v in (*n.data_inputs, *n.outputs)}
    got = traced.run(list(xs), sorted(names))
    for name, w in zip(g.outputs, want):
        if exact:
            np.testing.assert_array_equal(got[name], np.asarray(w))
        else:
            np.testing.assert_allclose(got[name], np.asarray(w), rtol=1e-5, atol=1e-6)
    for c in chains:
        m = c.movement
        if m.is_site and m.order != "other" and m.layout == m.other_layout:
            fn = shuffle_gather if m.kind == "shuffle" else unshuffle_gather
            expect = fn(got[c.input], m.factor, layout=m.layout, order=m.order)
            np.testing.assert_array_equal(got[c.output], expect)
    _check_steps(movers, got)


def _d2s(x, r, order):
    """A depth-to-space written by hand in NHWC, as Flax users write it."""
    n, h, w, c = x.shape
    rh, rw = r
    oc = c // (rh * rw)
    if order == "CRD":
        x = x.reshape(n, h, w, oc, rh, rw)
        x = jnp.transpose(x, (0, 1, 4, 2, 5, 3))
    else:
        x = x.reshape(n, h, w, rh, rw, oc)
        x = jnp.transpose(x, (0, 1, 3, 2, 4, 5))
    return x.reshape(n, h * rh, w * rw, oc)


class EDSRish(nnx.Module):
    """Conv, residual blocks with batch norm, dropout, its own depth_to_space, a
    channel shuffle, a flatten head, layers in an nnx.List."""

    def __init__(self, r, order, *, rngs):
        self.r, self.order = r, order
        R = math.prod(r)
        self.head = nnx.Conv(3, 6, (3, 3), rngs=rngs)
        self.layers = nnx.List([nnx.Conv(6, 6, (3, 3), rngs=rngs), nnx.BatchNorm(6, rngs=rngs)])
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.up = nnx.Conv(6, 3 * R, (3, 3), rngs=rngs)
        self.tail = nnx.Conv(3, 6, (1, 1), rngs=rngs)
        self.mix = nnx.Conv(6, 6, (1, 1), rngs=rngs)
        self.fc = nnx.Linear(6 * 4 * 5 * R, 2, rngs=rngs)

    def __call__(self, x):
        h = self.head(x)
        h = h + self.drop(jax.nn.relu(self.layers[1](self.layers[0](h))))
        h = _d2s(self.up(h), self.r, self.order)
        h = jax.nn.gelu(self.tail(h))
        n, H, W, C = h.shape  # a channel shuffle: 2 groups of 3
        h = jnp.swapaxes(h.reshape(n, H, W, 2, C // 2), 3, 4).reshape(n, H, W, C)
        return self.fc(self.mix(h).reshape(n, -1))


@pytest.mark.parametrize("order", ["CRD", "DCR"])
@pytest.mark.parametrize("f", FACTORS, ids=str)
def test_a_flax_module_with_its_own_depth_to_space(order, f):
    r = _r(f)
    module = EDSRish(r, order, rngs=nnx.Rngs(0))
    x = _x((2, 4, 5, 3))
    module(x)  # train mode: batch statistics move once, as in training
    before, modes = (
        _leaves(module),
        (module.layers[1].use_running_average, module.drop.deterministic),
    )
    t = reader.trace(module, x)
    assert t.graph.layout == "channels_last" and t.graph.source == "flax"
    assert _sites(t.graph) == [("shuffle", r, order, "channels_last")]
    kinds = _non_sites(t.graph)
    assert "channel_permutation" in kinds and "flatten" in kinds
    assert _params(t.graph) == _paths(module)
    assert {"layers/0/kernel", "layers/1/mean", "layers/1/var", "fc/kernel"} <= _params(t.graph)
    _check_run(t, [x], [_forward(module, x)])
    # nothing moved: weights, statistics, modes
    for a, b in zip(before, _leaves(module)):
        np.testing.assert_array_equal(a, b)
    assert (
        (module.layers[1].use_running_average, module.drop.deterministic) == modes == (False, False)
    )


@pytest.mark.parametrize("order", ["CRD", "DCR"])
@pytest.mark.parametrize("f", FACTORS, ids=str)
def test_subpixel_flax_layers(order, f):
    r = _r(f)
    R = math.prod(r)

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.c1 = nnx.Conv(3, 2 * R, (3, 3), rngs=rngs)
            self.ps = PixelShuffle(f, order=order)
            self.c2 = nnx.Conv(2, 4, (1, 1), rngs=rngs)
            self.pu = PixelUnshuffle(f, order=order)
            self.c3 = nnx.Conv(4 * R, 8, (1, 1), rngs=rngs)
            self.sp = SubPixelConv(8, 2, (3, 3), f, order=order, rngs=rngs)

        def __call__(self, x):
            return self.sp(self.c3(self.pu(self.c2(self.ps(self.c1(x))))))

    module = Net(nnx.Rngs(1))
    x = _x((2, 4, 6, 3))
    t = reader.trace(module, x)
    layout = "channels_last"
    assert _sites(t.graph) == [
        ("shuffle", r, order, layout),
        ("unshuffle", r, order, layout),
        ("shuffle", r, order, layout),
    ]
    assert _params(t.graph) == _paths(module)
    # the convolutions read their own kernels
    convs = [n for n in t.graph.nodes if n.op == "conv_general_dilated"]
    assert [t.graph.values[n.inputs[1]].param for n in convs] == [
        "c1/kernel",
        "c2/kernel",
        "c3/kernel",
        None,  # SubPixelConv transposes its kernel first: a constant computed from it
    ]
    _check_run(t, [x], [_forward(module, x)])


def test_subpixel_flax_layers_channels_first():
    module = PixelShuffle(2, order="CRD", layout="channels_first")
    x = _x((2, 12, 4, 5))
    t = reader.trace(module, x)
    assert _sites(t.graph) == [("shuffle", (2, 2), "CRD", "channels_first")]
    _check_run(t, [x], [module(x)], exact=True)


def test_nnx_sequential_paths_and_a_layout_transpose():
    model = nnx.Sequential(
        nnx.Conv(3, 12, (3, 3), rngs=nnx.Rngs(0)),
        lambda h: jnp.transpose(h, (0, 3, 1, 2)) * 2.0,  # to channels first, and back
        lambda h: jax.nn.relu(jnp.transpose(h, (0, 2, 3, 1))),
        lambda h: _d2s(h, (2, 2), "DCR"),
    )
    x = _x((1, 4, 5, 3))
    t = reader.trace(model, x)
    assert _params(t.graph) == {"layers/0/kernel", "layers/0/bias"}
    assert _sites(t.graph) == [("shuffle", (2, 2), "DCR", "channels_last")]
    assert _non_sites(t.graph) == ["layout", "layout"]
    _check_run(t, [x], [model(x)])


def test_run_reads_the_current_state():
    module = nnx.Conv(3, 4, (1, 1), rngs=nnx.Rngs(0))
    x = _x((1, 4, 4, 3))
    graph, run, inputs = reader.read_module(module, x)
    assert inputs == [("input_0", (1, 4, 4, 3), "float32")]
    module.kernel[...] = jnp.ones_like(module.kernel[...])
    got = run([x], graph.outputs)[graph.outputs[0]]
    np.testing.assert_allclose(got, module(x), rtol=1e-6)
    assert reader_for(module) is reader.read_module


def test_batch_norm_is_read_on_its_running_statistics():
    module = nnx.BatchNorm(4, rngs=nnx.Rngs(0))
    module.mean[...] = jnp.arange(4.0, dtype=jnp.float32)
    module.var[...] = jnp.arange(1.0, 5.0, dtype=jnp.float32)
    x = _x((8, 3, 3, 4))
    t = reader.trace(module, x)
    got = t.run([x], t.graph.outputs)[t.graph.outputs[0]]
    np.testing.assert_allclose(
        got, (x - np.arange(4.0)) / np.sqrt(np.arange(1.0, 5.0) + 1e-5), rtol=1e-5
    )
    assert not module.use_running_average
    np.testing.assert_array_equal(module.mean[...], np.arange(4.0))
    # inference batch norm: arithmetic with constants, position by position
    ops = {n.op: n.kind for n in t.graph.nodes}
    assert ops["sub"] == ops["mul"] == ops["rsqrt"] == "elementwise"
    assert "reduce_sum" not in ops


# ---------------------------------------------------------------------------
# plain JAX functions
# ---------------------------------------------------------------------------


def test_nested_jaxprs_are_inlined():
    @jax.jit
    def inner(h):
        return jnp.transpose(h.reshape(1, 4, 5, 3, 2, 2), (0, 1, 4, 2, 5, 3)).reshape(1, 8, 10, 3)

    @jax.custom_vjp
    def ident(h):
        return h

    ident.defvjp(lambda h: (h, None), lambda _, g: (g,))

    def fn(x):
        h = jax.checkpoint(lambda t: jax.nn.relu(t) + 1.0)(x)
        return ident(inner(h))

    x = _x((1, 4, 5, 12))
    graph, run, _ = reader.read_function(fn, x)
    assert not any(
        n.op in ("jit", "pjit", "custom_jvp_call", "custom_vjp_call", "remat2", "checkpoint")
        for n in graph.nodes
    )
    assert {n.op for n in graph.nodes if n.kind == "elementwise"} >= {"max", "add"}
    assert _sites(graph) == [("shuffle", (2, 2), "CRD", "channels_last")]
    np.testing.assert_array_equal(run([x], graph.outputs)[graph.outputs[0]], fn(x))


def test_params_pytree_paths_and_names():
    f32 = jnp.float32
    params = {
        "conv": {"kernel": jnp.ones((3, 3, 3, 12), f32), "bias": jnp.zeros(12, f32)},
        "scale": [jnp.ones(3, f32)],
    }

    def fn(p, x):
        h = lax.conv_general_dilated(
            x, p["conv"]["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return (
            jnp.transpose(h.reshape(1, 4, 5, 2, 2, 3), (0, 1, 3, 2, 4, 5)).reshape(1, 8, 10, 3)
            * p["scale"][0]
        )

    x = _x((1, 4, 5, 3))
    t = reader.trace_function(fn, x, params)
    assert _params(t.graph) == {"conv/kernel", "scale/0"}  # the bias is never read
    assert _sites(t.graph) == [("shuffle", (2, 2), "DCR", "channels_last")]
    t2 = reader.trace_function(fn, x, params, names=["b", "k", "s"])
    assert _params(t2.graph) == {"k", "s"}
    _check_run(t, [x], [fn(params, x)], exact=True)


def test_constant_gathers_broadcasts_splits_and_slices():
    def fn(x):
        a = jnp.take(x, jnp.array([2, 0, 1, 5, 4, 3]), axis=-1)  # a channel permutation
        b, c = jnp.split(x, [2], axis=-1)
        d = x[:, ::2, 1:4]
        e = lax.rev(x, (1,))
        f = jnp.expand_dims(x, 0)[0]
        g = jnp.broadcast_to(x, (2, *x.shape))  # duplicates: a selection, never a site
        h = jnp.take(x, jnp.array([0, 9]), axis=-1, mode="fill", fill_value=0.0)  # out of range
        return a, b, c, d, e, f, g, h

    x = _x((1, 4, 5, 6))
    t = reader.trace_function(fn, x)
    kinds = [(n.op, n.kind) for n in t.graph.nodes]
    assert ("split", "move") in kinds and ("slice", "move") in kinds and ("rev", "move") in kinds
    assert ("broadcast_in_dim", "move") in kinds
    assert _sites(t.graph) == []
    gathers = [k for op, k in kinds if op == "gather"]
    assert gathers == ["move", "compute"]  # the second fills positions out of range
    assert _non_sites(t.graph)[0] == "channel_permutation"
    _check_run(t, [x], fn(x), exact=True)


@pytest.mark.parametrize("f", [2, 3, (2, 3)], ids=str)
@pytest.mark.parametrize("order", ["CRD", "DCR"])
def test_one_hot_convolutions_are_candidates(f, order):
    """subpixel's conv lowering as lax convolutions: a transposed one-hot convolution
    is a shuffle, a strided one is an unshuffle."""
    from subpixel._core import lowering as _lowering

    r = _r(f)
    C = 2
    kernel, _ = _lowering.one_hot_kernel(C, r, order, dense=True)  # (C*R, C, *r), torch layout
    k = jnp.asarray(kernel, jnp.float32)

    def fn(x):
        # torch's transposed-convolution weight (C*R, C, *r) is the forward one's (O, I, *k)
        y = lax.conv_transpose(
            x,
            jnp.transpose(k, (2, 3, 1, 0)),
            r,
            "VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            transpose_kernel=True,
        )
        z = lax.conv_general_dilated(
            y,
            jnp.transpose(k, (2, 3, 0, 1)),
            r,
            "VALID",
            dimension_numbers=("NHWC", "HWOI", "NHWC"),
        )
        return y, z

    x = _x((2, 4, 5, C * math.prod(r)))
    t = reader.trace_function(fn, x)
    assert [n.kind for n in t.graph.nodes if n.op == "conv_general_dilated"] == ["maybe", "maybe"]
    sites = _sites(t.graph)
    assert [s[:2] for s in sites] == [("shuffle", r), ("unshuffle", r)]
    # the oracle for the order: the formula on the values the convolutions computed
    got = t.run([x], t.graph.outputs)
    y = got[t.graph.outputs[0]]
    assert np.array_equal(y, shuffle_gather(x, r, layout="channels_last", order=sites[0][2]))
    _check_run(t, [x], fn(x))


@pytest.mark.parametrize(
    "dn, stride, padding, lhs, rhs, groups",
    [
        (("NCHW", "OIHW", "NCHW"), (1, 1), [(1, 1), (0, 2)], (1, 1), (1, 1), 1),
        (("NHWC", "HWIO", "NHWC"), (2, 1), [(0, 1), (1, 0)], (1, 1), (2, 1), 2),
        (("NHWC", "HWOI", "NCHW"), (1, 1), [(2, 2), (1, 1)], (2, 3), (1, 1), 1),
        (("NCHW", "IOHW", "NHWC"), (1, 2), [(-1, 1), (2, -1)], (3, 2), (1, 1), 1),
    ],
)
def test_conv_general_step_agrees_with_lax(dn, stride, padding, lhs, rhs, groups):
    rng = np.random.default_rng(4)
    N, C, Co, H, W = 2, 4, 6, 5, 7
    x_cf = rng.integers(0, 5, (N, C, H, W)).astype("float32")
    w_oi = rng.integers(0, 3, (Co, C // groups, 3, 2)).astype("float32")
    x = np.transpose(x_cf, [("NCHW").index(a) for a in dn[0]])
    w = np.transpose(w_oi, [("OIHW").index(a) for a in dn[1]])
    want = lax.conv_general_dilated(x, w, stride, padding, lhs, rhs, dn, feature_group_count=groups)
    got = steps.conv_general(w_oi, stride, padding, lhs, rhs, groups)(x_cf)
    out = np.transpose(got, [("NCHW").index(a) for a in dn[2]])
    np.testing.assert_array_equal(out, np.asarray(want))  # small integers: exact


def test_the_graph_is_ordered_and_names_are_unique():
    module = EDSRish((2, 2), "CRD", rngs=nnx.Rngs(0))
    g = reader.trace(module, _x((1, 4, 5, 3))).graph
    made = set(g.inputs) | {n for n, v in g.values.items() if v.constant and n not in g.producers()}
    for node in g.nodes:
        assert all(i in made for i in node.inputs if i), node.name
        made.update(node.outputs)
    assert len({n.name for n in g.nodes}) == len(g.nodes)
    assert all(v.probe_shape is not None for v in g.values.values())
    assert all(v.constant for v in g.values.values() if v.param)
    # a kernel transposed or a bias reshaped: constants, no path of their own
    assert any(v.constant and not v.param for v in g.values.values() if v.name in g.producers())


def test_a_function_that_does_not_trace_is_one_value_error():
    def fn(x):
        if x.sum() > 0:  # Python control flow on traced data
            return x
        return -x

    with pytest.raises(ValueError, match=r"^fn does not trace on `example` \(") as info:
        reader.trace_function(fn, _x((2, 2)))
    assert "\n" not in str(info.value)
    with pytest.raises(TypeError, match="Flax NNX module"):
        reader.trace(lambda x: x, _x((2, 2)))


def test_audit_reads_a_flax_module():
    from subpixel import audit

    module = EDSRish((3, 3), "DCR", rngs=nnx.Rngs(0))
    report = audit(module, example=_x((1, 4, 5, 3)))
    assert [(s.kind, s.factor, s.order, s.layout) for s in report.sites] == [
        ("shuffle", (3, 3), "DCR", "channels_last")
    ]


def _check_steps(movers, got):
    """Each movement node's step moves the run's values as the model did (a node of
    several tensors: all of them)."""
    for n in movers:
        if n.many is not None:
            ys = n.step([got[i] for i in n.data_inputs])
        else:
            ys = [n.step(got[n.data_input])]
        for y, out in zip(ys, n.outputs):
            if n.kind == "move":
                np.testing.assert_array_equal(y, got[out], err_msg=n.name)
            else:
                np.testing.assert_allclose(y, got[out], rtol=1e-5, atol=1e-5, err_msg=n.name)


def test_a_split_and_join_is_one_movement():
    def fn(x):
        a, b, c = jnp.split(x * 2.0, 3, axis=-1)
        return jnp.concatenate([c, a, b], axis=-1) + 1.0

    x = _x((1, 4, 5, 6))
    t = reader.trace_function(fn, x)
    assert [n.many for n in t.graph.nodes if n.many is not None] == [(0,), (0, 1, 2)]
    assert _non_sites(t.graph) == ["channel_permutation"]
    _check_run(t, [x], [fn(x)], exact=True)
