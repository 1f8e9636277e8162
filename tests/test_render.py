"""`sim2real render`: conventions checked on rendered masks, determinism, resume after kill -9, bad input.

Tests marked ``gl`` draw with the real pyrender renderer (an EGL/OSMesa context); the render-job tests run on the
GL-free test double (``renderer="fake"``, :mod:`sim2real.render.fake`) or on both (:data:`RENDERERS`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import binary_dilation

from sim2real.cli import main
from sim2real.config import load_config
from sim2real.conventions import matrix_from_quat, project
from sim2real.data import h5
from sim2real.errors import Sim2RealError
from sim2real.render.config import RenderConfig
from sim2real.render.job import run_render
from sim2real.render.sampling import look_at_rotation, sample_scene

from conftest import run_cli, write_yaml


#: The real renderer (needs a GL context: marked gl) and the GL-free test double, for tests that hold for both.
RENDERERS = [pytest.param("pyrender", marks=pytest.mark.gl), "fake"]


def small_config(mesh_folder: Path, **sets) -> RenderConfig:
    base = [f"objects={mesh_folder}", "n_samples=24", "image_size=40", "shard_size=8", "model_points=300"]
    return load_config(RenderConfig, None, base + [f"{k}={v}" for k, v in sets.items()])


def test_sampling_depends_only_on_seed_and_index():
    cfg = load_config(RenderConfig, None, ["n_samples=10"])
    d = np.array([0.5, 0.6, 0.7])
    a = sample_scene(cfg, 7, d)
    b = sample_scene(cfg, 7, d)
    c = sample_scene(cfg, 8, d)
    np.testing.assert_array_equal(a.R_m2c, b.R_m2c)
    assert a.label == 7 % 3 and c.label == 8 % 3
    assert not np.allclose(a.R_m2c, c.R_m2c)
    np.testing.assert_allclose(a.R_m2c @ a.R_m2c.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(a.R_m2c) == pytest.approx(1.0)


def test_uniform_rotations_have_zero_mean():
    cfg = load_config(RenderConfig, None, [])
    Rs = np.stack([sample_scene(cfg, i, np.array([1.0])).R_m2c for i in range(3000)])
    # E[R] = 0 for the Haar measure on SO(3)
    assert np.abs(Rs.mean(axis=0)).max() < 0.05


def test_view_sphere_camera_positions():
    for e, a, r in [(30, 40, 0), (75, 200, 20), (-10, 0, -30)]:
        R = look_at_rotation(e, a, r)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1.0)
        cam_dir = -R.T @ np.array([0.0, 0.0, 1.0])  # camera position direction in the model frame
        np.testing.assert_allclose(cam_dir, [np.cos(np.radians(e)) * np.cos(np.radians(a)),
                                             np.cos(np.radians(e)) * np.sin(np.radians(a)), np.sin(np.radians(e))], atol=1e-9)
    # zero in-plane rotation: the model's +z (up) points up in the image (negative v)
    R = look_at_rotation(20, 10, 0)
    up_cam = R @ np.array([0.0, 0.0, 1.0])
    assert up_cam[1] < 0 and abs(up_cam[0]) < 1e-9


@pytest.mark.parametrize("renderer", RENDERERS)
@pytest.mark.parametrize("sampler", ["uniform", "view_sphere"])
def test_model_points_project_into_rendered_masks(tmp_path, mesh_folder, sampler, renderer):
    """Independent check of every convention at once: project the stored model points with the stored
    K, quat, trans; they must fall on the stored z-buffer mask, and the mask must not reach beyond them.
    (For the fake renderer: the test double's geometry follows the same conventions.)"""
    cfg = small_config(mesh_folder, **{"pose.sampler": sampler, "pose.translation_jitter": 0.05, "camera.fill": 0.6})
    run_render(cfg, tmp_path / "r.h5", workers=1, show_progress=False, renderer=renderer)
    d = h5.read(tmp_path / "r.h5")
    assert d.attrs["domain"] == "source" and len(d) == 24 and d.class_names == ["bracket", "pebble", "rocket"]
    H, W = d.image_size
    shifted = {s: [] for s in [(0, 0), (0.5, 0), (-0.5, 0), (0, 0.5), (0, -0.5)]}
    for i in range(len(d)):
        R = matrix_from_quat(d.quat[i])
        uv = project(d.model_points[d.label[i]], d.K, R, d.trans[i])
        ij = np.round(uv).astype(int)
        assert ((ij >= 0) & (ij < [W, H])).all(), "object leaves the crop"
        m = d.mask[i]
        inside_dilated = binary_dilation(m)[ij[:, 1], ij[:, 0]].mean()
        inside = m[ij[:, 1], ij[:, 0]].mean()
        assert inside_dilated >= 0.99 and inside >= 0.75, (i, inside, inside_dilated)
        for (du, dv), acc in shifted.items():
            sij = np.clip(np.round(uv + [du, dv]).astype(int), 0, [W - 1, H - 1])
            acc.append(m[sij[:, 1], sij[:, 0]].mean())
        # the mask stays within the projected points' bounding box (+2.5 px: sampled points may miss a sharp tip)
        ys, xs = np.nonzero(m)
        assert xs.min() >= uv[:, 0].min() - 2.5 and xs.max() <= uv[:, 0].max() + 2.5
        assert ys.min() >= uv[:, 1].min() - 2.5 and ys.max() <= uv[:, 1].max() + 2.5
        # depth on the mask lies within the object's extent around t_z
        r = np.linalg.norm(d.extents[d.label[i]]) / 2  # origin at the bbox centre: half its diagonal bounds all points
        dep = d.depth[i][m]
        assert dep.min() >= d.trans[i, 2] - r - 1e-4 and dep.max() <= d.trans[i, 2] + r + 1e-4
        # black background: no coloured pixel outside the mask (no anti-aliasing halo)
        assert not d.rgb[i][~m].any()
        assert d.rgb[i][m].any()
    # sub-pixel alignment (the OpenGL seam's half-pixel): no half-pixel shift fits the masks better
    best = max(shifted, key=lambda s: np.mean(shifted[s]))
    assert best == (0, 0), {s: np.mean(v) for s, v in shifted.items()}


@pytest.mark.gl
def test_antialias_keeps_halo_off(tmp_path, mesh_folder):
    cfg = small_config(mesh_folder, antialias="true", n_samples=6)
    run_render(cfg, tmp_path / "aa.h5", workers=1, show_progress=False)
    d = h5.read(tmp_path / "aa.h5")
    assert not d.rgb[~d.mask].any()


@pytest.mark.parametrize("renderer", RENDERERS)
def test_two_workers_equal_one_worker_and_photo_background(tmp_path, mesh_folder, renderer):
    from PIL import Image

    cfg = small_config(mesh_folder)
    run_render(cfg, tmp_path / "w1.h5", workers=1, show_progress=False, renderer=renderer)
    run_render(cfg, tmp_path / "w2.h5", workers=2, show_progress=False, renderer=renderer)
    a, b = h5.read(tmp_path / "w1.h5"), h5.read(tmp_path / "w2.h5")
    for key in ("rgb", "depth", "mask", "label", "quat", "trans"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    # photo backgrounds change only the background: the object pixels are identical
    photos = tmp_path / "photos"
    photos.mkdir()
    g = np.random.default_rng(0)
    for k in range(2):
        Image.fromarray(g.integers(0, 255, (80, 100, 3), dtype=np.uint8)).save(photos / f"p{k}.png")
    cfg_bg = small_config(mesh_folder, **{"background.kind": "photos", "background.photos": str(photos)})
    run_render(cfg_bg, tmp_path / "bg.h5", workers=1, show_progress=False, renderer=renderer)
    c = h5.read(tmp_path / "bg.h5")
    np.testing.assert_array_equal(c.rgb[c.mask], a.rgb[a.mask])
    assert c.rgb[~c.mask].mean() > 30


@pytest.mark.slow
@pytest.mark.gl
def test_resume_after_kill_gives_identical_file(tmp_path, mesh_folder):
    cfg_file = write_yaml(tmp_path / "c.yaml", f"objects: {mesh_folder}\nn_samples: 240\nimage_size: 32\nshard_size: 8\nmodel_points: 100\n")
    out = tmp_path / "k.h5"
    env = dict(os.environ, SIM2REAL_PROGRESS="0")
    proc = subprocess.Popen([sys.executable, "-m", "sim2real", "render", str(cfg_file), "-o", str(out), "--workers", "1"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    part = out.with_name(out.name + ".partial")
    deadline = time.time() + 120
    while time.time() < deadline and len(list(part.glob("shard_*.npz"))) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # kill -9 the whole job, workers included
    proc.wait()
    done = len(list(part.glob("shard_*.npz")))
    assert not out.exists() and 3 <= done < 30
    r = run_cli("render", str(cfg_file), "-o", str(out))
    assert r.returncode == 2 and "--resume" in r.stderr  # refuses to silently restart
    r = run_cli("render", str(cfg_file), "-o", str(out), "--resume", "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert f"{240 - 8 * done} rendered now" in r.stdout
    assert not part.exists()
    ref = tmp_path / "ref.h5"
    assert run_cli("render", str(cfg_file), "-o", str(ref), "--workers", "1").returncode == 0
    a, b = h5.read(out), h5.read(ref)
    for key in ("rgb", "depth", "mask", "label", "quat", "trans"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    r = run_cli("render", str(cfg_file), "-o", str(out), "--resume")
    assert r.returncode == 0 and "already complete" in r.stdout


def _one_line_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.mark.slow
def test_bad_input_gets_one_line_errors(tmp_path, mesh_folder, monkeypatch):
    monkeypatch.setenv("SIM2REAL_RENDERER", "fake")  # the errors come before any drawing; the last render needs no GL
    out = tmp_path / "o.h5"
    bad_meshes = tmp_path / "bad"
    bad_meshes.mkdir()
    (bad_meshes / "garbage.ply").write_bytes(b"ply\nformat nonsense\n\x00\x01")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "nothing.obj").write_text("# no faces\nv 0 0 0\n")
    manifest = write_yaml(tmp_path / "m.yaml", "version: 1\nunits: m\nobjects:\n  - {id: 0, name: ghost, file: ghost.obj}\n")
    cfg = write_yaml(tmp_path / "c.yaml", f"objects: {mesh_folder}\nn_samples: 8\nimage_size: 16\n")
    cases = [
        (["render", str(tmp_path / "nope.yaml"), "-o", str(out)], ["nope.yaml"]),
        (["render", str(cfg), "-o", str(out), "--set", f"objects={manifest}"], ["ghost.obj", "mesh file not found"]),
        (["render", str(cfg), "-o", str(out), "--set", f"objects={bad_meshes}"], ["garbage.ply", "unreadable mesh"]),
        (["render", str(cfg), "-o", str(out), "--set", f"objects={empty}"], ["nothing.obj", "empty"]),
        (["render", str(cfg), "-o", str(out), "--set", "colour=red"], ["unknown config key 'colour'"]),
        (["render", str(cfg), "-o", str(out), "--set", "image_size=-4"], ["image_size: must be > 0"]),
        (["render", str(cfg), "-o", str(out), "--set", "n_samples=0"], ["n_samples: must be > 0"]),
        (["render", str(cfg), "-o", str(out), "--set", "classes=[unicorn]"], ["unknown class 'unicorn'"]),
        (["render", str(cfg), "-o", str(tmp_path / "no" / "dir" / "o.h5")], ["does not exist"]),
        (["render", str(cfg), "-o", str(out), "--workers", "0"], ["--workers: must be >= 1"]),
    ]
    for args, needles in cases:
        _one_line_error(run_cli(*args), *needles)
        assert not out.exists() and not out.with_name(out.name + ".partial").exists(), args
    # an existing output is never clobbered without --overwrite
    out.write_bytes(b"precious")
    _one_line_error(run_cli("render", str(cfg), "-o", str(out)), "already exists")
    assert out.read_bytes() == b"precious"
    # a corrupt file given to inspect
    _one_line_error(run_cli("inspect", str(out)), "o.h5", "not a readable HDF5 file")
    assert run_cli("render", str(cfg), "-o", str(out), "--overwrite").returncode == 0
    r = run_cli("inspect", str(out), "--grid", str(tmp_path / "g.png"))
    assert r.returncode == 0 and "valid sim2real file" in r.stdout and (tmp_path / "g.png").stat().st_size > 1000


@pytest.mark.skipif(not os.access("/", os.W_OK) or os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_folder(tmp_path, mesh_folder):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    cfg = write_yaml(tmp_path / "c.yaml", f"objects: {mesh_folder}\nn_samples: 4\nimage_size: 16\n")
    _one_line_error(run_cli("render", str(cfg), "-o", str(ro / "o.h5")), "not writable")


def test_manifest_and_folder_symmetries_reach_the_hdf5_file(tmp_path, mesh_folder):
    from sim2real.render.assets import read_manifest, resolve_entries

    manifest = write_yaml(tmp_path / "m.yaml", f"""version: 1
units: m
objects:
  - {{id: 0, name: rocket, file: {mesh_folder / 'rocket.stl'}, symmetry: {{continuous: [{{axis: [0, 0, 1]}}]}}}}
  - {{id: 1, name: bracket, file: {mesh_folder / 'bracket.ply'}, symmetry: none}}
  - {{id: 2, name: pebble, file: {mesh_folder / 'pebble.obj'}}}
""")
    cfg = load_config(RenderConfig, None, [f"objects={manifest}", "n_samples=3", "image_size=16", "model_points=50"])
    run_render(cfg, tmp_path / "s.h5", workers=1, show_progress=False, renderer="fake")  # metadata: any renderer
    d = h5.read(tmp_path / "s.h5")
    assert d.class_names == ["rocket", "bracket", "pebble"]
    assert d.symmetries[0].continuous[0].axis.tolist() == [0, 0, 1] and d.symmetries[1:] == [None, None]
    # a folder of meshes: symmetries.yaml by file stem; without it (or a manifest without the key): unknown
    assert all(not e.symmetry_known for e in resolve_entries(str(mesh_folder)))
    (mesh_folder / "symmetries.yaml").write_text("rocket: {continuous: [{axis: [0, 0, 1]}]}\nbracket: none\n")
    entries = resolve_entries(str(mesh_folder))
    assert [e.name for e in entries if e.symmetry is not None] == ["rocket"] and all(e.symmetry_known for e in entries)
    (mesh_folder / "symmetries.yaml").write_text("rockett: none\n")
    with pytest.raises(Exception, match="'rockett' is not a mesh"):
        resolve_entries(str(mesh_folder))
    bad = write_yaml(tmp_path / "bad.yaml", f"version: 1\nobjects:\n  - {{id: 0, name: rocket, file: {mesh_folder / 'rocket.stl'}, "
                                            "symmetry: {continuous: [{axis: [0, 0, 2]}]}}\n")
    with pytest.raises(Exception) as e:
        read_manifest(bad)
    assert "objects[0] (rocket).symmetry.continuous[0].axis: expected a unit vector" in str(e.value)
    # the bundled manifest: annotated, the desk lamp continuous about y
    bundled = {e.name: e for e in resolve_entries("bundled")}
    assert all(e.symmetry_known for e in bundled.values())
    assert bundled["desk_lamp"].symmetry.continuous[0].axis.tolist() == [0, 1, 0]
    assert sum(e.symmetry is not None for e in bundled.values()) == 1


# ------------------------------------------------------------------------------------------------------------
# the renderer seam: create_renderer(kind), the fake renderer (a test double) and the render job without GL
# ------------------------------------------------------------------------------------------------------------


def test_create_renderer_kinds_and_the_fake_needs_no_gl(mesh_folder):
    from sim2real.render.backend import RENDERER_KINDS, create_renderer

    assert RENDERER_KINDS[0] == "pyrender"  # the real renderer is the default
    with pytest.raises(ValueError, match="unknown renderer kind 'vulkan'"):
        create_renderer("vulkan", [], np.eye(3), (8, 8))
    code = (
        "import sys, types, numpy as np\n"
        "from sim2real.render.assets import load_parts\n"
        "from sim2real.render.backend import create_renderer\n"
        "from sim2real.render.config import RenderConfig\n"
        "from sim2real.render.job import camera_matrix\n"
        "from sim2real.render.sampling import sample_scene\n"
        f"parts = load_parts(__import__('pathlib').Path({str(mesh_folder / 'bracket.ply')!r}), 1.0)\n"
        "cfg = RenderConfig(image_size=24)\n"
        "r = create_renderer('fake', [types.SimpleNamespace(parts=parts)], camera_matrix(cfg), cfg.size_hw)\n"
        "rgb, depth = r.render(sample_scene(cfg, 0, np.array([0.5])))\n"
        "assert rgb.shape == (24, 24, 3) and rgb.dtype == np.uint8 and depth.shape == (24, 24)\n"
        "assert depth.dtype == np.float32 and (depth > 0).sum() > 10 and not rgb[depth <= 0].any()\n"
        "assert not {'pyrender', 'OpenGL'} & set(sys.modules), 'the fake renderer imported GL'\n"
        "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_fake_renders_are_marked_and_never_mixed_with_real_ones(tmp_path, mesh_folder, monkeypatch, capsys):
    import sim2real.render.job as job

    cfg = small_config(mesh_folder, n_samples=8)
    out = tmp_path / "f.h5"
    res = run_render(cfg, out, workers=1, show_progress=False, renderer="fake")
    assert res.platform == "fake" and h5.read_attrs(out)["renderer"] == "fake"
    # the real renderer never takes a fake file for its own (refused before any GL is needed)
    with pytest.raises(Sim2RealError, match="drawn by the fake renderer, not pyrender"):
        run_render(cfg, out, workers=1, resume=True, show_progress=False)
    assert run_render(cfg, out, workers=1, resume=True, show_progress=False, renderer="fake").already_complete
    # nor resumes an interrupted fake job
    with monkeypatch.context() as m:
        m.setattr(job, "_assemble", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            run_render(cfg, tmp_path / "p.h5", workers=1, show_progress=False, renderer="fake")
    with pytest.raises(Sim2RealError, match="used the fake renderer, not pyrender"):
        run_render(cfg, tmp_path / "p.h5", workers=1, resume=True, show_progress=False)
    with pytest.raises(Sim2RealError, match="renderer 'vulkan': expected one of pyrender, fake"):
        run_render(cfg, tmp_path / "v.h5", renderer="vulkan")
    # the CLI picks it only from SIM2REAL_RENDERER, and says so
    cfg_file = write_yaml(tmp_path / "c.yaml", f"objects: {mesh_folder}\nn_samples: 4\nimage_size: 16\nmodel_points: 50\n")
    monkeypatch.setenv("SIM2REAL_RENDERER", "vulkan")
    assert main(["render", str(cfg_file), "-o", str(tmp_path / "c.h5")]) == 2
    assert "SIM2REAL_RENDERER=vulkan: expected one of pyrender, fake" in capsys.readouterr().err
    monkeypatch.setenv("SIM2REAL_RENDERER", "fake")
    assert main(["render", str(cfg_file), "-o", str(tmp_path / "c.h5"), "--workers", "1", "--quiet"]) == 0
    cap = capsys.readouterr()
    assert "[fake]" in cap.out and "test double" in cap.err
    assert h5.read_attrs(tmp_path / "c.h5")["renderer"] == "fake"


def test_resume_of_an_interrupted_render_is_identical_without_gl(tmp_path, mesh_folder, monkeypatch, capsys):
    """The render job's crash safety on the fake renderer: a run killed after some shards (and mid-write of
    another) resumes with another worker count to the same file as an uninterrupted run."""
    import sim2real.render.job as job

    cfg_file = write_yaml(tmp_path / "c.yaml", f"objects: {mesh_folder}\nn_samples: 240\nimage_size: 32\nshard_size: 8\nmodel_points: 100\n")
    cfg = load_config(RenderConfig, cfg_file, [])
    out = tmp_path / "k.h5"
    part = out.with_name(out.name + ".partial")
    with monkeypatch.context() as m:  # the process dies after its shards, before the file is assembled
        m.setattr(job, "_assemble", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            run_render(cfg, out, workers=2, show_progress=False, renderer="fake")
    shards = sorted(part.glob("shard_*.npz"))
    assert len(shards) == 30 and not out.exists()
    for s in shards[5:]:  # as if killed after 5 shards ...
        s.unlink()
    (part / "shard_000005.npz.tmp").write_bytes(b"half a shard")  # ... while writing the sixth
    monkeypatch.setenv("SIM2REAL_RENDERER", "fake")
    assert main(["render", str(cfg_file), "-o", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err  # refuses to silently restart
    assert main(["render", str(cfg_file), "-o", str(out), "--resume", "--workers", "2", "--quiet"]) == 0
    assert f"{240 - 8 * 5} rendered now" in capsys.readouterr().out
    assert not part.exists()
    ref = tmp_path / "ref.h5"
    run_render(cfg, ref, workers=1, show_progress=False, renderer="fake")
    a, b = h5.read(out), h5.read(ref)
    for key in ("rgb", "depth", "mask", "label", "quat", "trans"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert main(["render", str(cfg_file), "-o", str(out), "--resume"]) == 0
    assert "already complete" in capsys.readouterr().out
