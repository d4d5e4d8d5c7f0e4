"""`subpixel upscale --model` with the super-resolution networks people use (written from
their papers in tests/_support/architectures.py, random weights), exported to ONNX and
saved as torch.export programs: the receptive field and period measured by probes, the
block grid derived from them, tiles that change no bit, the grid against one call on
the whole image, and the models that cannot be tiled refused."""

from __future__ import annotations

import numpy as np
import pytest

from adapters import requested_backends

if "torch" not in requested_backends():
    pytest.skip("torch is not in SUBPIXEL_TEST_BACKENDS", allow_module_level=True)
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import architectures
import model_files
import torch

from subpixel import image
from subpixel.models.espcn import SAMPLE
from subpixel.models.field import Grid
from subpixel.models.runtime import RuntimeModel
from subpixel.models.tiling import network_region, upscale_image

import commands

# name: (architecture, config, the radius its layers give an output pixel in LR pixels,
# where it is a plain stack; None where nearest upsampling between convs blurs it)
MODELS = {
    "compact": ("SRVGGNetCompact", {"scale": 4}, 4),  # 4 convs at LR
    "edsr": ("EDSR", {"scale": 2}, 8),  # 7 convs at LR, one at x2
    "span": ("SPAN", {"scale": 4}, 9),  # 9 convs at LR (the fusion is 1x1)
    "rrdb4": ("RRDBNet", {"scale": 4}, None),
    "rrdb2": ("RRDBNet", {"scale": 2}, None),  # pixel-unshuffles first: period 2
    "edsr_luma": ("EDSR", {"scale": 3, "in_ch": 1, "out_ch": 1}, 8),
}
# float32 rounding between the grid and one call: the two multiply matrices of different
# shapes (measured up to 2.4e-7 on these models); a context too short is >= 1e-3 off
GRID_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Each model as ONNX, and two as torch.export programs."""
    folder = tmp_path_factory.mktemp("models")
    out = {}
    for name, (arch, config, _) in MODELS.items():
        module = architectures.build(arch, **config)
        channels = config.get("in_ch", 3)
        out[name, "onnx"] = model_files.to_onnx(module, folder / f"{name}.onnx", channels=channels)
        if name in ("compact", "edsr_luma"):
            out[name, "pt2"] = model_files.to_pt2(module, folder / f"{name}.pt2", channels=channels)
    rcan = architectures.build("RCAN", scale=2)
    out["rcan", "onnx"] = model_files.to_onnx(rcan, folder / "rcan.onnx")
    out["pool", "onnx"] = model_files.to_onnx(model_files.GlobalPool(), folder / "pool.onnx")
    out["pool", "pt2"] = model_files.to_pt2(model_files.GlobalPool(), folder / "pool.pt2")
    out["ramp", "onnx"] = model_files.to_onnx(model_files.Shifted(), folder / "ramp.onnx")
    return out


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """An RGB photo larger than one block in both directions, not a multiple of one,
    with an odd width (off the period of a model that unshuffles by 2)."""
    img = image.read_image(SAMPLE)[:290, :301]
    path = tmp_path_factory.mktemp("img") / "photo.png"
    image.write_image(path, img)
    return path, img


def _open(files, key):
    return RuntimeModel(files[key], allow_pickle=True)


@pytest.mark.parametrize("key", [(n, "onnx") for n in MODELS] + [("compact", "pt2")])
def test_the_measured_field(files, key):
    """The probes find what the layers say: the radius of a plain stack of convolutions
    (never more; the grid's context covers it), period 2 for the network that
    pixel-unshuffles by 2, 1 for the rest."""
    model = _open(files, key)
    _, config, radius = MODELS[key[0]]
    field = model.field
    assert field.reason is None and model.scale == config["scale"]
    assert model.channels == config.get("in_ch", 3)
    if radius is not None:
        assert field.radius <= radius <= model.grid.context
    assert field.period == (2 if key[0] == "rrdb2" else 1)
    grid = model.grid
    assert grid.block % grid.period == 0 and grid.context % grid.period == 0


@pytest.mark.parametrize("key", [(n, "onnx") for n in MODELS] + [("compact", "pt2")])
def test_the_grid_is_one_call_on_the_whole_image(files, photo, key):
    """The oracle for the measured field: the blocks with their context against the
    model run once on the whole image (padded to its period as the grid pads), within
    float32 rounding; and blocks without context, against the same call, are far off
    (the comparison sees context missing; with random weights, the influence of pixels
    near the edge of the field is often below float32's resolution, so a field
    measured a few pixels short would still agree within it)."""
    model = _open(files, key)
    _, img = photo
    x = (img / 255.0).astype(np.float32)[..., : model.channels]
    H, W = x.shape[:2]
    p, r = model.grid.period, model.scale
    padded = np.pad(x, ((0, -H % p), (0, -W % p), (0, 0)), mode="edge")
    whole = model(np.moveaxis(padded, -1, 0)[None])[0, :, : H * r, : W * r]
    grid = np.moveaxis(network_region(model, x, (H, W), (0, 0), (0, H), (0, W)), -1, 0)
    assert np.abs(grid - whole).max() <= GRID_TOLERANCE

    class Short:  # the same model on a grid without context
        scale, channels, name = model.scale, model.channels, model.name
        grid = Grid(128, 0, p)

        def __call__(self, block):
            return model(block)

    short = np.moveaxis(network_region(Short(), x, (H, W), (0, 0), (0, H), (0, W)), -1, 0)
    assert np.abs(short - whole).max() > 1e-3


@pytest.mark.exact
@pytest.mark.parametrize("key", [(n, "onnx") for n in MODELS] + [("compact", "pt2")])
def test_tiles_change_no_bit(files, photo, tmp_path, capsys, monkeypatch, key):
    """`upscale --model` tiled == untiled, byte for byte, at three tile sizes and with
    one and two runtime threads (SUBPIXEL_NUM_THREADS)."""
    path, img = photo
    threads = torch.get_num_threads()
    try:
        for n in ("1", "2"):
            monkeypatch.setenv("SUBPIXEL_NUM_THREADS", n)
            written = []
            for tile in (None, 64, 150, 1000):
                out = tmp_path / f"t{n}_{tile}.png"
                extra = [] if tile is None else ["--tile", tile]
                code, _, err = commands.main(
                    capsys, "upscale", path, out, "--model", files[key], "--allow-pickle", *extra
                )
                assert code == 0, err
                written.append(out.read_bytes())
            assert all(blob == written[0] for blob in written)
            got = image.read_image(tmp_path / f"t{n}_None.png")
            assert got.shape == (img.shape[0] * _scale(key), img.shape[1] * _scale(key), 3)
    finally:
        torch.set_num_threads(threads)


def _scale(key):
    return MODELS[key[0]][1]["scale"]


@pytest.mark.parametrize("key", [("rcan", "onnx"), ("pool", "onnx"), ("pool", "pt2")])
def test_global_operations_are_refused_for_tiling(files, photo, tmp_path, capsys, key):
    """RCAN's channel attention and a global average pool make every output pixel depend
    on the whole image: `--tile` is refused in one line and nothing is written; without
    it the model runs on the whole image at once, as one call does."""
    path, img = photo
    model = _open(files, key)
    assert model.grid is None and "whole image" in model.untiled_reason
    out = tmp_path / "o.png"
    line = commands.one_line(
        capsys, "upscale", path, out, "--model", files[key], "--allow-pickle", "--tile", "128"
    )
    assert str(files[key]) in line and "cannot be tiled" in line and not out.exists()
    code, _, err = commands.main(
        capsys, "upscale", path, out, "--model", files[key], "--allow-pickle"
    )
    assert code == 0, err
    whole = model((img / 255.0).astype(np.float32).transpose(2, 0, 1)[None])[0]
    expected = np.round(np.clip(whole.transpose(1, 2, 0).astype(np.float64) * 255, 0, 255))
    np.testing.assert_array_equal(image.read_image(out), expected.astype(np.uint8))


def test_a_model_that_depends_on_position_is_refused_for_tiling(files):
    model = _open(files, ("ramp", "onnx"))
    assert model.grid is None and "shifted" in model.untiled_reason
    with pytest.raises(ValueError, match="cannot be tiled"):
        upscale_image(np.zeros((200, 200, 3), np.uint8), model, tile=128)


def test_a_global_model_is_refused_chunk_by_chunk(files, tmp_path):
    pytest.importorskip("dask")
    from subpixel.models.large import upscale_lazy

    model = _open(files, ("rcan", "onnx"))
    with pytest.raises(ValueError, match="cannot run chunk by chunk"):
        upscale_lazy(np.zeros((300, 300, 3), np.uint8), model, chunk=128)
    small = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        upscale_lazy(small, model, chunk=128).compute(), upscale_image(small, model)
    )


@pytest.mark.exact
def test_lazy_chunks_are_the_in_memory_upscale_for_any_grid(files, photo):
    """A grid of 176-pixel blocks, period 2 (the unshuffling RRDBNet): Zarr-style
    chunks give the in-memory pixels, bit for bit."""
    pytest.importorskip("dask")
    from subpixel.models.large import upscale_lazy

    model = _open(files, ("rrdb2", "onnx"))
    _, img = photo
    whole = upscale_image(img, model)
    for chunk in (100, 200):
        np.testing.assert_array_equal(upscale_lazy(img, model, chunk=chunk).compute(), whole)
