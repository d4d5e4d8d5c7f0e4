"""The command line under hostile but ordinary input: every problem with what the
user passed is one line ``subpixel: error: ...`` and exit 2, and no command ever
destroys or half-writes a file."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from subpixel import SubPixelConv, image

from adapters import requested_backends
from commands import main, one_line, run
from hostile import HOSTILE_SAFETENSORS, evil_pickle, safetensors_file

# ---------------------------------------------------------------------------
# convert: hostile files, contradicting flags, never destroying data
# ---------------------------------------------------------------------------


def _hostile_weight_files(tmp_path) -> dict[str, object]:
    files: dict[str, object] = {}
    for case, kwargs in HOSTILE_SAFETENSORS.items():
        files[f"st-{case}"] = safetensors_file(tmp_path / f"{case}.safetensors", **kwargs)
    good = tmp_path / "good.npz"
    np.savez(good, weight=np.ones((12, 4, 3, 3), np.float32))
    blobs = {
        "npz-text.npz": b"hello",
        "npz-truncated.npz": good.read_bytes()[:-100],
        "keras-not-zip.keras": b"not a zip",
        "h5-not-hdf5.weights.h5": b"not hdf5",
        "pt-text.pt": b"hello",
        "st-empty.safetensors": b"",
    }
    for name, blob in blobs.items():
        (tmp_path / name).write_bytes(blob)
        files[name] = tmp_path / name
    np.save(tmp_path / "x.npy", np.zeros(3))
    (tmp_path / "npy-renamed.npz").write_bytes((tmp_path / "x.npy").read_bytes())
    files["npy-renamed"] = tmp_path / "npy-renamed.npz"
    np.savez(tmp_path / "objects.npz", w=np.array([{"x": 1}], dtype=object))
    files["objects"] = tmp_path / "objects.npz"
    with zipfile.ZipFile(tmp_path / "no-weights.keras", "w") as z:
        z.writestr("config.json", "{}")
    files["keras-no-weights"] = tmp_path / "no-weights.keras"
    for name, config in {
        "config-missing-factor": {"format": "subpixel.SubPixelConv/1", "in_channels": 4},
        "config-list": [1, 2],
        "config-unknown-key": {**SubPixelConv(4, 3, 3, 2).config(), "dtype": "x"},
        "config-contradicts": {**SubPixelConv(7, 3, 3, 2).config()},
    }.items():
        path = tmp_path / f"{name}.safetensors"
        from subpixel._core import files as _files

        _files.write_tensors(
            path, {"weight": np.zeros((12, 4, 3, 3), np.float32)}, {"subpixel": json.dumps(config)}
        )
        files[name] = path
    kinds = {
        "string": np.array(["a", "b"]),
        "complex": np.zeros((12, 4, 3, 3), np.complex64),
    }
    for name, a in kinds.items():
        np.savez(tmp_path / f"{name}.npz", weight=a)
        files[f"npz-{name}"] = tmp_path / f"{name}.npz"
    files["no-weight"] = tmp_path / "no-weight.npz"
    np.savez(files["no-weight"], bias=np.zeros(3))
    return files


# what each malformed file is refused with, after "subpixel: error: <its path>: "
REASONS = {
    "st-": r"not a valid safetensors file \(",
    "npz-text": r"not a valid \.npz file \(",
    "npz-truncated": r"not a valid \.npz file \(",
    "npy-renamed": r"not a valid \.npz file \(",
    "keras-not-zip": r"not a valid \.keras file \(",
    "h5-not-hdf5": r"not a readable HDF5 file \(|reading Keras files needs h5py",
    "pt-text": r"not a PyTorch checkpoint torch\.load can read safely|needs torch",
    "objects": r"refused: array 'w' holds pickled Python objects$",
    "keras-no-weights": r"not a Keras model file \(no model\.weights\.h5 inside\)$",
    "config-missing-factor": r"the layer config lacks out_channels, kernel_size, factor$",
    "config-list": r"the layer config must be a JSON object, not list$",
    "config-unknown-key": r"unknown key\(s\) in the layer config: dtype$",
    "config-contradicts": r"the arrays contradict the layer config: `weight` must have shape",
    "npz-string": r"cannot tell which array is the weight \(none fits\)",
    "npz-complex": r"`weight` must hold real numbers\. Received: weight\.dtype=complex64$",
    "no-weight": r"cannot tell which array is the weight \(none fits\)",
}


@pytest.mark.parametrize("readers", ["installed", "missing"])
def test_every_malformed_weights_file_is_one_line(tmp_path, capsys, monkeypatch, readers):
    if readers == "missing":  # CI's numpy environment has neither: the same lines hold there
        monkeypatch.setitem(sys.modules, "h5py", None)
        monkeypatch.setitem(sys.modules, "torch", None)
    files = _hostile_weight_files(tmp_path)
    out = tmp_path / "out.safetensors"
    for name, path in files.items():
        extra = ["--allow-pickle"] if str(path).endswith(".pt") else []
        line = one_line(capsys, "convert", path, out, "--factor", "2", *extra)
        (reason,) = [r for key, r in REASONS.items() if name.startswith(key)]
        assert re.match(rf"subpixel: error: {re.escape(str(path))}: (?:{reason})", line), (
            name,
            line,
        )
        assert not out.exists(), name


def test_a_hostile_pickle_runs_no_code(tmp_path, capsys):
    pytest.importorskip("torch")
    marker = tmp_path / "pwned"
    evil = evil_pickle(tmp_path / "evil.pt", marker)
    assert "--allow-pickle" in one_line(capsys, "convert", evil, tmp_path / "o.npz")
    assert "not a PyTorch checkpoint" in one_line(
        capsys, "convert", evil, tmp_path / "o.npz", "--allow-pickle", "--factor", "2"
    )
    assert not marker.exists()


def test_output_equal_to_input_or_existing_is_refused(tmp_path, capsys):
    layer = SubPixelConv(4, 3, 3, 2, seed=0)
    src = tmp_path / "a.safetensors"
    layer.save(src)
    before = src.read_bytes()
    assert "is the input file" in one_line(capsys, "convert", src, src, "--order", "DCR")
    assert "is the input file" in one_line(capsys, "convert", src, src, "--order", "DCR", "--force")
    os.symlink(src, tmp_path / "link.safetensors")
    one_line(capsys, "convert", src, tmp_path / "link.safetensors", "--force")
    assert src.read_bytes() == before
    dst = tmp_path / "b.npz"
    dst.write_bytes(b"precious")
    assert "exists; pass --force" in one_line(capsys, "convert", src, dst)
    assert dst.read_bytes() == b"precious"
    code, _out, _ = main(capsys, "convert", src, dst, "--force")
    assert code == 0 and SubPixelConv.load(dst).config() == layer.config()


def test_flags_that_contradict_the_file_are_errors(tmp_path, capsys):
    src = tmp_path / "a.safetensors"
    SubPixelConv(4, 3, 3, 2, seed=0, order="DCR").save(src)
    for flags in (
        ["--factor", "5"],
        ["--src-order", "CRD"],
        ["--src-layout", "keras"],
        ["--from-conv-transpose", "2"],
        ["--weight-key", "weight"],
    ):
        assert "contradict" in one_line(capsys, "convert", src, tmp_path / "o.npz", *flags)
    code, out, _ = main(
        capsys, "convert", src, tmp_path / "o.npz", "--factor", "2", "--src-order", "DCR"
    )
    assert code == 0 and "order DCR" in out  # flags that repeat the file are fine


def test_a_bias_free_conv_transpose_from_a_full_checkpoint(tmp_path, capsys):
    """DCGAN's generator: bias-free ConvTranspose2d layers next to BatchNorm's 1-D arrays."""
    torch = pytest.importorskip("torch")
    if "torch" not in requested_backends():
        pytest.skip("torch not requested")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.ConvTranspose2d(8, 4, 4, 2, 1, bias=False), torch.nn.BatchNorm2d(4)
    )
    ckpt = tmp_path / "netG.pt"
    torch.save({"epoch": 5, "model": net.state_dict()}, ckpt)
    out = tmp_path / "up.safetensors"
    msg = one_line(capsys, "convert", ckpt, out, "--allow-pickle", "--from-conv-transpose", "2")
    assert "cannot tell which array is the bias" in msg and "--layer" in msg
    code, text, err = main(
        capsys,
        "convert",
        ckpt,
        out,
        "--allow-pickle",
        "--layer",
        "model.0",
        "--no-bias",
        "--from-conv-transpose",
        "2",
        "--padding",
        "1",
    )
    assert code == 0, err
    assert "no bias" in text
    x = torch.randn(1, 8, 5, 6)
    np.testing.assert_allclose(
        SubPixelConv.load(out)(x.numpy()), net[0](x).detach().numpy(), rtol=1e-5, atol=1e-5
    )
    # and back to a .pt that loads into the user's own module under its own key names
    pt = tmp_path / "up.pt"
    code, _, err = main(capsys, "convert", out, pt, "--prefix", "up.")
    assert code == 0, err
    assert set(torch.load(pt, weights_only=True)) == {"up.weight"}


def test_keras_weights_addressed_by_layer_name(tmp_path, capsys):
    if os.environ.get("KERAS_BACKEND") not in requested_backends():
        pytest.skip("Keras is not set up in this environment")
    import keras

    from subpixel.layers.keras import SubPixelConv as KerasSubPixelConv

    inputs = keras.Input((None, None, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", name="body")(inputs)
    head = KerasSubPixelConv(2, 3, 2, order="DCR", bias_initializer="random_normal", name="head")
    model = keras.Model(inputs, head(h))
    model.save(tmp_path / "m.keras")
    out = tmp_path / "head.npz"
    code, _text, err = main(
        capsys,
        "convert",
        tmp_path / "m.keras",
        out,
        "--layer",
        "head",
        "--factor",
        "2",
        "--src-order",
        "DCR",
    )
    assert code == 0, err
    x = np.random.default_rng(0).standard_normal((1, 5, 4, 4)).astype("float32")
    expected = np.asarray(keras.ops.convert_to_numpy(head(x)))
    got = SubPixelConv.load(out)(np.moveaxis(x, -1, 1))
    np.testing.assert_allclose(np.moveaxis(got, 1, -1), expected, rtol=1e-5, atol=1e-5)
    assert "no layer 'nope'" in one_line(
        capsys, "convert", tmp_path / "m.keras", out, "--layer", "nope", "--force"
    )


def test_a_full_disk_leaves_no_partial_output(tmp_path):
    np.savez(tmp_path / "big.npz", weight=np.zeros((4, 64, 3, 300), np.float32))
    code = (
        "import resource, signal, sys; from subpixel import cli\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    for out in ("part.safetensors", "part.npz"):
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                code,
                "convert",
                str(tmp_path / "big.npz"),
                str(tmp_path / out),
                "--factor",
                "2",
            ],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(f"subpixel: error: {tmp_path / out}: "), proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.npz"]


def test_unknown_output_format_is_refused_before_reading(tmp_path, capsys):
    src = tmp_path / "a.safetensors"
    SubPixelConv(4, 3, 3, 2).save(src)
    assert "unknown output format" in one_line(capsys, "convert", src, tmp_path / "o.txt")


# ---------------------------------------------------------------------------
# upscale
# ---------------------------------------------------------------------------


@pytest.fixture
def rgb(tmp_path):
    path = tmp_path / "in.png"
    a = (np.random.default_rng(0).random((12, 10, 3)) * 255).astype(np.uint8)
    Image.fromarray(a).save(path)
    return path


def test_upscale_never_destroys_its_input(rgb, tmp_path, capsys):
    before = rgb.read_bytes()
    assert "is the input file" in one_line(capsys, "upscale", rgb, rgb, "--force")
    assert rgb.read_bytes() == before
    out = tmp_path / "out.png"
    out.write_bytes(b"precious")
    assert "exists; pass --force" in one_line(capsys, "upscale", rgb, out)
    assert out.read_bytes() == b"precious"
    code, _, err = main(capsys, "upscale", rgb, out, "--force", "--scale", "2")
    assert code == 0, err
    assert image.read_image(out).shape == (24, 20, 3)


def test_upscale_checks_everything_before_writing(rgb, tmp_path, capsys):
    out = tmp_path / "o.png"
    assert "must match" in one_line(capsys, "upscale", rgb, out, "--reference", rgb)
    assert not out.exists()
    assert "cannot be used with IN=sample" in one_line(
        capsys, "upscale", "sample", out, "--reference", rgb
    )
    bad = tmp_path / "ref.png"
    bad.write_text("not an image")
    one_line(capsys, "upscale", rgb, out, "--reference", bad)
    assert "unknown image format" in one_line(capsys, "upscale", rgb, tmp_path / "o.xyz")
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.zeros((4, 4, 4), np.uint8)).save(rgba)
    assert "JPEG cannot store" in one_line(capsys, "upscale", rgba, tmp_path / "o.jpg")
    assert not any(p.name.startswith("o") for p in tmp_path.iterdir())


def test_an_image_pillow_would_hand_to_ghostscript_runs_nothing(tmp_path, capsys):
    """EPS is an image to Pillow, decoded by running Ghostscript on the file: refused
    by its content (whatever its name), and nothing runs."""
    marker = tmp_path / "ran"
    eps = "%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n"
    eps += f"({marker}) (w) file closefile\nshowpage\n"
    for name in ("in.eps", "in.png"):
        (tmp_path / name).write_text(eps)
        line = one_line(capsys, "upscale", tmp_path / name, tmp_path / "out.png")
        assert re.search(r": not an image subpixel reads \(PNG, JPEG, ", line), line
    assert not marker.exists() and not (tmp_path / "out.png").exists()


def test_upscale_16_bit_grey_and_float_are_scaled_not_clipped(tmp_path, capsys):
    g16 = tmp_path / "g16.png"
    Image.fromarray(np.full((8, 8), 20000, np.uint16)).save(g16)
    out = tmp_path / "g16_x3.png"
    code, _, err = main(capsys, "upscale", g16, out)
    assert code == 0, err
    result = image.read_image(out)
    assert result.dtype == np.uint16 and result.shape == (24, 24)
    assert abs(int(np.median(result)) - 20000) < 200  # a flat image stays flat
    f = tmp_path / "f.tif"
    Image.fromarray(np.full((8, 8), 180.5, np.float32), mode="F").save(f)
    code, _, err = main(capsys, "upscale", f, tmp_path / "f_x2.tif", "--scale", "2")
    assert code == 0, err
    back = image.read_image(tmp_path / "f_x2.tif")
    assert back.dtype == np.float32 and abs(float(np.median(back)) - 180.5) < 2


def test_upscale_keeps_alpha(tmp_path, capsys):
    src = tmp_path / "rgba.png"
    a = np.zeros((6, 8, 4), np.uint8)
    a[..., 3] = 255
    a[:, :4, 3] = 0  # left half transparent
    Image.fromarray(a).save(src)
    code, _, err = main(capsys, "upscale", src, tmp_path / "o.png", "--scale", "2")
    assert code == 0, err
    out = image.read_image(tmp_path / "o.png")
    assert out.shape == (12, 16, 4)
    assert out[:, :6, 3].max() == 0 and out[:, 10:, 3].min() == 255
    la = tmp_path / "la.png"
    Image.fromarray(a[..., [0, 3]], mode="LA").save(la)
    code, _, err = main(capsys, "upscale", la, tmp_path / "la2.png", "--scale", "2")
    assert code == 0 and image.read_image(tmp_path / "la2.png").shape == (12, 16, 2)


def test_upscale_on_a_backend_that_cannot_run(rgb, tmp_path, capsys):
    import importlib.util

    line = one_line(capsys, "upscale", rgb, tmp_path / "o.png", "--backend", "cupy")
    if importlib.util.find_spec("cupy") is None:
        assert "not installed" in line
    else:
        assert "cannot run here" in line
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\x89PNG\r\n\x1a\n",
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 30,
        b"GIF89a",
        b"BM" + b"\x00" * 60,
    ],
    ids=["empty", "signature-only", "bad-ihdr", "gif-header", "bmp-header"],
)
def test_broken_images_are_one_line(tmp_path, capsys, blob):
    bad = tmp_path / "bad.png"
    bad.write_bytes(blob)
    assert str(bad) in one_line(capsys, "upscale", bad, tmp_path / "o.png")


def test_decompression_bomb_is_refused(tmp_path, capsys):
    bomb = tmp_path / "bomb.png"
    Image.new("L", (20000, 20000)).save(bomb, optimize=True)
    assert "bomb" in one_line(capsys, "upscale", bomb, tmp_path / "o.png").lower()


# ---------------------------------------------------------------------------
# bench, check, argument errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["bench", "--repeat", "0"],
        ["bench", "--repeat", "-3"],
        ["bench", "--shape", "1", "4", "-2", "4"],
        ["bench", "--shape", "1", "6", "4", "4"],
        ["bench", "--shape", "1", "x", "4", "4"],
        ["upscale", "in.png", "out.png", "--tile", "0"],
        ["upscale", "in.png", "out.png", "--scale", "5"],
        ["convert", "a.npz"],
        ["nonsense"],
        ["check", "--backend", "nope"],
    ],
    ids=str,
)
def test_bad_arguments_are_one_line(args):
    proc = run(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("subpixel: error: "), proc.stderr


def test_check_of_a_named_backend_that_cannot_run_fails(capsys):
    import importlib.util

    code, out, _ = main(capsys, "check", "--backend", "cupy")
    assert code == 1
    assert (
        "not installed" if importlib.util.find_spec("cupy") is None else "cannot run here"
    ) in out
    assert "check FAILED" in out


@pytest.mark.parametrize(
    "mode,suffix",
    [("RGBA", ".bmp"), ("RGBA", ".gif"), ("RGBA", ".ppm"), ("I;16", ".gif"), ("I;16", ".webp")],
)
def test_formats_that_would_lose_depth_or_alpha_are_refused(tmp_path, capsys, mode, suffix):
    src = tmp_path / "in.png"
    if mode == "RGBA":
        Image.fromarray(np.zeros((4, 4, 4), np.uint8)).save(src)
    else:
        Image.fromarray(np.full((4, 4), 20000, np.uint16)).save(src)
    assert "would store this" in one_line(capsys, "upscale", src, tmp_path / f"o{suffix}")
    assert not (tmp_path / f"o{suffix}").exists()


def test_non_finite_float_images_are_refused(tmp_path, capsys):
    a = np.full((4, 4), 0.5, np.float32)
    a[1, 1] = np.nan
    src = tmp_path / "nan.tif"
    Image.fromarray(a, mode="F").save(src)
    assert "NaN or infinite" in one_line(capsys, "upscale", src, tmp_path / "o.tif")


def test_sigterm_mid_write_leaves_nothing(tmp_path):
    """A conversion terminated while it writes removes its temporary file: no output
    appears.  The write is held once the data is in the temporary file, until the
    signal arrives, so the signal always lands mid-write; the exit status says the
    handler ran."""
    import signal
    import time

    np.savez(tmp_path / "w.npz", weight=np.zeros((12, 4, 3, 3), np.float32))
    ready = tmp_path / "ready"
    held_write = f"""
