"""The CUDA kernels without a GPU: compiled by nvcc for sm_80 and sm_90 (warnings
are errors), and run on the host through a shim that executes the grid as
loops, against the index-formula oracle.  Runs when ``cupy`` is requested."""

from __future__ import annotations

import ctypes
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from adapters import requested_backends

if "cupy" not in requested_backends():
    pytest.skip("cupy is not in SUBPIXEL_TEST_BACKENDS", allow_module_level=True)

from subpixel._core import spec as _spec
from subpixel.backends import _cuda_geometry as cg

from cases import FACTORS
from reference import reference, shuffle_gather

KERNELS = Path(cg.__file__).resolve().parent / "cuda"
HOST = Path(__file__).resolve().parent / "cuda_host"


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    gxx = shutil.which("g++")
    assert gxx, "g++ is needed to build the host emulation of the CUDA kernels"
    lib = tmp_path_factory.mktemp("cuda_host") / "sp_host.so"
    subprocess.run(
        [
            gxx,
            "-std=c++17",
            "-O1",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-shared",
            "-fPIC",
            f"-I{HOST}",
            f"-I{KERNELS}",
            str(HOST / "driver.cpp"),
            "-o",
            str(lib),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return ctypes.CDLL(str(lib))


def _ptr(a):
    return ctypes.c_void_p(a.ctypes.data)


def run_rearrange(host, x, plan, *, max_widen=16, bits=None, blocks=3, threads=32):
    x = np.ascontiguousarray(x)
    out = np.empty(plan.out_shape, dtype=x.dtype)
    if out.size == 0:
        return out
    geom = cg.geometry(plan, x.itemsize, max_widen)
    geom_arr = np.asarray(geom.geom_array(), dtype=np.int64)
    rc = host.sp_rearrange(
        geom.itemsize,
        bits or geom.index_bits,
        geom.ndim,
        _ptr(x),
        _ptr(out),
        _ptr(geom_arr),
        ctypes.c_longlong(geom.total),
        blocks,
        threads,
    )
    assert rc == 0
    return out


DTYPES = ["bool", "uint8", "float16", "int32", "float32", "float64", "complex64", "complex128"]


@pytest.mark.parametrize("op", ["shuffle", "unshuffle"])
@pytest.mark.parametrize("order", ["CRD", "DCR"])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("batch", [(), (2,), (2, 3)], ids=lambda b: f"b{len(b)}")
@pytest.mark.parametrize("factor,spatial", FACTORS, ids=[f"r{f}-s{s}" for f, s in FACTORS])
def test_gather_kernel_on_the_host(host, factor, spatial, batch, layout, order, op):
    d = len(spatial)
    r = factor if isinstance(factor, tuple) else (factor,) * d
    C = 3
    if op == "shuffle":
        chans, sp = C * math.prod(r), spatial
    else:
        chans, sp = C, tuple(s * f for s, f in zip(spatial, r))
    shape = (*batch, chans, *sp) if layout == "channels_first" else (*batch, *sp, chans)
    kw = dict(spatial_dims=d, layout=layout, order=order)
    for dtype in DTYPES:
        a = (
            (np.random.default_rng(0).permutation(math.prod(shape)) % 251)
            .astype(dtype)
            .reshape(shape)
        )
        if dtype.startswith("complex"):
            a = a + 1j * a[::-1] if a.ndim else a
        plan = _spec.make_plan(op, shape, factor, d, layout, order)
        expected = reference(op, a, factor, **kw)
        for max_widen in (16, 1):
            np.testing.assert_array_equal(
                run_rearrange(host, a, plan, max_widen=max_widen), expected
            )
        np.testing.assert_array_equal(
            run_rearrange(host, a, plan, bits=64, blocks=1, threads=7), expected
        )


def test_widening_happens_where_it_should():
    plan = _spec.make_plan("shuffle", (2, 3, 4, 16), 2, layout="channels_last", order="DCR")
    geom = cg.geometry(plan, 4, 16)  # innermost run (r * C = 8 floats) is contiguous on both sides
    assert geom.widen == 4 and geom.itemsize == 16
    assert cg.geometry(plan, 4, 4).widen == 1  # pointers only 4-byte aligned
    crd = _spec.make_plan("shuffle", (2, 16, 3, 4), 2)
    assert cg.geometry(crd, 4, 16).widen == 1  # innermost output axis is a factor: a gather


def test_index_width_switches_at_2_31():
    small = _spec.make_plan("shuffle", (1, 4, 2**14, 2**14 - 1), 2)
    big = _spec.make_plan("shuffle", (2, 4, 2**14, 2**14), 2)
    assert cg.geometry(small, 1, 1).index_bits == 32
    assert cg.geometry(big, 1, 1).index_bits == 64


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("order", ["CRD", "DCR"])
@pytest.mark.parametrize(
    "factor,spatial", [(2, (3, 4)), ((2, 3), (2, 2)), (3, (5,)), ((1, 2, 2), (2, 1, 3))]
)
def test_epilogue_kernel_on_the_host(host, factor, spatial, layout, order, dtype):
    d = len(spatial)
    r = factor if isinstance(factor, tuple) else (factor,) * d
    lr_channels = 2 * math.prod(r)
    rng = np.random.default_rng(1)
    shape = (2, lr_channels, *spatial) if layout == "channels_first" else (2, *spatial, lr_channels)
    lr = rng.standard_normal(shape).astype(dtype)
    bias = rng.standard_normal(lr_channels).astype(dtype)
    plan = _spec.make_plan("shuffle", shape, factor, d, layout, order)
    geom = cg.geometry(plan, lr.itemsize, lr.itemsize)
    channel_stride = math.prod(spatial) if layout == "channels_first" else 1
    for has_bias in (True, False):
        out = np.empty(plan.out_shape, dtype=dtype)
        g = np.asarray(geom.geom_array((channel_stride, lr_channels)), dtype=np.int64)
        rc = host.sp_shuffle_bias(
            int(dtype == "float64"),
            geom.index_bits,
            geom.ndim,
            int(has_bias),
            _ptr(lr),
            _ptr(bias),
            _ptr(out),
            _ptr(g),
            ctypes.c_longlong(geom.total),
            5,
            16,
        )
        assert rc == 0
        biased = (
            lr + (bias.reshape((-1,) + (1,) * d) if layout == "channels_first" else bias) * has_bias
        )
        expected = shuffle_gather(biased, factor, spatial_dims=d, layout=layout, order=order)
        np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_nvcc_compiles_every_specialisation(tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        if os.environ.get("SUBPIXEL_REQUIRE_NVCC") == "1":
            pytest.fail("nvcc is not on PATH but SUBPIXEL_REQUIRE_NVCC=1")
        pytest.skip("nvcc is not installed")
    unit = tmp_path / "all_specialisations.cu"
    unit.write_text(cg.explicit_instantiations())
    assert unit.read_text().count("template __global__") == len(cg.all_kernel_names())
    proc = subprocess.run(
        [
            nvcc,
            "-std=c++17",
            f"-I{KERNELS}",
            "-gencode",
            "arch=compute_80,code=sm_80",
            "-gencode",
            "arch=compute_90,code=sm_90",
            "-Werror",
            "all-warnings",
            "-Xcompiler",
            "-Wall,-Wextra,-Werror",
            "-c",
            str(unit),
            "-o",
            str(tmp_path / "all.o"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_backend_imports_and_reports_no_gpu():
    import cupy

    import subpixel
    from subpixel.backends import cupy as cupy_backend

    assert cupy_backend.SOURCE_DIR.joinpath("subpixel_kernels.cuh").is_file()
    assert "cupy" in subpixel.available_backends()
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception:
        pytest.skip("no CUDA GPU: kernel launches are covered by the host emulation above")
