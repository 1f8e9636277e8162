"""Glyph digits (``sim2real datasets glyphs``): fonts checked, arrays and ink mask, MNIST-like normalisation,
determinism per (seed, split, index), the HDF5 file and the CLI. Tiny builds (tens of samples)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from sim2real.cli import main as cli
from sim2real.data import digits, glyphs, h5
from sim2real.errors import Sim2RealError

#: MNIST puts a digit's centre of mass on pixel (14, 14) of 28x28; 28 -> 32 (pixel centres aligned) maps it here.
MNIST_COM_32 = (glyphs.MNIST_COM + 0.5) * 32 / 28 - 0.5


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("SIM2REAL_PROGRESS", "0")


@pytest.fixture(scope="module")
def fonts():
    return glyphs.find_fonts()


@pytest.fixture(scope="module")
def batch(fonts):
    return glyphs.build_glyphs("train", seed=0, fonts=fonts[0], indices=range(50), excluded=fonts[1])


def centre_of_mass(grey: np.ndarray) -> np.ndarray:
    """(N, H, W) -> (N, 2) intensity-weighted (row, column), computed here from scratch."""
    g = grey.astype(np.float64)
    rows, cols = np.indices(g.shape[1:])
    s = g.sum(axis=(1, 2))
    return np.stack([(g * rows).sum(axis=(1, 2)) / s, (g * cols).sum(axis=(1, 2)) / s], axis=1)


# ------------------------------------------------------------------------------------------------
# Fonts
# ------------------------------------------------------------------------------------------------


def test_matplotlib_fonts_are_checked_and_the_unusable_ones_named(fonts):
    from PIL import ImageFont

    usable, excluded = fonts
    names = {f.path.name for f in usable}
    assert len(usable) >= 20 and {"DejaVuSans.ttf", "STIXGeneral.ttf", "cmr10.ttf"} <= names
    assert "no digits" in excluded["DejaVuSansDisplay.ttf"]
    assert "placeholder" in excluded["LastResortHE-Regular.ttf"]  # maps every code point to one glyph
    assert "symbol encoding" in excluded["cmsy10.ttf"] and "symbol encoding" in excluded["cmex10.ttf"]
    assert not names & set(excluded)
    for f in usable:  # independently: the font's own bounding boxes of ten digits have ink, and differ
        pil = ImageFont.truetype(str(f.path), 32)
        boxes = [pil.getbbox(str(d)) for d in range(10)]
        assert all(b[2] > b[0] and b[3] > b[1] for b in boxes), f.path.name
        masks = {np.asarray(pil.getmask(str(d))).tobytes() for d in range(10)}
        assert len(masks) == 10, f.path.name


def test_font_folders_files_and_bad_paths(tmp_path):
    src = glyphs.default_font_dir()
    (tmp_path / "f" / "sub").mkdir(parents=True)
    shutil.copy(src / "DejaVuSans.ttf", tmp_path / "f" / "sub")
    shutil.copy(src / "cmsy10.ttf", tmp_path / "f")
    (tmp_path / "f" / "broken.ttf").write_bytes(b"not a font")
    usable, excluded = glyphs.find_fonts([tmp_path / "f"])
    assert [f.path.name for f in usable] == ["DejaVuSans.ttf"]
    assert set(excluded) == {"cmsy10.ttf", "broken.ttf"} and "not a readable" in excluded["broken.ttf"]
    usable, _ = glyphs.find_fonts([src / "cmr10.ttf", tmp_path / "f" / "sub"])
    assert [f.path.name for f in usable] == ["DejaVuSans.ttf", "cmr10.ttf"]  # sorted by name
    with pytest.raises(Sim2RealError, match="font file or folder not found"):
        glyphs.find_fonts([tmp_path / "missing"])
    with pytest.raises(Sim2RealError, match="no font that draws all ten digits"):
        glyphs.find_fonts([tmp_path / "f" / "broken.ttf"])


# ------------------------------------------------------------------------------------------------
# Arrays, mask, normalisation
# ------------------------------------------------------------------------------------------------


def test_arrays_have_the_mnist_files_shapes_and_every_class(batch):
    assert batch.rgb.shape == (50, 32, 32, 3) and batch.rgb.dtype == np.uint8
    assert batch.label.dtype == np.int64 and batch.label.tolist() == [i % 10 for i in range(50)]
    assert np.bincount(batch.label, minlength=10).tolist() == [5] * 10
    assert batch.mask.shape == (50, 32, 32) and batch.mask.dtype == np.bool_
    # white on black grey: the three channels are equal, the background black, the ink bright
    assert np.array_equal(batch.rgb[..., 0], batch.rgb[..., 1]) and np.array_equal(batch.rgb[..., 0], batch.rgb[..., 2])
    assert np.all(batch.rgb[:, 0, :] == 0) and np.all(batch.rgb[:, :, -1] == 0)
    assert np.all(batch.rgb.reshape(50, -1).max(axis=1) >= 150)


def test_mask_is_exactly_the_ink(batch):
    grey = batch.rgb[..., 0]
    np.testing.assert_array_equal(batch.mask, grey > 0)
    assert np.all(grey[~batch.mask] == 0) and np.all(grey[batch.mask] > 0)
    ink = batch.mask.mean(axis=(1, 2))
    assert 0.08 < ink.min() and ink.max() < 0.6  # a digit, neither a speck nor a filled square


def test_centred_by_centre_of_mass_like_mnist(batch):
    com = centre_of_mass(batch.rgb[..., 0])
    assert np.abs(com - MNIST_COM_32).max() < 2.0  # translation at most 1 px (28x28) + rounding
    assert np.abs(com.mean(axis=0) - MNIST_COM_32).max() < 0.5
    assert np.abs(com - 15.5).max() < 2.6  # the image centre, for the record


def test_without_jitter_the_glyph_fills_mnist_s_box(fonts):
    """Box 20 px and no translation: longer ink side 20 px in 28x28 and the centre of mass on (14, 14)."""
    params = glyphs.GlyphParams(box_px=(20.0, 20.0), translate_px=0.0)
    r = glyphs.GlyphRenderer(fonts[0], params)
    for i in range(20):
        g, _ = r.draw(i % 10, glyphs.sample_rng(0, "val", i))
        ys, xs = np.nonzero(g)
        assert 18 <= max(ys.ptp(), xs.ptp()) + 1 <= 20
        assert np.abs(centre_of_mass(g[None])[0] - glyphs.MNIST_COM).max() <= 0.5 + 1e-9  # whole-pixel shift


# ------------------------------------------------------------------------------------------------
# Determinism
# ------------------------------------------------------------------------------------------------


def test_a_sample_depends_only_on_seed_split_and_index(fonts, batch):
    again = glyphs.build_glyphs("train", seed=0, fonts=fonts[0], indices=range(50))
    np.testing.assert_array_equal(again.rgb, batch.rgb)
    np.testing.assert_array_equal(again.mask, batch.mask)
    alone = glyphs.build_glyphs("train", seed=0, fonts=fonts[0], indices=[17])
    np.testing.assert_array_equal(alone.rgb[0], batch.rgb[17])
    shuffled = glyphs.build_glyphs("train", seed=0, fonts=fonts[0], indices=[40, 3, 17])
    np.testing.assert_array_equal(shuffled.rgb, batch.rgb[[40, 3, 17]])
    assert shuffled.label.tolist() == [0, 3, 7]


def test_another_seed_or_split_differs(fonts, batch):
    for other in (glyphs.build_glyphs("train", seed=1, fonts=fonts[0], indices=range(50)),
                  glyphs.build_glyphs("val", seed=0, fonts=fonts[0], indices=range(50))):
        np.testing.assert_array_equal(other.label, batch.label)  # labels are index % 10
        same = np.all(other.rgb == batch.rgb, axis=(1, 2, 3))
        assert same.sum() <= 1


# ------------------------------------------------------------------------------------------------
# File and CLI
# ------------------------------------------------------------------------------------------------


def test_file_validates_and_records_fonts_and_licence(tmp_path, batch):
    path = digits.write_digits(tmp_path / "g.h5", batch, "glyphs", "source", 0, {"seed": 0})
    d = h5.read(path)
    assert len(d) == 50 and d.attrs["domain"] == "source" and d.attrs["dataset"] == "glyphs"
    np.testing.assert_array_equal(d.mask, batch.mask)
    np.testing.assert_array_equal(d.rgb, batch.rgb)
    assert d.class_names == [str(i) for i in range(10)] and d.quat is None and d.depth is None
    prov = json.loads(d.attrs["provenance"])
    assert {f["file"] for f in prov["fonts"]} >= {"DejaVuSans.ttf"} and "cmsy10.ttf" in prov["excluded_fonts"]
    assert sum(f["samples"] for f in prov["fonts"]) == 50 and "BaKoMa" in prov["licence"]


def test_cli_writes_the_splits_of_the_mnist_layout(tmp_path, monkeypatch, capsys, fonts):
    monkeypatch.setattr(glyphs, "SPLIT_SIZES", {"train": 30, "val": 20, "test": 10})
    out = tmp_path / "g.h5"
    assert cli(["datasets", "glyphs", "-o", str(out), "--seed", "5"]) == 0
    text = capsys.readouterr().out
    assert "left out 18" in text and "val: 20 images 32x32 RGB + mask" in text
    for split, n in (("train", 30), ("val", 20), ("test", 10)):
        d = h5.read(tmp_path / f"g_{split}.h5")
        assert len(d) == n and d.attrs["split"] == split and d.attrs["domain"] == "source" and d.attrs["seed"] == 5
        assert d.rgb.shape[1:] == (32, 32, 3) and d.mask is not None
    ref = glyphs.build_glyphs("val", seed=5, fonts=fonts[0], indices=range(20))
    np.testing.assert_array_equal(h5.read(tmp_path / "g_val.h5").rgb, ref.rgb)
    assert cli(["datasets", "glyphs", "-o", str(out), "--seed", "5"]) == 2  # exists: refused without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    one = tmp_path / "one.h5"
    assert cli(["datasets", "glyphs", "--split", "test", "--domain", "target", "-o", str(one),
                "--fonts", str(glyphs.default_font_dir() / "DejaVuSans.ttf")]) == 0
    d = h5.read(one)
    assert d.attrs["domain"] == "target" and len(d) == 10
    assert [f["file"] for f in json.loads(d.attrs["provenance"])["fonts"]] == ["DejaVuSans.ttf"]
    assert cli(["datasets", "glyphs", "-o", str(tmp_path / "x.h5"), "--fonts", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nowhere: font file or folder not found" in err
