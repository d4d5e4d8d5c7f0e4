"""`subpixel upscale`, `bench` and `convert`: exit codes, output, bad input in one line."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from subpixel import SubPixelConv, image
from subpixel.models import ESPCN, upscale_image, upscale_luma

import commands
from adapters import requested_backends
from commands import run
from tolerances import espcn_allowance


def one_line_error(proc):
    return commands.one_line_error(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "photo.png"
    from subpixel.models.espcn import SAMPLE

    img = image.read_image(SAMPLE)[:60, :75]
    image.write_image(path, img)
    return path, img


def test_upscale_sample_prints_psnr(tmp_path):
    out = tmp_path / "out.png"
    proc = run("upscale", "sample", str(out), "--scale", "3")
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stdout and "PSNR" in proc.stdout
    espcn, bicubic = (
        float(v) for v in re.search(r"ESPCN ([\d.]+) dB, bicubic ([\d.]+) dB", proc.stdout).groups()
    )
    assert espcn > bicubic  # the bundled model beats bicubic on its (held-out) sample
    assert image.read_image(out).shape == (300, 444, 3)


@pytest.fixture(scope="module")
def big_luma():
    """Luminance larger than one block (BLOCK = 128) in both directions, not a multiple of it."""
    from subpixel.models.espcn import SAMPLE

    return image.read_image(SAMPLE)[:290, :300, 1] / 255.0


@pytest.mark.exact
@pytest.mark.parametrize("backend", ["numpy", "torch", "tensorflow", "jax"])
def test_tiled_upscale_is_exact(big_luma, backend):
    """Tiles only group the fixed blocks the network runs on: bit-identical results
    whatever the tile size, on every backend (and, in CI, every BLAS kernel choice)."""
    if backend != "numpy" and backend not in requested_backends():
        pytest.skip(f"{backend} not requested")
    model = ESPCN.pretrained(2)
    whole = upscale_luma(model, big_luma, backend=backend)
    assert whole.shape == (580, 600)
    for tile in (1, 100, 128, 200, 1000):
        np.testing.assert_array_equal(
            upscale_luma(model, big_luma, backend=backend, tile=tile), whole
        )


def test_fixed_grid_equals_one_network_call(big_luma):
    """The blocks' context (RADIUS) is the network's whole receptive field: the grid
    gives the single-call result up to float32 rounding (different BLAS shapes; one
    pixel of context short is 0.042 off)."""
    model = ESPCN.pretrained(3)
    one_call = model(np.ascontiguousarray(big_luma, np.float32)[None, None])[0, 0]
    np.testing.assert_allclose(
        upscale_luma(model, big_luma), one_call, rtol=0, atol=espcn_allowance(3)
    )


@pytest.mark.exact
def test_upscale_file_tiles_exact(photo, tmp_path):
    """The command with and without --tile writes the same file as the library."""
    path, img = photo
    whole = upscale_image(img, ESPCN.pretrained(2))
    assert whole.shape == (120, 150, 3)
    for tile in ([], ["--tile", "20"]):
        out = tmp_path / f"x2{len(tile)}.png"
        proc = run("upscale", str(path), str(out), "--scale", "2", *tile)
        assert proc.returncode == 0, proc.stderr
        np.testing.assert_array_equal(image.read_image(out), whole)


@pytest.mark.parametrize("backend", ["torch", "tensorflow", "jax"])
def test_upscale_is_the_same_on_every_backend(photo, backend):
    if backend not in requested_backends():
        pytest.skip(f"{backend} not requested")
    _, img = photo
    model = ESPCN.pretrained(3)
    ref = upscale_luma(model, img[..., 1] / 255.0)
    got = upscale_luma(model, img[..., 1] / 255.0, backend=backend, tile=32)
    np.testing.assert_allclose(got, ref, rtol=0, atol=espcn_allowance(3))


def test_upscale_errors(tmp_path, photo):
    assert "no such file" in one_line_error(
        run("upscale", str(tmp_path / "missing.png"), str(tmp_path / "o.png"))
    )
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    one_line_error(run("upscale", str(bad), str(tmp_path / "o.png")))
    path, _ = photo
    msg = one_line_error(
        run("upscale", str(path), str(tmp_path / "o.png"), "--reference", str(path))
    )
    assert "must match" in msg
    assert run("upscale", str(path), str(tmp_path / "o.png"), "--scale", "5").returncode == 2
    one_line_error(run("upscale", str(path), str(tmp_path / "o.png"), "--tile", "0"))
    one_line_error(run("upscale", str(path), str(tmp_path / "no-such-dir" / "o.png")))


def test_bench_prints_ratios(tmp_path):
    proc = run("bench", "--backend", "numpy", "--shape", "1", "8", "16", "16", "--repeat", "2")
    assert proc.returncode == 0, proc.stderr
    assert "numpy" in proc.stdout and "/ copy" in proc.stdout
    one_line_error(run("bench", "--backend", "numpy", "--shape", "1", "6", "4", "4"))


def test_bench_plot_is_a_png_or_refused(tmp_path):
    """The chart is PNG bytes: a name that says otherwise is refused before the
    benchmark runs, and nothing is written."""
    line = one_line_error(run("bench", "--backend", "numpy", "--plot", tmp_path / "p.txt"))
    assert "p.txt: the chart is a PNG image; name it .png" in line
    assert list(tmp_path.iterdir()) == []


def test_convert_round_trips_and_reorders(tmp_path):
    layer = SubPixelConv(4, 3, 3, 2, seed=0)
    layer.bias = np.arange(12, dtype=np.float32)
    src = tmp_path / "head.safetensors"
    layer.save(src)
    dst = tmp_path / "head_dcr.npz"
    proc = run("convert", str(src), str(dst), "--order", "DCR")
    assert proc.returncode == 0, proc.stderr
    assert "order DCR" in proc.stdout
    dcr = SubPixelConv.load(dst)
    x = np.random.default_rng(0).standard_normal((1, 4, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(dcr(x), layer(x), rtol=1e-5, atol=1e-5)  # same numbers, other order


def test_convert_plain_arrays_and_conv_transpose(tmp_path):
    from reference import conv_transpose_ref

    rng = np.random.default_rng(1)
    w = rng.standard_normal((3, 2, 4, 4)).astype(
        np.float32
    )  # ConvTranspose2d(3, 2, 4, stride 2, padding 1)
    b = rng.standard_normal(2).astype(np.float32)
    src = tmp_path / "deconv.npz"
    np.savez(src, weight=w, bias=b)
    dst = tmp_path / "sub.safetensors"
    proc = run("convert", str(src), str(dst), "--from-conv-transpose", "2", "--padding", "1")
    assert proc.returncode == 0, proc.stderr
    x = rng.standard_normal((1, 3, 5, 4)).astype(np.float32)
    np.testing.assert_allclose(
        SubPixelConv.load(dst)(x), conv_transpose_ref(x, w, b, 2, 1), rtol=1e-4, atol=1e-4
    )
    kernel = tmp_path / "kernel.npz"
    np.savez(
        kernel, k=rng.standard_normal((3, 3, 4, 12)).astype(np.float32)
    )  # a Keras kernel, no bias
    proc = run(
        "convert", str(kernel), str(tmp_path / "k.npz"), "--factor", "2", "--src-layout", "keras"
    )
    assert proc.returncode == 0, proc.stderr
    assert "4 -> 3 channels" in proc.stdout


def test_convert_errors(tmp_path):
    one_line_error(run("convert", str(tmp_path / "none.npz"), str(tmp_path / "o.npz")))
    pt = tmp_path / "model.pt"
    pt.write_bytes(b"\x80\x04pickle")
    assert "--allow-pickle" in one_line_error(run("convert", str(pt), str(tmp_path / "o.npz")))
    two = tmp_path / "two.npz"
    np.savez(two, a=np.zeros((4, 1, 3, 3)), b=np.zeros((8, 1, 3, 3)))
    assert "--weight-key" in one_line_error(
        run("convert", str(two), str(tmp_path / "o.npz"), "--factor", "2")
    )
    odd = tmp_path / "odd.npz"
    np.savez(odd, w=np.zeros((6, 1, 3, 3)))
    assert "not divisible" in one_line_error(
        run("convert", str(odd), str(tmp_path / "o.npz"), "--factor", "2")
    )
    one_line_error(run("convert", str(odd), str(tmp_path / "o.txt"), "--factor", "1"))
    objs = tmp_path / "objs.npz"
    np.savez(objs, w=np.array([{"x": 1}], dtype=object))
    one_line_error(run("convert", str(objs), str(tmp_path / "o.npz"), "--factor", "1"))


@pytest.mark.parametrize("suffix", [".safetensors", ".npz", ".weights.h5"])
def test_convert_prefix_applies_to_state_dicts_only(tmp_path, suffix):
    """--prefix names PyTorch state-dict keys; subpixel's own formats have fixed keys:
    refused there, not silently ignored, before anything is read or written."""
    src = tmp_path / "head.safetensors"
    SubPixelConv(4, 3, 3, 2, seed=0).save(src)
    dst = tmp_path / f"o{suffix}"
    line = one_line_error(run("convert", src, dst, "--prefix", "conv4."))
    assert "--prefix 'conv4.': applies to .pt/.pth outputs" in line and not dst.exists()


def test_convert_through_keras_weights_files(tmp_path):
    """safetensors -> Keras .weights.h5 -> npz gives back the same layer (needs keras + h5py)."""
    if os.environ.get("KERAS_BACKEND") not in requested_backends():
        pytest.skip("Keras is not set up in this environment")
    pytest.importorskip("h5py")
    layer = SubPixelConv(3, 2, 3, (2, 3), order="DCR", seed=2, layout="channels_last")
    layer.bias = np.arange(12, dtype=np.float32) / 10
    src = tmp_path / "head.safetensors"
    layer.save(src)
    h5 = tmp_path / "head.weights.h5"
    proc = run("convert", str(src), str(h5), "--order", "DCR")
    assert proc.returncode == 0, proc.stderr
    back = tmp_path / "back.npz"
    flags = "--src-layout keras --factor 2 3 --src-order DCR --order DCR".split()
    proc = run("convert", h5, back, *flags)
    assert proc.returncode == 0, proc.stderr
    restored = SubPixelConv.load(back)
    np.testing.assert_array_equal(restored.weight, layer.weight)
    np.testing.assert_array_equal(restored.bias, layer.bias)
    # and from a whole .keras model file
    import keras

    from subpixel.layers import keras as keras_layers

    model = keras.Sequential(
        [keras.Input((None, None, 3)), keras_layers.from_agnostic(layer, "channels_last")]
    )
    model.save(tmp_path / "model.keras")
    flags = "--src-layout keras --factor 2 3 --src-order DCR --order CRD".split()
    proc = run("convert", tmp_path / "model.keras", tmp_path / "m.npz", *flags)
    assert proc.returncode == 0, proc.stderr
    crd = SubPixelConv.load(tmp_path / "m.npz")
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 5)).astype(np.float32)
    ref = SubPixelConv.from_weights(layer.weight, layer.bias, factor=(2, 3), order="DCR")
    np.testing.assert_allclose(crd(x), ref(x), rtol=1e-5, atol=1e-5)


def test_convert_through_a_torch_state_dict(tmp_path):
    if "torch" not in requested_backends():
        pytest.skip("torch not requested")
    layer = SubPixelConv(3, 2, 3, 2, seed=3)
    layer.bias = np.arange(8, dtype=np.float32)
    layer.save(tmp_path / "a.safetensors")
    assert run("convert", str(tmp_path / "a.safetensors"), str(tmp_path / "a.pt")).returncode == 0
    proc = run(
        "convert",
        str(tmp_path / "a.pt"),
        str(tmp_path / "b.npz"),
        "--allow-pickle",
        "--factor",
        "2",
        "--weight-key",
        "weight",
        "--bias-key",
        "bias",
    )
    assert proc.returncode == 0, proc.stderr
    back = SubPixelConv.load(tmp_path / "b.npz")
    np.testing.assert_array_equal(back.weight, layer.weight)
    np.testing.assert_array_equal(back.bias, layer.bias)
