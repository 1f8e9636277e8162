"""Unseen classes (PixelDA Table 4): adapt on some classes, export every class, report seen / unseen apart."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from sim2real.cli import main
from sim2real.data import h5
from sim2real.eval.record import read
from sim2real.testing import make_synthetic


@pytest.mark.slow
def test_adapt_on_some_classes_then_export_and_evaluate_all(tmp_path, capsys):
    src = make_synthetic(tmp_path / "s.h5", n=30, size=16, num_classes=3, seed=0)
    tgt = make_synthetic(tmp_path / "t.h5", n=24, size=16, num_classes=3, seed=1, domain="target", labels=False)
    val = make_synthetic(tmp_path / "v.h5", n=12, size=16, num_classes=3, seed=2, domain="target")
    test = make_synthetic(tmp_path / "test.h5", n=30, size=16, num_classes=3, seed=3, domain="target")
    run = tmp_path / "run"
    assert main(["adapt", "--source", str(src), "--target", str(tgt), "--val", str(val), "-o", str(run),
                 "--config", "pixelda-tiny", "--set", 'train.source_classes=["class0", "class1"]']) == 0
    info = json.loads((run / "run.json").read_text())
    full = h5.read(src)
    assert info["source_classes"] == ["class0", "class1"]
    assert info["n_source"] == int(np.isin(full.label, [0, 1]).sum())  # class2's renders were left out
    # export adapts every class, arrays copied exactly, the unseen ones named in the provenance
    out = tmp_path / "adapted.h5"
    assert main(["export", str(run), "--source", str(src), "-o", str(out)]) == 0
    assert "never saw classes class2" in capsys.readouterr().out
    ad = h5.read(out)
    assert np.array_equal(ad.label, full.label) and np.array_equal(ad.quat, full.quat)
    prov = json.loads(ad.attrs["provenance"])
    assert prov["classes_unseen_in_adaptation"] == ["class2"] and prov["adapted_on_classes"] == ["class0", "class1"]
    # evaluate: seen and unseen apart, for T and for a pose network trained on the adapted file
    assert main(["train-pose", "--train", str(out), "-o", str(tmp_path / "pose"), "--config", "pose-tiny",
                 "--set", "train.steps=10", "--no-progress"]) == 0
    rep = tmp_path / "rep"
    assert main(["evaluate", f"T={run}", f"pose={tmp_path / 'pose'}", "--test", str(test), "-o", str(rep)]) == 0
    rec = read(rep / "metrics.json")
    test_d = h5.read(test)
    seen = np.isin(test_d.label, [0, 1])
    for m in rec.models:
        su = m.extra["seen_unseen"]
        assert su["seen"]["n"] == int(seen.sum()) and su["unseen"]["n"] == int((~seen).sum())
        assert m.extra["seen_classes"] == ["class0", "class1"]
    # by hand for T: accuracy over the seen-class test images from the confusion matrix
    cm = np.asarray(rec.models[0].extra["confusion"])
    assert rec.models[0].extra["seen_unseen"]["unseen"]["accuracy"] == pytest.approx(cm[2, 2] / cm[2].sum())
    assert "Seen vs unseen classes" in (rep / "report.md").read_text()


def test_unknown_source_class_is_one_line_error(tmp_path, capsys):
    src = make_synthetic(tmp_path / "s.h5", n=12, size=16, num_classes=3, seed=0)
    tgt = make_synthetic(tmp_path / "t.h5", n=12, size=16, num_classes=3, seed=1, domain="target", labels=False)
    rc = main(["adapt", "--source", str(src), "--target", str(tgt), "-o", str(tmp_path / "r"), "--config", "pixelda-tiny",
               "--set", 'train.source_classes=["class0", "mug"]'])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown class 'mug'" in err and len(err.strip().splitlines()) == 1
