"""Metric definitions checked against independent references (BOP's formulas, hand derivations)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from sim2real.eval import metrics as M


def bop_re(R_est: np.ndarray, R_gt: np.ndarray) -> float:
    """BOP toolkit's rotation error (pose_error.re), written out independently: degrees."""
    error_cos = float(np.clip(0.5 * (np.trace(R_est.dot(np.linalg.inv(R_gt))) - 1.0), -1.0, 1.0))
    return float(np.degrees(np.arccos(error_cos)))


def scipy_wxyz(r: Rotation) -> np.ndarray:
    """SciPy quaternions are (x, y, z, w); ours are (w, x, y, z)."""
    return np.roll(r.as_quat(), 1, axis=-1)


def test_rotation_error_equals_bop_re_on_matrices():
    r_est = Rotation.random(200, random_state=1)
    r_gt = Rotation.random(200, random_state=2)
    # include small and near-180-degree errors, where arccos is least forgiving
    r_est = Rotation.concatenate([r_est, r_gt[:5] * Rotation.from_rotvec([[0, 0, 1e-3]] * 5),
                                  r_gt[5:10] * Rotation.from_rotvec([[np.pi - 1e-3, 0, 0]] * 5)])
    r_gt = Rotation.concatenate([r_gt, r_gt[:5], r_gt[5:10]])
    ours = M.rotation_error_deg(scipy_wxyz(r_est), scipy_wxyz(r_gt))
    ref = np.array([bop_re(a, b) for a, b in zip(r_est.as_matrix(), r_gt.as_matrix())])
    np.testing.assert_allclose(ours, ref, atol=2e-5)
    # also equal to the magnitude of the relative rotation vector (a third, independent route)
    np.testing.assert_allclose(ours, np.degrees((r_est * r_gt.inv()).magnitude()), atol=2e-5)


def test_rotation_error_is_sign_invariant_and_known_values():
    q = scipy_wxyz(Rotation.random(10, random_state=3))
    np.testing.assert_allclose(M.rotation_error_deg(q, -q), 0.0, atol=1e-5)
    # 90 degrees about z: q = (cos 45, 0, 0, sin 45)
    q90 = np.array([[np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)]])
    ident = np.array([[1.0, 0, 0, 0]])
    np.testing.assert_allclose(M.rotation_error_deg(q90, ident), [90.0], atol=1e-9)
    with pytest.raises(ValueError):
        M.rotation_error_deg(q90, np.zeros((2, 4)))


def test_confusion_accuracy_recall_precision_by_hand():
    y_true = np.array([0, 0, 1, 1, 1, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 2])
    cm = M.confusion_matrix(y_true, y_pred, 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 2, 1], [0, 0, 1]])
    assert M.accuracy_from_confusion(cm) == pytest.approx(4 / 6)
    recall, precision = M.per_class_rates(cm)
    np.testing.assert_allclose(recall, [1 / 2, 2 / 3, 1.0])
    np.testing.assert_allclose(precision, [1.0, 2 / 3, 1 / 2])
    # a class never predicted has no precision (NaN), not 0
    _, prec = M.per_class_rates(M.confusion_matrix([0, 1], [0, 0], 2))
    assert np.isnan(prec[1])
    with pytest.raises(ValueError):
        M.confusion_matrix([0, 3], [0, 0], 3)


def test_accuracy_at_thresholds_needs_correct_class_and_is_strict():
    angle = np.array([4.0, 5.0, 9.0, 20.0, 1.0])
    correct = np.array([True, True, True, True, False])
    got = M.accuracy_at_thresholds(angle, correct, (5, 10, 30))
    assert got == {5.0: pytest.approx(1 / 5), 10.0: pytest.approx(3 / 5), 30.0: pytest.approx(4 / 5)}


def ring(n: int = 360, r: float = 0.05) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([r * np.cos(a), r * np.sin(a), np.zeros(n)], axis=1)


