"""DTN (adapt --method dtn): the losses against numpy references, f frozen after pretraining (and L_CONST reaching g),
the generator interface export uses, a CLI run that export and evaluate load, exact resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sim2real.adapt import METHODS, method_of_kind
from sim2real.adapt.dtn.config import KIND, DTNConfig
from sim2real.adapt.dtn.losses import (TotalVariation, const_loss, d_accuracy, dtn_d_loss, dtn_g_gan_loss, tid_loss,
                                       total_variation)
from sim2real.adapt.dtn.models import (FAKE_SOURCE, FAKE_TARGET, REAL_TARGET, ContextEncoder, Decoder, DTNGenerator,
                                       TernaryDiscriminator, build_dtn)
from sim2real.cli import main
from sim2real.config import load_config
from sim2real.data import h5
from sim2real.engine.checkpoint import load_checkpoint
from sim2real.errors import Sim2RealError
from sim2real.models.loading import load_generator, load_run_model, load_task_model
from sim2real.models.task import TaskNet
from sim2real.testing import make_synthetic

from conftest import affine_per_channel, random_banks

TINY = "dtn-tiny"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("dtn_data")
    return {
        "source": make_synthetic(d / "s.h5", n=20, size=16, num_classes=3, seed=0),
        "target": make_synthetic(d / "t.h5", n=18, size=16, num_classes=3, seed=1, domain="target", labels=False),
        "val": make_synthetic(d / "v.h5", n=9, size=16, num_classes=3, seed=2, domain="target"),
    }


# ---------------------------------------------------------------------------------------------- losses


def _np_ce(logits: np.ndarray, cls: int) -> float:
    """Batch-mean -log softmax(logits)[cls], written out."""
    m = logits.max(axis=1, keepdims=True)
    log_p = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    return float(-log_p[:, cls].mean())


def _logits(seed: int, b: int) -> torch.Tensor:
    return torch.randn(b, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2


def test_ternary_d_and_g_losses_match_numpy():
    ls, lt, lr = _logits(0, 5), _logits(1, 4), _logits(2, 6)
    assert (FAKE_SOURCE, FAKE_TARGET, REAL_TARGET) == (0, 1, 2)
    want_d = _np_ce(ls.numpy(), 0) + _np_ce(lt.numpy(), 1) + _np_ce(lr.numpy(), 2)
    want_g = _np_ce(ls.numpy(), 2) + _np_ce(lt.numpy(), 2)
    assert math.isclose(float(dtn_d_loss(ls, lt, lr)), want_d, rel_tol=1e-12)
    assert math.isclose(float(dtn_g_gan_loss(ls, lt)), want_g, rel_tol=1e-12)
    # a hand value: uniform logits cost log 3 per term
    z = torch.zeros(2, 3)
    assert math.isclose(float(dtn_d_loss(z, z, z)), 3 * math.log(3), rel_tol=1e-6)
    assert math.isclose(float(dtn_g_gan_loss(z, z)), 2 * math.log(3), rel_tol=1e-6)
    # bf16 logits are computed in float32
    assert dtn_d_loss(ls.bfloat16(), lt.bfloat16(), lr.bfloat16()).dtype == torch.float32
    big = torch.tensor([[10.0, 0, 0], [0, 10.0, 0]])
    assert float(d_accuracy(big[:1], big[1:], big[:1])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=r"\(B, 3\), got \(5, 2\)"):
        dtn_d_loss(ls[:, :2], lt, lr)


def _np_tv(z: np.ndarray, exponent: float, eps: float = 1e-8) -> float:
    b, c, h, w = z.shape
    vals = []
    for n in range(b):
        for k in range(c):
            for i in range(h - 1):
                for j in range(w - 1):
                    dx = z[n, k, i, j + 1] - z[n, k, i, j]
                    dy = z[n, k, i + 1, j] - z[n, k, i, j]
                    vals.append((dx * dx + dy * dy + eps) ** (exponent / 2))
    return float(np.mean(vals))


@pytest.mark.parametrize("exponent", [1.0, 2.0])
def test_total_variation_matches_numpy(exponent):
    z = torch.rand(2, 3, 5, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 2 - 1
    got = float(total_variation(z, exponent))
    assert math.isclose(got, _np_tv(z.numpy(), exponent), rel_tol=1e-10)
    assert float(TotalVariation(exponent)(z)) == got
    flat = torch.full((1, 1, 4, 4), 0.3, dtype=torch.float64)
    assert float(total_variation(flat, 1.0)) == pytest.approx(1e-4)  # sqrt(eps) on a constant image
    zz = z.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: total_variation(t, exponent), (zz,))
    with pytest.raises(ValueError, match="H, W >= 2"):
        total_variation(z[..., :1, :])


def test_const_and_tid_are_mse_and_const_stops_at_f_of_source():
    a = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    loss = const_loss(a, b)
    assert math.isclose(float(loss.detach()), float(((a - b) ** 2).mean().detach()), rel_tol=1e-12)
    loss.backward()
    assert a.grad is None and b.grad is not None  # f(x_s) is the target, not trained towards f(G(x_s))
    x, y = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    assert math.isclose(float(tid_loss(x, y)), float(((x - y) ** 2).mean()), rel_tol=1e-6)
    with pytest.raises(ValueError, match="one shape"):
        tid_loss(x, y[:1])


# ---------------------------------------------------------------------------------------------- networks


@pytest.mark.parametrize("size", [16, 32, 64])
def test_networks_shapes_and_generator_interface(size):
    torch.manual_seed(0)
    f = ContextEncoder(3, (size, size), 4, widths=(8, 8, 16), feature_dim=12)
    g = Decoder(12, 3, (size, size), widths=(16, 8, 8))
    D = TernaryDiscriminator(3, (size, size), widths=(8, 16, 16))
    x = torch.rand(2, 3, size, size) * 2 - 1
    with torch.no_grad():
        assert f(x).shape == (2, 12) and float(f(x).abs().max()) <= 1
        out = f.classify(x)
        assert out["logits"].shape == (2, 4) and out["quat_all"].shape == (2, 4, 4) and out["quat"].shape == (2, 4)
        G = DTNGenerator(f, g)
        assert G.noise_dim == 0
        y = G(x, None)
        assert y.shape == x.shape and float(y.abs().max()) <= 1
        assert D(y).shape == (2, 3)
    G.train()
    assert G.g.training and not G.f.training  # f frozen: eval mode survives G.train()
    with pytest.raises(ValueError, match="noise-free"):
        G(x, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="divisible by 2\\^3"):
        ContextEncoder(3, (20, 20), 4, widths=(8, 8, 16))


# ---------------------------------------------------------------------------------------------- f frozen


def _method(cfg: DTNConfig):
    from sim2real.adapt.dtn.train import DTNMethod
    from sim2real.engine.amp import resolve_speed
    from sim2real.models.factory import build_task

    torch.manual_seed(0)
    nets = build_dtn(cfg, 3, 3, (16, 16))
    T = build_task(cfg, 3, 3, (16, 16))
    src, tgt = random_banks()
    speed = resolve_speed(torch.device("cpu"), "fp32", False, True)
    return DTNMethod(cfg, nets["f"], nets["g"], nets["D"], T, src, tgt, None, 3, speed)


def _state(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}  # parameters AND batch-norm buffers


def test_f_trains_while_pretraining_then_never_changes_and_const_reaches_g():
    from sim2real.engine.loop import apply_updates

    cfg = load_config(DTNConfig, TINY, ["train.pretrain_steps=2", "loss.gamma=0.5"])
    m = _method(cfg)
    f0 = _state(m.f)
    for step in range(2):  # pretraining: f (and only f) moves
        g0, d0, t0 = _state(m.g), _state(m.D), _state(m.T)
        metrics = apply_updates(m.step(m.batch(step), step), m.optimizers)
        assert float(metrics["phase/pretrain"]) == 1.0 and float(metrics["g/total"]) == 0.0
        for before, net in ((g0, m.g), (d0, m.D), (t0, m.T)):
            assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert any(not torch.equal(v, m.f.state_dict()[k]) for k, v in f0.items())

    f1, g1 = _state(m.f), _state(m.g)
    for step in range(2, 6):  # the GAN phase: f bit-for-bit unchanged (weights and BN statistics), g trained
        metrics = apply_updates(m.step(m.batch(step), step), m.optimizers)
        assert float(metrics["phase/pretrain"]) == 0.0
        assert all(torch.isfinite(v) for v in metrics.values())
        assert {"d/total", "g/gan", "g/const", "g/tid", "g/tv", "t/ce", "t/pose"} <= set(metrics)
    for k, v in f1.items():
        assert torch.equal(v, m.f.state_dict()[k]), f"f.{k} changed after pretraining"
    assert all(p.grad is None for p in m.f.parameters())
    assert not m.f.training and not any(p.requires_grad for p in m.f.parameters())
    assert any(not torch.equal(v, m.g.state_dict()[k]) for k, v in g1.items())

    # L_CONST alone: its gradient reaches every weight of g through the frozen f, and none of f's
    src, _ = m.batch(6)
    for p in m.g.parameters():
        p.grad = None
    f_s = m.f(src["x"])
    const_loss(f_s, m.f(m.g(f_s))).backward()
    for name, p in m.g.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, f"g.{name}: L_CONST gives no gradient"
    assert all(p.grad is None for p in m.f.parameters())


def test_pretrain_augment_recolours_what_f_learns_from_and_nothing_else():
    from sim2real.engine.loop import apply_updates

    seen = {}
    for on in (False, True):
        cfg = load_config(DTNConfig, TINY, ["train.pretrain_steps=1", f"pretrain_augment.enabled={str(on).lower()}",
                                            "pretrain_augment.recolour_p=1.0", "pretrain_augment.jitter_p=0",
                                            "pretrain_augment.blur_p=0", "pretrain_augment.noise_p=0"])
        m = _method(cfg)
        inputs = []
        classify = m.f.classify
        m.f.classify = lambda x, _c=classify: inputs.append(x.detach().clone()) or _c(x)
        src = m.batch(0)
        apply_updates(m.step(src, 0), m.optimizers)
        seen[on] = (src[0]["x"], inputs[0])
    x, fed = seen[False]
    torch.testing.assert_close(fed, x)  # off (the paper): f learns from the source images as they are
    x, fed = seen[True]
    assert fed.shape == x.shape and not torch.allclose(fed, x) and fed.min() >= -1 and fed.max() <= 1
    # recolouring is affine per image and channel: the pixel order of each channel is kept or reversed
    assert affine_per_channel(x, fed)


@pytest.mark.parametrize("w", [0.0, 0.7])
def test_t_loss_adds_the_source_images_at_task_source_weight(w):
    """T's loss = task_weight * CE(T(G(x_s)), y) + task_source_weight * CE(T(x_s), y), against a numpy CE on the
    logits T gives for the images it was fed (no pose head here: tiny's pose weights are 0 for the check)."""
    cfg = load_config(DTNConfig, TINY, ["train.pretrain_steps=0", f"loss.task_source_weight={w}",
                                        "loss.task_weight=1.3", "loss.pose_weight=0", "loss.pretrain_pose_weight=0"])
    m = _method(cfg)
    fed = []
    forward = m.T.forward
    m.T.forward = lambda x, domain, _f=forward: fed.append((x.detach().clone(), domain)) or _f(x, domain)
    batch = m.batch(0)
    gen = m.step(batch, 0)
    upd = next(gen)
    while upd.optimizer != "opt_t":
        upd = gen.send(None)
    y = batch[0]["label"].numpy()

    def ce(x, domain):
        with torch.no_grad():
            logits = forward(x, domain)["logits"].double().numpy()
        mx = logits.max(axis=1, keepdims=True)
        log_p = logits - mx - np.log(np.exp(logits - mx).sum(axis=1, keepdims=True))
        return float(-log_p[np.arange(len(y)), y].mean())

    assert [d for _, d in fed] == (["adapted", "source"] if w else ["adapted"])
    if w:
        torch.testing.assert_close(fed[1][0], batch[0]["x"])  # the source images as they are
    expected = 1.3 * ce(*fed[0]) + (w * ce(*fed[1]) if w else 0.0)
    assert float(upd.total.detach()) == pytest.approx(expected, rel=1e-5)
    assert float(upd.losses["t/ce_source"].detach()) == pytest.approx(ce(*fed[1]) if w else 0.0, rel=1e-5)


@pytest.mark.parametrize("domains", [["adapted"], ["source", "adapted"]])
def test_task_augment_recolours_only_ts_inputs(domains):
    """task_augment: T's G(x_s) (and x_s) inputs are recoloured per image and channel; D sees G(x_s) as g made it."""
    cfg = load_config(DTNConfig, TINY, ["train.pretrain_steps=0", "loss.task_source_weight=1.0",
                                        "task_augment.enabled=true", "task_augment.recolour_p=1.0",
                                        "task_augment.jitter_p=0", "task_augment.blur_p=0", "task_augment.noise_p=0",
                                        f"task_augment.domains=[{','.join(domains)}]"])
    m = _method(cfg)
    fed_t, made = [], []
    t_fwd, g_fwd = m.T.forward, m.g.forward
    m.T.forward = lambda x, domain, _f=t_fwd: fed_t.append((x.detach().clone(), domain)) or _f(x, domain)
    m.g.forward = lambda x, _f=g_fwd: (lambda y: made.append(y.detach().clone()) or y)(_f(x))
    from sim2real.engine.loop import apply_updates

    batch = m.batch(0)
    apply_updates(m.step(batch, 0), m.optimizers)
    (t_ad, d_ad), (t_src, d_src) = fed_t
    assert (d_ad, d_src) == ("adapted", "source")
    for got, orig, dom in ((t_ad, made[0], "adapted"), (t_src, batch[0]["x"], "source")):
        if dom in domains:
            assert not torch.allclose(got, orig)
            assert affine_per_channel(orig, got)
        else:
            torch.testing.assert_close(got, orig)


def test_every_trained_parameter_gets_a_gradient_in_the_gan_step():
    cfg = load_config(DTNConfig, TINY, ["train.pretrain_steps=0", "loss.gamma=0.5"])
    m = _method(cfg)
    gen = m.step(m.batch(0), 0)
    for opt, net in (("opt_d", m.D), ("opt_g", m.g), ("opt_t", m.T)):
        upd = next(gen) if opt == "opt_d" else gen.send(None)
        assert upd.optimizer == opt
        m.optimizers[opt].zero_grad(set_to_none=True)
        upd.total.backward()
        for pname, p in net.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), f"{opt}: {pname}"
        m.optimizers[opt].step()
    with pytest.raises(StopIteration):
        gen.send(None)


