"""I2I Adapt (adapt --method i2i): WGAN-GP / LSGAN / L1 against closed forms and numpy, the latent adversary's
gradient path, one step's gradients, a CLI run, exact resume, export and loading of its task network."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sim2real.adapt import METHODS, method_of_kind
from sim2real.adapt.i2i.config import KIND, I2IConfig
from sim2real.adapt.i2i.losses import gradient_penalty, l1, lsgan_d_loss, lsgan_g_loss, wgan_critic_loss, \
    wgan_generator_loss
from sim2real.adapt.i2i.models import MODULES, I2ITaskNet, I2ITranslator, build_i2i
from sim2real.cli import main
from sim2real.config import load_config
from sim2real.data import h5
from sim2real.engine.checkpoint import load_checkpoint
from sim2real.errors import Sim2RealError
from sim2real.models.loading import load_generator, load_run_model, load_task_model
from sim2real.testing import make_synthetic

from conftest import random_banks

TINY = "i2i-tiny"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("i2i_data")
    return {
        "source": make_synthetic(d / "s.h5", n=20, size=16, num_classes=3, seed=0),
        "target": make_synthetic(d / "t.h5", n=18, size=16, num_classes=3, seed=1, domain="target", labels=False),
        "val": make_synthetic(d / "v.h5", n=9, size=16, num_classes=3, seed=2, domain="target"),
        "odd": make_synthetic(d / "odd.h5", n=6, size=12, num_classes=3, seed=3),
    }


# ---------------------------------------------------------------------------------------------- losses


class _Linear(nn.Module):
    """D(x) = <w, x> + b: grad_x D = w everywhere, so the penalty is (||w|| - 1)^2 for every interpolate."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.b = nn.Parameter(torch.tensor(0.3, dtype=w.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w + self.b


def test_gradient_penalty_of_a_linear_critic_is_the_closed_form_and_back_propagates_to_w():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(2 * 3 * 3, generator=g, dtype=torch.float64) * 0.7
    critic = _Linear(w)
    real = torch.randn(5, 2, 3, 3, generator=g, dtype=torch.float64)
    fake = torch.randn(5, 2, 3, 3, generator=g, dtype=torch.float64)
    gp = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(1))
    n = float(w.norm())
    assert math.isclose(float(gp.detach()), (n - 1) ** 2, rel_tol=1e-9)
    # create_graph=True: d gp / d w = 2 (||w|| - 1) w / ||w||, through the gradient itself
    gp.backward()
    assert torch.allclose(critic.w.grad, 2 * (n - 1) * w / n, rtol=1e-9)
    assert critic.b.grad is None or float(critic.b.grad.abs()) == 0.0  # the bias has no say in the gradient
    # a 1-Lipschitz direction: no penalty
    unit = _Linear(w / w.norm())
    assert float(gradient_penalty(unit, real, fake).detach()) < 1e-12


def test_gradient_penalty_of_a_quadratic_critic_matches_its_known_gradient_at_the_interpolates():
    """D(x) = ||x||^2 / 2: grad = x_hat = alpha x_real + (1 - alpha) x_fake (checked per sample)."""
    g = torch.Generator().manual_seed(2)
    real = torch.randn(4, 3, 2, 2, generator=g, dtype=torch.float64)
    fake = torch.randn(4, 3, 2, 2, generator=g, dtype=torch.float64)
    alpha = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    gp = gradient_penalty(lambda x: 0.5 * x.flatten(1).square().sum(1), real, fake, alpha=alpha)
    x_hat = alpha.view(4, 1, 1, 1) * real + (1 - alpha.view(4, 1, 1, 1)) * fake
    expected = ((np.linalg.norm(x_hat.flatten(1).numpy(), axis=1) - 1) ** 2).mean()
    assert math.isclose(float(gp.detach()), float(expected), rel_tol=1e-9)
    with pytest.raises(ValueError, match=r"\(4, 3, 2, 2\) and \(3, 3, 2, 2\)"):
        gradient_penalty(lambda x: x.sum((1, 2, 3)), real, fake[:3])