import pathlib, sys, time
from subpixel._core import files
atomic_write = files.atomic_write

def held(path, write):
    def write_then_wait(tmp):
        write(tmp)
        pathlib.Path({str(ready)!r}).touch()  # the temporary file holds the data
        time.sleep(600)  # the signal arrives here

    atomic_write(path, write_then_wait)

files.atomic_write = held
from subpixel.cli import main
sys.exit(main(sys.argv[1:]))
"""
    args = ["convert", str(tmp_path / "w.npz"), str(tmp_path / "o.npz"), "--factor", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-c", held_write, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120  # a bound on the wait, not a measurement
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the write never started"
            time.sleep(0.01)
        assert any(p.name.startswith(".o.npz.") for p in tmp_path.iterdir())  # mid-write
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 128 + signal.SIGTERM, proc.communicate()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ready", "w.npz"]


def test_a_reader_that_goes_away_ends_the_command_quietly():
    """`subpixel check | head -1`: no error line, the status of a closed pipe."""
    code = (
        "import sys; from subpixel import cli; sys.stdin.read()\n"
        "sys.exit(cli.main(['check', '--backend', 'numpy']))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # the reader is gone before the command writes
    proc.stdin.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "error" not in err.lower() and "Traceback" not in err, err
    assert proc.returncode == 128 + signal.SIGPIPE
