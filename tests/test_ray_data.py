"""`export --ray` and `import-bop --ray`: Ray actors give the local file, redo a killed actor's shard, and resume.

One local Ray cluster (2 CPUs) serves the whole module (:func:`ray_cluster`), as in ``test_ray_render.py``;
``export_adapted(..., ray="auto")``, ``read_bop(..., ray="auto")`` and the CLI join it. Export's noise is a pure
function of (seed, source index, draw index), so the file does not depend on the batch size, the shard size or
the number of actors. Data: a 2-step PixelDA run on 20 synthetic RGB-D 16x16 images, and the hand-written
sphere BOP dataset of ``test_bop.py``. Skipped without Ray (``pip install sim2real[ray]``; CI installs it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from sim2real.adapt import export as export_mod
from sim2real.adapt.export import export_adapted, noise, partial_dir
from sim2real.cli import main
from sim2real.data import bop
from sim2real.data.inspect import VOLATILE_ATTRS
from sim2real.errors import Sim2RealError
from sim2real.render import ray_pool
from sim2real.testing import make_synthetic
from test_bop import CMAP, make_bop

ray = pytest.importorskip("ray")

CPUS = 2
N, K, SHARD = 20, 2, 4  # 20 source images, 2 draws each, 5 shards of 4 source images


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    """A local Ray cluster for this module; ``ray="auto"`` calls join it."""
    ray.init(num_cpus=CPUS, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("SIM2REAL_PROGRESS", "0")


def assert_same_file(a: Path, b: Path) -> None:
    """Every dataset equal (np.array_equal, same dtype) and every attribute but the creation time."""
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        assert sorted(fa.keys()) == sorted(fb.keys())
        for k in fa.keys():
            x, y = np.asarray(fa[k][()]), np.asarray(fb[k][()])
            assert x.dtype == y.dtype and np.array_equal(x, y), k
        keys = (set(fa.attrs) | set(fb.attrs)) - set(VOLATILE_ATTRS)
        assert {k: str(fa.attrs.get(k)) for k in keys} == {k: str(fb.attrs.get(k)) for k in keys}


@pytest.fixture(scope="module")
def adapted(tmp_path_factory) -> dict[str, Path]:
    """A tiny RGB-D PixelDA run (noise z, depth channel), its source, and the local one-process export of it."""
    d = tmp_path_factory.mktemp("ray_export")
    src = make_synthetic(d / "s.h5", n=N, size=16, num_classes=3, seed=0)
    tgt = make_synthetic(d / "t.h5", n=12, size=16, num_classes=3, seed=1, domain="target", labels=False)
    assert main(["adapt", "--source", str(src), "--target", str(tgt), "-o", str(d / "run"), "--config", "pixelda-tiny",
                 "--set", "train.steps=2", "--set", "model.use_depth=true"]) == 0
    local = d / "local.h5"
    export_adapted(d / "run", src, local, per_source=K, shard_size=SHARD, device="cpu", show_progress=False)
    return {"run": d / "run", "source": src, "local": local}


def _export(a: dict, out: Path, **kw) -> dict:
    kw = {"per_source": K, "shard_size": SHARD, "show_progress": False, **kw}
    return export_adapted(a["run"], a["source"], out, **kw)


# ------------------------------------------------------------------------------------------------ export


def test_noise_is_a_function_of_seed_index_and_draw():
    z = noise(5, 0, 6, 3, 4)
    assert z.shape == (18, 4) and z.dtype == np.float32 and z.min() >= -1 and z.max() < 1
    np.testing.assert_array_equal(noise(5, 2, 4, 3, 4), z[6:12])  # any start: samples 2, 3
    np.testing.assert_array_equal(noise(5, 0, 6, 1, 4), z[0::3])  # draw 0 of each sample, whatever K is
    ref = np.random.default_rng([5, export_mod.NOISE_STREAM, 4]).uniform(-1, 1, (3, 4)).astype(np.float32)
    np.testing.assert_array_equal(z[12:15], ref)  # the documented rule, re-derived
    assert not np.array_equal(noise(6, 0, 6, 3, 4), z)


def test_local_export_does_not_depend_on_batch_or_shard_size(adapted, tmp_path):
    _export(adapted, tmp_path / "b7.h5", batch_size=7)
    _export(adapted, tmp_path / "b64.h5", batch_size=64, shard_size=1024)
    assert_same_file(tmp_path / "b7.h5", tmp_path / "b64.h5")
    assert_same_file(adapted["local"], tmp_path / "b7.h5")
    prov = json.loads(h5py.File(adapted["local"], "r").attrs["provenance"])
    assert prov["noise"] == export_mod.NOISE_RULE and str(export_mod.NOISE_STREAM) in prov["noise"]


@pytest.mark.parametrize("actors", [1, 2])
def test_ray_actors_give_the_local_export(adapted, tmp_path, actors, capsys):
    out = tmp_path / f"ray{actors}.h5"
    if actors == 1:
        res = _export(adapted, out, ray="auto", workers=1)
        assert (res["executor"], res["workers"], res["translated"]) == ("ray", 1, N * K)
    else:  # the CLI's flags, as a user types them
        assert main(["export", str(adapted["run"]), "--source", str(adapted["source"]), "-o", str(out),
                     "--per-source", str(K), "--shard-size", str(SHARD), "--ray", "--workers", "2"]) == 0
        out_line = capsys.readouterr().out
        assert f"export: {N * K} adapted images" in out_line and "2 Ray actor(s)" in out_line, out_line
    assert not partial_dir(out).exists()
    assert_same_file(adapted["local"], out)


def test_a_killed_export_actor_s_shard_is_redone(adapted, tmp_path, monkeypatch):
    marker = tmp_path / "killed-once"
    monkeypatch.setenv(ray_pool.FAULT_ENV, f"2:{marker}")  # the actor translating shard 2 dies, the first time
    out = tmp_path / "ray.h5"
    res = _export(adapted, out, ray="auto", workers=2)
    assert marker.exists() and res["translated"] == N * K
    assert_same_file(adapted["local"], out)


def test_an_interrupted_export_resumes_on_ray_with_the_missing_shards_only(adapted, tmp_path, monkeypatch):
    out = tmp_path / "r.h5"
    part = partial_dir(out)
    real_write = export_mod._write_shard
    written: list[str] = []

    def die_after_two(path, rgb):  # a local run killed after its second shard
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(path.name)
        real_write(path, rgb)

    with monkeypatch.context() as m:
        m.setattr(export_mod, "_write_shard", die_after_two)
        with pytest.raises(KeyboardInterrupt):
            _export(adapted, out, device="cpu")
    assert sorted(p.name for p in part.glob("shard_*.npz")) == written and not out.exists()
    with pytest.raises(Sim2RealError, match=r"interrupted export .* --resume"):
        _export(adapted, out)
    with pytest.raises(Sim2RealError, match="another seed"):
        _export(adapted, out, resume=True, seed=99)
    resumed: list[str] = []
    monkeypatch.setattr(export_mod, "_write_shard", lambda path, rgb: (resumed.append(path.name), real_write(path, rgb)))
    res = _export(adapted, out, resume=True, ray="auto", workers=1)
    assert sorted(resumed) == [f"shard_00000{s}.npz" for s in (2, 3, 4)] and not set(resumed) & set(written)
    assert res["translated"] == (N - 2 * SHARD) * K and not part.exists()
    assert_same_file(adapted["local"], out)
    again = _export(adapted, out, resume=True)  # finished: kept as it is
    assert again["already_complete"] and again["translated"] == 0


# ------------------------------------------------------------------------------------------------ import-bop


def test_import_bop_on_ray_gives_the_local_file_and_the_same_first_error(tmp_path):
    root = make_bop(tmp_path / "bop")
    bad = root / "test" / "000001" / "rgb" / "000003.png"
    bad.write_bytes(bad.read_bytes()[:100])  # a truncated PNG in the middle of the split
    cmap = bop.ClassMap.from_mapping(CMAP, "map")
    opt = bop.ImportOptions(size=32, min_visib=0, skip_bad=True)
    bop.import_bop(root, "test", tmp_path / "local.h5", cmap, opt)
    _, res = bop.import_bop(root, "test", tmp_path / "ray.h5", cmap, opt, ray="auto", workers=2, shard_images=1)
    assert res.skips.by_reason == {"unreadable image": 1} and len(res.arrays["rgb"]) == 3
    assert_same_file(tmp_path / "local.h5", tmp_path / "ray.h5")
    strict = bop.ImportOptions(size=32, min_visib=0)
    with pytest.raises(Sim2RealError) as local_err:
        bop.read_bop(root, "test", cmap, strict)
    with pytest.raises(Sim2RealError) as ray_err:
        bop.read_bop(root, "test", cmap, strict, ray="auto", workers=2, shard_images=1)
    assert str(ray_err.value) == str(local_err.value) == f"{bad}: not a readable image"


# ------------------------------------------------------------------------------------------------ without Ray


def test_without_ray_the_error_names_the_extra(adapted, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(Sim2RealError, match=r"pip install sim2real\[ray\]"):
        _export(adapted, tmp_path / "x.h5", ray="auto")
    root = make_bop(tmp_path / "bop")
    for argv in (["export", str(adapted["run"]), "--source", str(adapted["source"]), "-o", str(tmp_path / "y.h5"),
                  "--ray"],
                 ["import-bop", str(root), "--split", "test", "-o", str(tmp_path / "z.h5"), "--ray", "auto"]):
        assert main(argv) == 2
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(err) == 1 and "pip install sim2real[ray]" in err[0] and "Traceback" not in err[0], err
    for name in ("x.h5", "y.h5", "z.h5"):
        assert not (tmp_path / name).exists() and not partial_dir(tmp_path / name).exists()
