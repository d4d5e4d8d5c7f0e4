"""Keras 3 models read into the movement graph (subpixel.movement.keras) on the backend
KERAS_BACKEND names (TensorFlow in the tensorflow/interop environments, JAX in the jax
one, PyTorch in the torch one): every site found with its kind, factor, order and
layout (oracles: the index formula of tests/reference.py, TensorFlow's depth_to_space
being DCR NHWC, the models' own construction), no false sites, parameters named by
their Keras paths, values of a run equal to a forward pass, the model unchanged."""

from __future__ import annotations

import math

import numpy as np
import pytest

try:
    import keras
except Exception as exc:  # not installed, or its backend is not
    pytest.skip(f"keras cannot be imported: {exc!r}", allow_module_level=True)

BACKEND = keras.config.backend()
pytest.importorskip(
    {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(BACKEND, BACKEND)
)

from subpixel.layers.keras import PixelShuffle, PixelUnshuffle, SubPixelConv
from subpixel.movement import find_chains, reader_for
from subpixel.movement import keras as reader

from reference import shuffle_gather, unshuffle_gather

TF = BACKEND == "tensorflow"
needs_tf = pytest.mark.skipif(not TF, reason="tf.nn ops need the TensorFlow backend")
FACTORS = [2, 3, 4, (2, 3)]


def _r(f):
    return (f, f) if isinstance(f, int) else tuple(f)


def _x(shape, seed=0):
    return np.random.default_rng(seed).random(shape).astype("float32")


def _np(t):
    return np.asarray(keras.ops.convert_to_numpy(t))


def _sites(graph):
    out = []
    for c in find_chains(graph):
        m = c.movement
        if m is not None and m.is_site:
            out.append((m.kind, tuple(m.factor), m.order))
    return out


def _non_sites(graph):
    return [c.movement.kind for c in find_chains(graph) if c.movement and not c.movement.is_site]


def _check_run(model, x, traced):
    """run() gives the forward's output; every site's output is the formula applied
    to its input (the classification is what the model computes); every movement
    node's step moves the run's values as the model did."""
    g = traced.graph
    chains = [c for c in find_chains(g) if c.movement is not None]
    movers = [n for n in g.nodes if n.kind in ("move", "maybe") and n.step is not None]
    names = {*g.outputs, *(v for c in chains for v in (c.input, c.output))}
    names |= {v for n in movers for v in (*n.data_inputs, *n.outputs)}
    got = traced.run([x], sorted(names))
    want = _np(model(x, training=False))
    np.testing.assert_allclose(got[g.outputs[0]], want, rtol=1e-6, atol=1e-6)
    for c in chains:
        m = c.movement
        if not m.is_site or m.order == "other":
            continue
        layout = m.layout if m.layout == m.other_layout else None
        if layout is None:
            continue
        fn = shuffle_gather if m.kind == "shuffle" else unshuffle_gather
        expect = fn(got[c.input], m.factor, layout=layout, order=m.order)
        np.testing.assert_array_equal(got[c.output], expect)
    _check_steps(movers, got)


def _state(model):
    return {v.path: _np(v).copy() for v in model.variables}


def _assert_same_state(before, model):
    after = _state(model)
    assert before.keys() == after.keys()
    for k in before:
        np.testing.assert_array_equal(before[k], after[k], err_msg=k)


def _params(graph):
    return {v.param for v in graph.values.values() if v.param}


def _used_paths(model):
    return {v.path for v in model.variables if "seed_generator" not in v.path}


def _params_read(graph, node):
    """Parameters a node reads, through constant-only ops (a transposed kernel)."""
    producers = graph.producers()
    found, stack, seen = set(), list(node.inputs), set()
    while stack:
        name = stack.pop()
        v = graph.values.get(name)
        if not name or name in seen or v is None or not v.constant:
            continue
        seen.add(name)
        if v.param:
            found.add(v.param)
        p = producers.get(name)
        if p is not None:
            stack.extend(p.inputs)
    return found


_CONV_OPS = {"Conv2D", "conv_general_dilated", "aten.convolution.default", "MatMul", "dot_general"}


# ---------------------------------------------------------------------------
# models as people write them
# ---------------------------------------------------------------------------


@needs_tf
@pytest.mark.parametrize("r", [2, 3, 4])
def test_functional_lambda_with_tf_depth_to_space_is_dcr_channels_last(r):
    import tensorflow as tf

    C = 3
    inp = keras.Input((4, 5, 3))
    h = keras.layers.Conv2D(C * r * r, 3, padding="same", name="lr")(inp)
    h = keras.layers.Lambda(lambda t: tf.nn.depth_to_space(t, r))(h)
    out = keras.layers.Conv2D(2, 3, padding="same", name="hr")(h)
    model = keras.Model(inp, out)
    x = _x((2, 4, 5, 3))
    before = _state(model)
    t = reader.trace(model, x)
    assert t.graph.layout == "channels_last" and t.graph.source == "keras"
    assert _sites(t.graph) == [("shuffle", (r, r), "DCR")]
    assert _params(t.graph) == {"lr/kernel", "lr/bias", "hr/kernel", "hr/bias"}
    _check_run(model, x, t)
    _assert_same_state(before, model)


@pytest.mark.parametrize("r", [2, 3])
def test_functional_lambda_with_keras_ops_depth_to_space(r):
    inp = keras.Input((4, 5, 3))
    h = keras.layers.Conv2D(3 * r * r, 3, padding="same")(inp)
    h = keras.layers.Lambda(lambda t: keras.ops.depth_to_space(t, r))(h)
    h = keras.layers.Conv2D(2 * r * r, 1)(h)
    h = keras.layers.Lambda(lambda t: keras.ops.space_to_depth(t, r))(h)
    out = keras.layers.Conv2D(2, 1)(h)
    model = keras.Model(inp, out)
    x = _x((2, 4, 5, 3))
    t = reader.trace(model, x)
    # the oracle: what keras.ops.depth_to_space does on this backend, by the formula
    probe = np.arange(2 * 3 * 4 * 3 * r * r, dtype="float32").reshape(2, 3, 4, 3 * r * r)
    y = _np(keras.ops.depth_to_space(probe, r))
    order = next(
        o
        for o in ("CRD", "DCR")
        if np.array_equal(y, shuffle_gather(probe, r, layout="channels_last", order=o))
    )
    assert order == "DCR"
    assert _sites(t.graph) == [("shuffle", (r, r), order), ("unshuffle", (r, r), order)]
    _check_run(model, x, t)


@pytest.mark.parametrize("lowering", ["auto", "native", "reshape", "flat", "conv"])
@pytest.mark.parametrize("order", ["CRD", "DCR"])
@pytest.mark.parametrize("f", FACTORS, ids=str)
def test_subpixel_layers_in_every_lowering_and_order(lowering, order, f):
    r = _r(f)
    if lowering == "native" and r[0] != r[1]:
        pytest.skip("native needs a square factor")
    R = math.prod(r)
    model = keras.Sequential(
        [
            keras.Input((4, 6, 3)),
            keras.layers.Conv2D(2 * R, 3, padding="same"),
            PixelShuffle(f, order=order, lowering=lowering),
            keras.layers.Conv2D(4, 1),
            PixelUnshuffle(f, order=order, lowering=lowering),
            keras.layers.Conv2D(8, 1),
            SubPixelConv(2, 3, f, order=order, lowering=lowering),
        ]
    )
    x = _x((2, 4, 6, 3))
    before = _state(model)
    t = reader.trace(model, x)
    # a CRD SubPixelConv traced for TensorFlow in native form reorders its kernel
    # (a gather of the kernel) and runs TensorFlow's DCR DepthToSpace on the result
    folded = TF and lowering in ("auto", "native") and r[0] == r[1] and order == "CRD"
    assert _sites(t.graph) == [
        ("shuffle", r, order),
        ("unshuffle", r, order),
        ("shuffle", r, "DCR" if folded else order),
    ]
    assert _params(t.graph) == _used_paths(model)
    _check_run(model, x, t)
    _assert_same_state(before, model)


class Subclassed(keras.Model):
    """A subclassed model as people write it: the shuffle is ops in call(), a weight
    of the model itself, batch norm and dropout, a flatten head."""

    def __init__(self, r, order, use_tf=False):
        super().__init__()
        self.r, self.order, self.use_tf = r, order, use_tf
        self.c1 = keras.layers.Conv2D(3 * r * r, 3, padding="same")
        self.bn = keras.layers.BatchNormalization()
        self.drop = keras.layers.Dropout(0.5)
        self.c2 = keras.layers.Conv2D(4, 3, padding="same")
        self.scale = self.add_weight(shape=(4,), initializer="ones", name="scale")
        self.head = keras.layers.Dense(5)

    def call(self, x, training=None):
        r = self.r
        h = self.bn(self.c1(x), training=training)
        if self.use_tf:
            import tensorflow as tf

            h = tf.nn.depth_to_space(h, r)
        elif self.order == "DCR":
            h = keras.ops.depth_to_space(h, r)
        else:  # the CRD shuffle written by hand, channels last
            _, H, W, C = h.shape
            h = keras.ops.reshape(h, (-1, H, W, C // (r * r), r, r))
            h = keras.ops.transpose(h, (0, 1, 4, 2, 5, 3))
            h = keras.ops.reshape(h, (-1, H * r, W * r, C // (r * r)))
        h = self.drop(h, training=training)
        h = self.c2(h) * self.scale
        return self.head(keras.ops.reshape(h, (keras.ops.shape(h)[0], -1)))


@pytest.mark.parametrize("order", ["CRD", "DCR", "tf.nn"])
@pytest.mark.parametrize("r", [2, 3])
def test_subclassed_models_with_shuffles_in_call(order, r):
    if order == "tf.nn" and not TF:
        pytest.skip("tf.nn needs the TensorFlow backend")
    model = Subclassed(r, "DCR" if order == "tf.nn" else order, use_tf=order == "tf.nn")
    x = _x((2, 4, 5, 3))
    model(x)  # built
    # batch norm statistics that are not the initial ones: inference must use them
    model.bn.moving_mean.assign(_x((3 * r * r,), 1))
    model.bn.moving_variance.assign(_x((3 * r * r,), 2) + 0.5)
    before = _state(model)
    t = reader.trace(model, x)
    want = "DCR" if order == "tf.nn" else order
    assert _sites(t.graph) == [("shuffle", (r, r), want)]
    assert "flatten" in _non_sites(t.graph)
    assert _params(t.graph) == _used_paths(model)
    assert any(p.endswith("/scale") for p in _params(t.graph))
    _check_run(model, x, t)
    _assert_same_state(before, model)


def test_unbuilt_models_are_built_by_one_inference_call():
    model = Subclassed(2, "CRD")
    assert not model.built
    x = _x((1, 4, 5, 3))
    t = reader.trace(model, x)
    assert model.built and _sites(t.graph) == [("shuffle", (2, 2), "CRD")]


def test_nested_models_keep_their_variables_paths():
    inner = keras.Sequential(
        [keras.Input((4, 5, 12)), keras.layers.Conv2D(12, 1, name="inner_conv")], name="inner"
    )
    inp = keras.Input((4, 5, 3))
    h = keras.layers.Conv2D(12, 3, padding="same", name="outer_conv")(inp)
    h = inner(h)
    h = keras.layers.Lambda(lambda t: keras.ops.depth_to_space(t, 2))(h)
    out = keras.layers.Conv2D(1, 1, name="last")(h)
    model = keras.Model(inp, out)
    x = _x((2, 4, 5, 3))
    t = reader.trace(model, x)
    assert _sites(t.graph) == [("shuffle", (2, 2), "DCR")]
    assert _params(t.graph) == {v.path for v in model.variables}
    assert any(p.startswith("inner") or "inner_conv" in p for p in _params(t.graph))
    # each convolution reads its own layer's kernel
    convs = [n for n in t.graph.nodes if n.op in _CONV_OPS and n.kind != "maybe"]
    read = [_params_read(t.graph, n) for n in convs]
    for layer in ("outer_conv", "inner_conv", "last"):
        kernel = next(
            v.path for v in model.variables if layer in v.path and v.path.endswith("kernel")
        )
        assert any(kernel in r for r in read), (layer, read)
    _check_run(model, x, t)


def test_no_false_sites_channel_shuffle_flatten_and_layout_transpose():
    inp = keras.Input((4, 5, 3))
    h = keras.layers.Conv2D(12, 3, padding="same")(inp)
    # ShuffleNet's channel shuffle, 3 groups of 4, channels last
    h = keras.layers.Lambda(
        lambda t: keras.ops.reshape(
            keras.ops.transpose(keras.ops.reshape(t, (-1, 4, 5, 3, 4)), (0, 1, 2, 4, 3)),
            (-1, 4, 5, 12),
        )
    )(h)
    h = keras.layers.Conv2D(12, 1)(h)
    # a transpose to channels first and back
    h = keras.layers.Lambda(lambda t: keras.ops.transpose(t, (0, 3, 1, 2)))(h)
    h = keras.layers.Lambda(lambda t: keras.ops.transpose(t, (0, 2, 3, 1)) * 2.0)(h)
    h = keras.layers.Flatten()(h)
    out = keras.layers.Dense(3)(h)
    model = keras.Model(inp, out)
    x = _x((2, 4, 5, 3))
    t = reader.trace(model, x)
    assert _sites(t.graph) == []
    kinds = _non_sites(t.graph)
    assert "channel_permutation" in kinds and "flatten" in kinds
    assert "layout" in kinds or "identity" in kinds
    _check_run(model, x, t)


@pytest.mark.parametrize("lowering", ["reshape", "flat", "conv"])
def test_a_channels_first_model_is_read_in_channels_first(lowering):
    inp = keras.Input((12, 4, 6))
    h = keras.layers.Conv2D(12, 3, padding="same", data_format="channels_first")(inp)
    h = PixelShuffle(2, order="DCR", data_format="channels_first", lowering=lowering)(h)
    out = keras.layers.Conv2D(4, 3, padding="same", data_format="channels_first")(h)
    model = keras.Model(inp, out)
    x = _x((2, 12, 4, 6))
    try:
        _np(model(x))
    except Exception as e:  # a backend without channels-first convolutions on this CPU
        pytest.skip(f"channels_first does not run here: {type(e).__name__}")
    t = reader.trace(model, x)
    assert t.graph.layout == "channels_first"
    sites = [c.movement for c in find_chains(t.graph) if c.movement and c.movement.is_site]
    assert [(m.kind, m.factor, m.order) for m in sites] == [("shuffle", (2, 2), "DCR")]
    assert "channels_first" in (sites[0].layout, sites[0].other_layout)
    _check_run(model, x, t)


def test_a_split_and_join_is_one_movement():
    inp = keras.Input((4, 5, 6))
    h = keras.layers.Conv2D(6, 1)(inp)
    h = keras.layers.Lambda(
        lambda t: keras.ops.concatenate(keras.ops.split(t, 3, axis=-1)[::-1], axis=-1)
    )(h)
    model = keras.Model(inp, keras.layers.Conv2D(2, 1)(h))
    x = _x((1, 4, 5, 6))
    t = reader.trace(model, x)
    assert any(n.many is not None for n in t.graph.nodes)
    assert _sites(t.graph) == []
    # (on PyTorch the region also holds the layout changes around the convolutions)
    assert ("channel_permutation" if BACKEND != "torch" else "other") in _non_sites(t.graph)
    _check_run(model, x, t)


def test_layout_is_decided_by_the_layers_data_format():
    first = keras.Sequential(
        [keras.Input((3, 4, 4)), keras.layers.Conv2D(2, 1, data_format="channels_first")]
    )
    last = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Conv2D(2, 1)])
    plain = keras.Sequential([keras.Input((6,)), keras.layers.Dense(2)])
    assert reader.layout_of(first) == "channels_first"
    assert reader.layout_of(last) == "channels_last"
    assert reader.layout_of(plain) == keras.config.image_data_format()


def test_several_inputs_and_outputs():
    a, b = keras.Input((4, 5, 12)), keras.Input((4, 5, 12))
    s = keras.layers.Add()([a, b])
    y1 = keras.layers.Lambda(lambda t: keras.ops.depth_to_space(t, 2))(s)
    y2 = keras.layers.Conv2D(3, 1)(s)
    model = keras.Model([a, b], [y1, y2])
    xa, xb = _x((1, 4, 5, 12), 1), _x((1, 4, 5, 12), 2)
    graph, run, inputs = reader.read_model(model, (xa, xb))
    assert [shape for _, shape, _ in inputs] == [(1, 4, 5, 12), (1, 4, 5, 12)]
    assert len(graph.outputs) == 2
    assert _sites(graph) == [("shuffle", (2, 2), "DCR")]
    got = run([xa, xb], graph.outputs)
    want = [_np(y) for y in model([xa, xb])]
    for name, w in zip(graph.outputs, want):
        np.testing.assert_allclose(got[name], w, rtol=1e-6, atol=1e-6)


def test_reader_for_picks_the_keras_reader():
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Conv2D(2, 1)])
    assert reader_for(model) is reader.read_model


def test_the_graph_is_ordered_and_every_value_has_sizes():
    model = Subclassed(2, "CRD")
    x = _x((2, 4, 5, 3))
    model(x)
    g = reader.trace(model, x).graph
    made = set(g.inputs) | {n for n, v in g.values.items() if v.constant}
    for node in g.nodes:
        assert all(i in made for i in node.inputs if i), node.name
        made.update(node.outputs)
    for v in g.values.values():
        assert v.probe_shape is not None, v.name
    assert len({n.name for n in g.nodes}) == len(g.nodes)


def test_a_model_that_does_not_trace_is_one_value_error():
    class Broken(keras.Model):
        def call(self, x):
            raise RuntimeError("no\nsecond line")

    m = Broken()
    with pytest.raises(ValueError, match=r"^Broken does not (run|trace) on `example`") as info:
        reader.trace(m, _x((1, 2, 2, 1)))
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------
# TensorFlow specifics
# ---------------------------------------------------------------------------


@needs_tf
def test_a_tf_function_inside_call_is_inlined():
    import tensorflow as tf

    @tf.function
    def d2s(t):
        return tf.nn.depth_to_space(t, 2)

    class Decorated(keras.Model):
        def __init__(self):
            super().__init__()
            self.c1 = keras.layers.Conv2D(12, 3, padding="same")
            self.c2 = keras.layers.Conv2D(2, 1)

        @tf.function
        def call(self, x, training=None):
            return self.c2(d2s(self.c1(x)))

    model = Decorated()
    x = _x((2, 4, 5, 3))
    model(x)
    t = reader.trace(model, x)
    assert _sites(t.graph) == [("shuffle", (2, 2), "DCR")]
    assert _params(t.graph) == {v.path for v in model.variables}
    _check_run(model, x, t)


@needs_tf
def test_tf_data_movement_ops_are_their_own_oracle():
    """StridedSlice with masks, GatherV2, Split, Unpack, Concat, Pack, Reverse,
    Squeeze/ExpandDims, BroadcastTo: every move node's step reproduces the run."""
    import tensorflow as tf

    class Moves(keras.Model):
        def call(self, x):
            a = tf.gather(x, [2, 0, 1], axis=-1)
            b = x[:, ::-1, 1:4, ...]
            c, d = tf.split(x, [1, 2], axis=-1)
            e = tf.unstack(x, axis=1)[2]
            f = tf.reverse(x, axis=[2])
            g = tf.squeeze(tf.expand_dims(x, 1), 1)
            h = tf.broadcast_to(x[:, None], (2, 1, 4, 5, 3))
            i = tf.nn.space_to_depth(x[:, :4, :4], 2)
            j = tf.concat([x, a], axis=-1)
            k = tf.stack([x, f], axis=1)
            m, n = tf.split(x[:, :, :4], 2, axis=2)
            return [a, b, c, d, e, f, g, h, i, j, k, m, n]

    model = Moves()
    x = _x((2, 4, 5, 3))
    t = reader.trace(model, x)
    kinds = {n.op: n.kind for n in t.graph.nodes}
    for op in (
        "GatherV2",
        "StridedSlice",
        "SplitV",
        "Unpack",
        "ReverseV2",
        "Squeeze",
        "ExpandDims",
        "Split",
        "ConcatV2",
        "Pack",
    ):
        assert kinds.get(op) == "move", op
    assert kinds["SpaceToDepth"] == "move"
    _check_run_all(t, x, [_np(y) for y in model(x)])


def _check_run_all(t, x, want):
    g = t.graph
    movers = [n for n in g.nodes if n.kind in ("move", "maybe") and n.step is not None]
    names = sorted({*g.outputs, *(v for n in movers for v in (*n.data_inputs, *n.outputs))})
    got = t.run([x], names)
    for name, w in zip(g.outputs, want):
        np.testing.assert_array_equal(got[name], w)
    _check_steps(movers, got)


@needs_tf
@pytest.mark.parametrize(
    "kind, stride, padding, dilation",
    [
        ("conv", (1, 1), "SAME", (1, 1)),
        ("conv", (2, 3), "SAME", (1, 1)),
        ("conv", (1, 1), "VALID", (2, 1)),
        ("conv", (2, 2), [[0, 0], [1, 2], [0, 1], [0, 0]], (1, 1)),
        ("depthwise", (2, 2), "SAME", (1, 1)),
        ("depthwise", (1, 1), "VALID", (1, 1)),
        ("transpose", (2, 2), "SAME", (1, 1)),
        ("transpose", (2, 3), "VALID", (1, 1)),
        ("transpose", (3, 3), "SAME", (1, 1)),
        ("conv3d", (1, 2, 2), "SAME", (1, 1, 1)),
        ("transpose3d", (2, 2, 1), "VALID", (1, 1, 1)),
    ],
)
def test_tf_convolutions_with_zero_one_kernels_are_candidates_with_the_ops_semantics(
    kind, stride, padding, dilation
):
    import tensorflow as tf

    rng = np.random.default_rng(3)
    x = rng.random((2, 7, 8, 4)).astype("float32")
    if kind.endswith("3d"):
        x = rng.random((2, 3, 5, 6, 4)).astype("float32")
        w = (rng.random((2, 3, 2, 4, 4)) < 0.4).astype("float32")
    elif kind == "depthwise":
        w = (rng.random((3, 2, 4, 2)) < 0.4).astype("float32")
    elif kind == "transpose":
        w = (rng.random((3, 4, 5, 4)) < 0.4).astype("float32")  # (*k, out, in)
    else:
        w = (rng.random((3, 2, 4, 6)) < 0.4).astype("float32")

    def op(t, w=w):
        if kind == "conv3d":
            return tf.nn.conv3d(t, w, (1, *stride, 1), padding)
        if kind == "transpose3d":
            n, D, H, W, _ = t.shape
            out = (n, (D - 1) * stride[0] + 2, (H - 1) * stride[1] + 3, W + 1, 4)
            return tf.nn.conv3d_transpose(t, w, out, (1, *stride, 1), padding)
        if kind == "depthwise":
            return tf.nn.depthwise_conv2d(t, w, (1, *stride, 1), padding, dilations=dilation)
        if kind == "transpose":
            n, H, W, _ = t.shape
            if padding == "SAME":
                out = (n, H * stride[0], W * stride[1], 5)
            else:
                out = (n, (H - 1) * stride[0] + 3 + 1, (W - 1) * stride[1] + 4, 5)
            return tf.nn.conv2d_transpose(t, w, out, (1, *stride, 1), padding)
        return tf.nn.conv2d(t, w, (1, *stride, 1), padding, dilations=dilation)

    class One(keras.Model):
        def call(self, t):
            return op(t)

    t = reader.trace(One(), x)
    convs = [n for n in t.graph.nodes if n.kind == "maybe"]
    assert len(convs) == 1
    want = op(x.astype("float64"), w.astype("float64")).numpy()
    np.testing.assert_allclose(convs[0].step(x), want, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------
# porting-facing guarantees
# ---------------------------------------------------------------------------


def test_run_reads_the_current_weights():
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Conv2D(2, 1, name="c")])
    x = _x((1, 4, 4, 3))
    graph, run, _ = reader.read_model(model, x)
    model.get_layer("c").kernel.assign(np.ones((1, 1, 3, 2), "float32"))
    got = run([x], graph.outputs)[graph.outputs[0]]
    np.testing.assert_allclose(got, _np(model(x)), rtol=1e-6, atol=1e-6)


