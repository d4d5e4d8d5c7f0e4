"""The dtype rules of the contract (docs/api.md), on every backend: ``blur`` and
``sub_pixel_conv`` give the same result dtype everywhere, never overflow or truncate,
and refuse what they cannot compute with one message; zero sizes give empty (or
bias-only) results, never a library's raw error."""

from __future__ import annotations

import numpy as np
import pytest

import subpixel

from cases import host_dtype, make_data
from reference import blur_ref, sub_pixel_conv_ref

FLOATS = ("float16", "bfloat16", "float32", "float64")
# relative precision of each float dtype's result (one rounding of values ~1e3)
TOLERANCE = {"float16": 2e-3, "bfloat16": 1.6e-2, "float32": 1e-6, "float64": 1e-12}


def _blur_expected_dtype(dtype: str) -> str:
    return "float32" if dtype == "bool" or "int" in dtype else dtype


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_blur_dtypes(adapter, layout):
    """bool and integers -> float32 everywhere; floats and complex keep their dtype."""
    for dtype in adapter.dtypes:
        a = make_data((2, 3, 4, 5), dtype)
        y = subpixel.blur(adapter.asarray(a, dtype), layout=layout)
        got = adapter.to_numpy(y)
        expected_dtype = _blur_expected_dtype(dtype)
        assert adapter.dtype_name(y) == expected_dtype, (dtype, y.dtype)
        expected = blur_ref(
            a.astype(np.complex128 if "complex" in dtype else np.float64), 2, layout
        )
        rtol = TOLERANCE.get(dtype, TOLERANCE["float32"] if "complex" not in dtype else 1e-6)
        if dtype == "complex128":
            rtol = 1e-12
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol, err_msg=dtype)


def test_blur_never_overflows_or_wraps(adapter):
    cases = [("uint8", 200, 200.0), ("int8", 100, 100.0), ("bool", True, 1.0)]
    cases += [("float16", 40000, 40000.0)] if "float16" in adapter.dtypes else []
    for dtype, value, expected in cases:
        a = np.full((1, 1, 2, 2), value, host_dtype(dtype))
        got = adapter.to_numpy(subpixel.blur(adapter.asarray(a, dtype)))
        np.testing.assert_array_equal(got, np.full((1, 1, 2, 2), expected), err_msg=dtype)


@pytest.mark.parametrize("w_dtype", ["float32", "float64"])
def test_sub_pixel_conv_result_has_the_input_dtype(adapter, w_dtype):
    """NumPy weights (of any float dtype) are cast to x's dtype on every backend."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 5))
    w = rng.standard_normal((8, 3, 3, 3)).astype(w_dtype)
    b = rng.standard_normal(8).astype(w_dtype)
    for dtype in FLOATS:
        if dtype not in adapter.dtypes:
            continue
        xb = adapter.asarray(x.astype(host_dtype(dtype)), dtype)
        y = subpixel.sub_pixel_conv(xb, w, b, factor=2)
        assert adapter.dtype_name(y) == dtype
        # the oracle sees the same rounded inputs the backend computed with
        xr = adapter.to_numpy(xb).astype(np.float64)
        wr = adapter.to_numpy(adapter.asarray(w.astype(host_dtype(dtype)), dtype)).astype(
            np.float64
        )
        br = adapter.to_numpy(adapter.asarray(b.astype(host_dtype(dtype)), dtype)).astype(
            np.float64
        )
        expected = sub_pixel_conv_ref(xr, wr, br, 2, ((1, 1), (1, 1)))
        tol = 30 * TOLERANCE[dtype]  # 28 products summed: rounding grows with the terms
        np.testing.assert_allclose(adapter.to_numpy(y), expected, rtol=tol, atol=tol, err_msg=dtype)


def test_sub_pixel_conv_refuses_non_float_input(adapter):
    w = np.ones((4, 1, 1, 1), np.float32)
    expected = None
    for dtype in adapter.dtypes:
        if dtype in FLOATS:
            continue
        a = make_data((1, 1, 3, 3), dtype)
        with pytest.raises(TypeError, match=r"^`x` must have a floating-point dtype") as info:
            subpixel.sub_pixel_conv(adapter.asarray(a, dtype), w, factor=2, padding=0)
        message = str(info.value).split(" Received:")[0]
        assert expected in (None, message)
        expected = message


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("batch,c_in,c_out", [(0, 2, 3), (2, 0, 3), (2, 2, 0), (0, 0, 0)], ids=str)
def test_sub_pixel_conv_zero_sizes(adapter, layout, batch, c_in, c_out):
    """Empty batch or channels: the right shape, and with no input channels the bias."""
    x_cf = np.zeros((batch, c_in, 4, 5), np.float32)
    x = x_cf if layout == "channels_first" else np.ascontiguousarray(np.moveaxis(x_cf, 1, -1))
    w = np.ones((c_out * 4, c_in, 3, 3), np.float32)
    b = np.arange(c_out * 4, dtype=np.float32)
    y = adapter.to_numpy(subpixel.sub_pixel_conv(adapter.asarray(x), w, b, factor=2, layout=layout))
    expected = sub_pixel_conv_ref(x, w, b, 2, ((1, 1), (1, 1)), layout)
    assert y.shape == expected.shape
    np.testing.assert_array_equal(y, expected)


def test_blur_of_half_precision_subnormals(adapter):
    """float16 is averaged in float32 and rounded once: a constant stays itself."""
    if "float16" not in adapter.dtypes:
        pytest.skip("no float16")
    a = np.full((1, 1, 2, 2), 3 * 2.0**-24, np.float16)
    got = adapter.to_numpy(subpixel.blur(adapter.asarray(a, "float16")))
    np.testing.assert_array_equal(got, a)
