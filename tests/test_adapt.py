"""PixelDA trainer, adapt / export commands: a hand-derived D step, gradients, resume, export, bad input."""

from __future__ import annotations

import copy
import json
import math
import signal
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sim2real.cli import main
from sim2real.config import load_config
from sim2real.data import h5
from sim2real.errors import Sim2RealError
from sim2real.models.factory import build_models
from sim2real.models.loading import load_generator, load_task_model
from sim2real.testing import make_synthetic
from sim2real.adapt import resolve_adapt_config, train_adapt
from sim2real.adapt.pixelda import step as adapt_mod
from sim2real.adapt.pixelda.config import PixelDAConfig
from sim2real.adapt.pixelda.step import PixelDAStep
from sim2real.engine.amp import resolve_speed
from sim2real.engine.checkpoint import save_checkpoint
from sim2real.engine.interrupt import DeferInterrupt

from conftest import affine_per_channel

TINY = "pixelda-tiny"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pixelda_data")
    return {
        "source": make_synthetic(d / "s.h5", n=20, size=16, num_classes=3, seed=0),
        "target": make_synthetic(d / "t.h5", n=18, size=16, num_classes=3, seed=1, domain="target", labels=False),
        "val": make_synthetic(d / "v.h5", n=9, size=16, num_classes=3, seed=2, domain="target"),
        "big": make_synthetic(d / "big.h5", n=4, size=24, num_classes=3, seed=3, domain="target", labels=False),
        "nolabel": make_synthetic(d / "nl.h5", n=6, size=16, num_classes=3, seed=4, labels=False),
    }


def _cfg(*sets: str) -> PixelDAConfig:
    return load_config(PixelDAConfig, TINY, list(sets))


def _batch(cfg: PixelDAConfig, b: int = 6, size: int = 16, c: int = 3, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, 4, generator=g)
    src = {"x": torch.rand(b, c, size, size, generator=g) * 2 - 1,
           "label": torch.randint(0, classes, (b,), generator=g),
           "quat": q / q.norm(dim=1, keepdim=True),
           "mask": (torch.rand(b, 1, size, size, generator=g) > 0.5)}
    tgt = {"x": torch.rand(b, c, size, size, generator=g) * 2 - 1}
    return src, tgt


def _stepper(cfg: PixelDAConfig, seed: int = 0, c: int = 3, size: int = 16):
    torch.manual_seed(seed)
    G, D, T = build_models(cfg, 3, c, (size, size))
    return PixelDAStep(G, D, T, cfg, resolve_speed(torch.device("cpu"), cfg.perf.amp, cfg.perf.channels_last,
                                                   cfg.perf.foreach))


# ---------------------------------------------------------------------------------------------- one step


def test_one_step_gives_every_parameter_a_gradient_and_no_nan():
    cfg = _cfg("model.use_depth=true")
    st = _stepper(cfg, c=4)
    src, tgt = _batch(cfg, c=4)
    m = st(src, tgt, 0)
    for name, net in (("G", st.G), ("D", st.D), ("T", st.T)):
        for pname, p in net.named_parameters():
            assert p.grad is not None, f"{name}.{pname} has no gradient"
            assert torch.isfinite(p.grad).all(), f"{name}.{pname} gradient is not finite"
            assert torch.isfinite(p).all(), f"{name}.{pname} is not finite"
            assert float(p.grad.abs().sum()) > 0, f"{name}.{pname} has an all-zero gradient"
    assert all(torch.isfinite(v) for v in m.values())
    assert {"d/total", "d/gan", "d/acc", "g/adv", "g/content", "t/ce_source", "t/pose_adapted"} <= set(m)


def test_task_batch_norm_builds_t_with_batch_norm_and_trains():
    cfg = _cfg("model.task.batch_norm=true")
    st = _stepper(cfg)
    bns = [m for m in st.T.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == len(cfg.model.task.conv_widths) + cfg.model.task.num_private_layers  # + the private copy
    before = [b.running_mean.clone() for b in bns]
    src, tgt = _batch(cfg)
    m = st(src, tgt, 0)
    assert all(torch.isfinite(v) for v in m.values())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in st.T.parameters())
    assert all(not torch.equal(b0, b.running_mean) for b0, b in zip(before, bns))  # statistics were updated
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in _stepper(_cfg()).T.modules())  # off by default