def test_lsgan_and_wgan_losses_against_hand_values():
    real, fake = torch.tensor([1.0, 0.0, 2.0]), torch.tensor([[0.0], [1.0]])
    assert math.isclose(float(lsgan_d_loss(real, fake)), (0 + 1 + 1) / 3 + (0 + 1) / 2, rel_tol=1e-7)
    assert math.isclose(float(lsgan_g_loss(fake)), (1 + 0) / 2, rel_tol=1e-7)
    assert float(lsgan_d_loss(torch.ones(4), torch.zeros(3))) == 0.0  # a perfect discriminator
    assert math.isclose(float(wgan_critic_loss(real, fake)), 0.5 - 1.0, rel_tol=1e-7)
    assert math.isclose(float(wgan_generator_loss(fake)), -0.5, rel_tol=1e-7)
    assert lsgan_d_loss(real.bfloat16(), fake.bfloat16()).dtype == torch.float32
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        lsgan_g_loss(torch.zeros(2, 2))


def test_l1_matches_numpy():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(3, 2, 4, 4, generator=g), torch.randn(3, 2, 4, 4, generator=g)
    assert math.isclose(float(l1(a, b)), float(np.abs(a.numpy() - b.numpy()).mean()), rel_tol=1e-6)
    with pytest.raises(ValueError, match="one shape"):
        l1(a, b[:2])


# ---------------------------------------------------------------------------------------------- networks


def test_networks_shapes_and_views():
    cfg = load_config(I2IConfig, TINY, [])
    torch.manual_seed(0)
    nets = build_i2i(cfg, 3, 4, (16, 16))
    assert list(nets) == list(MODULES)
    x = torch.rand(2, 4, 16, 16) * 2 - 1
    z = nets["f"](x)
    assert z.shape == (2, 8, 1, 1) and nets["f"].latent_dim == 8
    for d in ("source", "target"):
        y = nets["g"](z, d).detach()
        assert y.shape == x.shape and float(y.abs().max()) <= 1.0
    assert nets["Dz"](z).shape == (2,) and nets["Dx"](x).shape == (2,) and nets["Dy"](x).shape == (2,)
    task = I2ITaskNet(nets["f"], nets["h"], 3).eval()
    out = task(x, domain="target")
    assert set(out) == {"logits", "quat", "quat_all"} and out["logits"].shape == (2, 3) and out["quat"].shape == (2, 4)
    assert task.has_pose_head and task.in_channels == 4 and task.image_size == (16, 16)
    G = I2ITranslator(nets["f"], nets["g"]).eval()
    assert G.noise_dim == 0 and torch.equal(G(x), nets["g"](nets["f"](x), "target"))
    with pytest.raises(ValueError, match="divisible by 2\\^4"):
        build_i2i(cfg, 3, 3, (12, 12))


def test_configs_registry_and_paper_weights():
    spec = METHODS["i2i"]
    assert spec.config_class() is I2IConfig and spec.kind == KIND == "i2i" and method_of_kind("i2i") is spec
    assert list(METHODS)[:4] == ["pixelda", "dann", "coral", "mmd"]
    for name in ("i2i-demo", "i2i-digits", TINY):
        load_config(I2IConfig, name, [])
    digits = load_config(I2IConfig, "i2i-digits", [])
    L = digits.loss
    assert (L.c_weight, L.z_weight, L.tr_weight, L.id_weight, L.cyc_weight, L.trc_weight) == (1.0, 0.2, 0.02, 0.1, 0.05, 0.0)
    assert digits.model.encoder.widths == [64, 64, 128, 128] and digits.model.decoder.widths == [512, 256, 128]
    assert digits.model.latent_discriminator.hidden == [500, 500] and digits.model.image_discriminator.widths == [64, 128, 256]
    assert I2IConfig().loss.z_weight == 0.2 and I2IConfig().loss.gp_weight == 10.0  # defaults: the paper's
    with pytest.raises(Sim2RealError, match="decoder.widths: expected 3 widths"):
        load_config(I2IConfig, TINY, ["model.decoder.widths=[8, 8]"])
    with pytest.raises(Sim2RealError, match="pose_weight must be 0"):
        load_config(I2IConfig, TINY, ["model.classifier.pose_head=false"])