def test_add_with_known_offset_and_rotation():
    pts = Rotation.random(1, random_state=0).apply(np.random.default_rng(0).uniform(-0.05, 0.05, (50, 3)))
    R = Rotation.random(4, random_state=5).as_matrix()
    t = np.array([[0.0, 0.0, 0.5]] * 4)
    offset = np.array([0.01, -0.02, 0.02])  # |offset| = 0.03 m
    np.testing.assert_allclose(M.add_error(pts, R, t + offset, R, t), 0.03, atol=1e-12)
    # rotating a ring of radius r about its axis by theta moves every point by 2 r sin(theta / 2)
    theta = np.radians(40.0)
    Rz = Rotation.from_rotvec([0, 0, theta]).as_matrix()[None]
    add = M.add_error(ring(), Rz, t[:1], np.eye(3)[None], t[:1])
    np.testing.assert_allclose(add, [2 * 0.05 * np.sin(theta / 2)], rtol=1e-9)
    # ADD-S forgives the symmetry: a ring turned by a multiple of its point spacing maps onto itself
    Rz_sym = Rotation.from_rotvec([0, 0, np.radians(10.0)]).as_matrix()[None]
    np.testing.assert_allclose(M.adds_error(ring(), Rz_sym, t[:1], np.eye(3)[None], t[:1]), [0.0], atol=1e-12)
    # ...but not a rotation that tilts the ring: ADD-S > 0, and ADD-S <= ADD always
    Rx = Rotation.from_rotvec([np.radians(30.0), 0, 0]).as_matrix()[None]
    adds = M.adds_error(ring(), Rx, t[:1], np.eye(3)[None], t[:1])
    assert 0 < adds[0] <= M.add_error(ring(), Rx, t[:1], np.eye(3)[None], t[:1])[0]


def test_adds_equals_brute_force_closest_point():
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(30, 3)) * 0.05
    R_est, R_gt = Rotation.random(3, random_state=7).as_matrix(), Rotation.random(3, random_state=8).as_matrix()
    t_est, t_gt = rng.normal(size=(3, 3)) * 0.01, rng.normal(size=(3, 3)) * 0.01
    got = M.adds_error(pts, R_est, t_est, R_gt, t_gt)
    for i in range(3):
        e = pts @ R_est[i].T + t_est[i]
        g = pts @ R_gt[i].T + t_gt[i]
        d = np.sqrt(((g[:, None, :] - e[None, :, :]) ** 2).sum(-1)).min(axis=1).mean()
        assert got[i] == pytest.approx(d, rel=1e-12)


def test_evaluate_arrays_rotation_only_add_recall_and_per_class():
    # two classes; class 1 has a 2x larger diameter
    q_gt = np.tile([1.0, 0, 0, 0], (4, 1))
    small = scipy_wxyz(Rotation.from_rotvec([0, 0, np.radians(3.0)]))
    big = scipy_wxyz(Rotation.from_rotvec([0, 0, np.radians(60.0)]))
    q_pred = np.stack([small, big, small, small])
    label = np.array([0, 0, 1, 1])
    pred = np.array([0, 0, 1, 0])  # the last sample is misclassified
    pts = np.stack([ring(r=0.05), ring(r=0.05)])
    diam = np.array([0.1, 0.1])
    m = M.evaluate_arrays(label, pred, 2, quat_true=q_gt, quat_pred=q_pred, trans_true=np.tile([0, 0, 0.5], (4, 1)),
                          model_points=pts, diameters=diam, thresholds=(5, 10))
    assert m["accuracy"] == pytest.approx(3 / 4)
    assert m["acc_at_deg"] == {"5": pytest.approx(2 / 4), "10": pytest.approx(2 / 4)}
    assert m["rot_at_deg"]["5"] == pytest.approx(3 / 4)
    np.testing.assert_allclose(m["per_sample"]["angle_deg"], [3, 60, 3, 3], atol=1e-6)
    assert m["mean_angle_deg"] == pytest.approx(17.25, abs=1e-6)
    assert m["median_angle_deg"] == pytest.approx(3.0, abs=1e-6)
    # rotation-only ADD: 3 deg on a 5 cm ring moves points 2.6 mm < 1 cm; 60 deg moves them 5 cm
    assert m["add_translation"] == "ground truth"
    assert m["add_recall"] == pytest.approx(2 / 4)  # sample 1: too far; sample 3: wrong class
    assert m["adds_recall"] == pytest.approx(3 / 4)  # the ring is symmetric about z: sample 1 passes ADD-S
    c0, c1 = m["per_class"]
    assert (c0["n"], c0["recall"], c0["precision"]) == (2, 1.0, pytest.approx(2 / 3))
    assert (c1["recall"], c1["precision"], c1["add_recall"]) == (0.5, 1.0, 0.5)
    assert c0["mean_angle_deg"] == pytest.approx(31.5, abs=1e-6)