@pytest.mark.parametrize("domains", [None, ["source"], ["adapted"], ["source", "adapted"]])
def test_task_augment_changes_only_what_t_learns_from(domains):
    """task_augment (recolouring alone here): T's source / adapted inputs in the D(+T) update are recoloured per
    image and channel when listed; D, G and T's term in G's loss see the images as they are."""
    sets = ["model.task.dropout=0.0"]
    if domains:
        sets += ["task_augment.enabled=true", "task_augment.recolour_p=1.0", "task_augment.jitter_p=0",
                 "task_augment.blur_p=0", "task_augment.noise_p=0", f"task_augment.domains=[{','.join(domains)}]"]
    cfg = _cfg(*sets)
    st = _stepper(cfg)
    fed_t, fed_d = [], []
    t_fwd, d_fwd = st.T.forward, st.D.forward
    st.T.forward = lambda x, domain="target", **kw: fed_t.append((x.detach().clone(), domain)) or t_fwd(x, domain, **kw)
    st.D.forward = lambda x, *a, **kw: fed_d.append(x.detach().clone()) or d_fwd(x, *a, **kw)
    src, tgt = _batch(cfg)
    st(src, tgt, 0)
    assert [d for _, d in fed_t] == ["source", "adapted", "adapted"]  # D update: source, adapted; G update: adapted
    (t_src, _), (t_ad, _), (t_g, _) = fed_t
    real, fake_d, fake_g = fed_d
    torch.testing.assert_close(real, tgt["x"])       # D: the target as it is
    torch.testing.assert_close(fake_g, fake_d)       # the G update reuses the same, unaugmented G(x_s, z)
    torch.testing.assert_close(t_g, fake_d)          # T's term in G's loss: unaugmented
    for got, orig, dom in ((t_src, src["x"], "source"), (t_ad, fake_d, "adapted")):
        if domains and dom in domains:
            assert not torch.allclose(got, orig) and got.min() >= -1 and got.max() <= 1
            assert affine_per_channel(orig, got)
        else:
            torch.testing.assert_close(got, orig)


