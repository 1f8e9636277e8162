"""sim2real evaluate: numbers checked against an independent computation, user errors, memorisation, PixelDA runs."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from sim2real.cli import main
from sim2real.config import load_config
from sim2real.data import h5
from sim2real.eval.memorisation import memorisation_check, nearest_neighbours
from sim2real.eval.record import read as read_record
from sim2real.models.loading import load_pose_model
from sim2real.testing import make_synthetic, synthetic_arrays
from sim2real.train.pose import PoseConfig, train_pose


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("evaluate")
    f = {
        "src": make_synthetic(d / "src.h5", n=64, size=16, num_classes=3, seed=0, domain="source"),
        "tgt": make_synthetic(d / "tgt.h5", n=48, size=16, num_classes=3, seed=1, domain="target"),
        "test": make_synthetic(d / "test.h5", n=30, size=16, num_classes=3, seed=3, domain="target"),
    }
    cfg = load_config(PoseConfig, "pose-tiny", ["steps=15", "device=cpu", "log_every=5", "checkpoint_every=15"])
    train_pose([f["src"]], d / "src_only", cfg, show_progress=False)
    train_pose([f["tgt"]], d / "tgt_only", cfg, show_progress=False)
    return d, f


def independent_metrics(run, test_path) -> dict:
    """Accuracy and angle errors recomputed without sim2real.eval: raw model call, numpy, BOP's re on matrices."""
    model, info = load_pose_model(run)
    data = h5.read(test_path)
    x = torch.from_numpy(data.rgb).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    with torch.no_grad():
        out = model(x)
    pred = out["logits"].argmax(1).numpy()
    q = out["quat"].double().numpy()
    R_pred = Rotation.from_quat(np.roll(q, -1, axis=1)).as_matrix()  # scipy wants (x, y, z, w)
    R_true = Rotation.from_quat(np.roll(data.quat.astype(np.float64), -1, axis=1)).as_matrix()
    cos = np.clip((np.einsum("nij,nij->n", R_pred, R_true) - 1) / 2, -1, 1)  # trace(R_pred R_true^T) = sum of products
    ang = np.degrees(np.arccos(cos))
    correct = pred == data.label
    return {"accuracy": correct.mean(), "mean_angle_deg": ang.mean(), "median_angle_deg": np.median(ang),
            "acc10": np.mean(correct & (ang < 10)), "acc30": np.mean(correct & (ang < 30))}