def test_evaluate_arrays_without_poses_is_classification_only():
    m = M.evaluate_arrays(np.array([0, 1]), np.array([0, 1]), 2)
    assert m["has_pose"] is False and m["has_add"] is False and m["accuracy"] == 1.0
    assert "mean_angle_deg" not in m and m["per_sample"]["angle_deg"] is None


def test_gap_closed():
    assert M.gap_closed(0.8, 0.5, 1.0) == pytest.approx(0.6)
    # lower-is-better works with the same formula: 89.2 -> 23.5 of the way to 6.47 (PixelDA LineMod numbers)
    assert M.gap_closed(23.5, 89.2, 6.47) == pytest.approx((23.5 - 89.2) / (6.47 - 89.2))
    assert M.gap_closed(0.7, 0.7, 0.7) is None
    assert M.gap_closed(float("nan"), 0.5, 1.0) is None
    assert M.gap_closed(None, 0.5, 1.0) is None


# --- symmetry-aware metrics ---------------------------------------------------------------------------------


def _rz(deg) -> np.ndarray:
    return scipy_wxyz(Rotation.from_euler("z", np.atleast_1d(deg).astype(float).reshape(-1, 1), degrees=True))


def test_symmetry_aware_metrics_by_hand():
    from sim2real.symmetry import Symmetry, rotation_groups

    box = Symmetry.from_dict({"discrete": [{"axis": [0, 0, 1], "angle_deg": 180}]})
    # class 0 not symmetric, class 1 with a 180 degree symmetry about z; errors about z of 3, 178, 90, 176 degrees
    label = np.array([0, 0, 1, 1])
    q_gt = _rz([0, 0, 0, 0])
    q_est = _rz([3, 178, 90, 176])
    for groups in (rotation_groups([None, box]), [None, box]):
        m = M.evaluate_arrays(label, label, 2, quat_true=q_gt, quat_pred=q_est, thresholds=(5, 10), symmetries=groups)
        np.testing.assert_allclose(m["per_sample"]["angle_deg"], [3, 178, 90, 176], atol=1e-6)
        np.testing.assert_allclose(m["per_sample"]["angle_sym_deg"], [3, 178, 90, 4], atol=1e-6)
        assert m["mean_angle_sym_deg"] == pytest.approx((3 + 178 + 90 + 4) / 4, abs=1e-6)
        assert m["median_angle_sym_deg"] == pytest.approx((4 + 90) / 2, abs=1e-6)
        assert m["acc_at_deg_sym"] == {"5": pytest.approx(0.5), "10": pytest.approx(0.5)}
        assert m["acc_at_deg"] == {"5": pytest.approx(0.25), "10": pytest.approx(0.25)}
        assert m["rot_at_deg_sym"]["5"] == pytest.approx(0.5)
        assert m["symmetry_known"] is True
        c0, c1 = m["per_class"]
        assert c0["symmetric"] is False and c1["symmetric"] is True
        assert c0["mean_angle_sym_deg"] == pytest.approx(c0["mean_angle_deg"])
        assert c1["mean_angle_sym_deg"] == pytest.approx(47.0, abs=1e-6) and c1["median_angle_sym_deg"] == pytest.approx(47.0)
        assert c1["acc_at_deg_sym"]["5"] == pytest.approx(0.5)


