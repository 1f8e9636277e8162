"""`sim2real run`: stage order, caching by hash, reruns after a change, resume after a kill, bad pipeline files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sim2real.errors import Sim2RealError
from sim2real.pipeline import build_argv, load_pipeline

from conftest import REPO, run_cli, write_yaml


def _pipeline(tmp_path: Path, mesh_folder: Path, n: int = 16, extra: str = "") -> Path:
    write_yaml(tmp_path / "render.yaml", f"objects: {mesh_folder}\nimage_size: 24\nshard_size: 8\nmodel_points: 50\n")
    return write_yaml(tmp_path / "p.yaml", f"""
name: t
stages:
  bop:
    command: export-bop
    args: {{input: "${{src}}"}}
  src:
    command: render
    args:
      config: render.yaml
      set: {{n_samples: {n}}}
      workers: 1
{extra}""")


def test_order_refs_and_argv(tmp_path, mesh_folder):
    p = load_pipeline(_pipeline(tmp_path, mesh_folder))
    assert list(p.stages) == ["src", "bop"]  # dependency order, not file order
    assert p.stages["bop"].deps == ["src"]
    argv = build_argv(p.stages["src"], p.stages["src"].args, Path("w/src.h5"), resume=True)
    assert argv == ["render", "render.yaml", "-o", "w/src.h5", "--set", "n_samples=16", "--workers", "1", "--resume"]


@pytest.mark.slow
@pytest.mark.gl
def test_caching_and_rerun_after_change(tmp_path, mesh_folder):
    pf = _pipeline(tmp_path, mesh_folder)
    r = run_cli("run", str(pf), "-o", "work", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "src                  ran" in r.stdout and "bop                  ran" in r.stdout
    assert (tmp_path / "work" / "src.h5").is_file() and (tmp_path / "work" / "bop" / "camera.json").is_file()
    t = time.perf_counter()
    r = run_cli("run", str(pf), "-o", "work", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.count("cached") >= 2, r.stdout
    assert time.perf_counter() - t < 20
    # a changed config file reruns its stage and everything after it
    (tmp_path / "render.yaml").write_text((tmp_path / "render.yaml").read_text() + "seed: 5\n")
    r = run_cli("run", str(pf), "-o", "work", cwd=tmp_path)
    assert r.returncode == 0 and "src                  ran" in r.stdout and "bop                  ran" in r.stdout
    # changing only the last stage reruns only it
    pf.write_text(pf.read_text().replace('args: {input: "${src}"}', 'args: {input: "${src}", depth_scale: 0.5}'))
    r = run_cli("run", str(pf), "-o", "work", "--dry-run", cwd=tmp_path)
    assert r.returncode == 0 and "[src] cached" in r.stdout and "[bop] would run" in r.stdout


@pytest.mark.slow
@pytest.mark.gl
def test_interrupted_stage_resumes(tmp_path, mesh_folder):
    pf = _pipeline(tmp_path, mesh_folder, n=400)
    env = dict(os.environ, SIM2REAL_PROGRESS="0")
    proc = subprocess.Popen([sys.executable, "-m", "sim2real", "run", str(pf), "-o", "work", "--only", "src"], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    part = tmp_path / "work" / "src.h5.partial"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(part.glob("shard_*.npz"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert part.is_dir()
    r = run_cli("run", str(pf), "-o", "work", "--only", "src", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "[src] resuming" in r.stdout and "--resume" in r.stdout
    assert (tmp_path / "work" / "src.h5").is_file() and not part.exists()


@pytest.mark.parametrize("body, message", [
    ("stages:\n  a: {command: paint, args: {}}\n", "unknown command 'paint'"),
    ("stages:\n  a: {command: export-bop, args: {input: '${b}'}}\n", "unknown stage '${b}'"),
    ("stages:\n  a: {command: export-bop, args: {input: '${b}'}}\n  b: {command: export-bop, args: {input: '${a}'}}\n",
     "cycle: a -> b -> a"),
    ("stages:\n  a: {command: export-bop, args: {input: missing.h5}}\n", "input missing.h5 not found"),
    ("stages:\n  a: {command: render, args: {}}\n", "missing argument 'config'"),
    ("stages:\n  a: {command: render, args: {config: x, output: y}}\n", "'output' is managed by the pipeline"),
    ("stagez: {}\n", "unknown top-level key 'stagez'"),
])
def test_bad_pipeline_files_fail_before_any_work(tmp_path, body, message):
    pf = write_yaml(tmp_path / "bad.yaml", body)
    r = run_cli("run", str(pf), "-o", "work", cwd=tmp_path)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "work").exists()


def test_shipped_pipelines_parse():
    for p in sorted((REPO / "pipelines").glob("*.yaml")):
        pipe = load_pipeline(p)
        assert pipe.report in pipe.stages


def test_stage_key_does_not_depend_on_where_the_package_lives(tmp_path, monkeypatch):
    import shutil

    import sim2real.config as config
    from sim2real.pipeline import Stage, stage_key

    st = Stage("a", "train-pose", {"train": ["x.h5"], "config": "pose-tiny"}, [])
    before = stage_key(st, {}, tmp_path)
    moved = tmp_path / "elsewhere" / "configs"
    shutil.copytree(config.CONFIG_DIR, moved)
    monkeypatch.setattr(config, "CONFIG_DIR", moved)
    assert stage_key(st, {}, tmp_path) == before  # same content, other place: cached
    (moved / "pose-tiny.yaml").write_text((moved / "pose-tiny.yaml").read_text() + "\n# edited\n")
    assert stage_key(st, {}, tmp_path) != before  # content enters the key


def _two_renders(tmp_path: Path, mesh_folder: Path, jobs: int, bad: bool = False) -> Path:
    write_yaml(tmp_path / "render.yaml", f"objects: {mesh_folder}\nimage_size: 16\nshard_size: 8\nmodel_points: 50\n")
    b_set = "{n_samples: 12, seed: 2}"
    b_cfg = "render.yaml"
    if bad:  # passes every check made before the stages start; fails when the render loads its meshes
        (tmp_path / "broken").mkdir(exist_ok=True)
        (tmp_path / "broken" / "thing.obj").write_text("v 0 0 nonsense\nf 1 2 99\n")
        b_cfg = str(write_yaml(tmp_path / "render_bad.yaml", f"objects: {tmp_path / 'broken'}\nimage_size: 16\n"))
    return write_yaml(tmp_path / f"two{jobs}.yaml", f"""
