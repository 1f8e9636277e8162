"""Symmetry annotations, finite groups and the symmetry-aware rotation error, against hand derivations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from sim2real.conventions import quat_angle_deg, quat_from_matrix
from sim2real.errors import Sim2RealError
from sim2real.symmetry import (ContinuousSymmetry, Symmetry, pack_groups_quat, parse_symmetry, rotation_about,
                               rotation_groups, sym_rotation_error_deg, symmetries_from_json, symmetries_to_json,
                               symmetry_rotations)
from sim2real.symmetry_proposal import propose_symmetry


def wxyz(r: Rotation) -> np.ndarray:
    return np.roll(r.as_quat(), 1, axis=-1)


def rot(axis: str, deg) -> Rotation:
    return Rotation.from_euler(axis, np.asarray(deg, dtype=float).reshape(-1, 1) if np.ndim(deg) else deg, degrees=True)


CYLINDER = Symmetry.from_dict({"continuous": [{"axis": [0, 0, 1], "offset": [0, 0, 0]}],
                               "discrete": [{"axis": [1, 0, 0], "angle_deg": 180}]})
BOX_Z180 = Symmetry.from_dict({"discrete": [{"axis": [0, 0, 1], "angle_deg": 180}]})


# --- the annotation ---------------------------------------------------------------------------------------


def test_dict_round_trip_and_forms():
    sym = Symmetry.from_dict({"discrete": [{"axis": [0, 1, 0], "angle_deg": 90, "offset": [0.01, 0, 0]}],
                              "continuous": [{"axis": [0, 0, 1], "offset": [0, 0, 0.002]}]})
    T = sym.discrete[0]
    # X' = R (X - c) + c: the offset point is fixed
    np.testing.assert_allclose(T[:3, :3] @ [0.01, 0, 0] + T[:3, 3], [0.01, 0, 0], atol=1e-12)
    np.testing.assert_allclose(T[:3, :3], rot("y", 90).as_matrix(), atol=1e-12)
    back = Symmetry.from_dict(sym.to_dict())
    assert back == sym
    flat = Symmetry.from_dict({"discrete": [T.reshape(16).tolist()]})  # 16 flat numbers work too
    np.testing.assert_allclose(flat.discrete, sym.discrete)
    assert parse_symmetry("none") is None and parse_symmetry(None) is None and parse_symmetry({}) is None
    items = symmetries_to_json([None, sym])
    assert symmetries_from_json(items)[1] == sym and symmetries_from_json(items)[0] is None


@pytest.mark.parametrize("bad, message", [
    ({"discrete": [np.diag([1.0, 1, -1, 1]).tolist()]}, "proper rotation"),
    ({"discrete": [(np.eye(4) * 2).tolist()]}, "last row"),
    ({"discrete": [np.eye(4).tolist()]}, "identity"),
    ({"discrete": [[[1, 0, 0, 0], [0, 1, 0, float("nan")], [0, 0, 1, 0], [0, 0, 0, 1]]]}, "finite"),
    ({"discrete": [[1, 2, 3]]}, "4x4"),
    ({"continuous": [{"axis": [0, 0, 2]}]}, "unit vector"),
    ({"continuous": [{"axis": [0, 0, 1], "offset": [0, "x", 0]}]}, "3 numbers"),
    ({"continuous": [{"direction": [0, 0, 1]}]}, "axis"),
    ({"rotations": []}, "unknown key 'rotations'"),
    ("cylinder", "expected 'none' or a mapping"),
])
def test_validation_errors_are_one_line_and_say_what_was_expected(bad, message):
    with pytest.raises(Sim2RealError) as e:
        parse_symmetry(bad, "objects.yaml: objects[3] (mug).symmetry")
    assert message in str(e.value) and "objects[3] (mug).symmetry" in str(e.value) and "\n" not in str(e.value)


def test_bop_round_trip_uses_millimetres():
    sym = Symmetry.from_dict({"discrete": [{"axis": [1, 0, 0], "angle_deg": 180, "offset": [0, 0.01, 0]}],
                              "continuous": [{"axis": [0, 0, 1], "offset": [0.001, 0.002, 0]}]})
    b = sym.to_bop()
    T = np.reshape(b["symmetries_discrete"][0], (4, 4))
    # flip about x through y = 10 mm: t = c - R c = (0, 20 mm, 0)
    np.testing.assert_allclose(T[:3, 3], [0, 20.0, 0], atol=1e-9)
    assert b["symmetries_continuous"][0]["offset"] == pytest.approx([1.0, 2.0, 0.0])
    assert Symmetry.from_bop(b) == sym
    assert Symmetry.from_bop({"diameter": 10.0}) is None
    # BOP files print matrices with a few decimals: accepted and re-orthonormalised
    typed = {"symmetries_discrete": [[-1, 0, 0, 0, 0, -1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]],
             "symmetries_continuous": [{"axis": [0, 0, 1.0000004], "offset": [0, 0, 0]}]}
    assert Symmetry.from_bop(typed).continuous[0].axis.tolist() == [0, 0, 1]


# --- finite groups ------------------------------------------------------------------------------------------


def test_symmetry_rotations_identity_first_and_bop_combination():
    assert symmetry_rotations(None).shape == (1, 3, 3)
    G = symmetry_rotations(BOX_Z180)
    np.testing.assert_allclose(G[0], np.eye(3))
    np.testing.assert_allclose(G[1], rot("z", 180).as_matrix(), atol=1e-12)
    G = symmetry_rotations(CYLINDER, continuous_step_deg=30)
    assert G.shape == (12 * 2, 3, 3)  # 12 continuous angles (0 included) x (identity, flip)
    np.testing.assert_allclose(G[0], np.eye(3))
    # every element is R_z(theta) @ D, D in {I, R_x(180)}
    expected = [rot("z", 30 * i).as_matrix() @ D for i in range(12) for D in (np.eye(3), rot("x", 180).as_matrix())]
    np.testing.assert_allclose(G, np.array(expected), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(G), 1.0)
    # step rounds up to a whole number of steps: 7 degrees -> 52 steps of 6.92 degrees
    assert len(symmetry_rotations(Symmetry(continuous=[ContinuousSymmetry([0, 0, 1], [0, 0, 0])]), 7.0)) == 52


def test_rotation_groups_and_quaternion_packing():
    groups = rotation_groups([None, BOX_Z180, CYLINDER], step=90)
    assert [len(g) for g in groups] == [1, 2, 8]
    assert rotation_groups(None) is None
    Q = pack_groups_quat(groups)
    assert Q.shape == (3, 8, 4) and Q.dtype == np.float32
    np.testing.assert_allclose(Q[0], np.tile([1, 0, 0, 0], (8, 1)))  # padded with the identity
    np.testing.assert_allclose(Q[1, 1], [0, 0, 0, 1], atol=1e-7)  # 180 about z
    np.testing.assert_allclose(Q[1, 2:], np.tile([1, 0, 0, 0], (6, 1)))
    np.testing.assert_allclose(np.linalg.norm(Q, axis=-1), 1.0, atol=1e-6)
    assert (Q[..., 0] >= 0).all()


# --- the symmetry-aware error ---------------------------------------------------------------------------------


def test_cylinder_rotated_about_its_axis_scores_zero():
    R_gt = Rotation.random(20, random_state=0)
    theta = np.linspace(-170, 170, 20)
    R_est = R_gt * rot("z", theta)  # R_gt S: S about the model's z axis
    q_est, q_gt = wxyz(R_est), wxyz(R_gt)
    np.testing.assert_allclose(sym_rotation_error_deg(q_est, q_gt, CYLINDER), 0.0, atol=1e-5)
    np.testing.assert_allclose(quat_angle_deg(q_est, q_gt), np.abs(theta), atol=1e-6)
    # the flip about x is a symmetry too; a tilt of the axis by 20 degrees is not
    flip = R_gt * rot("x", 180) * rot("z", 33)
    np.testing.assert_allclose(sym_rotation_error_deg(wxyz(flip), q_gt, CYLINDER), 0.0, atol=1e-5)
    tilt = R_gt * rot("z", 50) * rot("x", 20)
    np.testing.assert_allclose(sym_rotation_error_deg(wxyz(tilt), q_gt, CYLINDER), 20.0, atol=1e-6)


def test_camera_side_rotation_is_not_a_symmetry():
    # rotating in the CAMERA frame (S R_gt) about the camera's z is a model symmetry only if the model's axis is
    # the camera's z: here the model's z axis points along the camera's x, so the error stays
    R_gt = rot("y", 90)
    R_est = rot("z", 40) * R_gt
    err = sym_rotation_error_deg(wxyz(R_est)[None], wxyz(R_gt)[None], CYLINDER)
    assert err[0] > 39.0


def test_box_with_180_degree_symmetry_by_hand():
    R_gt = Rotation.random(10, random_state=3)
    q_gt = wxyz(R_gt)
    for deg, expected in ((180, 0.0), (90, 90.0), (-90, 90.0), (30, 30.0), (150, 30.0)):
        q_est = wxyz(R_gt * rot("z", deg))
        for group in (BOX_Z180, symmetry_rotations(BOX_Z180)):
            np.testing.assert_allclose(sym_rotation_error_deg(q_est, q_gt, group), expected, atol=1e-6)


def test_no_symmetry_equals_the_plain_error():
    q1, q2 = wxyz(Rotation.random(500, random_state=4)), wxyz(Rotation.random(500, random_state=5))
    plain = quat_angle_deg(q1, q2)
    np.testing.assert_allclose(sym_rotation_error_deg(q1, q2, None), plain, atol=1e-9)
    np.testing.assert_allclose(sym_rotation_error_deg(q1, q2, np.eye(3)[None]), plain, atol=1e-6)
    np.testing.assert_allclose(sym_rotation_error_deg(-q1, q2, None), plain, atol=1e-9)  # sign-free


def test_closed_form_matches_brute_force_over_a_fine_group():
    q_est, q_gt = wxyz(Rotation.random(300, random_state=6)), wxyz(Rotation.random(300, random_state=7))
    exact = sym_rotation_error_deg(q_est, q_gt, CYLINDER)
    G = symmetry_rotations(CYLINDER, continuous_step_deg=0.25)
    fine = sym_rotation_error_deg(q_est, q_gt, G)
    # the discretised minimum is never below the exact one and at most half a step above it
    assert (fine >= exact - 1e-6).all() and (fine - exact).max() <= 0.125 + 1e-6
    # independent reference: BOP's re() over the group, with matrices
    R_est, R_gt = Rotation.from_quat(np.roll(q_est, -1, 1)).as_matrix(), Rotation.from_quat(np.roll(q_gt, -1, 1)).as_matrix()
    for i in range(0, 300, 60):
        cos = (np.einsum("ij,sjk,ki->s", R_est[i].T, np.einsum("ij,sjk->sik", R_gt[i], G), np.eye(3)) - 1) / 2
        assert np.degrees(np.arccos(np.clip(cos, -1, 1))).min() == pytest.approx(fine[i], abs=1e-4)
    assert (exact <= quat_angle_deg(q_est, q_gt) + 1e-9).all()


def test_per_class_groups_with_labels_and_two_axes_is_everything():
    R_gt = Rotation.random(4, random_state=8)
    q_gt = wxyz(R_gt)
    q_est = wxyz(R_gt * rot("z", 180))
    got = sym_rotation_error_deg(q_est, q_gt, [None, BOX_Z180], labels=np.array([0, 1, 0, 1]))
    np.testing.assert_allclose(got, [180, 0, 180, 0], atol=1e-5)
    sphere = Symmetry(continuous=[ContinuousSymmetry([0, 0, 1], [0, 0, 0]), ContinuousSymmetry([1, 0, 0], [0, 0, 0])])
    np.testing.assert_allclose(sym_rotation_error_deg(wxyz(Rotation.random(5, random_state=9)), q_gt[:1].repeat(5, 0),
                                                      sphere), 0.0)
    with pytest.raises(ValueError):
        sym_rotation_error_deg(q_est, q_gt, [None, BOX_Z180])  # a list needs labels


def test_vectorised_for_10k_samples():
    import time

    q_est, q_gt = wxyz(Rotation.random(10_000, random_state=10)), wxyz(Rotation.random(10_000, random_state=11))
    G = symmetry_rotations(CYLINDER, continuous_step_deg=0.5)  # 1440 rotations
    t0 = time.perf_counter()
    sym_rotation_error_deg(q_est, q_gt, CYLINDER)
    sym_rotation_error_deg(q_est, q_gt, G)
    assert time.perf_counter() - t0 < 10.0  # well under a second each on an idle core


def test_group_quaternions_agree_with_matrices():
    G = symmetry_rotations(CYLINDER, continuous_step_deg=45)
    q_est, q_gt = wxyz(Rotation.random(50, random_state=12)), wxyz(Rotation.random(50, random_state=13))
    np.testing.assert_allclose(sym_rotation_error_deg(q_est, q_gt, quat_from_matrix(G)),
                               sym_rotation_error_deg(q_est, q_gt, G), atol=1e-9)


# --- proposals from the geometry -------------------------------------------------------------------------------


def _mesh(kind: str):
    import trimesh

    if kind == "cylinder":
        return trimesh.creation.cylinder(radius=0.03, height=0.1, sections=64)
    if kind == "box":
        return trimesh.creation.box(extents=(0.1, 0.06, 0.03))
    if kind == "mug":  # a cylinder with a handle on +x
        handle = trimesh.creation.box(extents=(0.03, 0.01, 0.06))
        handle.apply_translation([0.04, 0, 0])
        return trimesh.util.concatenate([trimesh.creation.cylinder(radius=0.03, height=0.1, sections=64), handle])
    raise ValueError(kind)


#: 3,000 samples keep the test fast; their sampling noise (identity score) is about 1.2% of the diameter
TOL = {"tol": 0.03, "hausdorff_tol": 0.08}


def test_propose_cylinder_box_and_mug():
    cyl = propose_symmetry(_mesh("cylinder"), n_points=3000, sweep_step_deg=30, **TOL)
    assert cyl.symmetry is not None and len(cyl.symmetry.continuous) == 1
    np.testing.assert_allclose(np.abs(cyl.symmetry.continuous[0].axis), [0, 0, 1], atol=1e-6)
    assert len(cyl.symmetry.discrete) == 1  # the flip that swaps the two caps
    box = propose_symmetry(_mesh("box"), n_points=3000, sweep_step_deg=30, **TOL)
    assert box.symmetry is not None and not box.symmetry.continuous
    R = box.symmetry.discrete[:, :3, :3]
    assert len(R) == 3  # 180 degrees about x, y and z (the Klein four-group without the identity)
    np.testing.assert_allclose(sorted(np.trace(R, axis1=1, axis2=2)), [-1, -1, -1], atol=1e-6)
    mug = propose_symmetry(_mesh("mug"), n_points=3000, sweep_step_deg=30, **TOL)
    assert not mug.symmetry or not mug.symmetry.continuous  # the handle breaks the rotation about z
    assert mug.scores["z continuous"] > TOL["tol"] or mug.hausdorff["z continuous"] > TOL["hausdorff_tol"]
    # the only survivor is the mirror-free flip keeping the handle in place (180 about x)
    if mug.symmetry is not None:
        for T in mug.symmetry.discrete:
            np.testing.assert_allclose(T[:3, :3] @ [1, 0, 0], [1, 0, 0], atol=1e-6)
    assert cyl.floor < TOL["tol"] and cyl.scores["identity"] == cyl.floor


def test_rotation_about_fixes_the_offset_point():
    T = rotation_about([0, 0, 1], 90, [0.1, 0, 0])
    np.testing.assert_allclose(T[:3, :3] @ [0.1, 0, 0] + T[:3, 3], [0.1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(T[:3, :3] @ [0.2, 0, 0] + T[:3, 3], [0.1, 0.1, 0], atol=1e-12)


def test_propose_tool_prints_manifest_entries(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    folder = tmp_path / "meshes"
    folder.mkdir()
    _mesh("cylinder").export(folder / "can.stl")
    _mesh("mug").export(folder / "mug.stl")
    path = Path(__file__).resolve().parents[1] / "tools" / "propose_symmetries.py"
    spec = importlib.util.spec_from_file_location("propose_symmetries", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main([str(folder), "--points", "3000", "--tol", "0.03", "--hausdorff-tol", "0.08", "--sweep-step", "30",
                      "--yaml"]) == 0
    out = capsys.readouterr().out
    can, mug = out.split("\n  1 ")
    assert "continuous about" in can and "continuous:" in can
    assert "continuous" not in mug.split("best")[0]
    assert tool.main([str(tmp_path / "nowhere")]) == 2
