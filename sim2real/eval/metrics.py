"""Classification and pose metrics (numpy only). Definitions are written out in ``docs/evaluation.md``.

Vocabulary follows the BOP toolkit: ``R_est, t_est, R_gt, t_gt`` are model-to-camera poses (OpenCV camera,
metres, see :mod:`sim2real.conventions`), ``pts`` are model points ``(P, 3)`` in the model frame, metres.

* **Rotation error** ``e_R = 2 * arccos(|q_est . q_gt|)`` in degrees, in [0, 180]; it is sign-invariant
  (``q == -q``) and equals BOP's ``re = arccos((trace(R_est R_gt^T) - 1) / 2)``; it is PixelDA's pose metric.
* **Accuracy** = share of samples whose predicted class equals the true class.
* **Accuracy at X degrees** (``acc@X``) = share of samples with the correct class *and* ``e_R < X``.
* **ADD** = mean over model points of ``||(R_est p + t_est) - (R_gt p + t_gt)||`` (Hinterstoisser et al. 2012).
* **ADD-S** = mean over model points ``p`` of the distance from ``R_gt p + t_gt`` to the closest transformed
  point ``R_est p' + t_est`` (for symmetric objects).
* **ADD / ADD-S recall** = share of samples with the correct class and error ``< 0.1 * diameter``.
* **Symmetry-aware rotation error** ``e_R^sym = min over S in G_c of angle(R_est, R_gt S)``: the object's symmetry
  group ``G_c`` (model frame, identity included; :mod:`sim2real.symmetry`) as in BOP's MSSD. Every ``*_sym``
  metric is its plain twin computed with ``e_R^sym``; without symmetries (None) they equal the plain ones.
* **Gap closed** = ``(value - source_only) / (target_only - source_only)`` per metric (:func:`gap_table`), None
  where the references' gap is within its noise (:func:`gap_noise`); the report's worst cases: :func:`worst_indices`.

All functions take arrays and return arrays or plain floats; no I/O, no torch.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from sim2real.conventions import angle_deg_from_dot, matrix_from_quat, quat_angle_deg
from sim2real.symmetry import Symmetry, sym_rotation_error_deg

#: Angle thresholds (degrees) at which accuracy is reported.
DEFAULT_THRESHOLDS_DEG: tuple[float, ...] = (5.0, 10.0, 15.0, 30.0)
#: ADD / ADD-S threshold as a fraction of the object diameter.
ADD_FRACTION = 0.1


def rotation_error_deg(q_est: np.ndarray, q_gt: np.ndarray) -> np.ndarray:
    """``2 * arccos(|q_est . q_gt|)`` in degrees.

    Args:
        q_est, q_gt: ``(N, 4)`` quaternions (w, x, y, z); normalised here; sign-free.

    Returns:
        ``(N,)`` float64 angles in [0, 180].
    """
    q_est = np.asarray(q_est, dtype=np.float64)
    q_gt = np.asarray(q_gt, dtype=np.float64)
    if q_est.shape != q_gt.shape or q_est.shape[-1] != 4:
        raise ValueError(f"rotation_error_deg: expected two (N, 4) arrays, got {q_est.shape} and {q_gt.shape}")
    return quat_angle_deg(q_est, q_gt)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``(C, C)`` int64 counts; row = true class, column = predicted class."""
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"confusion_matrix: {y_true.shape} true labels vs {y_pred.shape} predictions")
    for name, y in (("true", y_true), ("predicted", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"confusion_matrix: {name} labels outside [0, {num_classes})")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def accuracy_from_confusion(cm: np.ndarray) -> float:
    """Trace over total: the share of correctly classified samples (NaN for an empty matrix)."""
    cm = np.asarray(cm)
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def per_class_rates(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class recall (row-normalised diagonal) and precision (column-normalised); NaN where undefined."""
    cm = np.asarray(cm, dtype=np.float64)
    diag = np.diag(cm)
    rows, cols = cm.sum(axis=1), cm.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(rows > 0, diag / np.where(rows > 0, rows, 1), np.nan)
        precision = np.where(cols > 0, diag / np.where(cols > 0, cols, 1), np.nan)
    return recall, precision


def accuracy_at_thresholds(angle_deg: np.ndarray, correct: np.ndarray,
                           thresholds: Sequence[float] = DEFAULT_THRESHOLDS_DEG) -> dict[float, float]:
    """Share of samples with the correct class and rotation error strictly below each threshold (degrees)."""
    angle_deg = np.asarray(angle_deg, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    if angle_deg.size == 0:
        return {float(t): float("nan") for t in thresholds}
    return {float(t): float(np.mean(correct & (angle_deg < t))) for t in thresholds}


def transform_points(pts: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``(P, 3)`` model points under ``(N, 3, 3)`` rotations and ``(N, 3)`` translations -> ``(N, P, 3)``."""
    pts = np.asarray(pts, dtype=np.float64)
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    return np.einsum("nij,pj->npi", R, pts) + t[:, None, :]


def add_error(pts: np.ndarray, R_est: np.ndarray, t_est: np.ndarray, R_gt: np.ndarray, t_gt: np.ndarray) -> np.ndarray:
    """ADD: mean point distance between the estimated and true pose.

    Args:
        pts: ``(P, 3)`` model points, metres (or ``(N, P, 3)``: one point set per sample).
        R_est, R_gt: ``(N, 3, 3)`` R_m2c.
        t_est, t_gt: ``(N, 3)`` t_m2c, metres.

    Returns:
        ``(N,)`` metres.
    """
    a, b = _transform_both(pts, R_est, t_est, R_gt, t_gt)
    return np.linalg.norm(a - b, axis=-1).mean(axis=-1)


def adds_error(pts: np.ndarray, R_est: np.ndarray, t_est: np.ndarray, R_gt: np.ndarray, t_gt: np.ndarray) -> np.ndarray:
    """ADD-S: mean over true-pose points of the distance to the closest estimated-pose point. ``(N,)`` metres."""
    from scipy.spatial import cKDTree

    est, gt = _transform_both(pts, R_est, t_est, R_gt, t_gt)
    out = np.empty(est.shape[0])
    for i in range(est.shape[0]):
        d, _ = cKDTree(est[i]).query(gt[i], k=1)
        out[i] = d.mean()
    return out


def _transform_both(pts, R_est, t_est, R_gt, t_gt) -> tuple[np.ndarray, np.ndarray]:
    pts = np.asarray(pts, dtype=np.float64)
    if pts.ndim == 2:
        return transform_points(pts, R_est, t_est), transform_points(pts, R_gt, t_gt)
    R_est, R_gt = np.asarray(R_est, np.float64), np.asarray(R_gt, np.float64)
    t_est, t_gt = np.asarray(t_est, np.float64), np.asarray(t_gt, np.float64)
    est = np.einsum("nij,npj->npi", R_est, pts) + t_est[:, None, :]
    gt = np.einsum("nij,npj->npi", R_gt, pts) + t_gt[:, None, :]
    return est, gt


def recall_below(errors: np.ndarray, limits: np.ndarray, correct: np.ndarray | None = None) -> float:
    """Share of samples with ``errors < limits`` (and, if given, ``correct``). NaN for no samples."""
    errors = np.asarray(errors, dtype=np.float64)
    if errors.size == 0:
        return float("nan")
    ok = errors < np.asarray(limits, dtype=np.float64)
    if correct is not None:
        ok &= np.asarray(correct, dtype=bool)
    return float(ok.mean())


def _nan_stat(fn, x: np.ndarray) -> float:
    return float(fn(x)) if np.asarray(x).size else float("nan")


def evaluate_arrays(label_true: np.ndarray, label_pred: np.ndarray, num_classes: int,
                    quat_true: np.ndarray | None = None, quat_pred: np.ndarray | None = None,
                    trans_true: np.ndarray | None = None, trans_pred: np.ndarray | None = None,
                    model_points: np.ndarray | None = None, diameters: np.ndarray | None = None,
                    thresholds: Sequence[float] = DEFAULT_THRESHOLDS_DEG,
                    symmetries: Sequence | None = None) -> dict:
    """All metrics for one model on one test set.

    Args:
        label_true, label_pred: ``(N,)`` class ids.
        num_classes: C.
        quat_true, quat_pred: ``(N, 4)`` (w, x, y, z), or None when the test set has no poses.
        trans_true: ``(N, 3)`` true t_m2c (metres), needed for ADD.
        trans_pred: ``(N, 3)`` predicted t_m2c, or None: then ADD uses ``trans_true`` with the predicted
            rotation (a *rotation-only* ADD; the result records ``add_translation = "ground truth"``).
        model_points: ``(C, P, 3)`` model-frame points, metres; diameters: ``(C,)`` metres.
        symmetries: per class the rotation group -- ``(S_c, 3, 3)`` rotations
            (:func:`sim2real.symmetry.rotation_groups`), a :class:`~sim2real.symmetry.Symmetry` (continuous
            symmetries then minimised exactly) or None (identity only) -- or None for all: unknown.

    Returns:
        A dict of plain values (JSON-ready summary) plus per-sample arrays under ``"per_sample"``
        (``angle_deg``, ``angle_sym_deg``, ``add_m``, ``adds_m``, ``correct``: numpy arrays, or None).
        Symmetry-aware keys: ``mean_angle_sym_deg``, ``median_angle_sym_deg``, ``acc_at_deg_sym``, ``rot_at_deg_sym``
        (as their plain twins), ``symmetry_known`` (True when ``symmetries`` was given, even if no class is
        symmetric); per class ``mean_angle_sym_deg``, ``median_angle_sym_deg``, ``acc_at_deg_sym`` and
        ``symmetric`` (its group has more than the identity).
    """
    label_true = np.asarray(label_true, dtype=np.int64)
    label_pred = np.asarray(label_pred, dtype=np.int64)
    if symmetries is not None and len(symmetries) != num_classes:
        raise ValueError(f"evaluate_arrays: {len(symmetries)} symmetry groups for {num_classes} classes")
    n = int(label_true.size)
    cm = confusion_matrix(label_true, label_pred, num_classes)
    correct = label_true == label_pred
    recall, precision = per_class_rates(cm)
    out: dict = {
        "n": n,
        "accuracy": accuracy_from_confusion(cm),
        "confusion": cm.tolist(),
        "has_pose": quat_true is not None and quat_pred is not None,
        "has_add": False,
        "add_translation": None,
        "symmetry_known": symmetries is not None,
    }
    angle = angle_sym = add = adds = None
    per_class_angle: list = [None] * num_classes
    if out["has_pose"]:
        angle = rotation_error_deg(quat_pred, quat_true)
        out["mean_angle_deg"] = _nan_stat(np.mean, angle)
        out["median_angle_deg"] = _nan_stat(np.median, angle)
        out["mean_angle_deg_correct_class"] = _nan_stat(np.mean, angle[correct])
        out["acc_at_deg"] = {f"{t:g}": v for t, v in accuracy_at_thresholds(angle, correct, thresholds).items()}
        out["rot_at_deg"] = {f"{t:g}": v for t, v in accuracy_at_thresholds(angle, np.ones(n, bool), thresholds).items()}
        per_class_angle = [angle[label_true == c] for c in range(num_classes)]
        angle_sym = angle if symmetries is None else sym_rotation_error_deg(quat_pred, quat_true, list(symmetries),
                                                                            labels=label_true)
        out["mean_angle_sym_deg"] = _nan_stat(np.mean, angle_sym)
        out["median_angle_sym_deg"] = _nan_stat(np.median, angle_sym)
        out["acc_at_deg_sym"] = {f"{t:g}": v for t, v in accuracy_at_thresholds(angle_sym, correct, thresholds).items()}
        out["rot_at_deg_sym"] = {f"{t:g}": v for t, v in
                                 accuracy_at_thresholds(angle_sym, np.ones(n, bool), thresholds).items()}
        if trans_true is not None and model_points is not None and diameters is not None:
            R_est = matrix_from_quat(quat_pred)
            R_gt = matrix_from_quat(quat_true)
            t_gt = np.asarray(trans_true, dtype=np.float64)
            t_est = t_gt if trans_pred is None else np.asarray(trans_pred, dtype=np.float64)
            # each sample is scored on its TRUE object's points; a wrong class still fails via `correct`
            pts = np.asarray(model_points, dtype=np.float64)[label_true]
            add = add_error(pts, R_est, t_est, R_gt, t_gt)
            adds = adds_error(pts, R_est, t_est, R_gt, t_gt)
            limit = ADD_FRACTION * np.asarray(diameters, dtype=np.float64)[label_true]
            out["has_add"] = True
            out["add_translation"] = "ground truth" if trans_pred is None else "predicted"
            out["add_recall"] = recall_below(add, limit, correct)
            out["adds_recall"] = recall_below(adds, limit, correct)
            out["mean_add_m"] = _nan_stat(np.mean, add)
    classes = []
    for c in range(num_classes):
        sel = label_true == c
        row = {"n": int(sel.sum()), "recall": _f(recall[c]), "precision": _f(precision[c]),
               "symmetric": symmetries is not None and is_symmetric(symmetries[c])}
        if angle is not None:
            a = per_class_angle[c]
            row["mean_angle_deg"] = _nan_stat(np.mean, a)
            row["median_angle_deg"] = _nan_stat(np.median, a)
            row["acc_at_deg"] = {f"{t:g}": v for t, v in accuracy_at_thresholds(a, correct[sel], thresholds).items()}
            a = angle_sym[sel]
            row["mean_angle_sym_deg"] = _nan_stat(np.mean, a)
            row["median_angle_sym_deg"] = _nan_stat(np.median, a)
            row["acc_at_deg_sym"] = {f"{t:g}": v for t, v in accuracy_at_thresholds(a, correct[sel], thresholds).items()}
        if add is not None:
            lim = ADD_FRACTION * float(np.asarray(diameters)[c])
            row["add_recall"] = recall_below(add[sel], lim, correct[sel])
            row["adds_recall"] = recall_below(adds[sel], lim, correct[sel])
        classes.append(row)
    out["per_class"] = classes
    out["per_sample"] = {"angle_deg": angle, "angle_sym_deg": angle_sym, "add_m": add, "adds_m": adds, "correct": correct}
    return out


def is_symmetric(group) -> bool:
    """Whether a class's group (None, a Symmetry or ``(S, 3, 3)`` / ``(S, 4)`` array) has more than the identity."""
    if group is None:
        return False
    if isinstance(group, Symmetry):
        return not group.is_trivial
    return len(np.asarray(group)) > 1


def constant_rotation_baseline(label_true: np.ndarray, quat_true: np.ndarray, num_classes: int,
                               symmetries: Sequence | None = None,
                               thresholds: Sequence[float] = DEFAULT_THRESHOLDS_DEG,
                               max_candidates: int = 500, seed: int = 0) -> dict:
    """The "chance" rotation predictor: per class one constant rotation, the medoid of the class's true rotations.

    For class c the candidates are its true rotations (at most ``max_candidates``, drawn without replacement
    with ``np.random.default_rng([seed, c])``); the constant is the candidate with the smallest mean error over
    all of the class's samples -- the plain error for ``angle_deg``, the symmetry-aware one (its own medoid) for
    ``angle_sym_deg``. It is given the true class, so it shows what a network that has learnt nothing about the
    rotation (beyond its class's pose distribution) scores.

    Args:
        label_true: ``(N,)`` class ids; quat_true: ``(N, 4)`` (w, x, y, z).
        num_classes: C.
        symmetries: per-class groups as in :func:`evaluate_arrays`, or None (unknown: sym = plain).
        thresholds: degrees, for ``rot_at_deg`` / ``rot_at_deg_sym``.

    Returns:
        ``{"mean_angle_deg", "median_angle_deg", "mean_angle_sym_deg", "median_angle_sym_deg", "rot_at_deg",
        "rot_at_deg_sym", "constant_quat" (C lists wxyz or None), "constant_quat_sym", "max_candidates", "seed",
        "per_sample": {"angle_deg": (N,), "angle_sym_deg": (N,)}}``.
    """
    label_true = np.asarray(label_true, dtype=np.int64).reshape(-1)
    q = np.asarray(quat_true, dtype=np.float64)
    if q.shape != (label_true.size, 4):
        raise ValueError(f"constant_rotation_baseline: expected ({label_true.size}, 4) quaternions, got {q.shape}")
    if symmetries is not None and len(symmetries) != num_classes:
        raise ValueError(f"constant_rotation_baseline: {len(symmetries)} symmetry groups for {num_classes} classes")
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    n = label_true.size
    angle, angle_sym = np.full(n, np.nan), np.full(n, np.nan)
    const: list = [None] * num_classes
    const_sym: list = [None] * num_classes
    for c in range(num_classes):
        idx = np.flatnonzero(label_true == c)
        if idx.size == 0:
            continue
        qc = q[idx]
        k = min(idx.size, int(max_candidates))
        cand = qc[np.sort(np.random.default_rng([seed, c]).choice(idx.size, k, replace=False))]
        # plain: (K, n_c) errors of every candidate against every sample, mean per candidate
        err = angle_deg_from_dot(cand @ qc.T)
        best = cand[int(np.argmin(err.mean(axis=1)))]
        angle[idx] = quat_angle_deg(np.broadcast_to(best, qc.shape), qc)
        const[c] = best.tolist()
        group = None if symmetries is None else symmetries[c]
        if not is_symmetric(group):
            angle_sym[idx], const_sym[c] = angle[idx], const[c]
            continue
        means = np.empty(k)
        for j in range(k):  # one candidate at a time keeps memory at n_c x S
            means[j] = sym_rotation_error_deg(np.broadcast_to(cand[j], qc.shape), qc, group).mean()
        best_sym = cand[int(np.argmin(means))]
        angle_sym[idx] = sym_rotation_error_deg(np.broadcast_to(best_sym, qc.shape), qc, group)
        const_sym[c] = best_sym.tolist()
    every = np.ones(n, bool)
    return {
        "mean_angle_deg": _nan_stat(np.mean, angle), "median_angle_deg": _nan_stat(np.median, angle),
        "mean_angle_sym_deg": _nan_stat(np.mean, angle_sym), "median_angle_sym_deg": _nan_stat(np.median, angle_sym),
        "rot_at_deg": {f"{t:g}": v for t, v in accuracy_at_thresholds(angle, every, thresholds).items()},
        "rot_at_deg_sym": {f"{t:g}": v for t, v in accuracy_at_thresholds(angle_sym, every, thresholds).items()},
        "constant_quat": const, "constant_quat_sym": const_sym, "max_candidates": int(max_candidates), "seed": int(seed),
        "per_sample": {"angle_deg": angle, "angle_sym_deg": angle_sym},
    }


def gap_closed(value: float, source_only: float, target_only: float) -> float | None:
    """Share of the domain gap closed: ``(value - source_only) / (target_only - source_only)``.

    Works for higher-is-better (accuracy) and lower-is-better (angle error) metrics alike: 0 = no better than
    source-only, 1 = as good as target-only. None when the gap is (near) zero or a value is missing.
    """
    vals = (value, source_only, target_only)
    if any(v is None or not np.isfinite(v) for v in vals):
        return None
    gap = target_only - source_only
    if abs(gap) < 1e-12:
        return None
    return float((value - source_only) / gap)


def _f(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


#: A gap counts as real when it exceeds this many standard errors of itself (about 95% two-sided).
GAP_NOISE_Z = 2.0


def gap_significance(source_only_samples: np.ndarray, target_only_samples: np.ndarray, kind: str) -> dict:
    """Is the source-only -> target-only gap larger than its own noise? (Decides whether "gap closed" means anything.)

    Args:
        source_only_samples, target_only_samples: ``(N1,)`` and ``(N2,)`` per-sample values of the two reference
            models on the test set: booleans (class correct) for ``kind="proportion"``, rotation errors in degrees
            for ``kind="mean"``.
        kind: ``"proportion"``: gap = p2 - p1, standard error ``sqrt(p1 (1 - p1) / n1 + p2 (1 - p2) / n2)``
            (two-proportion, unpooled); ``"mean"``: gap = mean2 - mean1, standard error of a difference of means
            ``sqrt(s1^2 / n1 + s2^2 / n2)`` with sample variances (``ddof=1``).

    Returns:
        ``{"test", "gap", "se", "threshold", "significant", "reason"}``: ``threshold = GAP_NOISE_Z * se``,
        ``significant = |gap| > threshold``; ``reason`` is None when significant, else why the gap is not
        (too small for its noise, too few samples). Plain floats / bool / str: JSON-ready.
    """
    a = np.asarray(source_only_samples, dtype=np.float64).ravel()
    b = np.asarray(target_only_samples, dtype=np.float64).ravel()
    if kind == "proportion":
        test = "two-proportion"
        n_min = 1
    elif kind == "mean":
        test = "difference of means"
        n_min = 2
    else:
        raise ValueError(f"gap_significance: kind must be 'proportion' or 'mean', got {kind!r}")
    out = {"test": test, "gap": None, "se": None, "threshold": None, "significant": False, "reason": None}
    if a.size < n_min or b.size < n_min or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        out["reason"] = f"too few samples for a {test} test ({a.size} and {b.size})"
        return out
    gap = float(b.mean() - a.mean())
    if kind == "proportion":
        p1, p2 = a.mean(), b.mean()
        se = float(np.sqrt(p1 * (1 - p1) / a.size + p2 * (1 - p2) / b.size))
    else:
        se = float(np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size))
    limit = GAP_NOISE_Z * se
    out.update(gap=gap, se=se, threshold=limit, significant=bool(abs(gap) > limit))
    if not out["significant"]:
        out["reason"] = f"gap too small: |{gap:.4g}| <= {GAP_NOISE_Z:g} SE = {limit:.4g} ({test})"
    return out


def gap_is_significant(source_only_samples: np.ndarray, target_only_samples: np.ndarray, kind: str) -> bool:
    """True when ``|gap| > GAP_NOISE_Z * SE`` (see :func:`gap_significance` for the arguments and the tests)."""
    return gap_significance(source_only_samples, target_only_samples, kind)["significant"]


# ----------------------------------------------------------------------------------------------------------
# gap closed between the references, worst cases (on evaluate's per-model results)
# ----------------------------------------------------------------------------------------------------------
# ``base``, ``upper`` and ``results`` are :class:`sim2real.eval.evaluate.ModelResult` (or None): anything with a
# ``name`` and the ``metrics`` dict of :func:`evaluate_arrays`.


#: Metrics for which the share of the gap closed is reported (higher- and lower-is-better both work).
GAP_METRICS = ("accuracy", "mean_angle_deg", "median_angle_deg", "mean_angle_sym_deg", "median_angle_sym_deg",
               "add_recall")
#: The noise test behind a metric's gap: (per-sample array in ``metrics["per_sample"]``, kind for
#: :func:`gap_significance`). Metrics not listed (medians, ADD recall) are not tested.
GAP_NOISE_TESTS = {"accuracy": ("correct", "proportion"), "mean_angle_deg": ("angle_deg", "mean"),
                   "mean_angle_sym_deg": ("angle_sym_deg", "mean")}


def gap_noise(base: Any, upper: Any) -> dict[str, dict | None]:
    """``{metric: gap_significance(...) or None}`` for the source-only -> target-only gap of each GAP_METRICS entry.

    None where the metric has no noise test (or a reference lacks the per-sample values); empty without references.
    """
    if base is None or upper is None:
        return {}
    out: dict[str, dict | None] = {}
    for k in GAP_METRICS:
        key, kind = GAP_NOISE_TESTS.get(k, (None, None))
        a = (base.metrics.get("per_sample") or {}).get(key) if key else None
        b = (upper.metrics.get("per_sample") or {}).get(key) if key else None
        out[k] = None if a is None or b is None else gap_significance(a, b, kind)
    return out


def gap_table(results: Sequence[Any], base: Any, upper: Any) -> dict[str, dict]:
    """``{model name: {metric: share of the gap closed or None}}`` for every model.

    None also where the gap between the references is within noise (:func:`gap_noise`): a share of noise is noise.
    """
    out: dict[str, dict] = {}
    if base is None or upper is None:
        return out
    noise = gap_noise(base, upper)
    for r in results:
        out[r.name] = {k: None if noise.get(k) is not None and not noise[k]["significant"]
                       else gap_closed(r.metrics.get(k), base.metrics.get(k), upper.metrics.get(k)) for k in GAP_METRICS}
    return out


def worst_indices(metrics: dict, pred: dict, k: int = 16) -> np.ndarray:
    """The ``k`` worst test samples: misclassified first (most confident first), then the largest rotation errors."""
    correct = metrics["per_sample"]["correct"]
    angle = metrics["per_sample"]["angle_deg"]
    conf = pred["probs"].max(axis=1) if pred["probs"].size else np.zeros(len(correct))
    score = np.where(correct, 0.0, 1000.0 + conf)
    if angle is not None:
        score = score + angle / 180.0 * (np.where(correct, 1.0, 0.0))
    order = np.argsort(-score, kind="stable")
    return order[:k]
