"""BOP import / export: crop geometry against an analytic sphere, lossless round trips, one-line errors, --skip-bad."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sim2real.cli import main as cli
from sim2real.conventions import canonical_quat, matrix_from_quat
from sim2real.data import bop, h5
from sim2real.errors import Sim2RealError
from sim2real.testing import synthetic_arrays

# A full-size camera and two spheres (obj 1: radius 30 mm, obj 2: radius 20 mm): a sphere's silhouette and depth
# have a closed form, which gives an independent reference for crops and their intrinsics.
K_FULL = np.array([[600.0, 0.0, 160.3], [0.0, 610.0, 119.6], [0.0, 0.0, 1.0]])
W, H = 320, 240
RADIUS_MM = {1: 30.0, 2: 20.0}


def sphere_hit(K: np.ndarray, shape: tuple[int, int], centre_mm: np.ndarray, radius_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """(mask, z in mm) of a sphere seen through ``K`` at every pixel centre (OpenCV: pixel (i, j) centre at (j, i))."""
    h, w = shape
    jj, ii = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    rays = np.stack([jj, ii, np.ones_like(jj)], -1) @ np.linalg.inv(K).T  # z = 1
    c = np.asarray(centre_mm, dtype=np.float64)
    a = (rays * rays).sum(-1)
    b = (rays * c).sum(-1)
    disc = b * b - a * (c @ c - radius_mm ** 2)
    mask = disc > 0
    s = np.where(mask, (b - np.sqrt(np.maximum(disc, 0))) / a, 0.0)  # nearest intersection along the ray
    return mask, s  # rays have z = 1, so the ray parameter is the z-depth


def rotation(seed: int) -> np.ndarray:
    return matrix_from_quat(canonical_quat(np.random.default_rng(seed).normal(size=4)))


def write_scene(scene_dir: Path, images: dict[int, list[tuple[int, np.ndarray, np.ndarray]]], shape=(H, W),
                depth_scale: float = 0.1) -> None:
    """A BOP scene of spheres, written by hand (independent of export_bop). ``images``: im_id -> [(obj_id, R, t_mm)]."""
    for sub in ("rgb", "depth", "mask", "mask_visib"):
        (scene_dir / sub).mkdir(parents=True, exist_ok=True)
    cams, gts, infos = {}, {}, {}
    for im_id, insts in images.items():
        rgb = np.full(shape + (3,), 40, np.uint8)
        zbuf = np.zeros(shape)
        masks = []
        for obj_id, _R, t in insts:
            m, z = sphere_hit(K_FULL, shape, t, RADIUS_MM[obj_id])
            masks.append((m, z))
        for k, (m, z) in enumerate(masks):  # later instances may be hidden by nearer ones: mask_visib
            nearer = np.zeros(shape, bool)
            for k2, (m2, z2) in enumerate(masks):
                if k2 != k:
                    nearer |= m2 & m & (z2 < z)
            vis = m & ~nearer
            rgb[vis] = (200, 60 + 80 * insts[k][0], 30)
            zbuf[vis] = z[vis]
            Image.fromarray(m.astype(np.uint8) * 255).save(scene_dir / "mask" / f"{im_id:06d}_{k:06d}.png")
            Image.fromarray(vis.astype(np.uint8) * 255).save(scene_dir / "mask_visib" / f"{im_id:06d}_{k:06d}.png")
            infos.setdefault(str(im_id), []).append({"bbox_obj": [0, 0, 1, 1], "bbox_visib": [0, 0, 1, 1],
                                                     "px_count_all": int(m.sum()), "px_count_valid": int(vis.sum()),
                                                     "px_count_visib": int(vis.sum()),
                                                     "visib_fract": float(vis.sum() / max(m.sum(), 1))})
        Image.fromarray(rgb).save(scene_dir / "rgb" / f"{im_id:06d}.png")
        Image.fromarray(np.round(zbuf / depth_scale).astype(np.uint16)).save(scene_dir / "depth" / f"{im_id:06d}.png")
        cams[str(im_id)] = {"cam_K": K_FULL.reshape(9).tolist(), "depth_scale": depth_scale}
        gts[str(im_id)] = [{"cam_R_m2c": R.reshape(9).tolist(), "cam_t_m2c": list(map(float, t)), "obj_id": o}
                           for o, R, t in insts]
    (scene_dir / "scene_camera.json").write_text(json.dumps(cams))
    (scene_dir / "scene_gt.json").write_text(json.dumps(gts))
    (scene_dir / "scene_gt_info.json").write_text(json.dumps(infos))


def make_bop(root: Path) -> Path:
    """Two scenes: scene 1 has one sphere per image; scene 2 has an image where obj 2 is almost hidden by obj 1."""
    (root / "models").mkdir(parents=True)
    info = {str(o): {"diameter": 2 * r, "min_x": -r, "min_y": -r, "min_z": -r, "size_x": 2 * r, "size_y": 2 * r,
                     "size_z": 2 * r} for o, r in RADIUS_MM.items()}
    (root / "models" / "models_info.json").write_text(json.dumps(info))
    write_scene(root / "test" / "000001", {
        0: [(1, rotation(0), np.array([20.0, -15.0, 300.0]))],
        3: [(2, rotation(1), np.array([-30.0, 10.0, 350.0]))],
    })
    write_scene(root / "test" / "000002", {
        5: [(1, rotation(2), np.array([0.0, 0.0, 320.0])), (2, rotation(3), np.array([0.0, 0.0, 420.0]))],
    })
    return root


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("SIM2REAL_PROGRESS", "0")


@pytest.fixture
def bop_root(tmp_path: Path) -> Path:
    return make_bop(tmp_path / "bop")


CMAP = {1: "ball", 2: "marble"}


def test_crops_match_the_analytic_sphere_seen_through_the_crop_K(bop_root):
    res = bop.read_bop(bop_root, "test", bop.ClassMap.from_mapping(CMAP, "map"), bop.ImportOptions(size=64, fill=0.8))
    a = res.arrays
    # obj 2 in scene 2 is hidden behind obj 1 (visib_fract ~ 0 < 0.1): 3 samples, in scene / im_id / gt order
    assert a["label"].tolist() == [0, 1, 0]
    np.testing.assert_allclose(a["trans"][0], [0.020, -0.015, 0.300], atol=1e-7)
    np.testing.assert_allclose(matrix_from_quat(a["quat"][0]), rotation(0), atol=1e-6)
    for i, t in enumerate([np.array([20.0, -15.0, 300.0]), np.array([-30.0, 10.0, 350.0]), np.array([0.0, 0.0, 320.0])]):
        Kc = res.K_per_sample[i].astype(np.float64)
        radius = RADIUS_MM[int(a["label"][i]) + 1]
        # the crop convention: the diameter at its distance spans fill * size pixels, centred on the projected origin
        assert Kc[0, 0] == pytest.approx(64 * 0.8 * t[2] / (2 * radius), rel=1e-5)
        u, v = (Kc @ t)[:2] / t[2]
        assert (u, v) == pytest.approx((31.5, 31.5), abs=1e-4)
        # independent reference: ray-cast the sphere through the crop's own K at every crop pixel centre
        ref_mask, ref_z = sphere_hit(Kc, (64, 64), t, radius)
        got = a["mask"][i]
        # nearest resampling of a larger source (<= 0.5 source pixel < 0.5 crop pixel off): any disagreement lies on
        # the reference silhouette's rim, i.e. next to a pixel of the other value
        pad = np.pad(ref_mask, 1, mode="edge")
        rim = np.zeros_like(ref_mask)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                rim |= pad[1 + dy:65 + dy, 1 + dx:65 + dx] != ref_mask
        assert not np.any((got != ref_mask) & ~rim)
        # the crop's K fits best: moving its principal point by half a pixel either way fits worse
        for row in (0, 1):
            for shift in (-0.5, 0.5):
                moved = Kc.copy()
                moved[row, 2] += shift
                assert (sphere_hit(moved, (64, 64), t, radius)[0] != got).sum() > (got != ref_mask).sum()
        inner = ref_mask & np.roll(ref_mask, 2, 0) & np.roll(ref_mask, -2, 0) & np.roll(ref_mask, 2, 1) & np.roll(ref_mask, -2, 1)
        # away from the rim: depth within the 0.1 mm storage step plus half a source pixel of the sphere's slope
        np.testing.assert_allclose(a["depth"][i][inner] * 1000, ref_z[inner], atol=1.0)
        assert np.all(a["rgb"][i][inner][:, 0] == 200)
    assert "K" not in a  # crops of objects at different distances have different intrinsics
    assert a["diameters"].tolist() == pytest.approx([0.06, 0.04])
    assert any("per-sample intrinsics" in n for n in res.notes)


def test_min_visib_zero_keeps_the_hidden_instance(bop_root):
    res = bop.read_bop(bop_root, "test", bop.ClassMap.from_mapping(CMAP, "map"), bop.ImportOptions(min_visib=0.0))
    assert res.arrays["label"].tolist() == [0, 1, 0, 1]


def test_no_crop_keeps_full_images_and_K(bop_root):
    res = bop.read_bop(bop_root, "test", bop.ClassMap.from_mapping(CMAP, "map"), bop.ImportOptions(crop=False))
    a = res.arrays
    assert a["rgb"].shape == (3, H, W, 3)
    np.testing.assert_allclose(a["K"], K_FULL, rtol=1e-6)
    ref_mask, ref_z = sphere_hit(K_FULL, (H, W), np.array([20.0, -15.0, 300.0]), 30.0)
    np.testing.assert_array_equal(a["mask"][0], ref_mask)
    np.testing.assert_allclose(a["depth"][0][ref_mask] * 1000, ref_z[ref_mask], atol=0.051)


def _with_poses(tmp_path: Path, n: int = 9, size: int = 16) -> Path:
    """A labelled HDF5 like a render: random poses and distances (make_synthetic has one fixed translation)."""
    from sim2real.testing import make_synthetic

    src = make_synthetic(tmp_path / "base.h5", n=n, size=size, num_classes=3)
    d = h5.read(src)
    rng = np.random.default_rng(5)
    trans = np.c_[rng.uniform(-0.03, 0.03, (n, 2)), rng.uniform(0.3, 0.9, n)].astype(np.float32)
    arrays = {k: getattr(d, k) for k in ("rgb", "depth", "mask", "label", "quat", "K", "model_points", "diameters", "extents")}
    arrays["trans"] = trans
    arrays["depth"] = np.where(d.mask, d.depth + trans[:, 2:3, None] - 0.5, 0).astype(np.float32)
    return h5.write(tmp_path / "poses.h5", arrays, h5.make_attrs("source", {"test": True}, 3), class_names=d.class_names)


def test_export_then_import_no_crop_is_lossless(tmp_path):
    src = _with_poses(tmp_path)
    res = bop.export_bop(src, tmp_path / "B", split="val")
    assert res.depth_scale == 0.1
    gt = json.loads((tmp_path / "B" / "val" / "000000" / "scene_gt.json").read_text())
    assert gt["2"][0]["obj_id"] == int(h5.read(src).label[2]) + 1
    out, _ = bop.import_bop(tmp_path / "B", "val", tmp_path / "back.h5", options=bop.ImportOptions(crop=False, min_visib=0))
    a, b = h5.read(src), h5.read(out)
    assert b.class_names == a.class_names  # through class_map.json
    np.testing.assert_array_equal(b.rgb, a.rgb)
    np.testing.assert_array_equal(b.mask, a.mask)
    np.testing.assert_array_equal(b.label, a.label)
    # stated tolerances: quaternion 1e-6, translation 1e-6 m, depth half a depth_scale step (0.05 mm), K exact
    np.testing.assert_allclose(b.quat, a.quat, atol=1e-6)
    np.testing.assert_allclose(b.trans, a.trans, atol=1e-6)
    np.testing.assert_allclose(b.depth, a.depth, atol=0.05e-3 + 1e-7)
    np.testing.assert_array_equal(b.K, a.K)
    np.testing.assert_allclose(b.diameters, a.diameters, rtol=1e-6)
    np.testing.assert_allclose(b.extents, a.extents, rtol=1e-6)
    np.testing.assert_allclose(b.model_points, a.model_points, atol=1e-8)


def test_export_then_import_crops_keeps_labels_and_poses(tmp_path):
    src = _with_poses(tmp_path)
    bop.export_bop(src, tmp_path / "B")
    out, res = bop.import_bop(tmp_path / "B", "test", tmp_path / "crops.h5", options=bop.ImportOptions(size=32, min_visib=0))
    a, b = h5.read(src), h5.read(out)
    assert b.image_size == (32, 32) and b.attrs["split"] == "test" and b.attrs["domain"] == "target"
    np.testing.assert_array_equal(b.label, a.label)
    np.testing.assert_allclose(b.quat, a.quat, atol=1e-6)
    np.testing.assert_allclose(b.trans, a.trans, atol=1e-6)
    Ks = bop.read_K_per_sample(out)
    assert Ks.shape == (len(a), 3, 3)
    for i in range(len(a)):  # each crop's K maps the object origin to the crop centre
        uvw = Ks[i].astype(np.float64) @ a.trans[i]
        assert uvw[:2] / uvw[2] == pytest.approx((15.5, 15.5), abs=1e-3)


def test_export_layout_and_units(tmp_path):
    src = _with_poses(tmp_path, n=3)
    bop.export_bop(src, tmp_path / "B")
    d = h5.read(src)
    root, scene = tmp_path / "B", tmp_path / "B" / "test" / "000000"
    cam = json.loads((root / "camera.json").read_text())
    assert (cam["width"], cam["height"], cam["fx"]) == (16, 16, pytest.approx(float(d.K[0, 0])))
    info = json.loads((root / "models" / "models_info.json").read_text())
    assert info["1"]["diameter"] == pytest.approx(float(d.diameters[0]) * 1000)
    assert info["1"]["min_x"] == pytest.approx(-float(d.extents[0, 0]) * 500)
    gt = json.loads((scene / "scene_gt.json").read_text())["1"][0]
    np.testing.assert_allclose(gt["cam_t_m2c"], d.trans[1] * 1000, rtol=1e-6)
    np.testing.assert_allclose(np.reshape(gt["cam_R_m2c"], (3, 3)), matrix_from_quat(d.quat[1]), atol=1e-6)
    gi = json.loads((scene / "scene_gt_info.json").read_text())["1"][0]
    ys, xs = np.nonzero(d.mask[1])
    assert gi["bbox_visib"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    assert gi["px_count_visib"] == d.mask[1].sum() and gi["visib_fract"] == 1.0
    depth = np.asarray(Image.open(scene / "depth" / "000001.png"))
    assert depth.dtype == np.uint16
    np.testing.assert_allclose(depth * 0.1 / 1000, d.depth[1], atol=0.05e-3 + 1e-7)
    assert (scene / "mask_visib" / "000002_000000.png").is_file()
    assert (root / "models" / "obj_000003.ply").read_text().startswith("ply")


def test_export_refuses_to_overwrite_and_needs_poses(tmp_path):
    src = _with_poses(tmp_path, n=3)
    bop.export_bop(src, tmp_path / "B")
    with pytest.raises(Sim2RealError, match="already exists"):
        bop.export_bop(src, tmp_path / "B")
    bop.export_bop(src, tmp_path / "B", overwrite=True)
    arrays = synthetic_arrays(n=3, size=8)
    del arrays["quat"]
    p = h5.write(tmp_path / "noq.h5", arrays, h5.make_attrs("source", {}, 0), class_names=["a", "b", "c"])
    with pytest.raises(Sim2RealError, match=r"noq.h5: has no 'quat'"):
        bop.export_bop(p, tmp_path / "C")
    assert not list((tmp_path / "B").glob(".*partial"))


def test_class_map_formats(tmp_path):
    (tmp_path / "m.yaml").write_text("1: ape\n5: can\n3: null\n")
    m = bop.load_class_map(tmp_path / "m.yaml")
    assert m.names == ["ape", "can"] and m.obj_to_label == {1: 0, 3: None, 5: 1}
    (tmp_path / "m.json").write_text('{"2": "duck"}')
    assert bop.load_class_map(tmp_path / "m.json").obj_to_label == {2: 0}
    (tmp_path / "objects.yaml").write_text("objects:\n  - {id: 0, name: cat}\n  - {id: 1, name: drill}\n")
    assert bop.load_class_map(tmp_path / "objects.yaml").obj_to_label == {1: 0, 2: 1}
    from sim2real.testing import make_synthetic

    h = make_synthetic(tmp_path / "r.h5", n=4, size=8, num_classes=2)
    assert bop.load_class_map(h).names == ["class0", "class1"]
    (tmp_path / "dup.yaml").write_text("1: a\n2: a\n")
    with pytest.raises(Sim2RealError, match="dup.yaml: class name 'a'"):
        bop.load_class_map(tmp_path / "dup.yaml")


def test_null_in_class_map_ignores_an_object(bop_root):
    res = bop.read_bop(bop_root, "test", bop.ClassMap.from_mapping({1: "ball", 2: None}, "map"))
    assert res.arrays["label"].tolist() == [0, 0] and res.class_names == ["ball"]


# ------------------------------------------------------------------------------------------------
# Bad input: one line naming the file; --skip-bad skips and counts
# ------------------------------------------------------------------------------------------------


def _cli(capsys, *args) -> tuple[int, str, str]:
    rc = cli(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def _map_file(tmp_path: Path, mapping: dict) -> str:
    p = tmp_path / "map.json"
    p.write_text(json.dumps({str(k): v for k, v in mapping.items()}))
    return str(p)


def test_missing_scene_gt_is_one_line_error_or_skipped(bop_root, tmp_path, capsys):
    (bop_root / "test" / "000001" / "scene_gt.json").unlink()
    cmap = _map_file(tmp_path, CMAP)
    rc, _, err = _cli(capsys, "import-bop", str(bop_root), "--split", "test", "-o", str(tmp_path / "t.h5"), "--class-map", cmap)
    assert rc == 2 and err.count("\n") == 1
    assert str(bop_root / "test" / "000001" / "scene_gt.json") in err and "file not found" in err
    assert not (tmp_path / "t.h5").exists()
    rc, out, _ = _cli(capsys, "import-bop", str(bop_root), "--split", "test", "-o", str(tmp_path / "t.h5"),
                      "--class-map", cmap, "--skip-bad")
    assert rc == 0 and "skipped 1 bad item (1 scene without annotations)" in out
    d = h5.read(tmp_path / "t.h5")
    assert len(d) == 1 and d.attrs["skipped"] == 1


def test_unknown_obj_id_is_one_line_error_or_skipped(bop_root, tmp_path, capsys):
    cmap = _map_file(tmp_path, {1: "ball"})
    rc, _, err = _cli(capsys, "import-bop", str(bop_root), "--split", "test", "-o", str(tmp_path / "t.h5"), "--class-map", cmap)
    assert rc == 2 and err.count("\n") == 1 and "obj_id 2" in err and cmap in err and "not in the class map" in err
    rc, out, _ = _cli(capsys, "import-bop", str(bop_root), "--split", "test", "-o", str(tmp_path / "t.h5"),
                      "--class-map", cmap, "--skip-bad", "--min-visib", "0")
    assert rc == 0 and "skipped 2 bad items (2 unknown obj_id)" in out
    assert h5.read(tmp_path / "t.h5").label.tolist() == [0, 0]


def test_corrupt_image_is_one_line_error_or_skipped(bop_root, tmp_path, capsys):
    bad = bop_root / "test" / "000001" / "rgb" / "000003.png"
    bad.write_bytes(bad.read_bytes()[:100])  # truncated PNG
    cmap = _map_file(tmp_path, CMAP)
    rc, _, err = _cli(capsys, "import-bop", str(bop_root), "--split", "test", "-o", str(tmp_path / "t.h5"), "--class-map", cmap)
    assert rc == 2 and err.count("\n") == 1 and f"{bad}: not a readable image" in err
    rc, out, _ = _cli(capsys, "import-bop", str(bop_root), "--split", "test", "-o", str(tmp_path / "t.h5"),
                      "--class-map", cmap, "--skip-bad")
    assert rc == 0 and "skipped 1 bad item (1 unreadable image)" in out and "import-bop: 2 samples" in out


def test_mixed_sizes_without_crops_is_one_line_error_or_skipped(bop_root, tmp_path):
    write_scene(bop_root / "test" / "000003", {0: [(1, rotation(4), np.array([0.0, 0.0, 300.0]))]}, shape=(200, 300))
    cmap = bop.ClassMap.from_mapping(CMAP, "map")
    with pytest.raises(Sim2RealError) as e:
        bop.read_bop(bop_root, "test", cmap, bop.ImportOptions(crop=False))
    msg = str(e.value)
    assert msg.startswith(str(bop_root / "test" / "000003" / "rgb" / "000000.png")) and "300x200, expected 320x240" in msg
    res = bop.read_bop(bop_root, "test", cmap, bop.ImportOptions(crop=False, skip_bad=True))
    assert len(res.arrays["rgb"]) == 3 and res.skips.by_reason == {"image of another size": 1}
    # with crops the sizes do not matter
    assert len(bop.read_bop(bop_root, "test", cmap).arrays["rgb"]) == 4


def test_missing_models_info_names_the_file_and_no_crop_works_without_it(bop_root):
    (bop_root / "models" / "models_info.json").unlink()
    cmap = bop.ClassMap.from_mapping(CMAP, "map")
    with pytest.raises(Sim2RealError, match=r"models_info.json \(missing\): no diameter for obj_id 1"):
        bop.read_bop(bop_root, "test", cmap)
    res = bop.read_bop(bop_root, "test", cmap, bop.ImportOptions(crop=False))
    assert "diameters" not in res.arrays and len(res.arrays["rgb"]) == 3


def test_unknown_split_lists_the_splits(bop_root):
    with pytest.raises(Sim2RealError, match=r"no such split folder \(splits here: test\)"):
        bop.read_bop(bop_root, "train", bop.ClassMap.from_mapping(CMAP, "map"))


@pytest.mark.gl
def test_rendered_dataset_round_trips_through_bop(tmp_path, mesh_folder):
    """The issue's acceptance check on a real render: export, re-import, identical labels and poses."""
    from sim2real.config import load_config
    from sim2real.render.config import RenderConfig
    from sim2real.render.job import run_render

    cfg = load_config(RenderConfig, None, [f"objects={mesh_folder}", "n_samples=12", "image_size=32", "shard_size=12",
                                           "model_points=200", "pose.translation_jitter=0.05"])
    try:
        run_render(cfg, tmp_path / "r.h5", workers=1, show_progress=False)
    except Sim2RealError as e:  # no OpenGL backend on this machine
        pytest.skip(f"cannot render here: {e}")
    bop.export_bop(tmp_path / "r.h5", tmp_path / "B")
    crops, _ = bop.import_bop(tmp_path / "B", "test", tmp_path / "crops.h5", options=bop.ImportOptions(size=32, min_visib=0))
    full, _ = bop.import_bop(tmp_path / "B", "test", tmp_path / "full.h5", options=bop.ImportOptions(crop=False, min_visib=0))
    a, b, c = h5.read(tmp_path / "r.h5"), h5.read(crops), h5.read(full)
    assert b.class_names == a.class_names
    for d in (b, c):
        np.testing.assert_array_equal(d.label, a.label)
        np.testing.assert_allclose(d.quat, a.quat, atol=1e-6)
        np.testing.assert_allclose(d.trans, a.trans, atol=1e-6)
    np.testing.assert_array_equal(c.rgb, a.rgb)
    np.testing.assert_array_equal(c.mask, a.mask)
    np.testing.assert_array_equal(c.K, a.K)


