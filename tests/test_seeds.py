"""`sim2real run --seeds`: per-seed copies of the training stages, mean +- std against numpy, the combined report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sim2real.errors import Sim2RealError
from sim2real.eval.record import ModelRecord, ReportRecord, read
from sim2real.eval.seeds import aggregate, cell, mean_std
from sim2real.pipeline import expand_seeds, load_pipeline, output_path, seeded_stages
from sim2real.testing import make_synthetic

from conftest import run_cli, write_yaml


def _pipeline(tmp_path: Path, sets: str = "") -> Path:
    make_synthetic(tmp_path / "src.h5", n=48, size=16, num_classes=3, seed=0, domain="source")
    make_synthetic(tmp_path / "tgt.h5", n=40, size=16, num_classes=3, seed=1, domain="target")
    make_synthetic(tmp_path / "test.h5", n=30, size=16, num_classes=3, seed=3, domain="target")
    return write_yaml(tmp_path / "p.yaml", f"""
name: seeds
report: report
stages:
  src_only:
    command: train-pose
    args: {{train: [src.h5], config: pose-tiny, set: {{train.steps: 12, train.log_every: 4, train.checkpoint_every: 12,
            perf.device: cpu{sets}}}}}
  tgt_only:
    command: train-pose
    args: {{train: [tgt.h5], config: pose-tiny, set: [train.steps=12, train.log_every=4, train.checkpoint_every=12,
            perf.device=cpu, train.seed=7]}}
  report:
    command: evaluate
    args: {{models: ["source-only=${{src_only}}", "target-only=${{tgt_only}}"], test: test.h5,
            source_only: source-only, target_only: target-only}}
