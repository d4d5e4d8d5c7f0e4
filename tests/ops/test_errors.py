"""The error contract: the same exception type and message on every backend,
naming the argument and the value received."""

from __future__ import annotations

import numpy as np
import pytest

import subpixel

# (id, op, input shape, kwargs, exception, message regex)
BAD_CALLS = [
    (
        "factor-0",
        "shuffle",
        (1, 4, 2, 2),
        dict(factor=0),
        ValueError,
        r"`factor`.*Received: factor=0$",
    ),
    (
        "factor-negative",
        "shuffle",
        (1, 4, 2, 2),
        dict(factor=-2),
        ValueError,
        r"`factor`.*Received: factor=-2$",
    ),
    (
        "factor-float",
        "shuffle",
        (1, 4, 2, 2),
        dict(factor=2.0),
        ValueError,
        r"`factor`.*Received: factor=2\.0$",
    ),
    (
        "factor-str",
        "shuffle",
        (1, 4, 2, 2),
        dict(factor="2"),
        ValueError,
        r"`factor`.*Received: factor='2'$",
    ),
    (
        "factor-bool",
        "shuffle",
        (1, 4, 2, 2),
        dict(factor=True),
        ValueError,
        r"`factor`.*Received: factor=True$",
    ),
    (
        "factor-none",
        "shuffle",
        (1, 4, 2, 2),
        dict(factor=None),
        ValueError,
        r"`factor`.*Received: factor=None$",
    ),
    (
        "factor-tuple-zero",
        "shuffle",
        (1, 4, 2, 2),
        dict(factor=(2, 0)),
        ValueError,
        r"`factor`.*Received: factor=\(2, 0\)$",
    ),
    (
        "factor-empty",
        "shuffle",
        (1, 4, 2, 2),
        dict(factor=()),
        ValueError,
        r"`factor`.*Received: factor=\(\)$",
    ),
    (
        "factor-length",
        "shuffle",
        (1, 4, 2, 2),
        dict(factor=(2, 2), spatial_dims=3),
        ValueError,
        r"`factor` must have one entry per spatial dimension \(3.*Received: factor=\(2, 2\)$",
    ),
    (
        "spatial-dims-0",
        "shuffle",
        (1, 4, 2, 2),
        dict(factor=2, spatial_dims=0),
        ValueError,
        r"`spatial_dims`.*Received: spatial_dims=0$",
    ),
    (
        "spatial-dims-float",
        "shuffle",
        (1, 4, 2, 2),
        dict(factor=2, spatial_dims=2.0),
        ValueError,
        r"`spatial_dims`.*Received: spatial_dims=2\.0$",
    ),
    (
        "layout",
        "shuffle",
        (1, 4, 2, 2),
        dict(factor=2, layout="NCHW"),
        ValueError,
        r"`layout`.*Received: layout='NCHW'$",
    ),
    (
        "order",
        "shuffle",
        (1, 4, 2, 2),
        dict(factor=2, order="crd"),
        ValueError,
        r"`order`.*Received: order='crd'$",
    ),
    (
        "order-none",
        "unshuffle",
        (1, 4, 2, 2),
        dict(factor=2, order=None),
        ValueError,
        r"`order`.*Received: order=None$",
    ),
    (
        "channels",
        "shuffle",
        (1, 6, 2, 2),
        dict(factor=2),
        ValueError,
        r"^`x` has 6 channels \(axis 1\), which is not divisible by prod\(factor\)=4 for factor=\(2, 2\)\. Received: x.shape=\(1, 6, 2, 2\)$",
    ),
    (
        "channels-last",
        "shuffle",
        (1, 2, 2, 6),
        dict(factor=(1, 4), layout="channels_last"),
        ValueError,
        r"^`x` has 6 channels \(axis 3\), which is not divisible by prod\(factor\)=4",
    ),
    (
        "spatial",
        "unshuffle",
        (1, 2, 4, 5),
        dict(factor=2),
        ValueError,
        r"^`x` has spatial size 5 on axis 3, which is not divisible by its factor 2 for factor=\(2, 2\)\. Received: x.shape=\(1, 2, 4, 5\)$",
    ),
    (
        "spatial-last",
        "unshuffle",
        (3, 4, 2),
        dict(factor=3, spatial_dims=1, layout="channels_last"),
        ValueError,
        r"^`x` has spatial size 4 on axis 1, which is not divisible by its factor 3",
    ),
    (
        "output-too-large",
        "shuffle",
        (1, 0, 2, 2),
        dict(factor=10**9),
        ValueError,
        r"^`factor` makes an output of shape \(1, 0, 2000000000, 2000000000\), which has more than 2\*\*59 elements",
    ),
    (
        "rank",
        "shuffle",
        (4, 2),
        dict(factor=2),
        ValueError,
        r"^`x` must have at least 3 dimensions \(a channel axis and 2 spatial\) for spatial_dims=2\. Received: x.shape=\(4, 2\)$",
    ),
    (
        "rank-3d",
        "unshuffle",
        (4, 2, 2),
        dict(factor=2, spatial_dims=3),
        ValueError,
        r"^`x` must have at least 4 dimensions.*Received: x.shape=\(4, 2, 2\)$",
    ),
]


def _call(op, x, kwargs):
    kwargs = dict(kwargs)
    factor = kwargs.pop("factor")
    return getattr(subpixel, op)(x, factor, **kwargs)


def _error_of(fn):
    try:
        fn()
    except Exception as exc:
        return type(exc), str(exc)
    return None, None


@pytest.mark.parametrize(
    "op,shape,kwargs,exc,pattern", [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS]
)
def test_bad_arguments(adapter, op, shape, kwargs, exc, pattern):
    x = adapter.asarray(np.zeros(shape, np.float32))
    with pytest.raises(exc, match=pattern):
        _call(op, x, kwargs)
    # byte-for-byte the NumPy reference's error
    assert _error_of(lambda: _call(op, x, kwargs)) == _error_of(
        lambda: _call(op, np.zeros(shape, np.float32), kwargs)
    )


@pytest.mark.parametrize("obj", [[[1.0, 2.0]], 3.0, "abc", None, memoryview(b"ab")], ids=type)
def test_unsupported_type(obj):
    with pytest.raises(
        TypeError,
        match=r"^`x` must be an array of a supported library \(numpy[^)]*\)\. Received: x of type ",
    ):
        subpixel.shuffle(obj, 2)
    with pytest.raises(TypeError, match=r"^`x` must be an array"):
        subpixel.backend_name(obj)


@pytest.mark.parametrize(
    "out, error, message",
    [
        (
            ((1, 2, 4, 3), "float32"),
            ValueError,
            r"^`out` must have shape \(1, 2, 4, 4\) for this shuffle\. Received: out.shape=\(1, 2, 4, 3\)$",
        ),
        (
            ((1, 2, 4, 4), "float64"),
            ValueError,
            r"^`out` must have the input's dtype .*float32\. Received: out.dtype=.*float64$",
        ),
        (
            None,  # a list of numbers
            TypeError,
            r"^`out` must be an array of the input's library \({name}\)\. Received: out of type ",
        ),
    ],
    ids=["shape", "dtype", "library"],
)
def test_out_of_the_wrong_shape_dtype_or_library(adapter, out, error, message):
    if not adapter.supports_out:
        pytest.skip(f"{adapter.name} refuses out= (test_out_refused)")
    x = adapter.asarray(np.zeros((1, 8, 2, 2), np.float32))
    with pytest.raises(error, match=message.replace("{name}", adapter.name)):
        subpixel.shuffle(x, 2, out=[0.0] * 32 if out is None else adapter.empty(*out))