# ---------------------------------------------------------------------------------------------- configs


def test_registry_and_shipped_configs():
    spec = METHODS["dtn"]
    assert spec.config_class() is DTNConfig and spec.kind == KIND == "dtn" and method_of_kind("dtn") is spec
    demo = load_config(DTNConfig, spec.default_config, [])
    assert demo.model.image_size == [32, 32] and demo.model.task.conv_widths == [16, 32]  # pixelda-demo's T
    digits = load_config(DTNConfig, "dtn-digits", [])
    assert (digits.loss.alpha, digits.loss.beta, digits.loss.gamma) == (15.0, 15.0, 0.0)  # the paper's digit weights
    assert digits.model.task.tower == "digits" and digits.loss.pose_weight == 0
    d = DTNConfig()
    assert (d.loss.alpha, d.loss.beta, d.loss.gamma) == (15.0, 15.0, 0.0)
    with pytest.raises(Sim2RealError, match="pose_weight"):
        load_config(DTNConfig, TINY, ["model.task.tower=digits", "model.task.pose_head=false"])
    with pytest.raises(Sim2RealError, match="model.decoder.widths: expected 3 widths"):
        load_config(DTNConfig, TINY, ["model.decoder.widths=[8, 8]"])


# ---------------------------------------------------------------------------------------------- CLI runs