def test_without_symmetries_sym_metrics_equal_the_plain_ones():
    q_gt, q_est = scipy_wxyz(Rotation.random(30, random_state=1)), scipy_wxyz(Rotation.random(30, random_state=2))
    label = np.arange(30) % 3
    m = M.evaluate_arrays(label, label, 3, quat_true=q_gt, quat_pred=q_est)
    assert m["symmetry_known"] is False
    np.testing.assert_array_equal(m["per_sample"]["angle_sym_deg"], m["per_sample"]["angle_deg"])
    for k in ("mean_angle", "median_angle"):
        assert m[f"{k}_sym_deg"] == m[f"{k}_deg"]
    assert m["acc_at_deg_sym"] == m["acc_at_deg"] and m["rot_at_deg_sym"] == m["rot_at_deg"]
    assert all(r["symmetric"] is False and r["mean_angle_sym_deg"] == r["mean_angle_deg"] for r in m["per_class"])
    with pytest.raises(ValueError):
        M.evaluate_arrays(label, label, 3, quat_true=q_gt, quat_pred=q_est, symmetries=[None])


def test_constant_rotation_baseline_by_hand():
    from sim2real.symmetry import Symmetry

    box = Symmetry.from_dict({"discrete": [{"axis": [0, 0, 1], "angle_deg": 180}]})
    # class 0: rotations about z by 0, 10, 20 -> medoid 10, errors 10, 0, 10 (mean 6.67; 0 or 20 give 10)
    # class 1: 0, 175, 10 about z. Plain: medoid 0 (errors 0, 175, 10: mean 61.7; 10 gives 10, 165, 0: 58.3 -> 10)
    #          sym (175 == -5): medoid 0 (errors 0, 5, 10 -> 5 mean) vs 175 (5, 0, 15 -> 6.7) vs 10 (10, 15, 0 -> 8.3)
    label = np.array([0, 0, 0, 1, 1, 1])
    q = _rz([0, 10, 20, 0, 175, 10])
    res = M.constant_rotation_baseline(label, q, 2, symmetries=[None, box], thresholds=(4, 12))
    np.testing.assert_allclose(res["per_sample"]["angle_deg"], [10, 0, 10, 10, 165, 0], atol=1e-6)
    np.testing.assert_allclose(res["per_sample"]["angle_sym_deg"], [10, 0, 10, 0, 5, 10], atol=1e-6)
    assert res["mean_angle_deg"] == pytest.approx(195 / 6, abs=1e-6)
    assert res["median_angle_sym_deg"] == pytest.approx(7.5, abs=1e-6)
    assert res["rot_at_deg"] == {"4": pytest.approx(2 / 6), "12": pytest.approx(5 / 6)}
    assert res["rot_at_deg_sym"] == {"4": pytest.approx(2 / 6), "12": pytest.approx(1.0)}
    np.testing.assert_allclose(np.abs(res["constant_quat"][0]), np.abs(_rz(10)[0]), atol=1e-9)
    # without symmetries the sym version is the plain one; a class with no samples stays None
    plain = M.constant_rotation_baseline(label, q, 3)
    np.testing.assert_array_equal(plain["per_sample"]["angle_sym_deg"], plain["per_sample"]["angle_deg"])
    assert plain["constant_quat"][2] is None


def test_constant_rotation_baseline_subsamples_candidates_reproducibly():
    q = scipy_wxyz(Rotation.random(1200, random_state=3))
    label = np.zeros(1200, int)
    a = M.constant_rotation_baseline(label, q, 1, max_candidates=500)
    b = M.constant_rotation_baseline(label, q, 1, max_candidates=500)
    np.testing.assert_array_equal(a["per_sample"]["angle_deg"], b["per_sample"]["angle_deg"])
    full = M.constant_rotation_baseline(label, q, 1, max_candidates=1200)
    assert full["mean_angle_deg"] <= a["mean_angle_deg"] + 1e-9  # the full search can only do better