@pytest.mark.parametrize("t_optim", [(), ("optim.task_lr=0.03", "optim.task_beta1=0.9")])
def test_d_step_rederived_by_hand(t_optim):
    """D+T step under a fixed seed, re-derived: hand-written losses, autograd, per-tensor clip, Adam step 1 (with
    T's own learning rate and beta1 in the second case)."""
    cfg = _cfg("model.discriminator.dropout_keep=1.0", "model.discriminator.noise_std=0.0",
               "model.task.dropout=0.0", "optim.clip_grad_norm=0.05", "optim.lr=0.01", *t_optim)
    st = _stepper(cfg)
    G0, D0, T0 = (copy.deepcopy(m) for m in (st.G, st.D, st.T))
    src, tgt = _batch(cfg)
    torch.manual_seed(1234)
    m = st(src, tgt, 0)

    torch.manual_seed(1234)  # the only random draw before the D step's update: z ~ U(-1, 1)
    z = torch.rand(6, cfg.model.generator.noise_dim) * 2 - 1
    with torch.no_grad():
        fake = G0(src["x"], z)
    real_l, fake_l = D0(tgt["x"]), D0(fake)
    ts, ta = T0(src["x"], "source"), T0(fake, "adapted")

    def ce(logits, y):
        return (torch.logsumexp(logits, 1) - logits[torch.arange(len(y)), y]).mean()

    def pose(out, qt):  # per-class head: the TRUE class's quaternion
        q = out["quat_all"][torch.arange(len(qt)), src["label"]]
        return torch.log(1e-4 + 1 - (q * qt).sum(1).abs()).mean()

    L = cfg.loss
    d_gan = F.softplus(-real_l).mean() + F.softplus(fake_l).mean()
    total = (L.d_weight * d_gan + L.task_source_weight * ce(ts["logits"], src["label"])
             + L.task_adapted_weight * ce(ta["logits"], src["label"])
             + L.pose_source_weight * pose(ts, src["quat"]) + L.pose_adapted_weight * pose(ta, src["quat"]))
    torch.testing.assert_close(m["d/total"], total.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(m["d/gan"], d_gan.detach(), rtol=1e-5, atol=1e-6)

    params = list(D0.parameters()) + list(T0.parameters())
    grads = torch.autograd.grad(total, params)
    o = cfg.optim
    c, b2, eps = o.clip_grad_norm, o.beta2, 1e-8
    n_d = len(list(D0.parameters()))
    t_lr, t_b1 = o.task_lr or o.lr, o.beta1 if o.task_beta1 is None else o.task_beta1
    expected, clipped, lrs = [], [], []
    for i, (p, g) in enumerate(zip(params, grads)):
        lr, b1 = (o.lr, o.beta1) if i < n_d else (t_lr, t_b1)
        lrs.append(lr)
        g = g * (c / max(float(g.norm()), c))                 # TF clip_by_norm per variable
        m1, v1 = (1 - b1) * g, (1 - b2) * g * g               # Adam moments after one step
        m_hat, v_hat = m1 / (1 - b1), v1 / (1 - b2)
        expected.append(p.detach() - lr * m_hat / (v_hat.sqrt() + eps))
        clipped.append(g)
    got = list(st.D.parameters()) + list(st.T.parameters())
    assert len(got) == len(expected)
    for p, e, g, cg, lr in zip(params, expected, got, clipped, lrs):
        # Adam's first step is lr * g / (|g| + eps): ill-conditioned where |g| ~ eps, so those few
        # elements are only checked to move by at most lr.
        ok = cg.abs() > 1e-6
        torch.testing.assert_close(g.detach()[ok], e[ok], rtol=1e-5, atol=1e-6)
        moved = (g.detach() - p.detach())[~ok].abs()
        assert moved.numel() == 0 or float(moved.max()) <= lr * (1 + 1e-5)
    if t_optim:  # T's rate follows the shared schedule from its own initial value
        group = st.opt_d.param_groups[1]
        assert group["initial_lr"] == 0.03 and group["betas"][0] == 0.9
        st.optim.lr_schedule, st.horizon = "cosine", 10
        st(src, tgt, 5)
        assert math.isclose(group["lr"], 0.015) and math.isclose(st.opt_d.param_groups[0]["lr"], 0.005)
    # G was updated in its own step, D and T were not touched by it
    assert not torch.equal(next(st.G.parameters()), next(G0.parameters()))


def test_speed_switches_do_not_change_the_maths():
    """The benchmark's plain path (recompute G, no freezing, per-tensor loops) == the optimised CPU path."""
    plain = _cfg("perf.reuse_fake=false", "perf.freeze_inactive=false", "perf.foreach=false")
    fast = _cfg()
    a, b = _stepper(plain), _stepper(fast)
    src, tgt = _batch(fast)
    for step in range(2):
        torch.manual_seed(step)
        ma = a(src, tgt, step)
        torch.manual_seed(step)
        mb = b(src, tgt, step)
    for k in ma:
        torch.testing.assert_close(ma[k], mb[k], rtol=1e-4, atol=1e-5)
    for na, nb in ((a.G, b.G), (a.D, b.D), (a.T, b.T)):
        for pa, pb in zip(na.parameters(), nb.parameters()):
            torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-5)


def test_bf16_channels_last_path_runs_on_cpu():
    """The GPU code path (bf16 autocast + channels_last) exercised on the CPU: finite and close to fp32."""
    fast = _stepper(_cfg("perf.amp=bf16", "perf.channels_last=true"))
    ref = _stepper(_cfg("perf.amp=fp32", "perf.channels_last=false"))
    assert fast.speed.amp_dtype == torch.bfloat16 and fast.speed.channels_last
    src, tgt = _batch(_cfg())
    src = {k: (v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v) for k, v in src.items()}
    torch.manual_seed(0)
    mf = fast(src, tgt, 0)
    torch.manual_seed(0)
    mr = ref(src, tgt, 0)
    assert all(torch.isfinite(v) for v in mf.values())
    assert abs(float(mf["d/total"]) - float(mr["d/total"])) < 0.05 * abs(float(mr["d/total"])) + 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_step_bf16_channels_last():
    cfg = _cfg("perf.device=cuda")
    torch.manual_seed(0)
    G, D, T = (m.cuda().to(memory_format=torch.channels_last) for m in build_models(cfg, 3, 3, (16, 16)))
    speed = resolve_speed(torch.device("cuda"), "auto", None, True)
    assert speed.amp_dtype == torch.bfloat16 and speed.channels_last and speed.fused_adam
    st = PixelDAStep(G, D, T, cfg, speed)
    src, tgt = _batch(cfg)
    src = {k: v.cuda() for k, v in src.items()}
    tgt = {k: v.cuda() for k, v in tgt.items()}
    m = st(src, tgt, 0)
    assert all(torch.isfinite(v) for v in m.values())


# ------------------------------------------------------------------------------------------------- CLI


