"""`render --ray`: Ray actors draw the same file as the local pool, redo a killed actor's shards, and resume.

One local Ray cluster (2 CPUs) serves the whole module (:func:`ray_cluster`); ``run_render(..., ray="auto")`` and
a ``sim2real render --ray`` subprocess join it instead of starting their own. The job tests draw with the GL-free
test double (``renderer="fake"``); the one ``gl`` test compares the real renderer's pixels. Skipped without Ray
(``pip install sim2real[ray]``; CI installs it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import run_cli, write_yaml
from sim2real.cli import main
from sim2real.config import load_config
from sim2real.data.inspect import VOLATILE_ATTRS
from sim2real.errors import Sim2RealError
from sim2real.render import ray_pool
from sim2real.render.config import RenderConfig
from sim2real.render.job import partial_dir, run_render

ray = pytest.importorskip("ray")

CPUS = 2


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    """A local Ray cluster for this module; later ``ray.init(address="auto")`` calls (subprocesses) join it."""
    ray.init(num_cpus=CPUS, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def small_config(mesh_folder: Path, **sets) -> RenderConfig:
    base = [f"objects={mesh_folder}", "n_samples=40", "image_size=32", "shard_size=8", "model_points=100"]
    return load_config(RenderConfig, None, base + [f"{k}={v}" for k, v in sets.items()])


def assert_same_file(a: Path, b: Path) -> None:
    """Every dataset equal (np.array_equal, same dtype) and every attribute but the creation time."""
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        assert sorted(fa.keys()) == sorted(fb.keys())
        for k in fa.keys():
            x, y = np.asarray(fa[k][()]), np.asarray(fb[k][()])
            assert x.dtype == y.dtype and np.array_equal(x, y), k
        keys = (set(fa.attrs) | set(fb.attrs)) - set(VOLATILE_ATTRS)
        assert {k: str(fa.attrs.get(k)) for k in keys} == {k: str(fb.attrs.get(k)) for k in keys}


@pytest.fixture
def local_ref(tmp_path, mesh_folder) -> Path:
    """The one-process local render of :func:`small_config` (fake renderer)."""
    out = tmp_path / "local.h5"
    run_render(small_config(mesh_folder), out, workers=1, show_progress=False, renderer="fake")
    return out


@pytest.mark.parametrize("actors", [1, 2])
def test_ray_actors_give_the_local_file(tmp_path, mesh_folder, local_ref, actors):
    out = tmp_path / f"ray{actors}.h5"
    res = run_render(small_config(mesh_folder), out, workers=actors, show_progress=False, renderer="fake", ray="auto")
    assert (res.executor, res.workers, res.rendered, res.platform) == ("ray", actors, 40, "fake")
    assert not partial_dir(out).exists()
    assert_same_file(local_ref, out)


def test_a_killed_actor_s_shard_is_redone(tmp_path, mesh_folder, local_ref, monkeypatch):
    marker = tmp_path / "killed-once"
    monkeypatch.setenv(ray_pool.FAULT_ENV, f"2:{marker}")  # the actor drawing shard 2 dies, the first time
    out = tmp_path / "ray.h5"
    res = run_render(small_config(mesh_folder), out, workers=2, show_progress=False, renderer="fake", ray="auto")
    assert marker.exists() and res.rendered == 40
    assert_same_file(local_ref, out)


@pytest.mark.slow
def test_a_shard_lost_too_often_stops_in_one_line_and_resume_finishes(tmp_path, mesh_folder, local_ref, monkeypatch):
    cfg = small_config(mesh_folder)
    out = tmp_path / "ray.h5"
    with monkeypatch.context() as m:
        m.setenv(ray_pool.FAULT_ENV, "4")  # every actor dies on shard 4
        m.setattr(ray_pool, "MAX_SHARD_RETRIES", 1)  # each actor death costs seconds: give up after the first retry
        with pytest.raises(Sim2RealError, match=r"shard 4 .*lost with its Ray actor 2 times.*--resume") as e:
            run_render(cfg, out, workers=2, show_progress=False, renderer="fake", ray="auto")
    assert "\n" not in str(e.value)
    kept = sorted(p.name for p in partial_dir(out).glob("shard_*.npz"))
    assert "shard_000004.npz" not in kept and not out.exists()
    res = run_render(cfg, out, workers=2, resume=True, show_progress=False, renderer="fake", ray="auto")
    assert res.rendered == 40 - 8 * len(kept)
    assert_same_file(local_ref, out)


def test_resume_renders_only_the_missing_shards(tmp_path, mesh_folder, local_ref, monkeypatch):
    import sim2real.render.job as job

    cfg = small_config(mesh_folder)
    out = tmp_path / "r.h5"
    part = partial_dir(out)
    with monkeypatch.context() as m:  # a local run that dies after its shards, before the file is assembled
        m.setattr(job, "_assemble", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            run_render(cfg, out, workers=1, show_progress=False, renderer="fake")
    shards = sorted(part.glob("shard_*.npz"))
    for s in shards[1::2]:  # shards 1 and 3 are missing
        s.unlink()
    kept = {s: s.stat().st_mtime_ns for s in shards[0::2]}
    written = []
    real_write = ray_pool.write_shard
    monkeypatch.setattr(ray_pool, "write_shard", lambda path, arrays: (written.append(path.name), real_write(path, arrays)))
    res = run_render(cfg, out, workers=2, resume=True, show_progress=False, renderer="fake", ray="auto")
    assert sorted(written) == ["shard_000001.npz", "shard_000003.npz"] and res.rendered == 16
    assert all(s not in written for s in kept)
    assert_same_file(local_ref, out)


def test_without_ray_the_error_names_the_extra(tmp_path, mesh_folder, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(Sim2RealError, match=r"pip install sim2real\[ray\]"):
        run_render(small_config(mesh_folder), tmp_path / "x.h5", renderer="fake", ray="auto")
    assert not (tmp_path / "x.h5").exists() and not partial_dir(tmp_path / "x.h5").exists()
    monkeypatch.setenv("SIM2REAL_RENDERER", "fake")
    cfg = write_yaml(tmp_path / "c.yaml", f"objects: {mesh_folder}\nn_samples: 8\n")
    for argv in (["render", str(cfg), "-o", str(tmp_path / "y.h5"), "--ray"],
                 ["make-target", "target-standin", "-o", str(tmp_path / "t"), "--ray", "auto"]):
        assert main(argv) == 2
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(err) == 1 and "pip install sim2real[ray]" in err[0] and "Traceback" not in err[0], err
    assert not (tmp_path / "t").exists()


def test_bad_addresses_and_counts_are_one_line_errors(tmp_path, mesh_folder):
    with pytest.raises(Sim2RealError, match="expected auto, ray://HOST:PORT"):
        ray_pool._check_reachable("somewhere")
    with pytest.raises(Sim2RealError, match="no Ray cluster answers at 127.0.0.1:1"):
        ray_pool._check_reachable("ray://127.0.0.1:1")
    with pytest.raises(Sim2RealError, match=f"has {CPUS} CPU"):
        run_render(small_config(mesh_folder), tmp_path / "x.h5", workers=CPUS + 1, show_progress=False,
                   renderer="fake", ray="auto")
    with pytest.raises(Sim2RealError, match="--ray-gpus 0.5: 1 actors need 0.5 GPU"):
        ray_pool.actor_count(1, 5, gpus=0.5)
    assert ray_pool.actor_count(None, 1) == 1 and ray_pool.actor_count(None, 100) == CPUS


@pytest.mark.slow
def test_make_target_with_ray_gives_the_local_splits(tmp_path, mesh_folder, monkeypatch):
    """Three splits in one Ray session, on photo backgrounds (the photos travel to the actors once)."""
    import functools

    import sim2real.render.job as job
    from sim2real.target import MakeTargetConfig, run_make_target

    # make-target always draws with the real renderer: the fake one here, for a GL-free test of the plumbing
    monkeypatch.setattr(job, "run_render", functools.partial(job.run_render, renderer="fake"))
    sets = [f"render.objects={mesh_folder}", "n_train=16", "n_val=8", "n_test=8", "render.image_size=32",
            "render.shard_size=8", "render.model_points=100"]
    cfg = load_config(MakeTargetConfig, "target-standin", sets, defaults=MakeTargetConfig())
    assert cfg.render.background.kind == "photos"
    run_make_target(cfg, tmp_path / "local", workers=1, show_progress=False)
    res = run_make_target(cfg, tmp_path / "ray", workers=2, show_progress=False, ray="auto")
    assert [r.rendered for r in res] == [16, 8, 8]
    for split in ("train", "val", "test"):
        assert_same_file(tmp_path / "local" / f"{split}.h5", tmp_path / "ray" / f"{split}.h5")


@pytest.mark.slow
def test_a_killed_ray_driver_resumes_to_the_same_file(tmp_path, mesh_folder):
    cfg_file = write_yaml(tmp_path / "c.yaml", f"objects: {mesh_folder}\nn_samples: 240\nimage_size: 32\n"
                                               "shard_size: 8\nmodel_points: 100\n")
    out = tmp_path / "k.h5"
    env = dict(os.environ, SIM2REAL_PROGRESS="0", SIM2REAL_RENDERER="fake")
    proc = subprocess.Popen([sys.executable, "-m", "sim2real", "render", str(cfg_file), "-o", str(out), "--ray",
                             "--workers", "2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    part = partial_dir(out)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(part.glob("shard_*.npz"))) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # kill -9 the driver (it joined this module's cluster)
    proc.wait()
    done = len(list(part.glob("shard_*.npz")))
    assert not out.exists() and 3 <= done < 30
    r = run_cli("render", str(cfg_file), "-o", str(out), "--resume", "--ray", "--workers", "2",
                env={"SIM2REAL_RENDERER": "fake"})
    assert r.returncode == 0, r.stderr
    assert f"{240 - 8 * done} rendered now" in r.stdout and "2 Ray actor(s)" in r.stdout
    ref = tmp_path / "ref.h5"
    run_render(load_config(RenderConfig, cfg_file, []), ref, workers=1, show_progress=False, renderer="fake")
    assert_same_file(ref, out)


@pytest.mark.gl
def test_real_renderer_ray_equals_local(tmp_path, mesh_folder):
    cfg = small_config(mesh_folder, n_samples=20, shard_size=5)
    run_render(cfg, tmp_path / "local.h5", workers=1, show_progress=False)
    res = run_render(cfg, tmp_path / "ray.h5", workers=2, show_progress=False, ray="auto")
    assert res.platform in ("egl", "osmesa") and res.workers == 2
    assert_same_file(tmp_path / "local.h5", tmp_path / "ray.h5")
