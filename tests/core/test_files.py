"""subpixel._core.files: weight files read strictly (a malformed or hostile file is one
``ValueError("<path>: <reason>")``, never a raw error, never a huge allocation) and
every write atomic (a failure leaves no file behind)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import subpixel
from subpixel._core import files as _files

from hostile import HOSTILE_SAFETENSORS, W, evil_pickle, safetensors_file


@pytest.mark.parametrize("case", HOSTILE_SAFETENSORS, ids=str)
def test_hostile_safetensors_are_one_clear_error(tmp_path, case):
    path = safetensors_file(tmp_path / "bad.safetensors", **HOSTILE_SAFETENSORS[case])
    with pytest.raises(ValueError, match=rf"^{tmp_path}/bad\.safetensors: "):
        _files.read_all(path)
    with pytest.raises(ValueError, match=rf"^{tmp_path}/bad\.safetensors: "):
        subpixel.SubPixelConv.load(path)


@pytest.mark.parametrize(
    "blob", [b"", b"\x01", b"\xff" * 8 + b"junk", struct.pack("<Q", 10**12) + b"{}"], ids=repr
)
def test_truncated_or_lying_header_length(tmp_path, blob):
    path = tmp_path / "short.safetensors"
    path.write_bytes(blob)
    with pytest.raises(ValueError, match=r"short\.safetensors: not a valid safetensors file"):
        _files.read_all(path)


def test_a_large_sparse_file_is_not_read_whole(tmp_path):
    """The reader memory-maps: a 4 GiB file holding a 16-byte tensor costs nothing."""
    import resource

    path = tmp_path / "big.safetensors"
    h = json.dumps(
        {"w": W, "pad": {"dtype": "U8", "shape": [4 << 30], "data_offsets": [16, 16 + (4 << 30)]}}
    )
    raw = h.encode() + b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + np.arange(4, dtype="<f4").tobytes())
        f.truncate(8 + len(raw) + 16 + (4 << 30))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with _files.open_tensors(path) as f:
        np.testing.assert_array_equal(f["w"], np.arange(4, dtype=np.float32))
        assert f.shape("pad") == (4 << 30,)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before  # KiB
    assert grown < 256 * 1024


def test_bfloat16_widens_exactly_and_big_endian_round_trips(tmp_path):
    bits = np.array([0x3F80, 0xC040, 0x7F80], "<u2")  # 1.0, -3.0, inf in bfloat16
    h = json.dumps({"w": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]}}).encode()
    path = safetensors_file(tmp_path / "bf16.safetensors", raw=h, data=bits.tobytes())
    arrays, _ = _files.read_all(path)
    np.testing.assert_array_equal(arrays["w"], np.array([1.0, -3.0, np.inf], np.float32))
    big = np.arange(6, dtype=">f4").reshape(2, 3)
    for suffix in (".safetensors", ".npz"):
        _files.write_tensors(tmp_path / f"be{suffix}", {"w": big})
        back, _ = _files.read_all(tmp_path / f"be{suffix}")
        np.testing.assert_array_equal(back["w"], big)
        assert back["w"].dtype == np.dtype("=f4")


def _npz_with_member(path, name, header_shape, payload, dtype="<f8"):
    header = {"descr": dtype, "fortran_order": False, "shape": header_shape}
    text = repr(header).encode()
    text += b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    member = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + payload
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, member)
    return path


def test_npz_header_that_lies_about_its_size(tmp_path):
    """A 2 KB member declaring 8 TB is refused from its header, before any allocation."""
    path = _npz_with_member(tmp_path / "lie.npz", "weight.npy", (10**12,), bytes(64))
    with pytest.raises(
        ValueError, match=r"lie\.npz: array 'weight' declares shape \(1000000000000,\)"
    ):
        _files.open_tensors(path)


@pytest.mark.parametrize(
    "make",
    [
        "text",
        "truncated",
        "npy-renamed",
        "crc-damaged",
        "object-array",
        "not-npy-member",
        "metadata-not-json",
    ],
)
def test_hostile_npz_are_one_clear_error(tmp_path, make):
    path = tmp_path / "bad.npz"
    good = tmp_path / "good.npz"
    np.savez(good, weight=np.arange(1000.0))
    if make == "text":
        path.write_text("hello")
    elif make == "truncated":
        path.write_bytes(good.read_bytes()[:-200])
    elif make == "npy-renamed":
        np.save(tmp_path / "x.npy", np.zeros(3))
        path.write_bytes((tmp_path / "x.npy").read_bytes())
    elif make == "crc-damaged":
        np.savez(path, weight=np.arange(1000.0))
        blob = bytearray(path.read_bytes())
        blob[200] ^= 0xFF
        path.write_bytes(bytes(blob))
    elif make == "object-array":
        np.savez(path, weight=np.array([{"x": 1}], dtype=object))
    elif make == "not-npy-member":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("evil.pkl", b"\x80\x04.")
    else:
        np.savez(path, weight=np.zeros(3), __metadata__=np.array("{not json"))
    with pytest.raises(ValueError, match=r"^.*bad\.npz: "):
        arrays, _ = _files.read_all(path)
        raise AssertionError(f"read {list(arrays)}")  # pragma: no cover


CONFIG = subpixel.SubPixelConv(4, 3, 3, 2, seed=0).config()


@pytest.mark.parametrize(
    "config,pattern",
    [
        ({k: v for k, v in CONFIG.items() if k != "factor"}, "lacks factor"),
        ({**CONFIG, "dtype": "float32"}, "unknown key"),
        ({**CONFIG, "init": "icnr"}, "unknown key"),
        ([1, 2], "must be a JSON object"),
        ("text", "must be a JSON object"),
        (None, "must be a JSON object"),
        ({**CONFIG, "in_channels": 7}, "contradict"),
        ({**CONFIG, "factor": [2.5, 2]}, "factor"),
        ({**CONFIG, "blur": "False"}, "`blur` must be True or False"),
        ({**CONFIG, "padding": [[10**6, 10**6], [1, 1]]}, "`padding` must be at most"),
        ({**CONFIG, "format": "other/1"}, "format"),
        ({**CONFIG, "order": "crd"}, "`order`"),
    ],
    ids=range(12),
)
@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_hostile_layer_configs(tmp_path, config, pattern, suffix):
    path = tmp_path / f"layer{suffix}"
    w = np.zeros((12, 4, 3, 3), np.float32)
    _files.write_tensors(
        path, {"weight": w, "bias": np.zeros(12, np.float32)}, {"subpixel": json.dumps(config)}
    )
    with pytest.raises(ValueError, match=rf"^{path}: .*{pattern}"):
        subpixel.SubPixelConv.load(path)


def test_invalid_json_config_names_the_file(tmp_path):
    path = tmp_path / "layer.safetensors"
    _files.write_tensors(
        path, {"weight": np.zeros((4, 1, 1, 1), np.float32)}, {"subpixel": "{oops"}
    )
    with pytest.raises(ValueError, match=rf"^{path}: the layer config is not JSON"):
        subpixel.SubPixelConv.load(path)


def test_files_of_subpixel_0_1_still_load(tmp_path):
    """0.1 wrote the config without `bias`, and .npz configs as a `config` member."""
    layer = subpixel.SubPixelConv(2, 3, 3, 2, seed=0, bias=False)
    old = {k: v for k, v in layer.config().items() if k != "bias"}
    np.savez(tmp_path / "old.npz", config=np.array(json.dumps(old)), weight=layer.weight)
    loaded = subpixel.SubPixelConv.load(tmp_path / "old.npz")
    assert loaded.bias is None and loaded.config() == layer.config()


def test_load_needs_no_optional_package(tmp_path):
    """save and load work with NumPy and the package's own dependencies only."""
    code = (
        "import subpixel, numpy as np, sys; "
        "l = subpixel.SubPixelConv(2, 1, 3, 2, seed=0); l.save(sys.argv[1]); "
        "print(subpixel.SubPixelConv.load(sys.argv[1]).config() == l.config())"
    )
    path = tmp_path / "l.safetensors"
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    assert out.stdout.strip() == "True", out.stderr


