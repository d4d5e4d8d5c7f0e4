"""Dask specifics: lazy results, chunks that map to chunks, task graphs linear in the
number of chunks, and a run on a two-process ``dask.distributed`` cluster.  (The
conformance matrix, error battery and dtype rules run on Dask through its adapter.)"""

from __future__ import annotations

import numpy as np
import pytest

from adapters import requested_backends

if "dask" not in requested_backends():
    pytest.skip("dask is not in SUBPIXEL_TEST_BACKENDS", allow_module_level=True)

import dask.array as da

import subpixel

from reference import reference, sub_pixel_conv_ref


def counted(a: np.ndarray, chunks, calls: list):
    """A Dask array of ``a`` that records every chunk it computes."""

    def load(block, block_info=None):
        calls.append(block_info[None]["chunk-location"])
        return block

    return da.from_array(a, chunks=chunks).map_blocks(load, dtype=a.dtype)


def test_results_are_lazy():
    calls: list = []
    a = np.arange(2 * 12 * 8 * 6, dtype=np.float32).reshape(2, 12, 8, 6)
    x = counted(a, (1, 12, 4, 3), calls)
    y = subpixel.shuffle(x, 2)
    z = subpixel.sub_pixel_conv(x, np.ones((12, 12, 3, 3), np.float32), factor=2, blur=True)
    b = subpixel.blur(x)
    assert calls == [] and all(isinstance(v, da.Array) for v in (y, z, b))
    np.testing.assert_array_equal(y.compute(), reference("shuffle", a, 2))
    assert calls


def test_chunks_map_to_chunks():
    a = np.zeros((4, 12, 10, 9), np.float32)
    x = da.from_array(a, chunks=(2, 4, 5, 3))  # channel chunks are multiples of R = 4
    y = subpixel.shuffle(x, 2)
    assert y.chunks == ((2, 2), (1, 1, 1), (10, 10), (6, 6, 6))
    dcr = subpixel.shuffle(x, 2, order="DCR")  # DCR interleaves channels: one chunk
    assert dcr.chunks == ((2, 2), (3,), (10, 10), (6, 6, 6))
    u = subpixel.unshuffle(da.from_array(np.zeros((2, 3, 12, 8)), chunks=(1, 3, 6, 4)), 2)
    assert u.chunks == ((1, 1), (12,), (3, 3), (2, 2))
    odd = subpixel.unshuffle(da.from_array(np.zeros((1, 1, 12, 8)), chunks=(1, 1, 5, 3)), 2)
    assert all(c % 1 == 0 for c in odd.chunks[2])  # rechunked once to whole blocks
    np.testing.assert_array_equal(odd.compute(), np.zeros((1, 4, 6, 4)))


def test_task_graph_is_linear_in_chunks():
    sizes = []
    for n in (4, 8, 16):
        x = da.zeros((1, 4, 8 * n, 8 * n), chunks=(1, 4, 8, 8))
        y = subpixel.shuffle(x, 2)
        sizes.append(len(y.__dask_graph__()) / x.npartitions)
    assert max(sizes) < 3 and max(sizes) - min(sizes) < 0.5


def test_weights_are_in_the_graph_once():
    """Linear in bytes too: each chunk's task refers to the weights by key (a closure
    over them once put a copy in every task)."""
    import cloudpickle

    w = np.ones((64 * 4, 64, 3, 3), np.float32)  # 590 KB
    x = da.zeros((1, 64, 64, 64), chunks=(1, 64, 16, 16), dtype=np.float32)
    graph = dict(subpixel.sub_pixel_conv(x, w, np.ones(64 * 4), factor=2).__dask_graph__())
    big = [k for k, task in graph.items() if len(cloudpickle.dumps(task)) > w.nbytes / 2]
    assert len(big) == 1, big


