"""Faults and bad inputs against the CLI (issue 11): nothing lost, nothing clobbered, no traceback.

Every case checks what a user sees: exit code 2, exactly one line on stderr, no "Traceback", the inputs unchanged
(hashed before and after), and, for kill -9, no process left behind. Data are tiny synthetic files in tmp_path.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import write_yaml
from sim2real.cli import main
from sim2real.conventions import canonical_quat
from sim2real.data import h5
from sim2real.errors import Sim2RealError
from sim2real.testing import make_synthetic, synthetic_arrays


def cli(*args: str, cwd: Path | None = None, preexec=None, timeout: int = 300) -> subprocess.CompletedProcess:
    """``sim2real ARGS`` in a fresh process with stderr a pipe and SIM2REAL_PROGRESS unset (the default)."""
    env = {k: v for k, v in os.environ.items() if k != "SIM2REAL_PROGRESS"}
    return subprocess.run([sys.executable, "-m", "sim2real", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=preexec)


def one_line_error(r, *needles: str) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def inproc_error(capsys, argv: list[str], *needles: str) -> str:
    """The same checks for a command run in this process (cheap cases that need no torch start-up)."""
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        for q in sorted(Path(p).rglob("*")) if Path(p).is_dir() else [Path(p)]:
            if q.is_file():
                h.update(str(q).encode())
                h.update(q.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Tiny source / target / val files, an adapt run and a train-pose run (both with --val)."""
    d = tmp_path_factory.mktemp("faults")
    f = {"dir": d,
         "src": make_synthetic(d / "src.h5", n=48, size=16, seed=0),
         "tgt": make_synthetic(d / "tgt.h5", n=48, size=16, seed=1, domain="target", labels=False),
         "val": make_synthetic(d / "val.h5", n=24, size=16, seed=2, domain="target"),
         "test": make_synthetic(d / "test.h5", n=24, size=16, seed=3, domain="target")}
    assert main(["adapt", "--source", str(f["src"]), "--target", str(f["tgt"]), "--val", str(f["val"]),
                 "-o", str(d / "pixelda"), "--config", "pixelda-tiny", "--set", "train.steps=6"]) == 0
    assert main(["train-pose", "--train", str(f["src"]), "--val", str(f["val"]), "-o", str(d / "pose"),
                 "--config", "pose-tiny", "--set", "steps=6", "--set", "val_every=3", "--set", "checkpoint_every=3",
                 "--set", "device=cpu", "--no-progress"]) == 0
    f["pixelda"], f["pose"] = d / "pixelda", d / "pose"
    return f


# ------------------------------------------------------------------------------------------------------------
# 1. nothing clobbered: an output that is an input is refused even with --overwrite; existing outputs need it
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_export_refuses_to_write_over_its_source(runs, tmp_path):
    src = tmp_path / "s.h5"
    src.write_bytes(runs["src"].read_bytes())
    link = tmp_path / "link.h5"
    os.link(src, link)  # same inode, other name
    before = digest(src, runs["pixelda"])
    one_line_error(cli("export", str(runs["pixelda"]), "--source", str(src), "-o", str(src)), "is also an input")
    one_line_error(cli("export", str(runs["pixelda"]), "--source", str(src), "-o", str(link), "--overwrite"),
                   "is also an input")
    assert digest(src, runs["pixelda"]) == before


def test_export_refuses_the_run_s_own_files(runs, capsys):
    before = digest(runs["src"], runs["pixelda"])
    for victim in (runs["src"], runs["pixelda"] / "checkpoints" / "last.pt", runs["pixelda"] / "run.json"):
        inproc_error(capsys, ["export", str(runs["pixelda"]), "--source", str(runs["src"]), "-o", str(victim),
                              "--overwrite"], "is also an input")
    assert digest(runs["src"], runs["pixelda"]) == before


@pytest.mark.slow
def test_export_needs_overwrite_and_copies_poses_bit_for_bit(runs, tmp_path):
    out = tmp_path / "adapted.h5"
    out.write_bytes(b"precious")
    one_line_error(cli("export", str(runs["pixelda"]), "--source", str(runs["src"]), "-o", str(out)),
                   "already exists", "--overwrite")
    assert out.read_bytes() == b"precious"
    r = cli("export", str(runs["pixelda"]), "--source", str(runs["src"]), "-o", str(out), "--overwrite")
    assert r.returncode == 0, r.stderr
    assert "best.pt" in r.stdout  # the run had --val: a run folder means its best checkpoint
    a, b = h5.read(runs["src"]), h5.read(out)
    for key in ("quat", "trans", "label", "depth", "mask"):
        assert getattr(a, key).tobytes() == getattr(b, key).tobytes(), key  # "copied exactly", bit for bit