def _adapt(data, out, *extra):
    return main(["adapt", "--source", str(data["source"]), "--target", str(data["target"]), "-o", str(out),
                 "--config", TINY, *extra])


def _state(run: Path, ckpt: str = "last.pt") -> dict:
    return torch.load(run / "checkpoints" / ckpt, weights_only=True)


def _assert_same_run_state(full: Path, part: Path, step: int) -> None:
    """The last checkpoints of a straight run and of a resumed one: both at ``step``, G, D and T bit-for-bit equal."""
    a, b = _state(full), _state(part)
    assert a["step"] == b["step"] == step
    for net in ("G", "D", "T"):
        for k, v in a["state"][net].items():
            assert torch.equal(v, b["state"][net][k]), f"{net}.{k} differs after resume"


@pytest.mark.slow
def test_cli_adapt_writes_run_and_resume_is_exact(data, tmp_path, capsys):
    full, part = tmp_path / "full", tmp_path / "part"
    assert _adapt(data, full, "--val", str(data["val"])) == 0
    for p in ("run.json", "config.yaml", "metrics.jsonl", "checkpoints/step_0000003.pt", "checkpoints/step_0000006.pt",
              "checkpoints/last.pt", "checkpoints/best.pt", "samples/step_0000000.png", "samples/step_0000006.png"):
        assert (full / p).is_file(), p
    assert any((full / "tb").iterdir())
    run = json.loads((full / "run.json").read_text())
    assert run["kind"] == "pixelda" and run["seed"] == 0 and "torch" in run["versions"]
    lines = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    assert any(x["split"] == "train" and "d/acc" in x for x in lines)
    assert any(x["split"] == "val" and "accuracy" in x and "acc30_sym" in x for x in lines)

    assert _adapt(data, part, "--val", str(data["val"]), "--set", "train.steps=3") == 0
    assert _state(part)["step"] == 3
    # resume without --source/--target: taken from run.json
    assert main(["adapt", "-o", str(part), "--resume", "--set", "train.steps=6"]) == 0
    _assert_same_run_state(full, part, step=6)
    # changing a key that alters the maths is refused on resume
    assert main(["adapt", "-o", str(part), "--resume", "--set", "optim.lr=0.1"]) == 2
    assert "cannot resume with a different optim.lr" in capsys.readouterr().err


def test_source_masks_unused_by_the_config_are_pointed_out(data, tmp_path, capsys):
    """A source with masks under a config without the masked content loss gets a one-line note naming the fix;
    with the masked loss (pixelda-tiny's) there is none."""
    assert _adapt(data, tmp_path / "none", "--set", "loss.content=none", "--set", "train.steps=1") == 0
    out = capsys.readouterr().out
    assert f"{data['source']} has foreground masks that this config does not use (loss.content=none" in out
    assert "--set loss.content=masked_pmse" in out
    assert _adapt(data, tmp_path / "masked", "--set", "train.steps=1") == 0
    assert "does not use" not in capsys.readouterr().out


def test_load_task_model_and_generator(data, tmp_path):
    run = tmp_path / "run"
    assert _adapt(data, run, "--set", "model.use_depth=true") == 0
    T, info = load_task_model(run)
    assert not T.training and next(T.parameters()).device.type == "cpu"
    assert info["class_names"] == ["class0", "class1", "class2"] and info["use_depth"] is True
    assert info["image_size"] == (16, 16) and info["step"] == 6 and info["kind"] == "pixelda"
    out = T(torch.zeros(2, 4, 16, 16), domain="target")
    assert out["logits"].shape == (2, 3) and out["quat"].shape == (2, 4)
    G, ginfo = load_generator(run, step=3)
    assert ginfo["step"] == 3 and G(torch.zeros(1, 4, 16, 16)).shape == (1, 4, 16, 16)


@pytest.mark.slow
def test_cli_export_keeps_labels_and_poses_exactly(data, tmp_path):
    run = tmp_path / "run"
    assert _adapt(data, run, "--set", "model.use_depth=true") == 0
    out = tmp_path / "adapted.h5"
    assert main(["export", str(run), "--source", str(data["source"]), "-o", str(out), "--per-source", "3",
                 "--batch-size", "7"]) == 0
    a, s = h5.read(out), h5.read(data["source"])
    assert a.attrs["domain"] == "adapted" and len(a) == 3 * len(s)
    for key in ("label", "quat", "trans", "mask", "depth"):
        assert np.array_equal(getattr(a, key), np.repeat(getattr(s, key), 3, axis=0)), key
    for key in ("K", "model_points", "diameters", "extents"):
        assert np.array_equal(getattr(a, key), getattr(s, key)), key
    assert a.class_names == s.class_names
    prov = json.loads(a.attrs["provenance"])
    assert prov["step"] == 6 and prov["per_source"] == 3 and prov["source"].endswith("s.h5")
    # the K draws of one source image differ; the batch size does not change the result
    assert not np.array_equal(a.rgb[0], a.rgb[1])
    out2 = tmp_path / "adapted2.h5"
    assert main(["export", str(run), "--source", str(data["source"]), "-o", str(out2), "--per-source", "3"]) == 0
    assert np.array_equal(h5.read(out2).rgb, a.rgb)