def _adapt(data, out: Path, *extra: str) -> int:
    return main(["adapt", "--method", "dtn", "--source", str(data["source"]), "--target", str(data["target"]),
                 "-o", str(out), "--config", TINY, *extra])


def test_cli_run_writes_checkpoints_samples_metrics_and_evaluate_loads_t(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert _adapt(data, out, "--val", str(data["val"])) == 0
    capsys.readouterr()
    ckpts = {p.name for p in (out / "checkpoints").iterdir()}
    assert {"last.pt", "best.pt", "step_0000003.pt", "step_0000006.pt"} <= ckpts
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step_0000000.png", "step_0000003.png",
                                                                   "step_0000006.png"]
    assert json.loads((out / "run.json").read_text())["kind"] == "dtn"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    assert [r["step"] for r in train] == [2, 4, 6] and train[0]["phase/pretrain"] == 1.0 and train[1]["g/total"] > 0
    assert [r["step"] for r in rows if r["split"] == "val"] == [3, 6]  # none while pretraining (steps 1-2)
    blob = load_checkpoint(out / "checkpoints" / "last.pt", "dtn")
    assert {"f", "g", "D", "T", "opt_f", "opt_d", "opt_g", "opt_t"} <= set(blob["state"])

    model, info, _, _ = load_run_model(out)
    assert isinstance(model, TaskNet) and info["kind"] == "dtn" and info["role"] == "dtn"
    assert info["train"][0]["path"] == str(data["source"]) and info["val"] == {"path": str(data["val"])}
    T, _ = load_task_model(out, "last")
    assert all(torch.equal(v, blob["state"]["T"][k]) for k, v in T.state_dict().items())
    report = tmp_path / "report"
    assert main(["evaluate", str(out), "--test", str(data["val"]), "-o", str(report), "--device", "cpu"]) == 0
    assert (report / "metrics.json").is_file()


