"""The int8 calibration of the bundled ESPCN (framework-free): the synthetic patches,
the channel groups and their ranges, and reading a folder of the user's images,
hostile ones included."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from subpixel._core.files import FileError
from subpixel.models import ESPCN
from subpixel.models import calibration as cal

from hostile import png_claiming


def test_synthetic_patches_span_the_luminance_range_and_repeat():
    a, b = cal.synthetic(), cal.synthetic()
    assert len(a) == cal.PATCHES and all(p.shape == (cal.PATCH, cal.PATCH) for p in a)
    assert all(p.dtype == np.float32 for p in a)
    assert min(float(p.min()) for p in a) == 0.0 and max(float(p.max()) for p in a) == 1.0
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    ramps = a[::3]  # every third a full ramp: each holds both ends of the range
    assert all(p.min() == 0.0 and p.max() == 1.0 for p in ramps)


@pytest.fixture(scope="module")
def calibrated():
    return cal.calibrate(ESPCN.pretrained(2))


def test_groups_cover_every_channel_once_with_zero_inside(calibrated):
    for groups, channels in ((calibrated.conv1, 64), (calibrated.conv2, 32)):
        assert len(groups) == cal.GROUPS
        seen = sorted(c for g in groups for c in g.channels)
        assert seen == list(range(channels))
        assert all(g.low < 0 < g.high for g in groups)
    assert calibrated.patches == cal.PATCHES and "synthetic" in calibrated.source


def test_group_ranges_are_measured_not_the_extremes(calibrated):
    """A range is where quantization after tanh errs least: inside the values the
    patches reached (a saturated tanh needs no precision) and around most of them."""
    model = ESPCN.pretrained(2)
    x = np.stack(cal.synthetic())[:, None] - model.mean
    import subpixel

    z1 = subpixel.sub_pixel_conv(
        x, model.params["conv1.weight"], model.params["conv1.bias"], factor=1, padding=2
    )
    for g in calibrated.conv1:
        values = z1[:, list(g.channels)]
        assert values.min() <= g.low and g.high <= values.max()
        inside = np.mean((values >= g.low) & (values <= g.high))
        assert inside > 0.99


def test_one_group_is_one_range_per_layer():
    c = cal.calibrate(ESPCN.pretrained(3), cal.synthetic(6), groups=1)
    assert len(c.conv1) == len(c.conv2) == 1 and c.patches == 6
    with pytest.raises(ValueError, match="groups"):
        cal.calibrate(ESPCN.pretrained(3), cal.synthetic(3), groups=0)
    with pytest.raises(ValueError, match="patches"):
        cal.calibrate(ESPCN.pretrained(3), [])


def test_a_folder_of_images_of_every_kind(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(tmp_path / "a.jpg")
    Image.fromarray(np.full((100, 90), 255, np.uint8)).save(tmp_path / "b.png")  # white
    Image.fromarray(rng.integers(0, 65536, (30, 30), dtype=np.uint16)).save(tmp_path / "c.png")
    Image.fromarray(rng.integers(0, 256, (20, 20, 4), dtype=np.uint8)).save(tmp_path / "d.png")
    Image.fromarray(np.full((10, 10), 2.0, np.float32)).save(tmp_path / "e.tif")
    (tmp_path / ".hidden").write_text("not an image, and hidden: skipped")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.txt").write_text("in a subfolder: not searched")
    patches = cal.read_folder(tmp_path, n=10)
    assert len(patches) == 5 * 2  # ceil(10 / 5) from each image
    assert all(p.dtype == np.float32 and p.min() >= 0 and p.max() <= 1 for p in patches)
    assert {p.shape for p in patches} == {(40, 50), (64, 64), (30, 30), (20, 20), (10, 10)}
    white = [p for p in patches if p.shape == (64, 64)]
    assert all(np.all(p == 1.0) for p in white)  # grey 255 is luminance 1
    floats = [p for p in patches if p.shape == (10, 10)]
    assert all(np.all(p == 1.0) for p in floats)  # a float image's top is its max, 2.0
    again = cal.read_folder(tmp_path, n=10)  # the same patches every time
    assert all(np.array_equal(p, q) for p, q in zip(again, patches))


def _refusal(folder):
    with pytest.raises(FileError) as info:
        cal.read_folder(folder)
    return str(info.value)


def test_folders_that_give_nothing_to_calibrate_on(tmp_path):
    assert "no such folder" in _refusal(tmp_path / "missing")
    (tmp_path / "f.png").write_bytes(b"")
    assert "not a folder" in _refusal(tmp_path / "f.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no images to calibrate on" in _refusal(empty)
    (empty / ".DS_Store").write_bytes(b"\0")
    (empty / "sub").mkdir()
    assert "no images to calibrate on" in _refusal(empty)


def test_any_file_that_is_not_a_readable_image_is_named(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("hello")
    assert _refusal(tmp_path).startswith(f"{tmp_path / 'notes.txt'}: not an image")
    os.unlink(tmp_path / "notes.txt")
    (tmp_path / "cut.png").write_bytes((tmp_path / "a.png").read_bytes()[:40])  # truncated
    assert str(tmp_path / "cut.png") in _refusal(tmp_path)


def test_nothing_is_executed(tmp_path):
    """An EPS file is an image to Pillow, decoded by running Ghostscript: refused."""
    marker = tmp_path / "ran"
    (tmp_path / "x.eps").write_text(
        "%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n"
        f"({marker}) (w) file closefile\nshowpage\n"
    )
    assert "not an image calibration reads" in _refusal(tmp_path)
    assert not marker.exists()


def test_links_loops_fifos_and_bombs(tmp_path):
    loop = tmp_path / "loop"
    loop.mkdir()
    os.symlink("self", loop / "self")  # a link to itself
    assert "cannot be read" in _refusal(loop) and "self" in _refusal(loop)
    around = tmp_path / "around"
    around.mkdir()
    os.symlink(".", around / "again")  # a link back to the folder: a subfolder, skipped
    assert "no images to calibrate on" in _refusal(around)
    dangling = tmp_path / "dangling"
    dangling.mkdir()
    os.symlink("nowhere.png", dangling / "x.png")
    assert "cannot be read" in _refusal(dangling)
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "fifo"
        fifo.mkdir()
        os.mkfifo(fifo / "pipe.png")  # reading it would block forever
        assert "not a regular file" in _refusal(fifo)
    bomb = tmp_path / "bomb"
    bomb.mkdir()
    png_claiming(bomb / "huge.png", 30000, 30000)
    assert "huge.png" in _refusal(bomb) and "bomb" in _refusal(bomb).lower()