def test_target_folder_of_images(data, tmp_path):
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    rgb = h5.read(data["target"]).rgb
    for i in range(5):
        Image.fromarray(np.kron(rgb[i], np.ones((2, 2, 1), np.uint8))).save(folder / f"im{i}.png")  # 32x32 -> resized
    run = tmp_path / "run"
    res = train_adapt(_cfg("train.steps=2"), data["source"], folder, run, log=lambda *_: None)
    assert res["step"] == 2 and json.loads((run / "run.json").read_text())["n_target"] == 5


def test_skip_bad_target_images_are_counted(data, tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    rgb = h5.read(data["target"]).rgb
    for i in range(4):
        Image.fromarray(rgb[i]).save(folder / f"im{i}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    (folder / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    run = tmp_path / "run"
    assert _adapt({**data, "target": folder}, run, "--set", "train.steps=2", "--skip-bad") == 0
    out = capsys.readouterr().out
    assert "skipped 2 bad items" in out and "broken.png" in out
    assert json.loads((run / "run.json").read_text())["n_target"] == 4


# ------------------------------------------------------------------------------------------ bad input


def _one_line_error(capsys, rc: int, needle: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    err = [e for e in err if "adapt:" not in e or "error" in e]  # progress bars are not errors
    assert rc == 2
    assert "Traceback" not in "\n".join(err)
    assert any(needle in e and e.startswith("sim2real ") for e in err), err


def test_bad_inputs_are_one_line_errors(data, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(capsys, _adapt({**data, "target": empty}, tmp_path / "r1"), "contains no images")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"not a png")
    _one_line_error(capsys, _adapt({**data, "target": bad}, tmp_path / "r2"), "not a readable image")
    _one_line_error(capsys, _adapt({**data, "source": data["nolabel"]}, tmp_path / "r3"), "has no 'label' dataset")
    _one_line_error(capsys, _adapt({**data, "target": data["big"]}, tmp_path / "r4"), "size mismatch")
    _one_line_error(capsys, _adapt(data, tmp_path / "r5", "--set", "loss.bogus=1"), "unknown config key 'bogus'")
    _one_line_error(capsys, _adapt(data, tmp_path / "r6", "--set", "model.image_size=[32, 32]"), "size mismatch")
    nomask = make_synthetic(tmp_path / "nomask.h5", n=6, size=16, depth=False)
    _one_line_error(capsys, _adapt({**data, "source": nomask}, tmp_path / "r7"), "needs the z-buffer mask")
    _one_line_error(capsys, _adapt(data, tmp_path / "r8", "--set", "model.use_depth=true", "--target", str(empty)),
                    "no depth")
    assert not any((tmp_path / f"r{i}").exists() for i in range(1, 9))


def test_corrupt_and_foreign_checkpoints(data, tmp_path, capsys):
    run = tmp_path / "run"
    assert _adapt(data, run) == 0
    capsys.readouterr()
    out = tmp_path / "a.h5"
    last = run / "checkpoints" / "last.pt"
    last.unlink()
    last.write_bytes(b"garbage")
    _one_line_error(capsys, main(["export", str(run), "--source", str(data["source"]), "-o", str(out)]), "corrupt")
    save_checkpoint(last, "pose", 1, {"model": {}}, {}, 0)
    _one_line_error(capsys, main(["export", str(run), "--source", str(data["source"]), "-o", str(out)]),
                    "expected 'pixelda'")
    _one_line_error(capsys, main(["adapt", "-o", str(run), "--resume"]), "expected 'pixelda'")
    _one_line_error(capsys, main(["export", str(tmp_path), "--source", str(data["source"]), "-o", str(out)]),
                    "not a sim2real run folder")
    _one_line_error(capsys, main(["export", str(run), "--source", str(data["big"]), "-o", str(out), "--step", "3"]),
                    "size mismatch")
    assert not out.exists()


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(data, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = adapt_mod.masked_pmse

    def poisoned(*a, **k):
        calls["n"] += 1
        out = real(*a, **k)
        return out * float("nan") if calls["n"] > 3 else out

    monkeypatch.setattr(adapt_mod, "masked_pmse", poisoned)
    run = tmp_path / "run"
    cfg = _cfg("train.checkpoint_every=2", "train.log_every=1", "train.steps=8")
    with pytest.raises(Sim2RealError, match=r"non-finite .*last good checkpoint is step 2"):
        train_adapt(cfg, data["source"], data["target"], run, log=lambda *_: None)
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == 2
    assert not (run / "checkpoints" / "step_0000004.pt").exists()


def test_diverged_loss_stops_the_run(data, tmp_path):
    with pytest.raises(Sim2RealError, match="diverged"):
        train_adapt(_cfg("train.max_loss=0.01"), data["source"], data["target"], tmp_path / "run", log=lambda *_: None)


def test_interrupt_is_deferred_to_the_end_of_a_step():
    with DeferInterrupt() as flag:
        os.kill(os.getpid(), signal.SIGINT)
        assert flag.requested
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_resume_is_exact_with_task_augment(data, tmp_path):
    """task_augment draws random numbers of its own: 3 steps + --resume to 6 == 6 straight steps."""
    aug = ("--set", "task_augment.enabled=true", "--set", "task_augment.recolour_p=0.5",
           "--set", "task_augment.domains=[source,adapted]")
    full, part = tmp_path / "full", tmp_path / "part"
    assert _adapt(data, full, *aug) == 0
    assert _adapt(data, part, "--set", "train.steps=3", *aug) == 0
    assert main(["adapt", "-o", str(part), "--resume", "--set", "train.steps=6"]) == 0
    _assert_same_run_state(full, part, step=6)


def test_resume_config_rules(tmp_path):
    # a run folder without config.yaml (killed before it saved one) starts afresh on --resume, from the given config
    assert resolve_adapt_config(TINY, ["train.steps=7"], tmp_path, resume=True).train.steps == 7
    cfg = resolve_adapt_config(TINY, ["train.steps=9"], tmp_path, resume=False)
    assert cfg.train.steps == 9 and cfg.model.generator.blocks == 1


@pytest.mark.slow
def test_target_labelled_trains_t_on_few_target_images_and_resumes(data, tmp_path, capsys):
    few = make_synthetic(tmp_path / "few.h5", n=6, size=16, num_classes=3, seed=7, domain="target")
    full, part = tmp_path / "full", tmp_path / "part"
    assert _adapt(data, full, "--val", str(data["val"]), "--target-labelled", str(few)) == 0
    run = json.loads((full / "run.json").read_text())
    assert run["target_labelled"] == str(few) and run["n_target_labelled"] == 6
    lines = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    assert all("t/ce_target" in x for x in lines if x["split"] == "train")
    # T's record of what it trained on names the labelled target file (evaluate's leak check reads it)
    from sim2real.models.loading import load_run_model

    _, info, _, _ = load_run_model(full)
    assert [t["path"] for t in info["train"]] == [run["source"], str(few)]
    # exact resume, the labelled file taken from run.json
    assert _adapt(data, part, "--val", str(data["val"]), "--target-labelled", str(few), "--set", "train.steps=3") == 0
    assert main(["adapt", "-o", str(part), "--resume", "--set", "train.steps=6"]) == 0
    a, b = _state(full), _state(part)
    for k, v in a["state"]["T"].items():
        assert torch.equal(v, b["state"]["T"][k]), k
    # it changes T's training: a run without it ends elsewhere
    plain = tmp_path / "plain"
    assert _adapt(data, plain, "--val", str(data["val"])) == 0
    assert any(not torch.equal(v, _state(plain)["state"]["T"][k]) for k, v in a["state"]["T"].items())
    capsys.readouterr()
    # the val file as the labelled training file, and a method without the option: one-line errors
    assert _adapt(data, tmp_path / "x", "--val", str(data["val"]), "--target-labelled", str(data["val"])) == 2
    assert "is also --val" in capsys.readouterr().err
    assert main(["adapt", "--method", "coral", "--source", str(data["source"]), "--target", str(data["target"]),
                 "-o", str(tmp_path / "y"), "--config", "feature-tiny", "--target-labelled", str(few)]) == 2
    err = capsys.readouterr().err
    assert "does not train on labelled target images" in err and len(err.strip().splitlines()) == 1


def test_ema_update_matches_hand_derivation():
    """ema <- d ema + (1 - d) w with d = min(decay, (1 + n) / (10 + n)); buffers copied, not averaged."""
    from sim2real.engine.ema import ema_copy, ema_decay_at, ema_update

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = ema_copy(net)
    assert not ema.training and not any(p.requires_grad for p in ema.parameters())
    expect = [p.detach().numpy().copy() for p in net.parameters()]
    for n in (1, 2, 3):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        net(torch.randn(4, 3))  # moves the batch-norm running statistics
        d = min(0.99, (1 + n) / (10 + n))
        assert ema_decay_at(0.99, n) == pytest.approx(d)
        expect = [d * e + (1 - d) * p.detach().numpy() for e, p in zip(expect, net.parameters())]
        ema_update(ema, net, 0.99, n)
    for e, p in zip(expect, ema.parameters()):
        np.testing.assert_allclose(p.numpy(), e, rtol=1e-6, atol=1e-6)
    for eb, nb in zip(ema.buffers(), net.buffers()):
        assert torch.equal(eb, nb)
    assert ema_decay_at(0.999, 10**6) == 0.999


@pytest.mark.slow
def test_ema_of_t_is_validated_loaded_and_resumes_exactly(data, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    ema = ("--set", "train.ema_decay=0.9")
    assert _adapt(data, full, "--val", str(data["val"]), *ema) == 0
    a = _state(full)
    assert set(a["state"]["T_ema"]) == set(a["state"]["T"])
    assert any(not torch.equal(v, a["state"]["T"][k]) for k, v in a["state"]["T_ema"].items())
    val = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines() if '"val"' in x]
    assert val and all("raw_accuracy" in x and "accuracy" in x for x in val)  # the trained T logged beside
    T, info = load_task_model(full, step="last")
    assert info["ema"] is True
    for k, v in T.state_dict().items():  # evaluate scores the averaged T
        assert torch.equal(v, a["state"]["T_ema"][k]), k
    assert _adapt(data, part, "--val", str(data["val"]), *ema, "--set", "train.steps=3") == 0
    assert main(["adapt", "-o", str(part), "--resume", "--set", "train.steps=6"]) == 0
    b = _state(part)
    for net in ("T", "T_ema"):
        for k, v in a["state"][net].items():
            assert torch.equal(v, b["state"][net][k]), f"{net}.{k} differs after resume"
    assert main(["adapt", "-o", str(tmp_path / "bad"), "--source", str(data["source"]), "--target",
                 str(data["target"]), "--config", TINY, "--set", "train.ema_decay=1.5"]) == 2


# ---------------------------------------------------------------------------------------------- self-training


def _self_train_stepper(*sets: str):
    """A tiny stepper with self-training (weight 0.7, threshold 0: every image counts) and a teacher that differs
    from its T."""
    cfg = _cfg("model.task.dropout=0.0", "train.ema_decay=0.99", "self_train.weight=0.7", "self_train.threshold=0",
               *sets)
    st = _stepper(cfg)
    from sim2real.engine.ema import ema_copy

    torch.manual_seed(5)
    teacher = ema_copy(st.T)
    with torch.no_grad():  # a teacher that differs from the student
        for p in teacher.parameters():
            p.add_(0.05 * torch.randn_like(p))
    st.teacher = teacher
    return cfg, st


@pytest.mark.parametrize("keep_some", ["all", "some", "none"])
def test_self_train_term_matches_numpy(keep_some):
    """The self-training term, re-derived in numpy: the teacher's softmax on the plain target images, its argmax
    where the maximum is >= threshold, the student's cross-entropy on those labels, averaged over the whole batch
    (the unconfident images count as 0)."""
    cfg, st = _self_train_stepper()
    _, tgt = _batch(cfg, b=8)
    t_logits = st.teacher(tgt["x"], "target")["logits"].detach().double().numpy()
    s_logits = st.T(tgt["x"], "target")["logits"].detach().double().numpy()  # tiny T: no batch norm, no dropout
    p = np.exp(t_logits - t_logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    conf = np.sort(p.max(1))
    st.self_train.threshold = {"all": 0.0, "some": float(conf[3:5].mean()), "none": float(conf[-1]) + 1e-4}[keep_some]
    keep = p.max(1) >= st.self_train.threshold
    assert keep.sum() == {"all": 8, "some": 4, "none": 0}[keep_some]
    lab = p.argmax(1)
    logq = s_logits - s_logits.max(1, keepdims=True)
    logq = logq - np.log(np.exp(logq).sum(1, keepdims=True))
    expect = float(np.mean(np.where(keep, -logq[np.arange(8), lab], 0.0)))
    got = {k: float(v.detach()) for k, v in st.pseudo_label_term(tgt["x"]).items()}
    assert got["t/pseudo_frac"] == pytest.approx(keep.mean())
    assert got["t/pseudo_ce"] == pytest.approx(expect, rel=1e-5, abs=1e-7)


def test_self_train_adds_its_term_to_t_only_and_augments_the_students_input():
    """In the D(+T) update T gets ``weight *`` the term on an augmented copy of the target batch, the teacher the
    plain batch; the teacher gets no gradient; D and G never see the augmented copy."""
    cfg, st = _self_train_stepper("self_train.augment.enabled=true", "self_train.augment.recolour_p=1.0",
                                  "self_train.augment.jitter_p=0", "self_train.augment.blur_p=0",
                                  "self_train.augment.noise_p=0")
    fed_t, fed_teacher = [], []
    t_fwd, te_fwd = st.T.forward, st.teacher.forward
    st.T.forward = lambda x, domain="target", **kw: fed_t.append((x.detach().clone(), domain)) or t_fwd(x, domain, **kw)
    st.teacher.forward = lambda x, domain="target", **kw: fed_teacher.append(x.detach().clone()) or te_fwd(x, domain, **kw)
    src, tgt = _batch(cfg)
    m = st(src, tgt, 0)
    assert [d for _, d in fed_t] == ["source", "adapted", "target", "adapted"]
    torch.testing.assert_close(fed_teacher[0], tgt["x"])        # the teacher: plain target images
    student = fed_t[2][0]
    assert not torch.allclose(student, tgt["x"]) and affine_per_channel(tgt["x"], student)
    assert {"t/pseudo_ce", "t/pseudo_frac"} <= set(m) and float(m["t/pseudo_frac"]) == 1.0  # threshold 0: all
    assert all(p.grad is None for p in st.teacher.parameters())
    # the D(+T) total is the sum of its terms, the self-training one weighted
    d_terms = cfg.loss.d_weight * m["d/gan"] + m["t/ce_source"] + m["t/ce_adapted"] + 0.7 * m["t/pseudo_ce"]
    d_terms = d_terms + cfg.loss.pose_source_weight * m["t/pose_source"] + cfg.loss.pose_adapted_weight * m["t/pose_adapted"]
    assert float(m["d/total"]) == pytest.approx(float(d_terms), rel=1e-5)


def test_self_train_config_errors():
    with pytest.raises(Sim2RealError, match=r"self_train.weight: 1 needs train.ema_decay > 0"):
        _cfg("self_train.weight=1")
    with pytest.raises(Sim2RealError, match=r"self_train.threshold: expected a probability in \[0, 1\), got 1.0"):
        _cfg("train.ema_decay=0.9", "self_train.weight=1", "self_train.threshold=1")
    with pytest.raises(Sim2RealError, match=r"self_train.weight: expected a number >= 0"):
        _cfg("self_train.weight=-1")
    st = _stepper(_cfg("train.ema_decay=0.9", "self_train.weight=1"))
    with pytest.raises(RuntimeError, match="needs a teacher"):
        st.pseudo_label_term(torch.zeros(2, 3, 16, 16))


@pytest.mark.slow
def test_self_train_run_logs_and_resumes_exactly(data, tmp_path):
    """A CLI run with self-training logs its term and the confident fraction; 3 steps + --resume to 6 == 6."""
    st = ("--set", "train.ema_decay=0.9", "--set", "self_train.weight=1", "--set", "self_train.threshold=0.3")
    full, part = tmp_path / "full", tmp_path / "part"
    assert _adapt(data, full, *st) == 0
    lines = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in lines if x["split"] == "train"]
    assert train and all("t/pseudo_ce" in x and 0 <= x["t/pseudo_frac"] <= 1 for x in train)
    assert _adapt(data, part, "--set", "train.steps=3", *st) == 0
    assert main(["adapt", "-o", str(part), "--resume", "--set", "train.steps=6"]) == 0
    _assert_same_run_state(full, part, step=6)
    b = _state(part)
    for k, v in _state(full)["state"]["T_ema"].items():
        assert torch.equal(v, b["state"]["T_ema"][k]), k
