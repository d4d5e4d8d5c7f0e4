"""Images larger than memory: `subpixel upscale` on Zarr (and TIFF) through Dask, chunk
by chunk, identical to the in-memory upscale; on a two-process cluster too."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from adapters import requested_backends

if "dask" not in requested_backends():
    pytest.skip("dask is not in SUBPIXEL_TEST_BACKENDS", allow_module_level=True)
zarr = pytest.importorskip("zarr")

from subpixel import image
from subpixel.models import ESPCN, upscale_image
from subpixel.models.espcn import SAMPLE
from subpixel.models.large import upscale_lazy


@pytest.fixture(scope="module")
def sample():
    return image.read_image(SAMPLE)


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "subpixel", *map(str, args)], capture_output=True, text=True
    )


@pytest.mark.exact
@pytest.mark.parametrize("chunk", [128, 256, 1024])
def test_lazy_upscale_is_the_in_memory_upscale(sample, chunk):
    """Every chunk runs the in-memory path's own region function on the global block
    grid: bit-identical, whatever the chunking (RGB, RGBA and grey)."""
    model = ESPCN.pretrained(3)
    for img in (sample, np.concatenate([sample, sample[..., :1]], -1), sample[..., 0]):
        lazy = upscale_lazy(img, model, chunk=chunk)
        np.testing.assert_array_equal(lazy.compute(), upscale_image(img, model))


@pytest.mark.exact
def test_zarr_in_zarr_out_and_tiff_in(tmp_path, sample):
    z = zarr.create_array(
        str(tmp_path / "in.zarr"), shape=sample.shape, chunks=(64, 100, 3), dtype="uint8"
    )
    z[:] = sample
    proc = run(
        "upscale", tmp_path / "in.zarr", tmp_path / "out.zarr", "--scale", "2", "--tile", "128"
    )
    assert proc.returncode == 0, proc.stderr
    whole = upscale_image(sample, ESPCN.pretrained(2))
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "out.zarr"))[:], whole)
    proc = run("upscale", tmp_path / "in.zarr", tmp_path / "out.zarr")
    assert proc.returncode == 2 and "exists; pass --force" in proc.stderr
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "in.tif", sample, tile=(64, 64))
    proc = run("upscale", tmp_path / "in.tif", tmp_path / "t.zarr", "--scale", "2")
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "t.zarr"))[:], whole)


def test_on_an_existing_cluster(tmp_path, sample):
    distributed = pytest.importorskip("distributed")
    z = zarr.create_array(
        str(tmp_path / "in.zarr"), shape=sample.shape, chunks=(128, 128, 3), dtype="uint8"
    )
    z[:] = sample
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        proc = run(
            "upscale",
            tmp_path / "in.zarr",
            tmp_path / "out.zarr",
            "--scale",
            "3",
            "--tile",
            "128",
            "--scheduler",
            cluster.scheduler_address,
        )
    assert proc.returncode == 0, proc.stderr
    assert "on tcp://" in proc.stdout
    np.testing.assert_array_equal(
        zarr.open_array(str(tmp_path / "out.zarr"))[:], upscale_image(sample, ESPCN.pretrained(3))
    )


def test_lazy_errors_are_one_line(tmp_path):
    proc = run("upscale", tmp_path / "none.zarr", tmp_path / "o.zarr")
    assert (
        proc.returncode == 2
        and len(proc.stderr.strip().splitlines()) == 1
        and "no such Zarr store" in proc.stderr
    )
    proc = run("upscale", "sample", tmp_path / "o.png", "--scheduler", "tcp://127.0.0.1:1")
    assert proc.returncode == 2 and "--scheduler runs .zarr" in proc.stderr


def test_the_task_graph_grows_linearly():
    """Every chunk's task holds numbers and the model's key, not the model or the
    input's graph: a 20000 x 20000 image at chunks of 512 once put 270 KB of pickled
    closure in each of its 1600 tasks (peak memory 4.3 GiB on a 2-worker cluster)."""
    import cloudpickle
    import dask.array as da

    model = ESPCN.pretrained(3)
    sizes = {}
    for n in (1024, 4096):
        lr = da.zeros((n, n, 3), dtype=np.uint8, chunks=(2048, 2048, 3))
        graph = dict(upscale_lazy(lr, model, chunk=256).__dask_graph__())
        pickled = sorted(len(cloudpickle.dumps(task)) for task in graph.values())
        assert pickled[-2] < 8_000  # all but the one task holding the model are small
        sizes[n] = (len(graph), sum(pickled[:-1]))
    (tasks_small, bytes_small), (tasks_big, bytes_big) = sizes[1024], sizes[4096]
    assert bytes_big / tasks_big < 2 * bytes_small / tasks_small  # bytes per task stay flat
