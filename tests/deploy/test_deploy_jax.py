"""JAX: ``jax.export`` of shuffle, unshuffle, sub_pixel_conv and the Flax layer with
symbolic batch and spatial sizes, serialized, deserialized and run at two sizes
against the oracles.  Runs where JAX is a requested backend (serialization needs
the ``flatbuffers`` package)."""

from __future__ import annotations

import numpy as np
import pytest

from adapters import requested_backends

if "jax" not in requested_backends():
    pytest.skip("jax is not in SUBPIXEL_TEST_BACKENDS", allow_module_level=True)
pytest.importorskip("flatbuffers")

import jax
import jax.numpy as jnp
from jax import export

import subpixel

from reference import reference, sub_pixel_conv_ref


def round_trip(fn, shape: str):
    spec = jax.ShapeDtypeStruct(export.symbolic_shape(shape), jnp.float32)
    exported = export.export(jax.jit(fn))(spec)
    return export.deserialize(exported.serialize())


@pytest.mark.parametrize("order", ["CRD", "DCR"])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("op", ["shuffle", "unshuffle"])
def test_shuffle_with_symbolic_sizes(op, layout, order):
    channels = 12 if op == "shuffle" else 3
    shape = f"(b, {channels}, h, w)" if layout == "channels_first" else f"(b, h, w, {channels})"
    kw = dict(layout=layout, order=order)
    back = round_trip(lambda x: getattr(subpixel, op)(x, 2, **kw), shape)
    for n, h, w in ((1, 4, 6), (3, 2, 8)):
        size = (n, channels, h, w) if layout == "channels_first" else (n, h, w, channels)
        a = np.random.default_rng(n).standard_normal(size).astype(np.float32)
        np.testing.assert_array_equal(np.asarray(back.call(a)), reference(op, a, 2, **kw))


def test_sub_pixel_conv_and_flax_layer_with_symbolic_sizes():
    from flax import nnx

    from subpixel.layers.flax import SubPixelConv

    rng = np.random.default_rng(0)
    w = rng.standard_normal((12, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(12).astype(np.float32)
    back = round_trip(
        lambda x: subpixel.sub_pixel_conv(x, w, b, factor=2, order="DCR"), "(b, 3, h, w)"
    )
    layer = SubPixelConv(3, 2, (3, 3), 2, order="CRD", rngs=nnx.Rngs(0))
    flax_back = round_trip(lambda x: layer(x), "(b, h, w, 3)")
    for n, h, wd in ((1, 4, 5), (2, 6, 3)):
        a = rng.standard_normal((n, 3, h, wd)).astype(np.float32)
        expected = sub_pixel_conv_ref(a, w, b, 2, ((1, 1), (1, 1)), order="DCR")
        np.testing.assert_allclose(np.asarray(back.call(a)), expected, rtol=1e-4, atol=1e-4)
        a_cl = np.ascontiguousarray(np.moveaxis(a, 1, -1))
        np.testing.assert_allclose(
            np.asarray(flax_back.call(a_cl)),
            np.asarray(layer(jnp.asarray(a_cl))),
            rtol=1e-5,
            atol=1e-5,
        )