AUGMENT = ("--set", "pretrain_augment.enabled=true", "--set", "pretrain_augment.recolour_p=0.5")
TASK_AUGMENT = ("--set", "loss.task_source_weight=1.0", "--set", "task_augment.enabled=true",
                "--set", "task_augment.recolour_p=0.5", "--set", "task_augment.domains=[source,adapted]")


# inside pretraining, after it, inside pretraining with f's augmentation and after it with T's (random numbers of
# their own)
@pytest.mark.parametrize("split,extra", [(1, ()), (3, ()), (1, AUGMENT), (3, TASK_AUGMENT)])
def test_resume_is_exact(data, tmp_path, split, extra):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert _adapt(data, straight, *extra) == 0
    assert _adapt(data, resumed, "--set", f"train.steps={split}", *extra) == 0
    assert main(["adapt", "-o", str(resumed), "--resume", "--set", "train.steps=6"]) == 0  # method: the run's
    a = load_checkpoint(straight / "checkpoints" / "last.pt", "dtn")
    b = load_checkpoint(resumed / "checkpoints" / "last.pt", "dtn")
    assert a["step"] == b["step"] == 6
    for name in ("f", "g", "D", "T"):
        for k, v in a["state"][name].items():
            assert torch.equal(v, b["state"][name][k]), f"{name}.{k} differs after resume"