def test_batch_norm_in_training_mode_is_read_in_inference_and_left_alone():
    model = keras.Sequential(
        [
            keras.Input((4, 4, 3)),
            keras.layers.Conv2D(8, 1),
            keras.layers.BatchNormalization(momentum=0.0),
        ]
    )
    x = _x((4, 4, 4, 3))
    model(x, training=True)
    model.layers[1].moving_mean.assign(_x((8,), 5))
    before = _state(model)
    t = reader.trace(model, x)
    t.run([x * 10], t.graph.outputs)
    _assert_same_state(before, model)
    got = t.run([x], t.graph.outputs)[t.graph.outputs[0]]
    np.testing.assert_allclose(got, _np(model(x, training=False)), rtol=1e-6, atol=1e-6)


def test_a_call_that_updates_a_variable_leaves_it_as_it_was():
    class Counting(keras.layers.Layer):
        def build(self, shape):
            self.calls = self.add_weight(
                shape=(), initializer="zeros", trainable=False, name="calls"
            )

        def call(self, x):
            self.calls.assign(self.calls + 1.0)
            return keras.ops.depth_to_space(x, 2) + 0.0 * self.calls

    inp = keras.Input((4, 5, 12))
    model = keras.Model(inp, Counting()(inp))
    x = _x((1, 4, 5, 12))
    before = _state(model)
    graph, run, _ = reader.read_model(model, x)
    run([x], graph.outputs)
    run([x * 2], graph.outputs)
    _assert_same_state(before, model)
    assert _sites(graph) == [("shuffle", (2, 2), "DCR")]


def test_a_bare_layer_is_read():
    layer = PixelShuffle(2, order="CRD", lowering="reshape")
    x = _x((1, 3, 4, 12))
    t = reader.trace(layer, x)
    assert _sites(t.graph) == [("shuffle", (2, 2), "CRD")]
    np.testing.assert_array_equal(t.run([x], t.graph.outputs)[t.graph.outputs[0]], _np(layer(x)))


def test_audit_reads_a_keras_model():
    from subpixel import audit

    inp = keras.Input((4, 5, 3))
    h = keras.layers.Conv2D(27, 3, padding="same")(inp)
    h = PixelShuffle(3, order="CRD", lowering="reshape")(h)
    model = keras.Model(inp, keras.layers.Conv2D(1, 1)(h))
    report = audit(model, example=_x((1, 4, 5, 3)))
    assert [(s.kind, s.factor, s.order, s.layout) for s in report.sites] == [
        ("shuffle", (3, 3), "CRD", "channels_last")
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