def test_sub_pixel_conv_chunk_edges_are_exact():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 3, 17, 13)).astype(np.float64)
    w = rng.standard_normal((8, 3, 5, 4))
    b = rng.standard_normal(8)
    for chunks in ((1, 3, 4, 5), (2, 1, 6, 2), (1, 3, 17, 13)):
        x = da.from_array(a, chunks=chunks)
        got = subpixel.sub_pixel_conv(x, w, b, factor=2, crop=((1, 2), (0, 3)), blur=True).compute()
        expected = sub_pixel_conv_ref(
            a, w, b, 2, ((2, 2), (1, 2)), crop=((1, 2), (0, 3)), blur=True
        )
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_on_a_local_cluster_of_two_processes():
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        a = np.random.default_rng(1).standard_normal((4, 12, 16, 10)).astype(np.float32)
        x = da.from_array(a, chunks=(2, 12, 8, 5))
        y = subpixel.unshuffle(subpixel.shuffle(x, 2, order="DCR"), 2, order="DCR")
        w = np.random.default_rng(2).standard_normal((12, 12, 3, 3)).astype(np.float32)
        z = subpixel.sub_pixel_conv(x, w, factor=2)
        got_y, got_z = client.compute([y, z], sync=True)
        assert len(client.scheduler_info()["workers"]) == 2
    np.testing.assert_array_equal(got_y, a)
    np.testing.assert_allclose(
        got_z, sub_pixel_conv_ref(a, w, None, 2, ((1, 1), (1, 1))), rtol=1e-4, atol=1e-4
    )


def test_unknown_chunk_sizes_are_one_clear_error_or_work():
    """Chunk sizes left unknown (NaN) by boolean indexing: a shuffle and an unshuffle
    along known spatial chunks work; what needs the sizes says so in one line."""
    a = np.random.default_rng(0).random((2, 8, 6, 6)).astype(np.float32)
    x = da.from_array(a, chunks=(1, 4, 3, 3))
    h = x[:, :, da.from_array(np.ones(6, bool), chunks=3)]  # unknown along H
    n = x[da.from_array(np.ones(2, bool))]  # unknown along N
    np.testing.assert_array_equal(subpixel.unshuffle(n, 2).compute(), reference("unshuffle", a, 2))
    np.testing.assert_array_equal(subpixel.shuffle(n, 2).compute(), reference("shuffle", a, 2))
    w = np.ones((12, 8, 3, 3), np.float32)
    for call, name in (
        (lambda: subpixel.unshuffle(h, 2), "unshuffle"),
        (lambda: subpixel.sub_pixel_conv(n, w, factor=2), "sub_pixel_conv"),
    ):
        with pytest.raises(
            ValueError, match=rf"^{name} needs the chunk sizes of axis \d.*compute_chunk_sizes"
        ):
            call()


def test_chunks_dask_cannot_assemble_are_one_clear_error():
    torch = pytest.importorskip("torch")
    a = np.random.default_rng(0).random((2, 8, 6, 6)).astype(np.float32)
    x = da.from_array(a, chunks=(1, 4, 3, 3)).map_blocks(torch.from_numpy, meta=a[:0, :0, :0, :0])
    w = np.ones((12, 8, 3, 3), np.float32)
    for call in (
        lambda: subpixel.shuffle(x, 2).compute(),
        lambda: subpixel.sub_pixel_conv(x, w, factor=2).compute(),
    ):
        with pytest.raises(
            TypeError, match=r"chunks must be NumPy or CuPy arrays; this one holds torch\.Tensor"
        ):
            call()


def test_array_api_arrays_on_another_device():
    xp = pytest.importorskip("array_api_strict")
    device = xp.Device("device1")
    rng = np.random.default_rng(0)
    a, w = rng.random((1, 4, 5, 5), np.float32), rng.random((8, 4, 3, 3), np.float32)
    y = subpixel.sub_pixel_conv(
        xp.asarray(a, device=device), xp.asarray(w, device=device), factor=2, padding="same"
    )
    assert y.device == device
    back = np.asarray(xp.asarray(y, device=xp.Device("CPU_DEVICE")))
    np.testing.assert_allclose(
        back, subpixel.sub_pixel_conv(a, w, factor=2, padding="same"), atol=1e-5
    )