# ---------------------------------------------------------------------------------------------- one step


def _method(*sets: str, seed: int = 0):
    from sim2real.adapt.i2i.train import I2IMethod
    from sim2real.engine.amp import resolve_speed

    cfg = load_config(I2IConfig, TINY, list(sets))
    torch.manual_seed(seed)
    nets = build_i2i(cfg, 3, 3, (16, 16))
    src, tgt = random_banks(seed)
    speed = resolve_speed(torch.device("cpu"), "fp32", False, True)
    return I2IMethod(cfg, nets, src, tgt, None, 3, speed)


def test_bf16_channels_last_path_runs_on_cpu_through_the_engine():
    """The GPU code path (bf16 autocast + channels_last; the penalty in fp32) on the CPU: finite, close to fp32."""
    from sim2real.engine.amp import resolve_speed
    from sim2real.engine.loop import apply_updates

    res = {}
    for amp, cl in (("bf16", True), ("fp32", False)):
        m = _method()
        m.speed = resolve_speed(torch.device("cpu"), amp, cl, True)
        torch.manual_seed(0)
        res[amp] = apply_updates(m.step(m.batch(0), 0), m.optimizers)
    assert all(torch.isfinite(v) for v in res["bf16"].values()) and set(res["bf16"]) == set(res["fp32"])
    for k in ("d/gp_y", "g/identity", "g/cycle", "g/total"):
        assert abs(float(res["bf16"][k]) - float(res["fp32"][k])) < 0.05 * abs(float(res["fp32"][k])) + 0.05, k


def _grads(module: nn.Module) -> list[torch.Tensor | None]:
    return [p.grad for p in module.parameters()]


def test_one_step_gives_every_parameter_a_gradient_and_no_nan():
    m = _method()
    gen = m.step(m.batch(0), 0)
    upd_d = next(gen)
    assert upd_d.optimizer == "opt_d"
    upd_d.total.backward()
    for name in ("Dz", "Dx", "Dy"):
        for pname, p in m.models[name].named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all() and float(p.grad.abs().sum()) > 0, f"{name}.{pname}"
    assert all(g is None for k in ("f", "g", "h") for g in _grads(m.models[k]))  # the D update reaches no generator
    m.optimizers["opt_d"].step()
    d_grads = {k: [g.clone() for g in _grads(m.models[k])] for k in ("Dz", "Dx", "Dy")}
    upd_g = gen.send(None)
    assert upd_g.optimizer == "opt_g"
    upd_g.total.backward()
    for name in ("f", "g", "h"):
        for pname, p in m.models[name].named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all() and float(p.grad.abs().sum()) > 0, f"{name}.{pname}"
    for k, before in d_grads.items():  # frozen during the generator update
        assert all(torch.equal(a, b) for a, b in zip(before, _grads(m.models[k]))), k
    with pytest.raises(StopIteration) as stop:
        gen.send(None)
    assert "t/acc_source" in stop.value.value
    assert all(p.requires_grad for p in m.d_params)  # unfrozen again
    keys = {"g/total", "g/task", "g/ce_source", "g/pose_source", "g/latent", "g/translation", "g/identity", "g/cycle",
            "g/translated_task"}
    assert keys <= set(upd_g.losses) and {"d/total", "d/latent", "d/acc", "d/gp_x", "d/gp_y"} <= set(upd_d.losses)