def test_evaluate_numbers_match_independent_computation(setup, capsys):
    d, f = setup
    out = d / "report"
    rc = main(["evaluate", str(d / "src_only"), str(d / "tgt_only"), "--test", str(f["test"]), "-o", str(out), "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    assert "gap closed" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert [x["name"] for x in m["models"]] == ["src_only", "tgt_only"]
    assert [x["role"] for x in m["models"]] == ["source-only", "target-only"]
    assert m["test_set"]["n"] == 30 and m["test_set"]["has_pose"] and m["test_set"]["has_add"]
    for entry, run in zip(m["models"], ("src_only", "tgt_only")):
        ref = independent_metrics(d / run, f["test"])
        assert entry["accuracy"] == pytest.approx(ref["accuracy"])
        assert entry["mean_angle_deg"] == pytest.approx(ref["mean_angle_deg"], abs=1e-3)
        assert entry["median_angle_deg"] == pytest.approx(ref["median_angle_deg"], abs=1e-3)
        assert entry["acc_at_deg"]["10"] == pytest.approx(ref["acc10"])
        assert entry["acc_at_deg"]["30"] == pytest.approx(ref["acc30"])
        assert entry["add_translation"] == "ground truth"
        assert np.array(entry["confusion"]).sum() == 30
    g = m["gap_closed"]
    assert (g["source_only"], g["target_only"]) == ("src_only", "tgt_only")
    s, t = m["models"][0]["mean_angle_deg"], m["models"][1]["mean_angle_deg"]
    if g["significance"]["mean_angle_deg"]["significant"]:
        assert g["models"]["src_only"]["mean_angle_deg"] == pytest.approx(0.0)
        assert g["models"]["tgt_only"]["mean_angle_deg"] == pytest.approx(1.0)
    else:  # a gap within noise (likely on 30 images): no share, a reason instead
        assert g["models"]["tgt_only"]["mean_angle_deg"] is None
        assert g["reasons"]["mean_angle_deg"].startswith("gap too small")
    # the typed record reads the file back exactly (same keys, same order) and types what readers use
    rec = read_record(out / "metrics.json")
    assert json.dumps(rec.to_dict()) == json.dumps(m)
    assert rec.models[0].mean_angle_deg == pytest.approx(m["models"][0]["mean_angle_deg"])
    assert rec.gap_closed.source_only == "src_only"


def test_gap_closed_for_a_third_model_and_names(setup, capsys):
    d, f = setup
    out = d / "report_named"
    rc = main(["evaluate", f"base={d / 'src_only'}", f"upper={d / 'tgt_only'}", f"mid={d / 'src_only'}",
               "--test", str(f["test"]), "-o", str(out), "--source-only", "base", "--target-only", "upper"])
    assert rc == 0, capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())
    acc = {x["name"]: x["accuracy"] for x in m["models"]}
    gap = m["gap_closed"]["models"]["mid"]["accuracy"]
    if m["gap_closed"]["significance"]["accuracy"]["significant"]:
        assert gap == pytest.approx((acc["mid"] - acc["base"]) / (acc["upper"] - acc["base"]))
    else:
        assert gap is None
    rc = main(["evaluate", str(d / "src_only"), "--test", str(f["test"]), "-o", str(d / "report_nope"),
               "--source-only", "nope"])
    assert rc == 2 and "no model named 'nope'" in capsys.readouterr().err


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


def test_bad_inputs_are_one_line_errors(setup, tmp_path, capsys):
    d, f = setup
    run = str(d / "src_only")
    # test set without labels
    unl = make_synthetic(tmp_path / "unl.h5", n=6, size=16, num_classes=3, labels=False)
    assert main(["evaluate", run, "--test", str(unl), "-o", str(tmp_path / "r")]) == 2
    assert "'label'" in one_line_error(capsys)
    # class names differing between model and test set: both listed
    four = make_synthetic(tmp_path / "four.h5", n=8, size=16, num_classes=4, seed=2, domain="target")
    assert main(["evaluate", run, "--test", str(four), "-o", str(tmp_path / "r")]) == 2
    err = one_line_error(capsys)
    assert "test set: [class0, class1, class2, class3]" in err and "model: [class0, class1, class2]" in err
    # image size mismatch
    big = make_synthetic(tmp_path / "big.h5", n=6, size=24, num_classes=3, seed=2, domain="target")
    assert main(["evaluate", run, "--test", str(big), "-o", str(tmp_path / "r")]) == 2
    assert "24x24" in one_line_error(capsys)
    # an empty test set (written by hand: h5.write refuses to make one)
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as fh:
        fh.create_dataset("rgb", data=np.zeros((0, 16, 16, 3), np.uint8))
        fh.create_dataset("label", data=np.zeros((0,), np.int64))
        fh.create_dataset("class_names", data=np.array(["class0", "class1", "class2"], dtype=h5py.string_dtype()))
        for k, v in h5.make_attrs("target", {}, 0).items():
            fh.attrs[k] = v
    assert main(["evaluate", run, "--test", str(empty), "-o", str(tmp_path / "r")]) == 2
    assert "no samples" in one_line_error(capsys)
    # a corrupt checkpoint
    bad = tmp_path / "corrupt_run"
    shutil.copytree(d / "src_only", bad)
    (bad / "checkpoints" / "last.pt").write_bytes(b"\x00not a checkpoint" * 10)
    assert main(["evaluate", str(bad), "--test", str(f["test"]), "-o", str(tmp_path / "r")]) == 2
    assert "not a readable checkpoint" in one_line_error(capsys)
    # not a run folder; missing --test
    assert main(["evaluate", str(tmp_path), "--test", str(f["test"]), "-o", str(tmp_path / "r")]) == 2
    assert "run.json" in one_line_error(capsys)
    assert main(["evaluate", run, "-o", str(tmp_path / "r")]) == 2
    assert "--test" in one_line_error(capsys)
    assert not (tmp_path / "r" / "report.html").exists()


def test_same_class_names_in_another_order_are_reordered(setup, tmp_path):
    d, f = setup
    data = h5.read(f["test"])
    arr = {k: getattr(data, k) for k in ("rgb", "depth", "mask", "quat", "trans", "K", "model_points", "diameters", "extents")}
    arr["label"] = 2 - data.label  # class i is now called by the name at position 2 - i
    arr["model_points"], arr["diameters"], arr["extents"] = (a[::-1].copy() for a in (data.model_points, data.diameters, data.extents))
    path = h5.write(tmp_path / "reordered.h5", arr, h5.make_attrs("target", {}, 0), class_names=data.class_names[::-1])
    assert main(["evaluate", str(d / "src_only"), "--test", str(path), "-o", str(tmp_path / "a")]) == 0
    assert main(["evaluate", str(d / "src_only"), "--test", str(f["test"]), "-o", str(tmp_path / "b")]) == 0
    a, b = (json.loads((tmp_path / x / "metrics.json").read_text())["models"][0] for x in ("a", "b"))
    assert a["accuracy"] == b["accuracy"] and a["add_recall"] == b["add_recall"]
    assert np.array_equal(np.array(a["confusion"]), np.array(b["confusion"])[::-1, ::-1])


def test_leak_warning_when_the_test_file_was_trained_on(setup, tmp_path, capsys):
    d, f = setup
    assert main(["evaluate", str(d / "src_only"), "--test", str(f["src"]), "-o", str(tmp_path / "r")]) == 0
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert any("not a held-out evaluation" in w for w in m["warnings"])
    assert any("domain is 'source'" in w for w in m["warnings"])
    assert "warning:" in capsys.readouterr().out


def test_classification_only_test_set(setup, tmp_path):
    d, f = setup
    arr = synthetic_arrays(n=12, size=16, num_classes=3, seed=9, domain="target", depth=False)
    arr.pop("quat")
    arr.pop("trans")
    path = h5.write(tmp_path / "noquat.h5", arr, h5.make_attrs("target", {}, 0), class_names=["class0", "class1", "class2"])
    assert main(["evaluate", str(d / "src_only"), "--test", str(path), "-o", str(tmp_path / "r")]) == 0
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert not m["models"][0]["has_pose"] and "mean_angle_deg" not in m["models"][0]
    assert "only classification" in (tmp_path / "r" / "report.md").read_text()


def test_folder_of_images_with_labels_csv(setup, tmp_path):
    from PIL import Image

    d, f = setup
    data = h5.read(f["test"])
    folder = tmp_path / "photos"
    folder.mkdir()
    rows = ["file,label,qw,qx,qy,qz"]
    for i in range(len(data)):
        Image.fromarray(data.rgb[i]).save(folder / f"{i:03d}.png")
        rows.append(f"{i:03d}.png,{data.class_names[data.label[i]]}," + ",".join(f"{v:.6f}" for v in data.quat[i]))
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    assert main(["evaluate", str(d / "src_only"), "--test", str(folder), "-o", str(tmp_path / "r")]) == 0
    from_folder = json.loads((tmp_path / "r" / "metrics.json").read_text())["models"][0]
    assert main(["evaluate", str(d / "src_only"), "--test", str(f["test"]), "-o", str(tmp_path / "r2")]) == 0
    from_h5 = json.loads((tmp_path / "r2" / "metrics.json").read_text())["models"][0]
    assert from_folder["accuracy"] == from_h5["accuracy"]
    assert from_folder["mean_angle_deg"] == pytest.approx(from_h5["mean_angle_deg"], abs=1e-3)
    assert from_folder["has_add"] is False  # a folder carries no translation or intrinsics


def test_predictions_do_not_depend_on_batching(setup):
    from sim2real.eval.predictor import load_predictor

    d, f = setup
    p = load_predictor(d / "src_only")
    data = h5.read(f["test"])
    a = p.predict(data, batch_size=4, chunk=7)  # 30 images: chunks of 7, batches of 4 (uneven tails)
    b = p.predict(data, batch_size=256)
    np.testing.assert_array_equal(a["label_pred"], b["label_pred"])
    np.testing.assert_allclose(a["probs"], b["probs"], atol=1e-6)
    np.testing.assert_allclose(a["quat_pred"], b["quat_pred"], atol=1e-6)
    assert (a["quat_pred"][:, 0] >= 0).all() and np.allclose(np.linalg.norm(a["quat_pred"], axis=1), 1, atol=1e-6)


def test_nearest_neighbours_match_brute_force():
    rng = np.random.default_rng(0)
    bank = rng.integers(0, 256, size=(50, 6, 5, 3), dtype=np.uint8)
    q = rng.integers(0, 256, size=(7, 6, 5, 3), dtype=np.uint8)
    idx, rms = nearest_neighbours(q, bank, chunk=8)  # several chunks
    d = np.sqrt(((q.reshape(7, 1, -1).astype(float) - bank.reshape(1, 50, -1)) ** 2).mean(-1))
    np.testing.assert_array_equal(idx, d.argmin(1))
    np.testing.assert_allclose(rms, d.min(1), rtol=1e-6)
    # leave-one-out never returns the query itself
    idx2, rms2 = nearest_neighbours(bank[:5], bank, exclude=np.arange(5), chunk=16)
    assert (idx2 != np.arange(5)).all() and (rms2 > 0).all()


def test_memorisation_flags_copies(tmp_path):
    tgt = h5.read(make_synthetic(tmp_path / "t.h5", n=40, size=12, num_classes=3, seed=1, domain="target"))
    copies = dict(synthetic_arrays(n=40, size=12, num_classes=3, seed=1, domain="target"))
    copied = h5.read(h5.write(tmp_path / "copies.h5", copies, h5.make_attrs("adapted", {}, 0),
                              class_names=["class0", "class1", "class2"]))
    res = memorisation_check(copied, tgt, n=10, seed=0)
    assert res.summary()["near_copies"] == 10 and np.allclose(res.distance, 0)
    src = h5.read(make_synthetic(tmp_path / "s.h5", n=40, size=12, num_classes=3, seed=5, domain="source"))
    res = memorisation_check(src, tgt, n=10, seed=0)
    assert res.summary()["near_copies"] == 0 and (res.distance > 2).all()
    np.testing.assert_array_equal(res.neighbour_rgb, tgt.rgb[res.neighbour_index])


def test_pixelda_run_is_evaluated_through_its_task_network(setup, tmp_path):
    pytest.importorskip("sim2real.adapt.pixelda.train")
    from sim2real.eval.predictor import load_predictor
    from sim2real.models.loading import load_task_model

    d, f = setup
    rc = main(["adapt", "--source", str(f["src"]), "--target", str(f["tgt"]), "-o", str(tmp_path / "pixelda"),
               "--config", "pixelda-tiny", "--set", "train.steps=2", "--set", "train.checkpoint_every=2"])
    assert rc == 0
    p = load_predictor(tmp_path / "pixelda")
    assert p.kind == "pixelda" and p.role == "pixelda" and p.class_names == ["class0", "class1", "class2"]
    data = h5.read(f["test"])
    pred = p.predict(data, batch_size=7)
    T, _ = load_task_model(tmp_path / "pixelda")
    x = torch.from_numpy(data.rgb).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    with torch.no_grad():
        ref = T(x, domain="target")
    np.testing.assert_array_equal(pred["label_pred"], ref["logits"].argmax(1).numpy())
    np.testing.assert_allclose(np.abs((pred["quat_pred"] * ref["quat"].numpy()).sum(1)), 1.0, atol=1e-5)
    assert main(["evaluate", str(tmp_path / "pixelda"), "--test", str(f["test"]), "-o", str(tmp_path / "r")]) == 0
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["models"][0]["kind"] == "pixelda"


def test_symmetries_of_the_test_file_reach_the_metrics(setup, tmp_path):
    from sim2real.symmetry import Symmetry, sym_rotation_error_deg

    d, f = setup
    data = h5.read(f["test"])
    arr = {k: getattr(data, k) for k in ("rgb", "depth", "mask", "label", "quat", "trans", "K", "model_points",
                                         "diameters", "extents")}
    cyl = Symmetry.from_dict({"continuous": [{"axis": [0, 0, 1]}]})
    syms = [cyl] + [None] * (data.num_classes - 1)
    path = h5.write(tmp_path / "sym.h5", arr, h5.make_attrs("target", {}, 0), class_names=data.class_names, symmetries=syms)
    assert main(["evaluate", str(d / "src_only"), "--test", str(path), "-o", str(tmp_path / "r")]) == 0
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())["models"][0]
    assert m["symmetry_known"] is True and [c["symmetric"] for c in m["per_class"]] == [True] + [False] * (len(syms) - 1)
    # independent recomputation from the per-class means: class 0 uses the exact continuous minimum
    for c, row in enumerate(m["per_class"][1:], start=1):
        assert row["mean_angle_sym_deg"] == pytest.approx(row["mean_angle_deg"])
    assert m["per_class"][0]["mean_angle_sym_deg"] <= m["per_class"][0]["mean_angle_deg"] + 1e-9
    assert m["mean_angle_sym_deg"] <= m["mean_angle_deg"] + 1e-9
    # the plain test file (no symmetries dataset): unknown, sym == plain
    assert main(["evaluate", str(d / "src_only"), "--test", str(f["test"]), "-o", str(tmp_path / "p")]) == 0
    p = json.loads((tmp_path / "p" / "metrics.json").read_text())["models"][0]
    assert p["symmetry_known"] is False and p["mean_angle_sym_deg"] == pytest.approx(p["mean_angle_deg"])
    assert sym_rotation_error_deg(data.quat[:1], data.quat[:1], cyl)[0] == pytest.approx(0.0, abs=1e-5)


def test_method_of_training_files_reads_the_adapted_files_provenance(tmp_path):
    from sim2real.eval.predictor import method_of_training_files

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"kind": "dtn"}))
    arrays = synthetic_arrays(n=4, size=8, num_classes=2, seed=0)
    names = [f"c{i}" for i in range(2)]
    adapted = h5.write(tmp_path / "a.h5", arrays, h5.make_attrs("adapted", {}, 0, provenance={"run_dir": str(run)}),
                       class_names=names)
    orphan = h5.write(tmp_path / "o.h5", arrays, h5.make_attrs("adapted", {}, 0), class_names=names)
    src = {"path": str(tmp_path / "s.h5"), "domain": "source"}
    assert method_of_training_files([src]) == "none"
    assert method_of_training_files([src, {"path": str(adapted), "domain": "adapted"}]) == "dtn"
    assert method_of_training_files([{"path": str(orphan), "domain": "adapted"}]) == "adapted (unknown)"