def test_a_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"precious")

    def fail(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        _files.atomic_write(target, fail)
    assert target.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_full_disk_leaves_no_partial_file(tmp_path, suffix):
    """With the file-size limit at 64 KiB (a full disk), saving a larger layer fails
    with one error naming the file and leaves no file at all."""
    code = (
        "import resource, sys, numpy as np, subpixel\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))\n"
        "import signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "l = subpixel.SubPixelConv.from_weights(np.zeros((4, 64, 3, 300), np.float32), factor=2)\n"
        "try:\n    l.save(sys.argv[1])\nexcept ValueError as e:\n    print('ERR', e)\n"
    )
    path = tmp_path / f"big{suffix}"
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    assert out.stdout.startswith(f"ERR {path}: "), out.stdout + out.stderr
    assert list(tmp_path.iterdir()) == []


def test_writers_refuse_what_they_cannot_store(tmp_path):
    with pytest.raises(ValueError, match=r"cannot store tensor 'c' of dtype complex64"):
        _files.write_tensors(tmp_path / "c.safetensors", {"c": np.zeros(2, np.complex64)})
    with pytest.raises(ValueError, match=r"unknown weights format"):
        _files.write_tensors(tmp_path / "c.txt", {"c": np.zeros(2)})
    assert list(tmp_path.iterdir()) == []


def test_pickles_need_permission_and_never_run_code(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"
    evil = evil_pickle(tmp_path / "evil.pt", marker)
    with pytest.raises(ValueError, match=r"evil\.pt: PyTorch checkpoints are pickle files"):
        _files.open_tensors(evil)
    with pytest.raises(ValueError, match=r"evil\.pt: not a PyTorch checkpoint"):
        _files.open_tensors(evil, allow_pickle=True)
    assert not marker.exists()
    text = tmp_path / "text.pt"
    text.write_text("hello")
    with pytest.raises(ValueError, match=r"text\.pt: not a PyTorch checkpoint"):
        _files.open_tensors(text, allow_pickle=True)
    nested = tmp_path / "ckpt.pt"
    torch.save(
        {"model": {"conv.weight": torch.ones(2, 2, dtype=torch.bfloat16)}, "epoch": 3}, nested
    )
    with _files.open_tensors(nested, allow_pickle=True) as f:
        assert f.keys() == ["model.conv.weight"]
        assert f["model.conv.weight"].dtype == np.float32


def test_keras_files_read_only_what_is_asked(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "w.weights.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("layers/conv2d/vars/0", data=np.ones((3, 3, 2, 4), np.float32))
        f.create_dataset("huge", shape=(10**12,), dtype="f8")  # never allocated on disk
    with _files.open_tensors(path) as f:
        assert f.shape("huge") == (10**12,)
        assert f["layers/conv2d/vars/0"].shape == (3, 3, 2, 4)
        with pytest.raises(ValueError, match=r"dataset 'huge' declares"):
            f["huge"]
    for name, blob in (("bad.h5", b"not hdf5"), ("bad.keras", b"not a zip")):
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(ValueError, match=rf"{name}: not a"):
            _files.open_tensors(tmp_path / name)
    with zipfile.ZipFile(tmp_path / "empty.keras", "w") as z:
        z.writestr("config.json", "{}")
    with pytest.raises(ValueError, match=r"empty\.keras: not a Keras model file"):
        _files.open_tensors(tmp_path / "empty.keras")


def test_keras_datasets_stored_outside_the_file_are_refused(tmp_path):
    """HDF5 external storage would read any local file into the weights."""
    h5py = pytest.importorskip("h5py")
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"ROOT SECRET KEY MATERIAL 1234567890abcde")
    path = tmp_path / "leak.weights.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "layers/conv2d/vars/0", shape=(1, 1, 1, 40), dtype="u1", external=[(str(secret), 0, 40)]
        )
    with (
        _files.open_tensors(path) as f,
        pytest.raises(ValueError, match="refers to data outside the file"),
    ):
        f["layers/conv2d/vars/0"]


def test_many_keys_are_checked_in_linear_time(tmp_path, monkeypatch):
    """The duplicate-key check is linear: each of 40k header keys is hashed and compared
    a bounded number of times (a quadratic check compares each with every other),
    counted on keys that count, with and without a duplicate."""
    import json

    calls = [0]

    class Key(str):
        __slots__ = ()

        def __hash__(self) -> int:
            calls[0] += 1
            return str.__hash__(self)

        def __eq__(self, other: object) -> bool:
            calls[0] += 1
            return str.__eq__(self, other)

    loads = json.loads

    def counting_loads(text, *, object_pairs_hook, **kwargs):
        def hook(pairs):
            return object_pairs_hook([(Key(k), v) for k, v in pairs])

        return loads(text, object_pairs_hook=hook, **kwargs)

    monkeypatch.setattr(_files.json, "loads", counting_loads)
    n = 40000
    entry = {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}
    path = safetensors_file(tmp_path / "many.safetensors", {f"t{i}": entry for i in range(n)}, b"")
    with _files.open_tensors(path) as f:
        assert len(f.keys()) == n
        with pytest.raises(ValueError, match=r"\.\.\. \(39980 more\)"):
            f["missing"]
    assert 0 < calls[0] <= 10 * n, calls[0]  # 4 keys per tensor: its name and 3 fields
    calls[0] = 0
    raw = json.dumps({f"t{i}": entry for i in range(n)})[:-1] + f', "t7": {json.dumps(entry)}}}'
    duplicated = safetensors_file(tmp_path / "dup.safetensors", raw=raw.encode(), data=b"")
    with pytest.raises(ValueError, match=r"duplicate key\(s\) in the header: t7\)$"):
        _files.open_tensors(duplicated)
    assert 0 < calls[0] <= 10 * n, calls[0]


def test_written_files_follow_the_umask_and_keep_a_replaced_files_mode(tmp_path):
    layer = subpixel.SubPixelConv(2, 1, 3, 2, seed=0)
    old = os.umask(0o022)
    try:
        layer.save(tmp_path / "new.safetensors")
        assert (tmp_path / "new.safetensors").stat().st_mode & 0o777 == 0o644
        existing = tmp_path / "old.npz"
        existing.write_bytes(b"x")
        existing.chmod(0o664)
        layer.save(existing)
        assert existing.stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(old)


def test_keras_config_nested_too_deep_is_harmless(tmp_path):
    pytest.importorskip("h5py")
    import io

    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f.create_dataset("layers/conv2d/vars/0", data=np.ones((3, 3, 1, 4), np.float32))
    with zipfile.ZipFile(tmp_path / "deep.keras", "w") as z:
        z.writestr("config.json", "[" * 100000 + "]" * 100000)
        z.writestr("model.weights.h5", buffer.getvalue())
    with _files.open_tensors(tmp_path / "deep.keras") as f:
        assert f.layer_group("conv2d") == "layers/conv2d"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_are_swept_only_when_ours_dead_and_old(tmp_path):
    """A write of ``o.png`` removes what a killed write of ``o.png`` left: hidden
    entries named as atomic_write names them, whose process is gone and which are older
    than this process.  A live writer's, a newer one, another target's, or a name of the
    user's stay."""
    import time

    dead, old = _dead_pid(), time.time() - 3600
    names = {
        f".o.png.{dead}.abcd_123.tmp.png": True,  # a killed write of o.png
        f".o.png.{dead}.zzzzzzzz.tmp.png.old": True,  # ... and a replaced one it was removing
        f".o.png.{os.getpid()}.abcdefgh.tmp.png": False,  # a live writer (this process)
        f".o.png.{os.getppid()}.abcdefgh.tmp.png": False,  # another live process
        f".x.png.{dead}.abcdefgh.tmp.png": False,  # another target
        f".o.png.{dead}.abcdefgh.tmp.jpg": False,  # another suffix
        ".o.png.backup": False,  # the user's own
        f".o.png.{dead}.ABCDEFGH.tmp.png": False,  # not a name tempfile makes
    }
    for name in names:
        (tmp_path / name).write_bytes(b"partial")
        os.utime(tmp_path / name, (old, old))
    newer = tmp_path / f".o.png.{dead}.newernew.tmp.png"  # modified after this process began
    newer.write_bytes(b"?")
    store = tmp_path / f".o.png.{dead}.store123.tmp.png"  # a folder (a Zarr store's kind)
    (store / "c").mkdir(parents=True)
    os.utime(store, (old, old))
    _files.atomic_write(tmp_path / "o.png", lambda tmp: open(tmp, "wb").close())
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {"o.png", newer.name} | {n for n, swept in names.items() if not swept}


def test_a_kill_mid_write_is_swept_by_the_next_write(tmp_path):
    """SIGKILL cannot be caught: the temporary file stays.  The next write of the same
    file removes it (its writer is gone) and writes the complete file."""
    import signal
    import time

    ready = tmp_path / "ready"
    script = f"""
import pathlib, time
from subpixel._core import files
def write(tmp):
    open(tmp, "wb").write(b"partial")
    pathlib.Path({str(ready)!r}).touch()
    time.sleep(600)
files.atomic_write({str(tmp_path / "w.npz")!r}, write)
"""
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 120  # a bound on the wait, not a measurement
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".w.npz.")]
    assert len(leftovers) == 1 and leftovers[0].startswith(f".w.npz.{proc.pid}.")
    # the next run (a new process: the leftover is older than it)
    code = "import numpy as np; from subpixel._core import files; " + (
        f"files.write_tensors({str(tmp_path / 'w.npz')!r}, {{'a': np.ones(2)}})"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ready", "w.npz"]
    assert _files.read_all(tmp_path / "w.npz")[0]["a"].tolist() == [1.0, 1.0]