""")


def test_mean_std_against_numpy():
    v = [0.21, 0.192, 0.228]
    got = mean_std(v)
    assert got["n"] == 3
    assert got["mean"] == pytest.approx(np.mean(v), abs=1e-15)
    assert got["std"] == pytest.approx(np.std(v, ddof=1), abs=1e-15)
    # by hand: deviations -0.0, -0.018, +0.018 -> sqrt((0 + 2 * 0.018^2) / 2) = 0.018
    assert got["std"] == pytest.approx(0.018, abs=1e-12)
    assert mean_std([1.0]) == {"mean": 1.0, "std": None, "n": 1}
    assert mean_std([None, float("nan")]) == {"mean": None, "std": None, "n": 0}
    assert mean_std([2.0, None, 4.0])["std"] == pytest.approx(np.sqrt(2.0))
    assert cell({"mean": 0.5, "std": 0.1, "values": {"0": 0.4, "1": 0.6}}, "share") == "50.0 ± 10.0% (40.0, 60.0)"
    assert cell({"mean": 12.25, "std": None, "values": {"0": 12.25}}, "deg") == "12.2°"
    assert cell({"mean": None}, "deg") == "–"


def _record(models: list[tuple[str, float, float]], gap: dict | None = None) -> ReportRecord:
    ms = [ModelRecord(name=n, path="p", kind="pose", role="x", accuracy=a, median_angle_sym_deg=d,
                      extra={"symmetry_known": True, "acc_at_deg_sym": {"30": a / 2}}) for n, a, d in models]
    g = None
    if gap is not None:
        from sim2real.eval.record import GapClosedRecord

        g = GapClosedRecord(source_only="so", target_only="to", noise_z=2.0, significance={}, reasons={}, models=gap)
    return ReportRecord(metrics_version=2, created="", versions={}, test_set=None, thresholds_deg=[30.0], models=ms,
                        chance={"median_angle_sym_deg": 87.0, "mean_angle_sym_deg": 89.0}, gap_closed=g,
                        memorisation=None, warnings=[], notes=[], figures=[])


def test_aggregate_per_model_and_gap():
    recs = {0: _record([("so", 0.2, 100.0), ("da", 0.4, 80.0), ("to", 0.9, 20.0)],
                       {"so": {"accuracy": 0.0}, "da": {"accuracy": 0.3, "median_angle_sym_deg": None}, "to": {"accuracy": 1.0}}),
            1: _record([("so", 0.3, 90.0), ("da", 0.6, 50.0), ("to", 0.95, 22.0)],
                       {"so": {"accuracy": 0.0}, "da": {"accuracy": 0.5, "median_angle_sym_deg": 0.6}, "to": {"accuracy": 1.0}})}
    s = aggregate(recs)
    assert s["seeds"] == [0, 1]
    da = s["models"]["da"]
    assert da["accuracy"]["mean"] == pytest.approx(0.5) and da["accuracy"]["std"] == pytest.approx(np.std([0.4, 0.6], ddof=1))
    assert da["median_angle_sym_deg"]["values"] == {"0": 80.0, "1": 50.0}
    assert da["acc30_sym"]["mean"] == pytest.approx(0.25)
    assert set(s["gap_closed"]["models"]) == {"da"}  # the references themselves are not "closing" anything
    g = s["gap_closed"]["models"]["da"]
    assert g["accuracy"]["mean"] == pytest.approx(0.4)
    assert g["median_angle_sym_deg"] == {"mean": 0.6, "std": None, "n": 1, "values": {"1": 0.6}}  # seed 0: noise
    assert s["chance"]["median_angle_sym_deg"]["mean"] == 87.0
    with pytest.raises(Sim2RealError, match="not comparable"):
        aggregate({0: recs[0], 1: _record([("so", 0.1, 1.0)])})


def test_expand_seeds_copies_training_stages_only(tmp_path):
    pipe = load_pipeline(_pipeline(tmp_path))
    assert seeded_stages(pipe) == ["src_only", "tgt_only", "report"]
    ex = expand_seeds(pipe, [0, 3])
    assert list(ex.stages) == ["src_only@seed0", "tgt_only@seed0", "report@seed0",
                               "src_only@seed3", "tgt_only@seed3", "report@seed3"]
    st = ex.stages["src_only@seed3"]
    assert st.args["set"]["train.seed"] == 3 and st.args["set"]["train.steps"] == 12
    assert ex.stages["tgt_only@seed3"].args["set"][-1] == "train.seed=3"
    assert not any("train.seed=7" in x for x in ex.stages["tgt_only@seed3"].args["set"])  # the file's seed is replaced
    rep = ex.stages["report@seed3"]
    assert rep.deps == ["src_only@seed3", "tgt_only@seed3"]
    assert output_path(tmp_path / "w", rep) == tmp_path / "w" / "seeds" / "seed3" / "report"
    with pytest.raises(Sim2RealError, match="repeated"):
        expand_seeds(pipe, [1, 1])


@pytest.mark.slow
def test_run_with_seeds_end_to_end(tmp_path):
    pf = _pipeline(tmp_path)
    r = run_cli("run", str(pf), "-o", "w", "--seeds", "0,1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    w = tmp_path / "w"
    for s in (0, 1):
        run = json.loads((w / "seeds" / f"seed{s}" / "src_only" / "run.json").read_text())
        assert run["config"]["train"]["seed"] == s
        assert (w / "seeds" / f"seed{s}" / "report" / "metrics.json").is_file()
    summary = json.loads((w / "seeds" / "report" / "summary.json").read_text())
    per = [read(w / "seeds" / f"seed{s}" / "report" / "metrics.json") for s in (0, 1)]
    accs = [p.models[0].accuracy for p in per]
    assert summary["models"]["source-only"]["accuracy"]["mean"] == pytest.approx(np.mean(accs))
    assert summary["models"]["source-only"]["accuracy"]["values"] == {"0": accs[0], "1": accs[1]}
    assert (w / "seeds" / "report" / "report.html").is_file() and (w / "seeds" / "report" / "figures" / "seeds.png").is_file()
    assert "over seeds 0, 1" in r.stdout
    # again: everything cached, the combined report rewritten from the cached per-seed reports
    r = run_cli("run", str(pf), "-o", "w", "--seeds", "0,1", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.count("] cached") == 6, r.stdout


def test_bad_seed_list_is_one_line_error(tmp_path):
    pf = _pipeline(tmp_path)
    r = run_cli("run", str(pf), "-o", "w", "--seeds", "0,x", cwd=tmp_path)
    assert r.returncode == 2 and "comma-separated integers" in r.stderr and "Traceback" not in r.stderr
