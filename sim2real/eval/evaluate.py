"""``sim2real evaluate``: run models on a labelled test set, compute metrics, write the report.

The test set is only ever predicted on: nothing is trained or selected on it here. The report flags a model
whose recorded training or validation files include the test file itself (a leak).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sim2real.errors import Sim2RealError
from sim2real.eval.metrics import DEFAULT_THRESHOLDS_DEG, evaluate_arrays, gap_table
from sim2real.eval.record import ReportRecord


@dataclasses.dataclass
class ModelResult:
    """One model's predictions and metrics on the test set."""

    name: str
    path: str
    kind: str
    role: str
    info: dict[str, Any]
    pred: dict[str, np.ndarray]
    metrics: dict[str, Any]
    warnings: list[str] = dataclasses.field(default_factory=list)


def load_test_set(path: str | Path, size: tuple[int, int] | None = None, class_names: list[str] | None = None,
                  skip_bad: bool = False):
    """Read the test set: a sim2real HDF5 file, or a folder of images with a ``labels.csv`` (resized to ``size``).

    It must be labelled (``label`` + ``class_names``); poses are optional (classification-only report without).
    ``class_names`` resolves class names / ids in a ``labels.csv`` (see docs/data-formats.md).
    """
    from sim2real.data.sources import load_any

    data = load_any(path, size=size, class_names=class_names, skip_bad=skip_bad)
    data.require("label", "class_names", why="evaluate needs a labelled test set")
    return data


def parse_model_arg(arg: str) -> tuple[str | None, str]:
    """``"NAME=PATH"`` -> (NAME, PATH); a plain path (or one that exists with '=' in it) -> (None, PATH)."""
    if "=" in arg and not Path(arg).exists():
        name, _, path = arg.partition("=")
        if name and path:
            return name, path
    return None, arg


def _unique_names(names: list[str], paths: list[str]) -> list[str]:
    out = list(names)
    for i, n in enumerate(names):
        if names.count(n) > 1:
            out[i] = f"{Path(paths[i]).resolve().parent.name}/{n}"
    for i, n in enumerate(out):
        if out.count(n) > 1:
            out[i] = f"{n}#{i + 1}"
    return out


def _leak_warnings(test_path: str, info: dict) -> list[str]:
    test = Path(test_path).resolve()
    used = [(f.get("path"), "training") for f in info.get("train") or []]
    if info.get("val"):
        used.append((info["val"].get("path"), "validation"))
    out = [f"the test file {test_path} was one of its {what} files: its numbers are not a held-out evaluation"
           for p, what in used if p and Path(p).resolve() == test]
    if info.get("target_unlabelled") and Path(info["target_unlabelled"]).resolve() == test:
        out.append(f"the test images {test_path} were its unlabelled target set during adaptation (transductive: "
                   "labels unused, images seen)")
    return out


def evaluate_models(predictors: Sequence, data, batch_size: int = 256, device: Any = "cpu",
                    thresholds: Sequence[float] = DEFAULT_THRESHOLDS_DEG) -> list[ModelResult]:
    """Predict with each model on ``data`` and compute all metrics (:func:`sim2real.eval.metrics.evaluate_arrays`)."""
    names = _unique_names([p.name for p in predictors], [p.path for p in predictors])
    results = []
    for p, name in zip(predictors, names):
        pred = p.predict(data, batch_size=batch_size, device=device)
        has_pose = data.quat is not None and pred.get("quat_pred") is not None
        m = evaluate_arrays(data.label, pred["label_pred"], data.num_classes,
                            quat_true=data.quat if has_pose else None, quat_pred=pred["quat_pred"] if has_pose else None,
                            trans_true=data.trans, trans_pred=pred.get("trans_pred"),
                            model_points=data.model_points, diameters=data.diameters, thresholds=thresholds,
                            # the test file's annotations (Symmetry objects: continuous ones minimised exactly)
                            symmetries=getattr(data, "symmetries", None))
        warnings = _leak_warnings(data.path, p.info)
        if data.quat is not None and pred.get("quat_pred") is None:
            warnings.append("the model has no quaternion head: pose metrics are not available for it")
        info = {k: p.info.get(k) for k in ("step", "arch", "checkpoint", "train", "val", "target_unlabelled")
                if p.info.get(k) is not None}
        info["method"] = p.method
        seen = p.seen_classes
        if seen:
            info["seen_classes"] = seen
            m["seen_unseen"] = seen_unseen_metrics(data, pred, m, seen)
        results.append(ModelResult(name=name, path=p.path, kind=p.kind, role=p.role, info=info, pred=pred,
                                   metrics=m, warnings=warnings))
    return results


def seen_unseen_metrics(data, pred: dict, m: dict, seen: Sequence[str]) -> dict[str, dict[str, float | int | None]]:
    """Accuracy and symmetry-aware angle errors over the test images of the classes the adaptation saw and of the
    others (paper Table 4): ``{"seen": {n, accuracy, mean_angle_sym_deg, median_angle_sym_deg}, "unseen": {...}}``."""
    names = list(data.class_names)
    is_seen = np.isin(data.label, [names.index(c) for c in seen if c in names])
    correct = pred["label_pred"] == data.label
    ps = m.get("per_sample") or {}
    angles = ps.get("angle_sym_deg") if ps.get("angle_sym_deg") is not None else ps.get("angle_deg")
    out = {}
    for part, sel in (("seen", is_seen), ("unseen", ~is_seen)):
        n = int(sel.sum())
        row: dict[str, float | int | None] = {"n": n, "accuracy": float(correct[sel].mean()) if n else None}
        if angles is not None:
            a = np.asarray(angles)[sel]
            row["mean_angle_sym_deg"] = float(a.mean()) if n else None
            row["median_angle_sym_deg"] = float(np.median(a)) if n else None
        out[part] = row
    return out