def test_writing_commands_refuse_existing_outputs_and_inputs(runs, tmp_path, capsys):
    d = runs["dir"]
    # evaluate: an existing report folder needs --overwrite; the old report survives a refusal
    rep = tmp_path / "report"
    rep.mkdir()
    (rep / "keep.txt").write_text("old")
    inproc_error(capsys, ["evaluate", str(runs["pose"]), "--test", str(runs["test"]), "-o", str(rep)], "already exists")
    assert (rep / "keep.txt").read_text() == "old"
    # evaluate: a report folder that holds the test set is never replaced
    inside = tmp_path / "rep2"
    inside.mkdir()
    test_copy = inside / "test.h5"
    test_copy.write_bytes(runs["test"].read_bytes())
    inproc_error(capsys, ["evaluate", str(runs["pose"]), "--test", str(test_copy), "-o", str(inside), "--overwrite"],
                 "holds the input")
    assert test_copy.read_bytes() == runs["test"].read_bytes()
    # import-bop: an existing file needs --overwrite
    bop = tmp_path / "bop"
    assert main(["export-bop", str(runs["test"]), "-o", str(bop)]) == 0
    capsys.readouterr()
    existing = tmp_path / "imported.h5"
    existing.write_bytes(b"x")
    inproc_error(capsys, ["import-bop", str(bop), "--split", "test", "-o", str(existing),
                          "--class-map", str(runs["test"])], "already exists")
    inproc_error(capsys, ["import-bop", str(bop), "--split", "test", "-o", str(bop / "camera.json"), "--overwrite"],
                 "input folder")
    # export-bop: a split folder holding the input is never replaced
    split = tmp_path / "bop2" / "test"
    split.mkdir(parents=True)
    inp = split / "x.h5"
    inp.write_bytes(runs["test"].read_bytes())
    inproc_error(capsys, ["export-bop", str(inp), "-o", str(tmp_path / "bop2"), "--overwrite"], "holds the input")
    assert inp.exists()
    # inspect --grid onto the file inspected
    target = tmp_path / "t.h5"
    target.write_bytes(runs["test"].read_bytes())
    inproc_error(capsys, ["inspect", str(target), "--grid", str(target), "--overwrite"], "is also an input")
    assert target.read_bytes() == runs["test"].read_bytes()
    # train-pose / adapt: an existing run folder holding an input is never replaced
    run = tmp_path / "run"
    run.mkdir()
    inside_src = run / "src.h5"
    inside_src.write_bytes(runs["src"].read_bytes())
    inproc_error(capsys, ["train-pose", "--train", str(inside_src), "-o", str(run), "--overwrite",
                          "--config", "pose-tiny"], "holds the input")
    inproc_error(capsys, ["adapt", "--source", str(inside_src), "--target", str(runs["tgt"]), "-o", str(run),
                          "--overwrite", "--config", "pixelda-tiny"], "holds the input")
    assert inside_src.exists()
    assert d.exists()


# ------------------------------------------------------------------------------------------------------------
# 2. a run killed before its first checkpoint: --resume starts from step 0, --overwrite replaces it
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cmd", ["adapt", "train-pose"])
def test_resume_without_checkpoint_starts_at_step_0(runs, tmp_path, capsys, cmd):
    args = {"adapt": ["--source", str(runs["src"]), "--target", str(runs["tgt"]), "--config", "pixelda-tiny",
                      "--set", "train.steps=3"],
            "train-pose": ["--train", str(runs["src"]), "--config", "pose-tiny", "--set", "steps=3",
                           "--set", "device=cpu", "--no-progress"]}[cmd]
    run = tmp_path / cmd
    (run / "checkpoints").mkdir(parents=True)  # what a kill before the first checkpoint leaves
    (run / "samples").mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    inproc_error(capsys, [cmd, *args, "-o", str(run)], "--resume", "--overwrite")
    assert main([cmd, *args, "-o", str(run), "--resume"]) == 0
    assert "starting from step 0" in capsys.readouterr().out
    assert (run / "checkpoints" / "last.pt").is_file()
    assert '{"step": 1}' not in (run / "metrics.jsonl").read_text()
    assert main([cmd, *args, "-o", str(run), "--overwrite"]) == 0