def test_symmetries_round_trip_through_models_info_in_mm(tmp_path):
    from sim2real.symmetry import Symmetry

    src = _with_poses(tmp_path)
    d = h5.read(src)
    cyl = Symmetry.from_dict({"continuous": [{"axis": [0, 0, 1], "offset": [0.002, 0, 0]}],
                              "discrete": [{"axis": [1, 0, 0], "angle_deg": 180, "offset": [0.002, 0, 0]}]})
    box = Symmetry.from_dict({"discrete": [{"axis": [0, 0, 1], "angle_deg": 180, "offset": [0, 0.01, 0]}]})
    arrays = {k: getattr(d, k) for k in ("rgb", "depth", "mask", "label", "quat", "trans", "K", "model_points",
                                         "diameters", "extents")}
    sym_src = h5.write(tmp_path / "sym.h5", arrays, h5.make_attrs("source", {}, 3), class_names=d.class_names,
                       symmetries=[cyl, None, box])
    bop.export_bop(sym_src, tmp_path / "B", split="val")
    info = json.loads((tmp_path / "B" / "models" / "models_info.json").read_text())
    assert "symmetries_discrete" not in info["2"] and "symmetries_continuous" not in info["2"]
    assert info["1"]["symmetries_continuous"] == [{"axis": [0.0, 0.0, 1.0], "offset": [pytest.approx(2.0), 0.0, 0.0]}]
    T = np.reshape(info["3"]["symmetries_discrete"][0], (4, 4))  # 180 about z through y = 10 mm: t = (0, 20 mm, 0)
    np.testing.assert_allclose(T[:3, 3], [0, 20, 0], atol=1e-9)
    np.testing.assert_allclose(T[:3, :3], np.diag([-1, -1, 1]), atol=1e-12)
    out, _ = bop.import_bop(tmp_path / "B", "val", tmp_path / "back.h5", options=bop.ImportOptions(crop=False, min_visib=0))
    back = h5.read(out).symmetries
    assert back[0] == cyl and back[1] is None and back[2] == box


