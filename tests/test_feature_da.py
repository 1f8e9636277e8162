"""Feature-level baselines (adapt --method dann|coral|mmd): the losses against independent references, one step's
gradients, a CLI run per method that evaluate can load, exact resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sim2real.adapt import METHODS, method_of_kind
from sim2real.adapt.feature.config import CORALConfig, DANNConfig, MMDConfig
from sim2real.adapt.feature.losses import (DomainClassifier, GradientReversal, coral_loss, grad_reverse, grl_lambda,
                                           median_sq_distance, mmd2_multi_kernel)
from sim2real.cli import main
from sim2real.config import load_config
from sim2real.engine.checkpoint import load_checkpoint
from sim2real.errors import Sim2RealError
from sim2real.models.loading import load_run_model, load_task_model
from sim2real.models.task import TaskNet
from sim2real.testing import make_synthetic

from conftest import random_banks

TINY = "feature-tiny"
FEATURE_METHODS = ("dann", "coral", "mmd")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("feature_da_data")
    return {
        "source": make_synthetic(d / "s.h5", n=20, size=16, num_classes=3, seed=0),
        "target": make_synthetic(d / "t.h5", n=18, size=16, num_classes=3, seed=1, domain="target", labels=False),
        "val": make_synthetic(d / "v.h5", n=9, size=16, num_classes=3, seed=2, domain="target"),
    }


def _feats(b_s: int = 7, b_t: int = 5, f: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b_s, f, generator=g, dtype=torch.float64),
            torch.randn(b_t, f, generator=g, dtype=torch.float64) * 1.5 + 0.3)


# ---------------------------------------------------------------------------------------------- losses


def test_coral_matches_np_cov():
    fs, ft = _feats()
    d = fs.shape[1]
    cs, ct = np.cov(fs.numpy(), rowvar=False), np.cov(ft.numpy(), rowvar=False)  # unbiased (ddof=1)
    expected = ((cs - ct) ** 2).sum() / (4 * d * d)
    assert math.isclose(float(coral_loss(fs, ft)), expected, rel_tol=1e-10)
    assert float(coral_loss(fs, fs)) == 0.0


def _np_mmd2(xs: np.ndarray, xt: np.ndarray, mults, h: float) -> float:
    def k(a, b):
        d2 = float(((a - b) ** 2).sum())
        return sum(math.exp(-d2 / (m * h)) for m in mults) / len(mults)

    ss = sum(k(a, b) for a in xs for b in xs) / len(xs) ** 2
    tt = sum(k(a, b) for a in xt for b in xt) / len(xt) ** 2
    st = sum(k(a, b) for a in xs for b in xt) / (len(xs) * len(xt))
    return ss + tt - 2 * st


def test_mmd_matches_a_numpy_double_loop_fixed_and_median_bandwidth():
    fs, ft = _feats()
    xs, xt = fs.numpy(), ft.numpy()
    mults = (0.5, 1.0, 2.0)
    got = float(mmd2_multi_kernel(fs, ft, mults, bandwidth=1.7))
    assert math.isclose(got, _np_mmd2(xs, xt, mults, 1.7), rel_tol=1e-9)

    z = np.concatenate([xs, xt])
    med = float(np.median([((z[i] - z[j]) ** 2).sum() for i in range(len(z)) for j in range(i + 1, len(z))]))
    assert math.isclose(float(median_sq_distance(torch.cat([fs, ft]))), med, rel_tol=1e-10)
    assert math.isclose(float(mmd2_multi_kernel(fs, ft, mults)), _np_mmd2(xs, xt, mults, med), rel_tol=1e-9)
    assert abs(float(mmd2_multi_kernel(fs, fs, mults))) < 1e-12  # same sample: zero


def test_losses_gradcheck_and_shape_errors():
    fs, ft = (t.requires_grad_() for t in _feats(5, 4, 3))
    assert torch.autograd.gradcheck(coral_loss, (fs, ft))
    assert torch.autograd.gradcheck(lambda a, b: mmd2_multi_kernel(a, b, (0.5, 2.0), 1.3), (fs, ft))
    with pytest.raises(ValueError, match=r"\(5, 3\) and \(4, 2\)"):
        coral_loss(fs.detach(), ft.detach()[:, :2])
    with pytest.raises(ValueError, match="at least 2 samples"):
        coral_loss(fs.detach()[:1], ft.detach())


def test_gradient_reversal_is_identity_forward_and_minus_lambda_backward():
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 5, dtype=torch.float64)
    y = grad_reverse(x, 0.37)
    assert torch.equal(y, x)
    (y * w).sum().backward()
    assert torch.equal(x.grad, -0.37 * w)
    x.grad = None
    (GradientReversal(2.0)(x) * w).sum().backward()
    assert torch.equal(x.grad, -2.0 * w)


def test_grl_lambda_schedule():
    assert grl_lambda(0, 100) == 0.0
    assert math.isclose(grl_lambda(50, 100), 2 / (1 + math.exp(-5)) - 1)
    assert math.isclose(grl_lambda(100, 100), 2 / (1 + math.exp(-10)) - 1)
    assert all(grl_lambda(s, 100) < grl_lambda(s + 1, 100) for s in range(100))


def test_task_net_return_features_leaves_the_outputs_unchanged():
    torch.manual_seed(0)
    net = TaskNet(3, 3, (16, 16), private_layers=True, conv_widths=[4, 8], fc_widths=[16], dropout=0.0).eval()
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    plain, feat = net(x, "target"), net(x, "target", return_features=True)
    assert set(plain) == {"logits", "quat", "quat_all"} and set(feat) == set(plain) | {"features"}
    for k in plain:
        assert torch.equal(plain[k], feat[k])
    assert feat["features"].shape == (4, net.feature_dim)
    assert torch.equal(feat["features"], net.features(x, "target"))


# ---------------------------------------------------------------------------------------------- configs


def test_each_method_has_its_own_config_class_kind_and_default():
    for name, cls in (("dann", DANNConfig), ("coral", CORALConfig), ("mmd", MMDConfig)):
        spec = METHODS[name]
        assert spec.config_class() is cls and cls.METHOD == name == spec.kind
        assert method_of_kind(name) is spec
        cfg = load_config(cls, spec.default_config, [])
        assert cfg.model.task.conv_widths == [16, 32] and cfg.model.task.fc_widths == [64]  # pixelda-demo's T
    with pytest.raises(Sim2RealError, match="unknown config key 'grl_gamma'"):
        load_config(CORALConfig, TINY, ["loss.grl_gamma=5"])


# ---------------------------------------------------------------------------------------------- one step


def _tiny_method(method: str, sets: list[str] = (), target_seed: int = 0):
    """A FeatureDAMethod of ``method`` on feature-tiny (+ ``sets``) with random 16x16 source / target banks (the
    target bank drawn from ``target_seed``'s generator when it is not 0, the source bank always from seed 0)."""
    from sim2real.adapt.feature.train import FeatureDAMethod
    from sim2real.engine.amp import resolve_speed
    from sim2real.models.factory import build_task

    cfg = load_config(METHODS[method].config_class(), TINY, list(sets))
    torch.manual_seed(0)
    T = build_task(cfg, 3, 3, (16, 16))
    aligning = cfg.loss.align_weight > 0
    D = DomainClassifier(T.feature_dim, cfg.model.domain_classifier.hidden) if method == "dann" and aligning else None
    src, tgt = random_banks(target_seed)
    if target_seed:
        src = random_banks()[0]
    return FeatureDAMethod(cfg, T, D, src, tgt, None, 3, resolve_speed(torch.device("cpu"), "fp32", False, True), {})


@pytest.mark.parametrize("method", FEATURE_METHODS)
def test_one_step_gives_every_parameter_a_gradient_and_no_nan(method):
    m = _tiny_method(method)
    gen = m.step(m.batch(0), 5)  # step 5: DANN's lambda > 0
    upd = next(gen)
    upd.total.backward()
    for name, net in m.models.items():
        for pname, p in net.named_parameters():
            assert p.grad is not None, f"{name}.{pname} has no gradient"
            assert torch.isfinite(p.grad).all(), f"{name}.{pname} gradient is not finite"
            assert float(p.grad.abs().sum()) > 0, f"{name}.{pname} has an all-zero gradient"
    assert {"t/total", "t/ce_source", "t/pose_source", f"align/{method}"} <= set(upd.losses)
    assert all(torch.isfinite(v) for v in upd.losses.values())


@pytest.mark.parametrize("method", FEATURE_METHODS)
def test_align_warmup_ramps_the_alignment_weight_and_leaves_step_zero_to_the_task(method):
    """align_warmup: weight = align_weight * (2 / (1 + exp(-10 p)) - 1), p = step / steps (hand-computed); off: the
    constant align_weight. At step 0 the total is the task terms alone."""
    def make(warm: bool):
        return _tiny_method(method, ["loss.align_weight=3.0", f"loss.align_warmup={str(warm).lower()}",
                                     "train.steps=20"])

    warm, flat = make(True), make(False)
    for step in (0, 1, 5, 10, 20, 40):
        p = min(step / 20, 1.0)
        assert warm.align_factor(step) == pytest.approx(3.0 * (2 / (1 + math.exp(-10 * p)) - 1), abs=1e-12)
        assert flat.align_factor(step) == 3.0
    upd = next(warm.step(warm.batch(0), 0))
    task = upd.losses["t/ce_source"] + warm.cfg.loss.pose_source_weight * upd.losses["t/pose_source"]
    assert float(upd.losses[f"align/{method}"]) != 0.0
    assert torch.allclose(upd.total, task)


@pytest.mark.parametrize("method", FEATURE_METHODS)
def test_align_weight_zero_is_the_source_only_baseline_whichever_method(method):
    """align_weight=0: nothing of the target enters the update and no alignment term is logged (nothing unoptimised
    for the health check to watch); three Adam steps give the same T as CORAL's weight-0 run on another target."""
    def run(m):
        for step in range(3):
            upd = next(m.step(m.batch(step), step))
            m.opt.zero_grad()
            upd.total.backward()
            m.opt.step()
        return upd, {k: v.detach().clone() for k, v in m.T.state_dict().items()}

    m = _tiny_method(method, ["loss.align_weight=0"])
    assert not m.aligning and set(m.models) == {"T"}
    upd, weights = run(m)
    assert set(upd.losses) == {"t/total", "t/ce_source", "t/pose_source"}
    task = upd.losses["t/ce_source"] + m.cfg.loss.pose_source_weight * upd.losses["t/pose_source"]
    assert torch.allclose(upd.total, task)
    _, ref = run(_tiny_method("coral", ["loss.align_weight=0"], target_seed=7))
    assert weights.keys() == ref.keys()
    for k in weights:
        assert torch.equal(weights[k], ref[k]), k


# ---------------------------------------------------------------------------------------------- CLI runs


def _adapt(data, out: Path, method: str | None, *extra: str) -> int:
    args = ["adapt", "--source", str(data["source"]), "--target", str(data["target"]), "-o", str(out),
            "--config", TINY, *extra]
    return main(args + (["--method", method] if method else []))


@pytest.mark.parametrize("method", FEATURE_METHODS)
def test_cli_run_writes_checkpoints_that_evaluate_loads(data, tmp_path, method, capsys):
    out = tmp_path / method
    assert _adapt(data, out, method, "--val", str(data["val"])) == 0
    assert "T loss" in capsys.readouterr().out
    ckpts = {p.name for p in (out / "checkpoints").iterdir()}
    assert {"last.pt", "best.pt", "step_0000003.pt", "step_0000006.pt"} <= ckpts
    model, info, run_dir, _ = load_run_model(out)
    assert isinstance(model, TaskNet) and info["kind"] == method and info["role"] == method
    assert info["train"][0]["path"] == str(data["source"]) and info["val"] == {"path": str(data["val"])}
    blob = load_checkpoint(out / "checkpoints" / "last.pt", method)
    assert ("D" in blob["state"]) == (method == "dann")
    T, _ = load_task_model(out, "last")
    assert all(torch.equal(v, blob["state"]["T"][k]) for k, v in T.state_dict().items())
    report = tmp_path / f"report_{method}"
    assert main(["evaluate", str(out), "--test", str(data["val"]), "-o", str(report), "--device", "cpu"]) == 0
    assert (report / "metrics.json").is_file()


def test_cli_source_only_dann_has_no_domain_classifier_and_resumes_and_evaluates(data, tmp_path, capsys):
    out = tmp_path / "src_only"
    assert _adapt(data, out, "dann", "--set", "loss.align_weight=0", "--set", "train.steps=3") == 0
    assert "source-only on this T" in capsys.readouterr().out
    assert main(["adapt", "-o", str(out), "--resume", "--set", "train.steps=6"]) == 0
    blob = load_checkpoint(out / "checkpoints" / "last.pt", "dann")
    assert blob["step"] == 6 and "D" not in blob["state"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("t/ce_source" in r for r in rows)
    assert not any(k.startswith(("align/", "dann/")) for r in rows for k in r)
    assert main(["evaluate", str(out), "--test", str(data["val"]), "-o", str(tmp_path / "rep"), "--device", "cpu"]) == 0


@pytest.mark.parametrize("method", FEATURE_METHODS)
def test_resume_is_exact(data, tmp_path, method):
    """3 steps, then --resume to 6 == 6 straight steps (DANN's lambda schedule pinned to 6 steps in both)."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert _adapt(data, straight, method, "--set", "train.schedule_steps=6") == 0
    assert _adapt(data, resumed, method, "--set", "train.steps=3", "--set", "train.schedule_steps=6") == 0
    assert main(["adapt", "-o", str(resumed), "--resume", "--set", "train.steps=6"]) == 0  # method: the run's
    a = load_checkpoint(straight / "checkpoints" / "last.pt", method)
    b = load_checkpoint(resumed / "checkpoints" / "last.pt", method)
    assert a["step"] == b["step"] == 6
    for name in a["state"]:
        if name in ("T", "D"):
            for k, v in a["state"][name].items():
                assert torch.equal(v, b["state"][name][k]), f"{name}.{k} differs after resume"


def test_resume_with_another_method_is_refused(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert _adapt(data, out, "coral", "--set", "train.steps=3") == 0
    assert main(["adapt", "-o", str(out), "--resume", "--method", "mmd"]) == 2
    assert "is a coral run" in capsys.readouterr().err
