"""Images larger than memory (docs/benchmarks.md, docs/scaling.md): ESPCN x3 from a Zarr
store to a Zarr store with `subpixel upscale`, on a dask.distributed LocalCluster of
N single-threaded worker processes: wall time, throughput and the peak resident
memory of the whole process tree (client, scheduler, workers), sampled every 0.2 s.
Then a crop's output is checked to be identical to the in-memory upscale.

    python benchmarks/bench_large.py --size 20000 --workers 2
    python benchmarks/bench_large.py --size 6144 --workers 1 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _timing import machine_line, table  # noqa: E402


def make_input(path: str, size: int) -> None:
    """A smooth RGB test card (compressible, like a photograph), written chunk by chunk."""
    import dask.array as da

    def card(block_info=None):
        (r0, r1), (c0, c1), _ = block_info[None]["array-location"]
        y, x = np.mgrid[r0:r1, c0:c1].astype(np.float32)
        rgb = [np.sin(x / 37.0 + k) * np.cos(y / 53.0 - k) for k in range(3)]
        return (127.5 + 127.5 * np.stack(rgb, axis=-1)).astype(np.uint8)

    image = da.map_blocks(card, chunks=(_chunks(size), _chunks(size), (3,)), dtype=np.uint8)
    image.to_zarr(path)


def _chunks(size: int, step: int = 2048) -> tuple[int, ...]:
    return tuple(min(step, size - a) for a in range(0, size, step))


def peak_rss(pid: int, stop: threading.Event, out: list) -> None:
    import psutil

    root = psutil.Process(pid)
    peak, largest = 0, 0
    while not stop.is_set():
        try:
            procs = [root, *root.children(recursive=True)]
            sizes = [p.memory_info().rss for p in procs if p.is_running()]
            peak, largest = max(peak, sum(sizes)), max(largest, *sizes)
        except psutil.Error:
            pass
        time.sleep(0.2)
    out.extend((peak, largest))


def run_upscale(src: str, dst: str, workers: int, chunk: int) -> tuple[float, int, int]:
    """`subpixel upscale` in a child process that starts its own LocalCluster."""
    code = (
        "import sys\n"
        "from distributed import LocalCluster\n"
        "from subpixel import cli\n"
        f"with LocalCluster(n_workers={workers}, threads_per_worker=1, processes=True,"
        " dashboard_address=None, memory_limit='4GiB') as cluster:\n"
        f"    code = cli.main(['upscale', {src!r}, {dst!r}, '--scale', '3', '--tile', '{chunk}',"
        " '--scheduler', cluster.scheduler_address, '--force'])\n"
        "sys.exit(code)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    stop, peak = threading.Event(), []
    sampler = threading.Thread(target=peak_rss, args=(proc.pid, stop, peak))
    sampler.start()
    proc.wait()
    stop.set()
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"upscale failed with {proc.returncode}")
    return time.perf_counter() - start, peak[0], peak[1]


def check_crop(src: str, dst: str, size: int) -> bool:
    """The output of a crop, upscaled by itself lazily and in memory: identical."""
    import zarr

    from subpixel.models import ESPCN, upscale_image
    from subpixel.models.large import upscale_lazy

    crop = zarr.open_array(src)[: min(size, 1500), : min(size, 1500)]
    model = ESPCN.pretrained(3)
    lazy = upscale_lazy(crop, model, chunk=512).compute()
    whole = upscale_image(crop, model)
    del dst
    return bool(np.array_equal(lazy, whole))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument(
        "--dir", default=None, help="where the stores go (default: a temporary folder)"
    )
    args = parser.parse_args()
    folder = args.dir or tempfile.mkdtemp(prefix="subpixel-large-")
    src, dst = os.path.join(folder, "in.zarr"), os.path.join(folder, "out.zarr")
    if not os.path.isdir(src):
        make_input(src, args.size)
    gib = 2**30
    rows = []
    for n in args.workers:
        seconds, peak, largest = run_upscale(src, dst, n, args.chunk)
        lr = args.size * args.size
        rows.append(
            [
                f"{args.size} x {args.size} -> {3 * args.size} x {3 * args.size}",
                str(n),
                f"{seconds:.0f}",
                f"{lr / seconds / 1e6:.3f}",
                f"{peak / gib:.2f}",
                f"{largest / gib:.2f}",
            ]
        )
        print(rows[-1], flush=True)
    same = check_crop(src, dst, args.size)
    print(f"ESPCN x3, Zarr to Zarr, chunks of {args.chunk} LR pixels; {machine_line()}")
    print(
        f"input {args.size * args.size * 3 / 1e9:.2f} GB, output {9 * args.size * args.size * 3 / 1e9:.2f} GB (uint8)"
    )
    header = [
        "image (LR -> HR)",
        "workers",
        "seconds",
        "LR Mpx/s",
        "peak RSS, GiB (all processes)",
        "largest process, GiB",
    ]
    print(table(rows, header))
    print(
        f"a 1500 x 1500 crop upscaled lazily (chunks of 512) equals the in-memory upscale: {same}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