def test_unknown_symmetries_stay_unknown_and_bop_without_them_means_none(tmp_path):
    src = _with_poses(tmp_path)
    bop.export_bop(src, tmp_path / "B", split="val")  # the source has no symmetries dataset
    out, _ = bop.import_bop(tmp_path / "B", "val", tmp_path / "u.h5", options=bop.ImportOptions(crop=False, min_visib=0))
    assert h5.read(out).symmetries is None
    # a plain BOP dataset (no sim2real_export.json): entries without symmetries_* are not symmetric
    (tmp_path / "B" / bop.EXPORT_INFO_FILE).unlink()
    out, _ = bop.import_bop(tmp_path / "B", "val", tmp_path / "n.h5", options=bop.ImportOptions(crop=False, min_visib=0))
    assert h5.read(out).symmetries == [None, None, None]
    info_path = tmp_path / "B" / "models" / "models_info.json"
    info = json.loads(info_path.read_text())
    info["2"]["symmetries_continuous"] = [{"axis": [0, 0, 5], "offset": [0, 0, 0]}]
    info_path.write_text(json.dumps(info))
    with pytest.raises(Sim2RealError) as e:
        bop.import_bop(tmp_path / "B", "val", tmp_path / "bad.h5", options=bop.ImportOptions(crop=False, min_visib=0))
    assert "models_info.json: obj_id 2" in str(e.value) and "unit vector" in str(e.value) and "\n" not in str(e.value)