def test_resume_without_checkpoint_never_deletes_foreign_files(runs, tmp_path, capsys):
    run = tmp_path / "mine"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    inproc_error(capsys, ["train-pose", "--train", str(runs["src"]), "-o", str(run), "--resume",
                          "--config", "pose-tiny"], "notes.txt")
    assert (run / "notes.txt").read_text() == "mine"


# ------------------------------------------------------------------------------------------------------------
# 3, 4. render workers die with the parent; stale temporaries are cleaned by the next run of the same output
# ------------------------------------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(x) for x in (task / "children").read_text().split()]
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.gl
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_render_workers_die_with_the_parent_and_resume_is_identical(tmp_path, mesh_folder):
    cfg = write_yaml(tmp_path / "c.yaml", f"objects: {mesh_folder}\nn_samples: 160\nimage_size: 24\nshard_size: 8\n"
                                          "model_points: 50\n")
    out = tmp_path / "k.h5"
    part = out.with_name(out.name + ".partial")
    env = dict(os.environ, SIM2REAL_PROGRESS="0")
    proc = subprocess.Popen([sys.executable, "-m", "sim2real", "render", str(cfg), "-o", str(out), "--workers", "2"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(part.glob("shard_*.npz"))) < 2:
        time.sleep(0.05)
    kids = _children(proc.pid)
    assert kids, "the render started no workers"
    os.kill(proc.pid, signal.SIGKILL)  # the parent only: its workers must follow on their own
    proc.wait()
    deadline = time.time() + 3
    while time.time() < deadline and any(_alive(k) for k in kids):
        time.sleep(0.05)
    assert not any(_alive(k) for k in kids), "render workers outlived their parent"
    n_shards = len(list(part.glob("shard_*.npz")))
    time.sleep(0.5)
    assert len(list(part.glob("shard_*.npz"))) == n_shards  # nobody is writing any more
    (part / "shard_000019.npz.tmp").write_bytes(b"half a shard")  # what a kill mid-write leaves
    r = cli("render", str(cfg), "-o", str(out), "--resume", "--workers", "2")
    assert r.returncode == 0, r.stderr
    ref = tmp_path / "ref.h5"
    assert cli("render", str(cfg), "-o", str(ref), "--workers", "1").returncode == 0
    r = cli("inspect", str(out), "--compare", str(ref))
    assert r.returncode == 0 and "identical arrays" in r.stdout, r.stdout + r.stderr


def test_stale_temporaries_of_the_same_output_are_cleaned(tmp_path):
    out = tmp_path / "o.h5"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".o.h5.{dead.pid}.abcd1234.h5.tmp"
    stale.write_bytes(b"x" * 1000)
    legacy = tmp_path / ".o.h5.k2j3h4.h5.tmp"  # an older sim2real's name, without a pid
    legacy.write_bytes(b"x")
    os.utime(legacy, (time.time() - 3600, time.time() - 3600))
    live = tmp_path / f".o.h5.{os.getpid()}.zzzz.h5.tmp"  # a run still writing: left alone
    live.write_bytes(b"x")
    other = tmp_path / f".other.h5.{dead.pid}.abcd.h5.tmp"  # another output's: left alone
    other.write_bytes(b"x")
    make_synthetic(out, n=4, size=8)
    assert not stale.exists() and not legacy.exists()
    assert live.exists() and other.exists()


# ------------------------------------------------------------------------------------------------------------
# 5. disk full: one line naming the path, exit 2, nothing half-written; render refuses up front
# ------------------------------------------------------------------------------------------------------------


def _file_size_limit(n_bytes: int):
    def set_limit() -> None:  # Python ignores SIGXFSZ, so a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, n_bytes))
    return set_limit


@pytest.mark.slow
def test_full_disk_is_one_line_and_leaves_no_partial_file(runs, tmp_path):
    big = make_synthetic(tmp_path / "big.h5", n=600, size=16)
    out = tmp_path / "adapted.h5"
    r = cli("export", str(runs["pixelda"]), "--source", str(big), "-o", str(out), preexec=_file_size_limit(100_000))
    one_line_error(r, str(out), "cannot write")
    assert not out.exists() and not list(tmp_path.glob(".adapted.h5.*"))
    run = tmp_path / "pose"
    r = cli("train-pose", "--train", str(runs["src"]), "-o", str(run), "--config", "pose-tiny", "--set", "steps=2",
            "--set", "device=cpu", preexec=_file_size_limit(20_000))
    one_line_error(r, "cannot write")


def test_render_refuses_a_job_the_disk_cannot_hold(tmp_path, mesh_folder):
    cfg = write_yaml(tmp_path / "c.yaml", f"objects: {mesh_folder}\nimage_size: 64\nmodel_points: 50\n")
    r = cli("render", str(cfg), "-o", str(tmp_path / "huge.h5"), "--set", "n_samples=100000000")
    one_line_error(r, "huge.h5", "disk", "free")
    assert not (tmp_path / "huge.h5.partial").exists()


# ------------------------------------------------------------------------------------------------------------
# 6-8. bad data: non-finite or impossible values, conflicting labels, mixed image sizes
# ------------------------------------------------------------------------------------------------------------


def _raw_file(path: Path, **changes) -> Path:
    """A synthetic file written with h5py directly (no validation), with some datasets replaced."""
    make_synthetic(path, n=8, size=16)
    with h5py.File(path, "a") as f:
        for key, fn in changes.items():
            arr = f[key][()]
            del f[key]
            f.create_dataset(key, data=fn(arr))
    return path


@pytest.mark.parametrize("key, fn, needle", [
    ("K", lambda a: np.where(np.eye(3, dtype=bool), np.nan, a), "'K'"),
    ("diameters", lambda a: -a, "'diameters'"),
    ("model_points", lambda a: np.where(np.arange(a.size).reshape(a.shape) == 5, np.nan, a), "'model_points'"),
    ("trans", lambda a: a * np.array([1, 1, -1], np.float32), "'trans'"),
])
def test_validation_rejects_impossible_values(tmp_path, capsys, key, fn, needle):
    bad = _raw_file(tmp_path / "bad.h5", **{key: fn})
    before = digest(bad)
    inproc_error(capsys, ["inspect", str(bad)], needle)
    inproc_error(capsys, ["export-bop", str(bad), "-o", str(tmp_path / "bop")], needle)
    assert digest(bad) == before
    assert not (tmp_path / "bop" / "camera.json").exists()


def test_export_bop_never_writes_nan_and_import_rejects_it(tmp_path, capsys):
    src = make_synthetic(tmp_path / "s.h5", n=4, size=16)
    with h5py.File(src, "a") as f:  # an import-bop extension dataset, not covered by the schema
        K = np.repeat(f["K"][()][None], 4, axis=0)
        K[2, 0, 0] = np.nan
        f.create_dataset("K_per_sample", data=K)
    inproc_error(capsys, ["export-bop", str(src), "-o", str(tmp_path / "bop")], "K_per_sample")
    good = make_synthetic(tmp_path / "g.h5", n=4, size=16)
    assert main(["export-bop", str(good), "-o", str(tmp_path / "bop")]) == 0
    capsys.readouterr()
    cam = tmp_path / "bop" / "test" / "000000" / "scene_camera.json"
    data = json.loads(cam.read_text())
    data["1"]["cam_K"][0] = float("nan")
    cam.write_text(json.dumps(data))
    inproc_error(capsys, ["import-bop", str(tmp_path / "bop"), "--split", "test", "-o", str(tmp_path / "i.h5")],
                 "cam_K must be finite")


def _image_folder(folder: Path, sizes: list[tuple[int, int]], rows: list[str] | None) -> Path:
    from PIL import Image

    folder.mkdir()
    for i, (h, w) in enumerate(sizes):
        img = np.zeros((h, w, 3), np.uint8)
        img[:, : w // 2] = 255  # left half white: stretching would move the edge, a centre crop keeps it centred
        Image.fromarray(img).save(folder / f"im{i}.png")
    if rows is not None:
        (folder / "labels.csv").write_text("file,label\n" + "\n".join(rows) + "\n")
    return folder


def test_labels_csv_with_conflicting_duplicates_is_rejected(tmp_path):
    from sim2real.data.sources import read_image_folder

    ok = _image_folder(tmp_path / "ok", [(16, 16)] * 2, ["im0.png,a", "im1.png,b", "im0.png,a"])
    assert read_image_folder(ok).label.tolist() == [0, 1]  # the same label twice is fine
    bad = _image_folder(tmp_path / "bad", [(16, 16)] * 2, ["im0.png,a", "im1.png,b", "im0.png,b"])
    with pytest.raises(Sim2RealError, match=r"im0.png has conflicting rows \(line 2: a; line 4: b\)"):
        read_image_folder(bad)


def test_mixed_size_folder_keeps_the_aspect_and_counts_the_resized(tmp_path):
    from sim2real.data.sources import read_image_folder

    folder = _image_folder(tmp_path / "mixed", [(16, 16), (16, 32), (32, 16)], ["im0.png,a", "im1.png,a", "im2.png,b"])
    d = read_image_folder(folder, size=(16, 16))
    assert d.attrs["resized"] == 2 and "centre-cropped" in d.attrs["resized_summary"]
    wide = d.rgb[1, 8, :, 0].astype(int)  # 16x32 -> centre 16x16 crop: the white/black edge stays in the middle
    assert wide[:6].min() == 255 and wide[-6:].max() == 0


# ------------------------------------------------------------------------------------------------------------
# 9-11. run validates every stage first; YAML types in words; errors come alone
# ------------------------------------------------------------------------------------------------------------


def test_run_validates_every_stage_before_any_runs(runs, tmp_path, capsys):
    pipe = write_yaml(tmp_path / "p.yaml", f"""
stages:
  pose:
    command: train-pose
    args: {{train: {runs['src']}, config: pose-tiny}}
  later:
    command: train-pose
    args: {{train: {runs['src']}, stepz: 3}}
""")
    wd = tmp_path / "wd"
    line = inproc_error(capsys, ["run", str(pipe), "-o", str(wd)], "stage 'later'", "stepz")
    assert "usage" not in line and not wd.exists()  # nothing ran, nothing recorded as started
    pipe.write_text(pipe.read_text().replace("stepz: 3", "set: {steps: many}"))
    inproc_error(capsys, ["run", str(pipe), "-o", str(wd)], "stage 'later'", "steps", "expected an integer")
    assert not wd.exists()


def test_yaml_type_errors_name_the_type_in_words(tmp_path, capsys, mesh_folder):
    inproc_error(capsys, ["render", "render-default", "-o", str(tmp_path / "x.h5"), "--set", "image_size=big"],
                 "expected an integer or a list of 2 integers, got 'big'")


def test_errors_are_never_preceded_by_a_progress_bar(runs, tmp_path):
    bad = _raw_file(tmp_path / "bad.h5", K=lambda a: a * np.nan)
    r = cli("export", str(runs["pixelda"]), "--source", str(bad), "-o", str(tmp_path / "a.h5"))
    one_line_error(r, "'K'")
    assert "%|" not in r.stderr


# ------------------------------------------------------------------------------------------------------------
# 14, 15. which checkpoint a run folder means; canonical quaternions are idempotent
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_evaluate_uses_and_reports_the_best_checkpoint_of_a_validated_run(runs, tmp_path):
    out = tmp_path / "report"
    r = cli("evaluate", f"pose={runs['pose']}", f"T={runs['pixelda']}", "--test", str(runs["test"]), "-o", str(out))
    assert r.returncode == 0, r.stderr
    m = json.loads((out / "metrics.json").read_text())
    ckpt = {x["name"]: Path(x["checkpoint"]).name for x in m["models"]}
    assert ckpt == {"pose": "best.pt", "T": "best.pt"}
    assert r.stdout.count("[best.pt") == 2
    assert main(["evaluate", f"pose={runs['pose']}", "--test", str(runs["test"]), "-o", str(out), "--overwrite"]) == 0
    assert [x["name"] for x in json.loads((out / "metrics.json").read_text())["models"]] == ["pose"]
    assert not list(tmp_path.glob(".report.*"))


def test_canonical_quat_is_idempotent_bit_for_bit():
    rng = np.random.default_rng(0)
    q = canonical_quat(rng.normal(size=(5000, 4))).astype(np.float32)
    again = canonical_quat(q)
    assert again.astype(np.float32).tobytes() == q.tobytes()
    kept = canonical_quat(q, keep_dtype=True)
    assert kept.dtype == np.float32 and kept.tobytes() == q.tobytes()
    assert canonical_quat(-q, keep_dtype=True).tobytes() == q.tobytes()  # a sign flip is exact
    raw = rng.normal(size=(100, 4)) * 3
    np.testing.assert_allclose(np.linalg.norm(canonical_quat(raw), axis=1), 1.0, atol=1e-12)
    arrays = synthetic_arrays(8, 8)
    assert canonical_quat(arrays["quat"]).astype(np.float32).tobytes() == arrays["quat"].tobytes()


def test_a_resume_waits_for_writers_of_the_partial_folder(tmp_path):
    import fcntl

    from sim2real.render.job import _lock_folder

    part = tmp_path / "o.h5.partial"
    part.mkdir()
    fd = os.open(part, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)  # a worker of an earlier run still writing shards
    try:
        with pytest.raises(Sim2RealError, match="still writing"):
            _lock_folder(part, exclusive=True, wait_s=0.2)
    finally:
        os.close(fd)
    os.close(_lock_folder(part, exclusive=True, wait_s=0.2))  # once it is gone, the new run proceeds
