"""Label-free model selection: each validator against a hand computation, --select picks best.pt by it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from sim2real.cli import main
from sim2real.engine.validators import (VALIDATORS, dev_score, domain_probabilities, entropy_score, im_score,
                                        selection_table)
from sim2real.testing import make_synthetic


def test_entropy_and_im_by_hand():
    # two samples, two classes: p = (1/2, 1/2) and p = (1, 0) (logits 0, 0 and 50, -50)
    logits = torch.tensor([[0.0, 0.0], [50.0, -50.0]])
    h1 = math.log(2)
    assert entropy_score(logits) == pytest.approx(h1 / 2, abs=1e-12)
    # mean prediction (3/4, 1/4): H = -(3/4 log 3/4 + 1/4 log 1/4)
    h_mean = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert im_score(logits) == pytest.approx(h_mean - h1 / 2, abs=1e-12)
    # confident and diverse beats confident and collapsed
    diverse = torch.tensor([[9.0, 0.0], [0.0, 9.0]])
    collapsed = torch.tensor([[9.0, 0.0], [9.0, 0.0]])
    assert im_score(diverse) > im_score(collapsed)
    assert entropy_score(diverse) == pytest.approx(entropy_score(collapsed))


def test_dev_score_against_numpy():
    rng = np.random.default_rng(0)
    losses = rng.uniform(0, 2, 50)
    p = rng.uniform(0.1, 0.9, 50)
    got = dev_score(torch.tensor(losses), torch.tensor(p), n_source=50, n_target=100)
    w = p / (1 - p) * (50 / 100)
    wl = w * losses
    eta = -np.cov(wl, w, ddof=1)[0, 1] / np.var(w, ddof=1)
    assert got == pytest.approx(wl.mean() + eta * w.mean() - eta, rel=1e-10)
    # constant weights (no domain shift seen): DEV is the plain weighted mean
    assert dev_score(torch.tensor(losses), torch.full((50,), 0.5), 50, 50) == pytest.approx(losses.mean())


def test_domain_classifier_separates_shifted_features():
    g = torch.Generator().manual_seed(0)
    fs = torch.randn(200, 3, generator=g)
    ft = torch.randn(200, 3, generator=g) + torch.tensor([2.0, 0.0, 0.0])
    p = domain_probabilities(fs, ft)
    assert p.shape == (200,) and float(p.mean()) < 0.35  # source features look like source
    far = domain_probabilities(torch.cat([fs, torch.tensor([[4.0, 0.0, 0.0]])]), ft)[-1]  # deep in the target cloud
    assert float(far) > 0.9


def test_selection_table_picks_per_validator():
    rows = [{"split": "val", "step": 100, "accuracy": 0.5, "acc30_sym": 0.1, "v/im": 0.2, "v/entropy": 1.0},
            {"split": "val", "step": 200, "accuracy": 0.7, "acc30_sym": 0.3, "v/im": 0.1, "v/entropy": 0.5},
            {"split": "val", "step": 300, "accuracy": 0.6, "acc30_sym": 0.2, "v/im": 0.4, "v/entropy": 0.8},
            {"split": "train", "step": 300, "v/im": 99.0}]
    t = selection_table(rows, (("acc30_sym", True),))
    assert t["oracle"]["step"] == 200 and t["last"]["step"] == 300
    assert t["validators"]["im"]["step"] == 300 and t["validators"]["im"]["accuracy"] == 0.6
    assert t["validators"]["entropy"]["step"] == 200
    assert set(t["validators"]) == {"im", "entropy"}
    assert set(VALIDATORS) == {"src_val", "entropy", "im", "dev", "disc"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("select")
    return {"source": make_synthetic(d / "s.h5", n=30, size=16, num_classes=3, seed=0),
            "target": make_synthetic(d / "t.h5", n=24, size=16, num_classes=3, seed=1, domain="target", labels=False),
            "val": make_synthetic(d / "v.h5", n=9, size=16, num_classes=3, seed=2, domain="target")}


@pytest.mark.slow
@pytest.mark.parametrize("method, config, disc", [("pixelda", "pixelda-tiny", True), ("dann", "feature-tiny", True),
                                                  ("dtn", "dtn-tiny", False), ("i2i", "i2i-tiny", False)])
def test_select_by_a_validator_picks_best_pt_and_writes_selection(data, tmp_path, capsys, method, config, disc):
    out = tmp_path / "run"
    rc = main(["adapt", "--method", method, "--source", str(data["source"]), "--target", str(data["target"]),
               "--val", str(data["val"]), "-o", str(out), "--config", config, "--select", "dev",
               "--set", "select.source_val_n=8", "--set", "select.target_n=16", "--set", "train.val_every=2",
               "--set", "train.steps=6"])
    assert rc == 0, capsys.readouterr().err
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if r["split"] == "val"]
    keys = {"v/entropy", "v/im", "v/src_acc", "v/dev"} | ({"v/disc"} if disc else set())
    assert all(keys <= set(r) for r in val) and all("accuracy" in r for r in val)
    best = torch.load(out / "checkpoints" / "best.pt", weights_only=True)
    assert best["step"] == min(val, key=lambda r: r["v/dev"])["step"]  # lower DEV risk is better
    sel = json.loads((out / "selection.json").read_text())
    assert sel["select"] == "dev" and sel["validators"]["dev"]["step"] == best["step"]
    assert "the checkpoint each validator picks" in capsys.readouterr().out
    # without labels at all: a label-free validator still picks best.pt
    out2 = tmp_path / "nolabels"
    assert main(["adapt", "--method", method, "--source", str(data["source"]), "--target", str(data["target"]),
                 "-o", str(out2), "--config", config, "--select", "im", "--set", "train.val_every=3",
                 "--set", "train.steps=6"]) == 0
    assert (out2 / "checkpoints" / "best.pt").is_file()


def test_select_needing_held_out_renders_is_one_line_error(data, tmp_path, capsys):
    rc = main(["adapt", "--source", str(data["source"]), "--target", str(data["target"]), "-o", str(tmp_path / "r"),
               "--config", "pixelda-tiny", "--select", "src_val"])
    err = capsys.readouterr().err
    assert rc == 2 and "select.source_val_n" in err and len(err.strip().splitlines()) == 1
    rc = main(["adapt", "--method", "coral", "--source", str(data["source"]), "--target", str(data["target"]),
               "-o", str(tmp_path / "c"), "--config", "feature-tiny", "--select", "disc"])
    err = capsys.readouterr().err
    assert rc == 2 and "not available" in err and len(err.strip().splitlines()) == 1


def test_negative_transfer_warning_from_label_free_im():
    from sim2real.eval.evaluate import ModelResult, label_free_check

    diverse = np.array([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.05, 0.05, 0.9]] * 4, np.float32)
    collapsed = np.array([[0.9, 0.05, 0.05]] * 12, np.float32)

    def res(name, role, probs):
        return ModelResult(name=name, path=name, kind="pose", role=role, info={}, pred={"probs": probs}, metrics={})

    # source-only: diverse but unsure (IM > 0); "a": diverse and sure (higher); "b": uniform (IM 0, lower)
    unsure = np.array([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.25, 0.25, 0.5]] * 4, np.float32)
    base, good, bad = res("src", "source-only", unsure), res("a", "adapted", diverse), res("b", "adapted", collapsed * 0 + 1 / 3)
    label_free_check([base, good, bad], base)
    # by hand: the uniform model has mean prediction uniform and per-sample entropy log 3 -> IM 0
    assert bad.metrics["label_free"]["im"] == pytest.approx(0.0, abs=1e-6)
    assert bad.metrics["label_free"]["entropy"] == pytest.approx(math.log(3), abs=1e-6)
    assert good.warnings == [] and base.warnings == []
    assert len(bad.warnings) == 1 and "negative transfer" in bad.warnings[0]