def test_the_latent_adversary_reaches_the_encoder_from_target_latents_only():
    zero = ["loss.c_weight=0", "loss.tr_weight=0", "loss.id_weight=0", "loss.cyc_weight=0", "loss.trc_weight=0"]
    m = _method(*zero, "loss.z_weight=1")
    src, tgt = m.batch(0)
    src["x"].requires_grad_(True)
    tgt["x"].requires_grad_(True)
    gen = m.step((src, tgt), 0)
    next(gen).total.backward()
    assert src["x"].grad is None and tgt["x"].grad is None  # the D update sees detached latents
    for p in m.d_params:
        p.grad = None
    upd = gen.send(None)
    upd.total.backward()
    assert src["x"].grad is None or not src["x"].grad.any(), "the latent loss reached the encoder through x_s"
    assert tgt["x"].grad is not None and float(tgt["x"].grad.abs().sum()) > 0
    assert all(float(p.grad.abs().sum()) > 0 for p in m.f.parameters())
    assert all(p.grad is None for p in m.Dz.parameters())  # D_z is not trained by the encoder's term
    # the term is LSGAN's (D_z(f(x_t)) - 1)^2 on the target latents
    with torch.no_grad():
        expected = float(((m.Dz(m.f(tgt["x"])) - 1) ** 2).mean())
    assert math.isclose(float(upd.losses["g/latent"].detach()), expected, rel_tol=1e-5)
    gen.close()
    # control: the task loss does reach the encoder through x_s (the check above can fail)
    m2 = _method(*zero[1:], "loss.z_weight=0", "loss.c_weight=1")
    src2, tgt2 = m2.batch(0)
    src2["x"].requires_grad_(True)
    gen2 = m2.step((src2, tgt2), 0)
    upd2 = next(gen2)
    assert upd2.optimizer == "opt_g"  # z_weight = tr_weight = 0: no discriminator update at all
    upd2.total.backward()
    assert float(src2["x"].grad.abs().sum()) > 0
    gen2.close()


def test_identity_and_cycle_terms_match_numpy():
    m = _method()
    src, tgt = m.batch(0)
    gen = m.step((src, tgt), 0)
    next(gen)  # the D update (not applied: f and g are what matter here)
    upd = gen.send(None)
    gen.close()
    f, g = m.f, m.g
    with torch.no_grad():  # train mode as in the step: batch statistics, so the same outputs
        xs, xt = src["x"], tgt["x"]
        zs, zt = f(xs), f(xt)
        x_st, x_ts = g(zs, "target"), g(zt, "source")
        n = lambda t: t.numpy().astype(np.float64)  # noqa: E731
        ident = np.abs(n(g(zs, "source")) - n(xs)).mean() + np.abs(n(g(zt, "target")) - n(xt)).mean()
        cyc = np.abs(n(g(f(x_st), "source")) - n(xs)).mean() + np.abs(n(g(f(x_ts), "target")) - n(xt)).mean()
    assert math.isclose(float(upd.losses["g/identity"].detach()), ident, rel_tol=1e-5)
    assert math.isclose(float(upd.losses["g/cycle"].detach()), cyc, rel_tol=1e-5)


# ---------------------------------------------------------------------------------------------- CLI runs


def _adapt(data, out: Path, *extra: str) -> int:
    return main(["adapt", "--method", "i2i", "--source", str(data["source"]), "--target", str(data["target"]),
                 "-o", str(out), "--config", TINY, *extra])


