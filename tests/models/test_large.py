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


@pytest.mark.exact
@pytest.mark.parametrize("shape", [(1, 1), (3, 40), (260, 3), (20, 130), (131, 258), (4, 4)])
def test_any_size_is_the_in_memory_upscale(shape):
    """Images thinner than the halo (Dask's overlap refused them), and a last chunk
    thinner than the halo (Dask rechunked it off the block grid: wrong pixels), give
    the in-memory pixels."""
    model = ESPCN.pretrained(2)
    img = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    got = upscale_lazy(img, model, chunk=128).compute()
    np.testing.assert_array_equal(got, upscale_image(img, model))


def test_tiny_zarr_and_png_agree(tmp_path):
    img = np.full((3, 40, 3), 7, np.uint8)
    z = zarr.create_array(str(tmp_path / "s.zarr"), shape=img.shape, dtype="uint8")
    z[:] = img
    image.write_image(tmp_path / "s.png", img)
    for src, dst in (("s.png", "o.png"), ("s.zarr", "o.zarr")):
        proc = run("upscale", tmp_path / src, tmp_path / dst)
        assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(
        zarr.open_array(str(tmp_path / "o.zarr"))[:], image.read_image(tmp_path / "o.png")
    )


def test_one_dtype_rule_for_both_paths(tmp_path):
    """float16 is upscaled by both paths, alike; int16 is refused by both, alike."""
    model = ESPCN.pretrained(2)
    img = (np.random.default_rng(1).random((30, 20)) * 2).astype(np.float16)
    lazy = upscale_lazy(img, model).compute()
    assert lazy.dtype == np.float16
    np.testing.assert_array_equal(lazy, upscale_image(img, model))
    z = zarr.create_array(str(tmp_path / "h.zarr"), shape=img.shape, dtype="float16")
    z[:] = img
    proc = run("upscale", tmp_path / "h.zarr", tmp_path / "o.zarr", "--scale", "2")
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "o.zarr"))[:], lazy)
    wrong = np.zeros((5, 5), np.int16)
    messages = set()
    for call in (lambda: upscale_image(wrong, model), lambda: upscale_lazy(wrong, model)):
        with pytest.raises(ValueError) as info:
            call()
        messages.add(str(info.value))
    assert len(messages) == 1 and "uint8, uint16 or float" in messages.pop()


def test_force_onto_a_file_or_a_folder(tmp_path, sample):
    """--force replaces a regular file named x.zarr and leaves nothing hidden behind; a
    folder that is not a Zarr store is never replaced, even with --force."""
    src = tmp_path / "in.png"
    image.write_image(src, sample[:40, :50])
    (tmp_path / "x.zarr").write_bytes(b"a file, not a store")
    proc = run("upscale", src, tmp_path / "x.zarr", "--scale", "2", "--force")
    assert proc.returncode == 0, proc.stderr
    assert zarr.open_array(str(tmp_path / "x.zarr")).shape == (80, 100, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "x.zarr"]
    folder = tmp_path / "photos.zarr"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"precious")
    proc = run("upscale", src, folder, "--force")
    assert proc.returncode == 2 and "not a Zarr store; it is not replaced" in proc.stderr
    assert (folder / "holiday.jpg").read_bytes() == b"precious"


def test_an_unreachable_scheduler_is_named(tmp_path, sample):
    pytest.importorskip("distributed")
    z = zarr.create_array(str(tmp_path / "in.zarr"), shape=(8, 8, 3), dtype="uint8")
    z[:] = sample[:8, :8]
    address = "tcp://127.0.0.1:1"
    proc = run("upscale", tmp_path / "in.zarr", tmp_path / "o.zarr", "--scheduler", address)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"subpixel: error: {address}: cannot reach a dask scheduler")
    assert not (tmp_path / "o.zarr").exists()


def test_a_store_left_by_a_kill_is_swept(tmp_path, sample):
    """kill -9 while the store is complete but not yet renamed: the temporary store
    stays; the next run removes it and writes the output."""
    import signal
    import time

    z = zarr.create_array(str(tmp_path / "in.zarr"), shape=(40, 50, 3), dtype="uint8")
    z[:] = sample[:40, :50]
    ready = tmp_path / "ready"
    held = f"""
import os, pathlib, sys, time
rename = os.replace
def held(a, b):
    if str(a).endswith(".tmp.zarr"):
        pathlib.Path({str(ready)!r}).touch()
        time.sleep(600)
    rename(a, b)
os.replace = held
from subpixel.cli import main
sys.exit(main(sys.argv[1:]))
"""
    args = ["upscale", str(tmp_path / "in.zarr"), str(tmp_path / "o.zarr"), "--scale", "2"]
    proc = subprocess.Popen([sys.executable, "-c", held, *args])
    try:
        deadline = time.monotonic() + 300  # a bound on the wait, not a measurement
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    hidden = [p.name for p in tmp_path.iterdir() if p.name.startswith(".o.zarr.")]
    assert len(hidden) == 1 and hidden[0].endswith(".tmp.zarr")
    done = run(*args)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.zarr", "o.zarr", "ready"]


@pytest.mark.exact
def test_zarr_in_image_file_out(tmp_path, sample):
    """A Zarr store upscaled into a PNG: the chunks are pasted into the output image as
    they are made (never the whole HR array at once), the in-memory pixels."""
    z = zarr.create_array(
        str(tmp_path / "in.zarr"), shape=sample.shape, chunks=(100, 100, 3), dtype="uint8"
    )
    z[:] = sample
    proc = run(
        "upscale", tmp_path / "in.zarr", tmp_path / "out.png", "--scale", "2", "--tile", "128"
    )
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(
        image.read_image(tmp_path / "out.png"), upscale_image(sample, ESPCN.pretrained(2))
    )
