"""The spellings of subpixel 0.2 that 0.3 renamed or moved still work for one release,
and each warns with a DeprecationWarning naming the new spelling."""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest

import subpixel

from adapters import requested_backends

KERAS = os.environ.get("KERAS_BACKEND", "tensorflow")

# (module, old name, where it is now: "module:name", the backend it needs)
MOVED = [
    ("subpixel.layers.torch", "replace_conv_transpose", "subpixel.rewrite.torch:", "torch"),
    ("subpixel.layers.torch", "replace_pixel_shuffle", "subpixel.rewrite.torch:", "torch"),
    ("subpixel.layers.torch", "sub_pixel_of", "subpixel.rewrite.torch:", "torch"),
    ("subpixel.layers.torch", "from_espcn", "subpixel.models.espcn:ESPCN.to_torch", "torch"),
    ("subpixel.layers.keras", "replace_conv_transpose", "subpixel.rewrite.keras:", KERAS),
    ("subpixel.layers.keras", "replace_pixel_shuffle", "subpixel.rewrite.keras:", KERAS),
    ("subpixel.layers.keras", "sub_pixel_of", "subpixel.rewrite.keras:", KERAS),
    ("subpixel.layers.keras", "shuffle_op", "subpixel.rewrite.keras:", KERAS),
    ("subpixel.layers.keras", "from_espcn", "subpixel.models.espcn:ESPCN.to_keras", KERAS),
    ("subpixel.layers.flax", "replace_conv_transpose", "subpixel.rewrite.flax:", "jax"),
    ("subpixel.layers.flax", "sub_pixel_of", "subpixel.rewrite.flax:", "jax"),
    ("subpixel.models.espcn", "upscale_image", "subpixel.models.tiling:", "numpy"),
    ("subpixel.models.espcn", "upscale_luma", "subpixel.models.tiling:", "numpy"),
    ("subpixel.models.espcn", "BLOCK", "subpixel.models.tiling:", "numpy"),
    ("subpixel.deploy", "RuntimeModel", "subpixel.models.runtime:", "numpy"),
]


@pytest.mark.parametrize("module, name, now, backend", MOVED, ids=lambda v: str(v))
def test_moved_names_warn_and_are_the_new_ones(module, name, now, backend):
    if backend not in requested_backends():
        pytest.skip(f"{backend} is not in SUBPIXEL_TEST_BACKENDS")
    where, _, path = now.partition(":")
    path = path or name
    with pytest.warns(
        DeprecationWarning, match=rf"^{module}\.{name} is deprecated: use {where}\.{path} "
    ):
        value = getattr(importlib.import_module(module), name)
    new = importlib.import_module(where)
    for attr in path.split("."):
        new = getattr(new, attr)
    assert value is new


def test_an_unknown_name_is_still_an_attribute_error():
    import subpixel.deploy

    with pytest.raises(AttributeError, match=r"has no attribute 'nope'"):
        subpixel.deploy.nope  # noqa: B018


@pytest.mark.parametrize(
    "framework, backend, layout, convert",
    [
        ("torch", "torch", "channels_first", "SubPixelConv2d"),
        ("keras", KERAS, "channels_last", "SubPixelConv"),
        ("flax", "jax", "channels_last", "SubPixelConv"),
    ],
)
def test_the_framework_free_layers_methods_warn_and_convert(framework, backend, layout, convert):
    """SubPixelConv.to_<framework>() and .from_<framework>(), now
    subpixel.layers.<framework>.from_agnostic and to_agnostic."""
    if backend not in requested_backends():
        pytest.skip(f"{backend} is not in SUBPIXEL_TEST_BACKENDS")
    module = importlib.import_module(f"subpixel.layers.{framework}")
    layer = subpixel.SubPixelConv(4, 3, 3, 2, seed=0, layout=layout)
    args = () if framework == "torch" else (layout,)
    with pytest.warns(DeprecationWarning, match=rf"SubPixelConv\.to_{framework} is deprecated"):
        native = getattr(layer, f"to_{framework}")(*args)
    assert isinstance(native, getattr(module, convert))
    with pytest.warns(DeprecationWarning, match=rf"SubPixelConv\.from_{framework} is deprecated"):
        back = getattr(subpixel.SubPixelConv, f"from_{framework}")(native)
    np.testing.assert_allclose(back.weight, layer.weight)