#: IM below source-only's by more than this (nats) triggers the negative-transfer warning (a margin for noise).
NEGATIVE_TRANSFER_MARGIN = 0.02


def label_free_check(results: Sequence[ModelResult], base: ModelResult | None) -> None:
    """The label-free scores of each model on the test images (labels unused) and the negative-transfer warning.

    Adds ``label_free: {"entropy", "im"}`` (:mod:`sim2real.engine.validators`) to each model's metrics. A model
    that is neither reference and whose information-maximisation score is below the source-only model's gets a
    warning: a user without target labels would see the adaptation as worse than training on renders alone.
    """
    import torch

    from sim2real.engine.validators import entropy_score, im_score

    for r in results:
        logits = torch.log(torch.as_tensor(r.pred["probs"], dtype=torch.float64).clamp_min(1e-300))
        r.metrics["label_free"] = {"entropy": entropy_score(logits), "im": im_score(logits)}
    if base is None:
        return
    ref = base.metrics["label_free"]["im"]
    for r in results:
        if r is base or r.role in ("source-only", "target-only"):
            continue
        im = r.metrics["label_free"]["im"]
        if im < ref - NEGATIVE_TRANSFER_MARGIN:
            r.warnings.append(f"possible negative transfer: its label-free information-maximisation score on the test "
                              f"images (labels unused) is {im:.3f}, below {base.name}'s {ref:.3f}; without target "
                              "labels this adapted model would look worse than training on renders alone")


def choose_references(results: Sequence[ModelResult], source_only: str | None = None,
                      target_only: str | None = None) -> tuple[ModelResult | None, ModelResult | None, list[str]]:
    """The source-only baseline and target-only upper bound for "gap closed" (by name, else by recorded role)."""
    notes: list[str] = []

    def pick(name: str | None, role: str) -> ModelResult | None:
        if name is not None:
            hit = [r for r in results if r.name == name]
            if not hit:
                raise Sim2RealError(f"--{role}: no model named {name!r} (models: {', '.join(r.name for r in results)})")
            return hit[0]
        hit = [r for r in results if r.role == role]
        if len(hit) > 1:
            notes.append(f"several {role} models; {hit[0].name} is used as the {role} reference (choose with --{role})")
        return hit[0] if hit else None

    return pick(source_only, "source-only"), pick(target_only, "target-only"), notes


def chance_baseline(data, thresholds: Sequence[float] = DEFAULT_THRESHOLDS_DEG) -> dict | None:
    """The constant-rotation ("chance") baseline of the test set (once per test set, not per model), or None.

    :func:`sim2real.eval.metrics.constant_rotation_baseline` with the test file's symmetries; None when the test
    set has no poses (the report then shows no chance row).
    """
    from sim2real.eval.metrics import constant_rotation_baseline

    if data is None or data.quat is None:
        return None
    return constant_rotation_baseline(data.label, data.quat, data.num_classes, thresholds=thresholds,
                                      symmetries=getattr(data, "symmetries", None))


def run_evaluation(models: Sequence[str], test_path: str | Path | None, out_dir: str | Path, device: str = "auto",
                   batch_size: int = 256, thresholds: Sequence[float] = DEFAULT_THRESHOLDS_DEG, worst_k: int = 16,
                   memorisation: str | Path | None = None, target_train: str | Path | None = None,
                   memorisation_n: int = 24, source_only: str | None = None, target_only: str | None = None,
                   seed: int = 0, skip_bad: bool = False) -> ReportRecord:
    """Evaluate models on a test set (and/or run the memorisation check) and write the report.

    Returns the :class:`~sim2real.eval.record.ReportRecord` written to ``OUT/metrics.json``.
    """
    from sim2real.eval.memorisation import memorisation_check
    from sim2real.eval.predictor import load_predictor
    from sim2real.eval.report import write_report
    from sim2real.engine.device import resolve_device

    if not models and memorisation is None:
        raise Sim2RealError("evaluate: give at least one MODEL (with --test), or --memorisation ADAPTED.h5")
    if models and test_path is None:
        raise Sim2RealError("--test: required to evaluate models (a labelled HDF5 test set)")
    if (memorisation is None) != (target_train is None):
        raise Sim2RealError("--memorisation and --target-train go together (adapted samples vs the target training set)")
    dev = resolve_device(device)
    predictors = []
    for arg in models:
        name, path = parse_model_arg(arg)
        predictors.append(load_predictor(path, name=name))
    data = None
    if predictors:
        first = predictors[0]
        data = load_test_set(test_path, size=first.image_size, class_names=first.class_names, skip_bad=skip_bad)
        for p in predictors:
            p.check_compatible(data)  # fail on class-name / size mismatches before any work
    results = evaluate_models(predictors, data, batch_size=batch_size, device=dev, thresholds=thresholds) if predictors else []
    base, upper, notes = choose_references(results, source_only, target_only) if results else (None, None, [])
    label_free_check(results, base)
    if data is not None and data.attrs.get("resized_summary"):  # an image folder fitted to the models' size
        notes = [f"{test_path}: {data.attrs['resized_summary']}", *notes]
    memo = None
    if memorisation is not None:
        from sim2real.data import h5

        memo = memorisation_check(h5.read(memorisation), h5.read(target_train), n=memorisation_n, seed=seed)
    chance = chance_baseline(data, thresholds) if results else None
    metrics = write_report(out_dir, data, results, base, upper, gap_table(results, base, upper), memo, notes,
                           thresholds=thresholds, worst_k=worst_k, chance=chance)
    # metrics.json goes through its typed record: what is written is what read() accepts (same keys, same order)
    record = ReportRecord.from_dict(metrics)
    record.write(Path(out_dir) / "metrics.json")
    return record
