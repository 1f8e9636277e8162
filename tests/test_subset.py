"""`sim2real subset`: stratified (largest remainder / per class), deterministic, arrays copied exactly."""

from __future__ import annotations

import numpy as np
import pytest

from sim2real.cli import main
from sim2real.data import h5
from sim2real.data.subset import class_quota, stratified_index
from sim2real.testing import make_synthetic


def test_class_quota_by_hand():
    # 60 / 30 / 10 images, 10 drawn: one each, then 7 more split 59:29:9 of 97 -> 4.26, 2.09, 0.65 -> 4, 2, 0 (+1
    # to the largest remainder, class 2) -> 5, 3, 2
    assert class_quota(np.array([60, 30, 10]), 10).tolist() == [5, 3, 2]
    assert class_quota(np.array([60, 30, 10]), 100).tolist() == [60, 30, 10]
    assert class_quota(np.array([60, 30, 10]), 500).tolist() == [60, 30, 10]  # capped at the file
    assert class_quota(np.array([5, 0, 5]), 2).tolist() == [1, 0, 1]  # an empty class takes nothing
    assert class_quota(np.array([5, 5, 5]), 2).sum() == 2
    for n in range(1, 40):
        q = class_quota(np.array([17, 3, 11, 0, 8]), n)
        assert q.sum() == min(n, 39) and (q <= [17, 3, 11, 0, 8]).all()


def test_stratified_index_is_deterministic_and_stratified():
    rng = np.random.default_rng(0)
    labels = rng.choice(4, size=1000, p=[0.4, 0.3, 0.2, 0.1])
    a = stratified_index(labels, 100, seed=3)
    assert np.array_equal(a, stratified_index(labels, 100, seed=3))
    assert not np.array_equal(a, stratified_index(labels, 100, seed=4))
    assert len(a) == 100 and len(np.unique(a)) == 100 and np.all(np.diff(a) > 0)
    counts = np.bincount(labels[a], minlength=4)
    expect = np.bincount(labels, minlength=4) / 10
    assert np.all(np.abs(counts - expect) <= 1)
    b = stratified_index(labels, 7, per_class=True, seed=0)
    assert np.bincount(labels[b], minlength=4).tolist() == [7, 7, 7, 7]


def test_cli_subset_copies_arrays_exactly(tmp_path, capsys):
    src = make_synthetic(tmp_path / "t.h5", n=40, size=8, num_classes=3, seed=1, domain="target")
    out = tmp_path / "few.h5"
    assert main(["subset", str(src), "-n", "4", "--per-class", "-o", str(out), "--seed", "2"]) == 0
    assert "subset: 12 of 40" in capsys.readouterr().out
    full, sub = h5.read(src), h5.read(out)
    import h5py

    with h5py.File(out, "r") as f:
        idx = f["subset_index"][()]
    assert np.bincount(sub.label, minlength=3).tolist() == [4, 4, 4]
    for key in ("rgb", "label", "quat", "mask", "depth", "trans"):
        a, b = getattr(full, key), getattr(sub, key)
        if a is not None:
            assert np.array_equal(a[idx], b), key
    assert sub.class_names == full.class_names and sub.attrs["domain"] == "target"
    # the same draw again is refused without --overwrite; a file without labels is a one-line error
    assert main(["subset", str(src), "-n", "4", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and len(err.strip().splitlines()) == 1


def test_bad_n_is_one_line_error(tmp_path, capsys):
    src = make_synthetic(tmp_path / "t.h5", n=10, size=8, num_classes=2, seed=1, domain="target")
    assert main(["subset", str(src), "-n", "0", "-o", str(tmp_path / "o.h5")]) == 2
    err = capsys.readouterr().err
    assert "-n 0" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit):
        main(["subset", str(src), "-o", str(tmp_path / "o.h5")])  # -n is required (argparse usage error)
