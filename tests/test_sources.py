"""Image folders (+ labels.csv) and load_any: pixels, labels, quaternions, mixed sizes, corrupt files, --skip-bad."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sim2real.data.sources import SkipCounter, load_any, read_image, read_image_folder
from sim2real.errors import Sim2RealError
from sim2real.testing import make_synthetic


def _png(path, rgb):
    Image.fromarray(np.asarray(rgb, np.uint8)).save(path)
    return path


@pytest.fixture
def folder(tmp_path):
    """Three 12x10 PNGs with known pixels and a labels CSV with names and quaternions."""
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    images = {}
    for name in ("b.png", "a.png", "c.png"):
        images[name] = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
        _png(d / name, images[name])
    (d / "notes.txt").write_text("not an image")
    (d / "labels.csv").write_text("file,label,qw,qx,qy,qz\n"
                                  "a.png,mug,1,0,0,0\n"
                                  "b.png,drill,-2,0,0,0\n"  # w < 0 and norm 2: canonicalised to (1, 0, 0, 0)
                                  "c.png,mug,0,0,-3,4\n"  # w = 0: the first non-zero of x, y, z is made positive
                                  "gone.png,mug,1,0,0,0\n")  # a row for a missing image is ignored
    return d, images


def test_folder_reads_pixels_labels_and_canonical_quaternions(folder):
    d, images = folder
    data = read_image_folder(d)
    assert data.rgb.shape == (3, 12, 10, 3) and data.attrs["domain"] == "target" and data.attrs["skipped"] == 0
    for i, name in enumerate(["a.png", "b.png", "c.png"]):  # sorted by name
        np.testing.assert_array_equal(data.rgb[i], images[name])
    assert data.class_names == ["drill", "mug"] and data.label.tolist() == [1, 0, 1]
    np.testing.assert_allclose(data.quat, [[1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0.6, -0.8]], atol=1e-7)
    # the caller's class names fix the ids (e.g. the source renders' order)
    data = read_image_folder(d, class_names=["mug", "drill", "cat"])
    assert data.label.tolist() == [0, 1, 0] and data.class_names == ["mug", "drill", "cat"]


def test_resize_keeps_a_flat_colour_and_integer_labels_name_classes(tmp_path):
    d = tmp_path / "f"
    d.mkdir()
    _png(d / "x.png", np.full((40, 30, 3), (10, 120, 250)))
    _png(d / "y.png", np.full((20, 50, 3), 77))
    (d / "labels.csv").write_text("file,label\nx.png,2\ny.png,0\n")
    data = read_image_folder(d, size=(16, 16))
    assert data.rgb.shape == (2, 16, 16, 3)
    assert np.all(data.rgb[0] == (10, 120, 250)) and np.all(data.rgb[1] == 77)
    assert data.class_names == ["0", "1", "2"] and data.label.tolist() == [2, 0] and data.quat is None


def test_exif_orientation_is_applied(tmp_path):
    img = np.zeros((10, 20, 3), np.uint8)
    img[:, :10] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(img).save(tmp_path / "r.jpg", exif=exif, quality=95)
    out = read_image(tmp_path / "r.jpg", None)
    assert out.shape == (20, 10, 3)
    assert out[:8].mean() > 200 and out[12:].mean() < 50  # the white half is now on top


def test_mixed_sizes_error_names_the_file_or_skip(folder):
    d, _ = folder
    _png(d / "d.png", np.zeros((5, 5, 3)))
    with open(d / "labels.csv", "a") as f:
        f.write("d.png,mug,1,0,0,0\n")
    with pytest.raises(Sim2RealError) as e:
        read_image_folder(d)
    assert str(e.value).startswith(f"{d / 'd.png'}: image is 5x5, expected 10x12") and "\n" not in str(e.value)
    data = read_image_folder(d, skip_bad=True)
    assert len(data) == 3 and data.attrs["skipped"] == 1
    assert "1 image of another size" in data.attrs["skipped_summary"]
    assert len(read_image_folder(d, size=(8, 8))) == 4  # a target size makes mixed sizes fine


def test_corrupt_image_error_names_the_file_or_skip(folder):
    d, _ = folder
    raw = (d / "c.png").read_bytes()
    (d / "c.png").write_bytes(raw[: len(raw) // 2])  # truncated: the header still reads, the pixels do not
    _png(d / "e.png", np.zeros((12, 10, 3)))
    (d / "f.jpg").write_bytes(b"definitely not a jpeg")
    with open(d / "labels.csv", "a") as f:
        f.write("e.png,mug,1,0,0,0\nf.jpg,mug,1,0,0,0\n")
    with pytest.raises(Sim2RealError, match=r"c.png: not a readable image"):
        read_image_folder(d)
    data = read_image_folder(d, skip_bad=True)
    assert len(data) == 3 and data.attrs["skipped"] == 2
    assert data.attrs["skipped_summary"].startswith("skipped 2 bad items (2 unreadable image); first: ")


def test_unlabelled_image_and_unknown_class(folder):
    d, _ = folder
    _png(d / "z.png", np.zeros((12, 10, 3)))
    with pytest.raises(Sim2RealError, match=r"labels.csv: no row for image z.png"):
        read_image_folder(d)
    assert len(read_image_folder(d, skip_bad=True)) == 3
    (d / "z.png").unlink()
    with pytest.raises(Sim2RealError, match=r"labels.csv: unknown class 'drill' for b.png \(known: mug, cat\)"):
        read_image_folder(d, class_names=["mug", "cat"])


@pytest.mark.parametrize("text, message", [
    ("name,label\na.png,mug\n", "expected a header with columns file,label"),
    ("file,label,qw,qx\na.png,mug,1,0\n", "has qw,qx but not all of qw,qx,qy,qz"),
    ("file,label,qw,qx,qy,qz\na.png,mug,1,0,x,0\nb.png,mug,1,0,0,0\nc.png,mug,1,0,0,0\n", "row a.png: qw,qx,qy,qz must be numbers"),
    ("file,label,qw,qx,qy,qz\na.png,mug,0,0,0,0\nb.png,mug,1,0,0,0\nc.png,mug,1,0,0,0\n", "finite, non-zero quaternion"),
])
def test_bad_labels_csv_is_one_line_error(folder, text, message):
    d, _ = folder
    (d / "labels.csv").write_text(text)
    with pytest.raises(Sim2RealError) as e:
        read_image_folder(d)
    assert str(d / "labels.csv") in str(e.value) and message in str(e.value)


def test_load_any_dispatches_and_checks_sizes(tmp_path, folder):
    d, _ = folder
    assert len(load_any(d, size=(6, 6))) == 3
    h = make_synthetic(tmp_path / "s.h5", n=4, size=8)
    assert load_any(h, size=(8, 8)).image_size == (8, 8)
    with pytest.raises(Sim2RealError, match=r"s.h5: images are 8x8, expected 16x16"):
        load_any(h, size=(16, 16))
    with pytest.raises(Sim2RealError, match=r"nothing.h5: not found"):
        load_any(tmp_path / "nothing.h5")
    (tmp_path / "bop" / "test" / "000001").mkdir(parents=True)
    (tmp_path / "bop" / "test" / "000001" / "scene_gt.json").write_text("{}")
    with pytest.raises(Sim2RealError, match="looks like a BOP dataset; convert it first with 'sim2real import-bop"):
        load_any(tmp_path / "bop" / "test")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Sim2RealError, match="contains no images"):
        load_any(empty)


def test_skip_counter_raises_when_off_and_counts_when_on():
    off = SkipCounter(False)
    with pytest.raises(Sim2RealError, match="x.png: bad"):
        off.skip(Sim2RealError("x.png: bad"), "unreadable image")
    on = SkipCounter(True)
    on.skip(Sim2RealError("x.png: bad"), "unreadable image")
    on.skip(Sim2RealError("y.png: odd"), "image of another size")
    on.skip(Sim2RealError("z.png: bad"), "unreadable image")
    assert on.total == 3
    assert on.summary() == "skipped 3 bad items (1 image of another size, 2 unreadable image); first: x.png: bad"
