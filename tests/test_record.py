"""The typed metrics.json record: exact round trip (keys and order), typed access, one-line errors on bad files."""

from __future__ import annotations

import json

import pytest

from sim2real.commands.run import _headline
from sim2real.errors import Sim2RealError
from sim2real.eval.record import GapClosedRecord, ModelRecord, ReportRecord, read
from sim2real.eval.report import METRICS_VERSION


def _metrics() -> dict:
    """A small hand-made metrics.json in the documented layout (docs/evaluation.md): a posed and a pose-less model."""
    sig = {"test": "two-proportion", "gap": 0.5, "se": 0.1, "threshold": 0.2, "significant": True, "reason": None}
    return {
        "metrics_version": METRICS_VERSION,
        "created": "2024-01-01T00:00:00+00:00",
        "versions": {"sim2real": "0.1", "numpy": "2.0"},
        "test_set": {"path": "t.h5", "n": 4, "domain": "target", "class_names": ["a", "b"], "image_size": [16, 16],
                     "has_pose": True, "has_add": False},
        "thresholds_deg": [5.0, 10.0],
        "models": [
            {"name": "src", "path": "runs/src", "kind": "pose", "role": "source-only", "step": 10,
             "checkpoint": "runs/src/checkpoints/last.pt", "warnings": [], "n": 4, "accuracy": 0.5,
             "confusion": [[1, 1], [1, 1]], "has_pose": True, "has_add": False, "add_translation": None,
             "symmetry_known": True, "mean_angle_deg": 40.0, "median_angle_deg": 35.5, "mean_angle_deg_correct_class": None,
             "acc_at_deg": {"5": 0.0, "10": 0.25}, "mean_angle_sym_deg": 20.0, "median_angle_sym_deg": 12.25,
             "per_class": [{"n": 2, "recall": 0.5, "precision": 0.5, "symmetric": False}],
             "rotation_verdict": None},
            {"name": "tgt", "path": "runs/tgt", "kind": "pose", "role": "target-only", "warnings": ["w"], "n": 4,
             "accuracy": 1, "confusion": [[2, 0], [0, 2]], "has_pose": False, "has_add": False,
             "add_translation": None, "symmetry_known": False, "per_class": [], "rotation_verdict": None},
        ],
        "chance": None,
        "gap_closed": {"source_only": "src", "target_only": "tgt", "noise_z": 2.0,
                       "significance": {"accuracy": sig, "median_angle_deg": None},
                       "reasons": {"accuracy": None, "mean_angle_deg": "a reference model has no value for this metric"},
                       "models": {"src": {"accuracy": 0.0, "mean_angle_deg": None},
                                  "tgt": {"accuracy": 1.0, "mean_angle_deg": None}}},
        "memorisation": None,
        "warnings": [],
        "notes": ["n1"],
        "figures": ["comparison_angle_error.png"],
    }


def test_round_trip_keeps_every_key_in_order_and_types_what_readers_use(tmp_path):
    m = _metrics()
    rec = ReportRecord.from_dict(m)
    assert json.dumps(rec.to_dict()) == json.dumps(m)  # same content, same key order, ints stay ints
    src, tgt = rec.models
    assert (src.name, src.role, src.accuracy, src.mean_angle_deg, src.median_angle_deg) == ("src", "source-only", 0.5, 40.0, 35.5)
    assert (src.mean_angle_sym_deg, src.median_angle_sym_deg, src.step, src.symmetry_known) == (20.0, 12.25, 10, True)
    assert src.extra["acc_at_deg"] == {"5": 0.0, "10": 0.25}
    assert tgt.mean_angle_deg is None and "mean_angle_deg" not in tgt.to_dict()  # absent stays absent
    assert not tgt.has_pose and tgt.checkpoint is None and "step" not in tgt.to_dict()
    assert isinstance(rec.gap_closed, GapClosedRecord) and rec.gap_closed.share("tgt") == 1.0
    assert rec.gap_closed.share("nobody") is None
    path = rec.write(tmp_path / "metrics.json")
    assert json.loads(path.read_text()) == m
    assert read(path) == rec


def test_a_record_built_in_code_writes_strict_json(tmp_path):
    rec = ReportRecord(metrics_version=METRICS_VERSION, created="now", versions={}, test_set=None, thresholds_deg=[],
                       models=[ModelRecord("a", "runs/a", "pose", "adapted", accuracy=float("nan"), mean_angle_deg=3.0)],
                       chance=None, gap_closed=None, memorisation=None, warnings=[], notes=[], figures=[])
    text = rec.write(tmp_path / "m.json").read_text()
    d = json.loads(text, parse_constant=lambda c: pytest.fail(f"metrics.json contains {c}"))
    assert d["models"][0]["accuracy"] is None and d["models"][0]["mean_angle_deg"] == 3.0
    assert list(d) == ["metrics_version", "created", "versions", "test_set", "thresholds_deg", "models", "chance",
                       "gap_closed", "memorisation", "warnings", "notes", "figures"]
    assert read(tmp_path / "m.json").models[0].name == "a"


def _corrupt(kind: str) -> str:
    m = _metrics()
    if kind == "truncated":
        return json.dumps(m)[:100]
    if kind == "version":
        m["metrics_version"] = 1
    elif kind == "models":
        m["models"] = {"src": m["models"][0]}  # the old dict layout
    elif kind == "accuracy":
        m["models"][0]["accuracy"] = "50%"
    elif kind == "missing":
        del m["gap_closed"]
    elif kind == "gap":
        m["gap_closed"]["models"]["src"]["accuracy"] = [0.1]
    elif kind == "list":
        m = [m]
    return json.dumps(m)


@pytest.mark.parametrize("kind, needle", [
    ("truncated", "invalid JSON"), ("version", "metrics_version 1"), ("models", "models: expected a list"),
    ("accuracy", "models[0].accuracy: expected a number or null"), ("missing", "missing key 'gap_closed'"),
    ("gap", "gap_closed.models.src.accuracy"), ("list", "top level: expected an object"),
])
def test_a_corrupt_metrics_json_is_one_line_naming_the_file(tmp_path, kind, needle):
    p = tmp_path / "metrics.json"
    p.write_text(_corrupt(kind))
    with pytest.raises(Sim2RealError) as e:
        read(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}: ") and needle in msg and "\n" not in msg, msg


def test_unreadable_metrics_json_is_one_line(tmp_path):
    with pytest.raises(Sim2RealError, match="cannot read metrics.json"):
        read(tmp_path / "none.json")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(Sim2RealError, match="bin.json: not a metrics.json file"):
        read(tmp_path / "bin.json")


def test_run_headline_reads_the_record(tmp_path):
    ReportRecord.from_dict(_metrics()).write(tmp_path / "metrics.json")
    lines = _headline(tmp_path)
    assert "accuracy 50.0%, mean angle error 40.0 deg, median symmetry-aware 12.2 deg" in lines[0]
    assert lines[1].split() == ["tgt", "accuracy", "100.0%"]  # no pose: no angles
    assert len(lines) == 2  # the references themselves get no "closes x% of the gap" line
    (tmp_path / "metrics.json").write_text("{")
    assert len(_headline(tmp_path)) == 1 and "invalid JSON" in _headline(tmp_path)[0]
    assert _headline(tmp_path / "nothing") == []
