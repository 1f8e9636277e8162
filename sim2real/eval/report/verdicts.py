"""The report's judgements: has a model learnt rotation (against the chance baseline), and is a gap beyond noise.

Both are stated in words in the report and stored in ``metrics.json`` (``rotation_verdict``, ``gap_closed.reasons``).
"""

from __future__ import annotations

import math

import numpy as np

from sim2real.eval.report.format import pct, valid

#: "Rotation learnt" needs the median error (symmetry-aware where known) this many degrees below chance's.
LEARNT_MARGIN_DEG = 10.0
#: ... and the paired per-image improvement over chance beyond this many standard errors.
LEARNT_Z = 2.0
CHANCE_NAME = "chance (constant rotation)"
GAP_NA = "n/a (gap too small)"


def has_sym(m: dict) -> bool:
    """Whether one model's symmetry-aware errors are worth showing: computed (metrics from before symmetry support
    have none) and with the test set's symmetries known (unknown: they equal the plain errors)."""
    return bool(m.get("has_pose") and m.get("symmetry_known") and m.get("mean_angle_sym_deg") is not None)


def rotation_verdict(m: dict, chance: dict | None, margin_deg: float = LEARNT_MARGIN_DEG) -> dict | None:
    """One model's rotation against the constant-rotation baseline: learnt or not, and a one-line text.

    Learnt = the median error is more than ``margin_deg`` below chance's median AND the mean per-image
    improvement over chance (paired: same test images) exceeds ``LEARNT_Z`` standard errors. Symmetry-aware
    errors are compared where the symmetries are known and both sides have them, plain ones otherwise.

    Args:
        m: :func:`sim2real.eval.metrics.evaluate_arrays` output (with ``per_sample``).
        chance: the baseline dict (``median_angle_deg``, ``per_sample`` ...), or None.

    Returns:
        ``{"learnt", "text", "basis", "median_deg", "chance_median_deg", "margin_deg", "paired_mean_gain_deg",
        "paired_se_deg"}`` (JSON-ready), or None without poses or without a baseline.
    """
    if not m.get("has_pose") or not chance:
        return None
    sym = has_sym(m) and valid(m.get("median_angle_sym_deg")) and valid(chance.get("median_angle_sym_deg"))
    key, ps_key = ("median_angle_sym_deg", "angle_sym_deg") if sym else ("median_angle_deg", "angle_deg")
    med, ch = m.get(key), chance.get(key)
    if not (valid(med) and valid(ch)):
        return None
    a = (m.get("per_sample") or {}).get(ps_key)
    c = (chance.get("per_sample") or {}).get(ps_key)
    gain = se = None
    significant = True  # without per-image errors only the margin decides
    if a is not None and c is not None and len(a) == len(c) and len(a) > 1:
        d = np.asarray(c, np.float64) - np.asarray(a, np.float64)  # > 0: the model beats chance on that image
        gain, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size))
        significant = gain > LEARNT_Z * se
    better = ch - med
    learnt = bool(better > margin_deg and significant)
    nums = f"median {med:.0f}° vs chance {ch:.0f}°" + (" (symmetry-aware)" if sym else "")
    if learnt:
        text = f"rotation learnt: {nums}"
    elif better < -margin_deg:
        text = f"rotation NOT learnt: {nums}, worse than chance"
    elif better > margin_deg:
        text = f"rotation NOT learnt: {nums}, better by {better:.0f}° but within noise"
    else:
        text = f"rotation NOT learnt: {nums}, within {margin_deg:g}° of chance"
    return {"learnt": learnt, "text": text, "basis": "symmetry-aware" if sym else "plain", "median_deg": float(med),
            "chance_median_deg": float(ch), "margin_deg": float(margin_deg), "paired_mean_gain_deg": gain,
            "paired_se_deg": se}


def gap_reasons(noise: dict, base, upper) -> dict[str, str | None]:
    """Per gap metric: why its shares are null for every model (a string), or None where shares are given."""
    from sim2real.eval.metrics import GAP_METRICS

    out: dict[str, str | None] = {}
    for k in GAP_METRICS:
        s, t = base.metrics.get(k), upper.metrics.get(k)
        if noise.get(k) is not None and not noise[k]["significant"]:
            out[k] = noise[k]["reason"]
        elif not (valid(s) and valid(t)):
            out[k] = "a reference model has no value for this metric"
        elif abs(t - s) < 1e-12:
            out[k] = "the source-only and target-only references score the same"
        else:
            out[k] = None
    return out


def gap_cell(gaps: dict, name: str, key: str, noise: dict) -> str:
    """A "gap closed" cell: the share, or why there is none (``GAP_NA`` when the gap is within noise)."""
    test = noise.get(key)
    if test is not None and not test["significant"]:
        return GAP_NA if test["gap"] is not None else "n/a (too few samples)"
    return pct(gaps.get(name, {}).get(key), 0)


def noise_text(test: dict | None, unit: str) -> str:
    """``' (2 SE = 4.1 points: beyond noise)'`` for a :func:`~sim2real.eval.metrics.gap_significance` dict."""
    from sim2real.eval.metrics import GAP_NOISE_Z

    if test is None or test["threshold"] is None:
        return "" if test is None else f" ({test['reason']})"
    size = f"{100 * test['threshold']:.1f} points" if unit == "pct" else f"{test['threshold']:.1f}°"
    verdict = "beyond noise" if test["significant"] else "within noise: gap closed is n/a"
    return f" ({GAP_NOISE_Z:g} SE = {size}: {verdict})"
