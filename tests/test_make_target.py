"""`sim2real make-target`: splits, labels present/absent, attributes, composition with render, resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sim2real.config import to_json
from sim2real.data import h5
from sim2real.errors import Sim2RealError
from sim2real.target.effects import apply_camera_effects, apply_depth_noise
from sim2real.render.job import run_render
from sim2real.config import load_config
from sim2real.target import DESCRIPTION, SPLITS, MakeTargetConfig, split_render_config, split_seed


def load_make_target_config(path=None, sets=None) -> MakeTargetConfig:
    return load_config(MakeTargetConfig, path, sets, defaults=MakeTargetConfig())

from conftest import run_cli, write_yaml


def _photos(tmp_path: Path) -> Path:
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    g = np.random.default_rng(0)
    for k in range(2):
        base = np.linspace(0, 255, 64)[None, :, None] * np.ones((48, 1, 3))
        Image.fromarray((0.7 * base + 0.3 * g.integers(0, 255, (48, 64, 3))).astype(np.uint8)).save(folder / f"p{k}.png")
    return folder


def _config(tmp_path: Path, mesh_folder: Path) -> Path:
    return write_yaml(tmp_path / "t.yaml", f"""\
n_train: 10
n_val: 4
n_test: 9
seed: 5
render:
  objects: {mesh_folder}
  image_size: 16
  model_points: 50
  shard_size: 8
  background: {{photos: {_photos(tmp_path)}}}
""")


def _one_line_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_partial_render_section_keeps_the_stand_in_defaults(tmp_path):
    cfg = load_make_target_config(write_yaml(tmp_path / "c.yaml", "render:\n  image_size: 24\n"), ["n_val=3"])
    assert cfg.render.size_hw == (24, 24) and cfg.n_val == 3
    assert cfg.render.background.kind == "photos" and cfg.render.lights.colour_jitter > 0.15
    # the crop convention of render-default: same camera and fill
    assert (cfg.render.camera.fov_deg, cfg.render.camera.fill, cfg.render.pose.sampler) == (20.0, 0.8, "uniform")
    seeds = [split_seed(0, s) for s in SPLITS] + [split_seed(1, s) for s in SPLITS]
    assert len(set(seeds)) == 6 and min(seeds) > 1000  # disjoint streams, never a small render seed
    for name in ("target-standin", "target-standin-small"):
        c = load_make_target_config(name)
        assert c.render.background.kind == "photos" and c.effects.any_image_effect


@pytest.mark.slow
@pytest.mark.gl
def test_make_target_cli_splits_attrs_and_resume(tmp_path, mesh_folder):
    cfg_file = _config(tmp_path, mesh_folder)
    out = tmp_path / "target"
    r = run_cli("make-target", str(cfg_file), "-o", str(out), "--workers", "1")
    assert r.returncode == 0, r.stderr
    assert "not real data" in r.stdout
    assert sorted(p.name for p in out.iterdir()) == ["test.h5", "train.h5", "val.h5"]  # .work removed
    cfg = load_make_target_config(cfg_file)
    data = {s: h5.read(out / f"{s}.h5") for s in SPLITS}
    for s, d in data.items():
        assert d.attrs["domain"] == "target" and d.attrs["split"] == s
        assert d.attrs["description"] == DESCRIPTION
        prov = json.loads(d.attrs["provenance"])
        assert prov["stand_in"] is True and prov["split_seed"] == split_seed(5, s)
        assert d.attrs["config"] == to_json(cfg) and d.attrs["seed"] == 5
        assert d.image_size == (16, 16) and d.depth is not None and d.K is not None
    assert len(data["train"]) == 10 and len(data["val"]) == 4 and len(data["test"]) == 9
    tr = data["train"]
    assert tr.label is None and tr.mask is None and tr.quat is None and tr.trans is None and tr.class_names is None
    for s in ("val", "test"):
        d = data[s]
        assert d.class_names == ["bracket", "pebble", "rocket"]
        np.testing.assert_array_equal(d.label, np.arange(len(d)) % 3)
        assert d.mask is not None and d.quat is not None and d.trans is not None
        assert d.model_points.shape == (3, 50, 3) and d.diameters.shape == (3,) and d.extents.shape == (3, 3)
        np.testing.assert_array_equal(d.mask, d.depth > 0)
    assert not np.allclose(data["val"].quat, data["test"].quat[:4])  # different sample streams

    # independent composition check: the test split == render(split config) + camera effects of (split seed, i)
    ref = tmp_path / "plain.h5"
    rcfg = split_render_config(cfg, "test")
    run_render(rcfg, ref, workers=1, show_progress=False)
    plain = h5.read(ref)
    np.testing.assert_array_equal(data["test"].rgb, apply_camera_effects(plain.rgb, cfg.effects, rcfg.seed))
    np.testing.assert_array_equal(data["test"].depth, apply_depth_noise(plain.depth, cfg.effects, rcfg.seed))
    np.testing.assert_array_equal(data["test"].quat, plain.quat)
    assert not np.array_equal(data["test"].rgb, plain.rgb)
    assert np.abs(data["test"].depth - plain.depth)[plain.mask].max() > 0

    # an existing output is kept; --resume redoes only the missing split, identically
    (out / "test.h5").unlink()
    train_mtime = (out / "train.h5").stat().st_mtime_ns
    _one_line_error(run_cli("make-target", str(cfg_file), "-o", str(out)), "train.h5", "already exists")
    r = run_cli("make-target", str(cfg_file), "-o", str(out), "--resume", "--workers", "1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("already complete") == 2
    assert (out / "train.h5").stat().st_mtime_ns == train_mtime
    again = h5.read(out / "test.h5")
    for key in ("rgb", "depth", "mask", "label", "quat", "trans"):
        np.testing.assert_array_equal(getattr(again, key), getattr(data["test"], key))
    # a changed config does not silently mix with the old files
    _one_line_error(run_cli("make-target", str(cfg_file), "-o", str(out), "--resume", "--set", "effects.jpeg.enabled=false"),
                    "exists with a different config")


def test_bad_input_gets_one_line_errors(tmp_path, mesh_folder):
    cfg_file = write_yaml(tmp_path / "c.yaml", f"render:\n  objects: {mesh_folder}\n")
    out = tmp_path / "o"
    not_a_dir = tmp_path / "file.h5"
    not_a_dir.write_bytes(b"x")
    cases = [
        (["--set", "effects.jpeg.quality=[0, 50]"], ["effects.jpeg.quality", "below the minimum 1"]),
        (["--set", "n_train=0"], ["n_train: must be > 0"]),
        (["--set", "render.seed=3"], ["render.seed", "top-level seed"]),
        (["--set", "effects.sparkle=1"], ["unknown config key 'sparkle'"]),
        (["--set", "render.background.photos=/no/such/folder"], ["/no/such/folder"]),
        (["--workers", "0"], ["--workers: must be >= 1"]),
    ]
    for extra, needles in cases:
        _one_line_error(run_cli("make-target", str(cfg_file), "-o", str(out), *extra), *needles)
        assert not (out / "train.h5").exists()
    _one_line_error(run_cli("make-target", str(cfg_file), "-o", str(not_a_dir)), "not a folder")
    _one_line_error(run_cli("make-target", str(tmp_path / "nope.yaml"), "-o", str(out)), "nope.yaml")
    _one_line_error(run_cli("make-target", str(cfg_file), "-o", str(tmp_path / "no" / "dir")), "does not exist")
    with pytest.raises(Sim2RealError, match="render.n_samples"):
        load_make_target_config(None, ["render.n_samples=10"])