name: two
jobs: {jobs}
stages:
  a:
    command: render
    args: {{config: render.yaml, set: {{n_samples: 12, seed: 1}}, workers: 1}}
  b:
    command: render
    args: {{config: {b_cfg}, set: {b_set}, workers: 1}}
  bop:
    command: export-bop
    args: {{input: "${{b}}"}}
""")


@pytest.mark.slow
def test_jobs_run_independent_stages_in_their_own_processes(tmp_path, mesh_folder):
    """``jobs: 2``: each stage runs as its own sim2real process (output in .stages/NAME.log), with the same
    files as one process running them in order; a second run is cached; ``--jobs 1`` overrides the file."""
    from sim2real.data import h5

    fake = {"SIM2REAL_RENDERER": "fake"}
    r = run_cli("run", str(_two_renders(tmp_path, mesh_folder, 2)), "-o", "par", cwd=tmp_path, env=fake)
    assert r.returncode == 0, r.stderr + r.stdout
    for name in ("a", "b", "bop"):
        assert (tmp_path / "par" / ".stages" / f"{name}.log").is_file()
        assert f"[{name}] done in" in r.stdout
    assert "12 samples" in (tmp_path / "par" / ".stages" / "a.log").read_text()  # the command's own summary
    seq = run_cli("run", str(_two_renders(tmp_path, mesh_folder, 2)), "-o", "seq", "--jobs", "1", cwd=tmp_path,
                  env=fake)
    assert seq.returncode == 0 and not (tmp_path / "seq" / ".stages" / "a.log").exists()
    for name in ("a.h5", "b.h5"):
        x, y = h5.read(tmp_path / "par" / name), h5.read(tmp_path / "seq" / name)
        assert (x.rgb == y.rgb).all() and (x.quat == y.quat).all()
    again = run_cli("run", str(_two_renders(tmp_path, mesh_folder, 2)), "-o", "par", cwd=tmp_path, env=fake)
    assert again.returncode == 0 and again.stdout.count("] cached (") == 3


@pytest.mark.slow
def test_jobs_failure_keeps_the_other_stages(tmp_path, mesh_folder):
    fake = {"SIM2REAL_RENDERER": "fake"}
    pf = _two_renders(tmp_path, mesh_folder, 2, bad=True)
    r = run_cli("run", str(pf), "-o", "w", cwd=tmp_path, env=fake)
    assert r.returncode == 2
    assert "stage 'b' failed" in r.stderr and ".stages/b.log" in r.stderr and "Traceback" not in r.stderr
    assert (tmp_path / "w" / "a.h5").is_file()
    assert "[b] sim2real render: error:" in r.stdout  # the stage's own one-line error, echoed
    fixed = _two_renders(tmp_path, mesh_folder, 2, bad=False)
    r = run_cli("run", str(fixed), "-o", "w", cwd=tmp_path, env=fake)
    assert r.returncode == 0 and "[a] cached" in r.stdout and "[b] running" in r.stdout