def test_cli_run_writes_checkpoints_samples_metrics_and_evaluate_loads_it(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert _adapt(data, out, "--val", str(data["val"])) == 0
    assert "D accuracy" in capsys.readouterr().out
    for p in ("run.json", "config.yaml", "metrics.jsonl", "checkpoints/last.pt", "checkpoints/best.pt",
              "checkpoints/step_0000003.pt", "checkpoints/step_0000006.pt", "samples/step_0000000.png",
              "samples/step_0000003.png", "samples/step_0000006.png"):
        assert (out / p).is_file(), p
    assert json.loads((out / "run.json").read_text())["kind"] == "i2i"
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert any(x["split"] == "train" and {"d/gp_y", "g/cycle", "g/total"} <= set(x) for x in lines)
    assert any(x["split"] == "val" and "accuracy" in x and "acc30_sym" in x for x in lines)
    blob = load_checkpoint(out / "checkpoints" / "last.pt", "i2i")
    assert set(MODULES) | {"opt_d", "opt_g", "rng"} <= set(blob["state"])

    model, info, _, _ = load_run_model(out)
    assert isinstance(model, I2ITaskNet) and not model.training and info["kind"] == info["role"] == "i2i"
    assert info["train"][0]["path"] == str(data["source"])
    T, _ = load_task_model(out, "last")
    assert all(torch.equal(v, blob["state"]["f"][k]) for k, v in T.encoder.state_dict().items())
    assert all(torch.equal(v, blob["state"]["h"][k]) for k, v in T.classifier.state_dict().items())
    o = T(torch.zeros(2, 3, 16, 16), domain="target")
    assert o["logits"].shape == (2, 3) and o["quat"].shape == (2, 4)
    report = tmp_path / "report"
    assert main(["evaluate", str(out), "--test", str(data["val"]), "-o", str(report), "--device", "cpu"]) == 0
    assert (report / "metrics.json").is_file()


def test_resume_is_exact(data, tmp_path):
    """3 steps, then --resume to 6 == 6 straight steps (every network and optimiser)."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert _adapt(data, straight) == 0
    assert _adapt(data, resumed, "--set", "train.steps=3") == 0
    assert main(["adapt", "-o", str(resumed), "--resume", "--set", "train.steps=6"]) == 0  # method: the run's
    a = load_checkpoint(straight / "checkpoints" / "last.pt", "i2i")
    b = load_checkpoint(resumed / "checkpoints" / "last.pt", "i2i")
    assert a["step"] == b["step"] == 6
    for name in MODULES:
        for k, v in a["state"][name].items():
            assert torch.equal(v, b["state"][name][k]), f"{name}.{k} differs after resume"
    for name in ("opt_d", "opt_g"):
        for i, st in a["state"][name]["state"].items():
            for k, v in st.items():
                assert torch.equal(v, b["state"][name]["state"][i][k]), f"{name}[{i}].{k} differs after resume"


def test_export_copies_labels_and_poses_and_writes_the_translation(data, tmp_path, capsys):
    run = tmp_path / "run"
    assert _adapt(data, run, "--set", "train.steps=3") == 0
    out = tmp_path / "adapted.h5"
    # no noise: K > 1 draws would be K copies of one translation, refused in one line
    assert main(["export", str(run), "--source", str(data["source"]), "-o", str(out), "--per-source", "2"]) == 2
    assert "takes no noise" in capsys.readouterr().err and not out.exists()
    assert main(["export", str(run), "--source", str(data["source"]), "-o", str(out)]) == 0
    a, s = h5.read(out), h5.read(data["source"])
    assert a.attrs["domain"] == "adapted" and len(a) == len(s) and a.rgb.shape[1:] == s.rgb.shape[1:]
    for key in ("label", "quat", "trans", "mask", "depth"):
        assert np.array_equal(getattr(a, key), getattr(s, key)), key
    assert a.class_names == s.class_names and not np.array_equal(a.rgb, s.rgb)
    G, info = load_generator(run)
    assert isinstance(G, I2ITranslator) and info["noise_dim"] == 0 and info["kind"] == "i2i"
    from sim2real.data.tensors import tensor_to_rgb
    from sim2real.engine.bank import TensorBank

    x = TensorBank.from_data([s], False, keep=()).batch(torch.arange(3), torch.device("cpu"))["x"]
    with torch.no_grad():
        assert np.abs(tensor_to_rgb(G(x)).astype(int) - a.rgb[0:3].astype(int)).max() <= 1


def test_bad_image_size_and_foreign_method_resume_are_one_line_errors(data, tmp_path, capsys):
    assert main(["adapt", "--method", "i2i", "--source", str(data["odd"]), "--target", str(data["odd"]),
                 "-o", str(tmp_path / "odd"), "--config", TINY]) == 2
    assert "divisible by 2^4" in capsys.readouterr().err
    out = tmp_path / "run"
    assert _adapt(data, out, "--set", "train.steps=2", "--set", "train.checkpoint_every=2") == 0
    assert main(["adapt", "-o", str(out), "--resume", "--method", "dann"]) == 2
    assert "is a i2i run" in capsys.readouterr().err


@pytest.mark.parametrize("off", ["loss.z_weight=0", "loss.tr_weight=0"])
def test_runs_with_one_adversary_off(data, tmp_path, off, capsys):
    assert _adapt(data, tmp_path / "run", "--set", off, "--set", "train.steps=2", "--set", "train.checkpoint_every=2") == 0
    assert "D accuracy" in capsys.readouterr().out