def test_export_gives_an_adapted_file_with_labels_and_poses_copied(data, tmp_path):
    run = tmp_path / "run"
    assert _adapt(data, run) == 0
    G, info = load_generator(run)
    assert isinstance(G, DTNGenerator) and info["noise_dim"] == 0 and info["kind"] == "dtn" and not G.training
    out = tmp_path / "adapted.h5"
    assert main(["export", str(run), "--source", str(data["source"]), "-o", str(out), "--batch-size", "7",
                 "--device", "cpu"]) == 0
    a, s = h5.read(out), h5.read(data["source"])
    assert a.attrs["domain"] == "adapted" and len(a) == len(s) and a.rgb.shape == s.rgb.shape
    for key in ("label", "quat", "trans", "mask", "depth"):
        assert np.array_equal(getattr(a, key), getattr(s, key)), key
    for key in ("K", "model_points", "diameters", "extents"):
        assert np.array_equal(getattr(a, key), getattr(s, key)), key
    assert a.class_names == s.class_names and not np.array_equal(a.rgb, s.rgb)
    assert json.loads(a.attrs["provenance"])["step"] == 6
    # export is G(x, None) in eval mode: the same images as calling the loaded G directly
    from sim2real.data.tensors import tensor_to_rgb
    from sim2real.conventions import image_to_net

    with torch.no_grad():
        x = image_to_net(torch.from_numpy(s.rgb).permute(0, 3, 1, 2).contiguous())
        assert np.array_equal(tensor_to_rgb(G(x, None)), a.rgb)
