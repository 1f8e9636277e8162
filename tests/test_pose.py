"""train-pose: networks, loss, sampler, augmentation, the training loop, resume, and its user errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sim2real.cli import main
from sim2real.config import load_config
from sim2real.errors import Sim2RealError
from sim2real.models.loading import load_pose_model
from sim2real.models.resnet import ResNetPose
from sim2real.testing import make_synthetic
from sim2real.train.augment import AugmentConfig, PhotometricAugment, recolour
from sim2real.train.pose import PoseConfig, StepSampler, role_of, task_loss, train_pose


def tiny_cfg(**sets) -> PoseConfig:
    over = [f"{k}={v}" for k, v in {"steps": 8, "log_every": 2, "val_every": 4, "checkpoint_every": 4,
                                    "device": "cpu", **sets}.items()]
    return load_config(PoseConfig, "pose-tiny", over)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("pose_data")
    return {
        "src": make_synthetic(d / "src.h5", n=96, size=16, num_classes=3, seed=0, domain="source"),
        "tgt": make_synthetic(d / "tgt.h5", n=24, size=16, num_classes=3, seed=1, domain="target"),
        "val": make_synthetic(d / "val.h5", n=48, size=16, num_classes=3, seed=2, domain="target"),
    }


# ---------------------------------------------------------------- networks


def test_resnet_contract_gradients_and_domain_ignored():
    torch.manual_seed(0)
    net = ResNetPose(num_classes=5, in_channels=4, image_size=(16, 16), width=4, blocks=(1, 1, 1, 1), dropout=0.1)
    x = torch.randn(3, 4, 16, 16)
    out = net(x)
    assert out["logits"].shape == (3, 5) and out["quat"].shape == (3, 4)
    torch.testing.assert_close(out["quat"].norm(dim=1), torch.ones(3))
    net.eval()
    torch.testing.assert_close(net(x, domain="source")["logits"], net(x, domain="target")["logits"])
    net.train()
    y = torch.tensor([0, 1, 4])
    loss = task_loss(net(x), y, torch.tensor([[1.0, 0, 0, 0]] * 3), torch.ones(3, dtype=torch.bool), 0.25, 1e-4)["total"]
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient for {name}"
    with pytest.raises(ValueError):
        net(torch.randn(1, 3, 16, 16))


def test_resnet18_layout_matches_resnet18():
    net = ResNetPose(num_classes=11, in_channels=3, image_size=(64, 64))
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 17  # stem + 4 stages x 2 blocks x 2 convs
    assert net.fc_logits.in_features == 512
    assert net.stem[0].stride == (1, 1)  # small-image stem: no stride, no max-pool


def test_small_arch_is_the_paper_tower():
    from sim2real.models.factory import build_pose_model

    cfg = load_config(PoseConfig, "pose-small")
    net = build_pose_model(cfg.model, 11, 4, (64, 64))
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(4, 32, (5, 5)), (32, 64, (5, 5))]
    out = net(torch.randn(2, 4, 64, 64))
    assert out["logits"].shape == (2, 11) and out["quat"].shape == (2, 4)


# ---------------------------------------------------------------- loss


def pose_log_loss(q_pred, q_true, eps):
    from sim2real.losses import quat_log_loss

    return quat_log_loss(q_pred, q_true, eps, reduction="none")


def test_pose_log_loss_known_values_and_sign_invariance():
    q = torch.tensor([[1.0, 0, 0, 0], [0.0, 1, 0, 0]])
    eps = 1e-4
    # float32: 1 + 1e-4 - 1 carries ~1e-8 absolute error, i.e. ~1e-4 relative in the log's argument
    torch.testing.assert_close(pose_log_loss(q, q, eps), torch.full((2,), float(np.log(eps))), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(pose_log_loss(-q, q, eps), torch.full((2,), float(np.log(eps))), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(pose_log_loss(q, q.flip(0), eps), torch.full((2,), float(np.log(1 + eps))))
    # 90 degrees apart: |q.q'| = cos(45 deg)
    q90 = torch.tensor([[np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)]], dtype=torch.float32)
    torch.testing.assert_close(pose_log_loss(q90, q[:1], eps), torch.tensor([np.log(eps + 1 - np.cos(np.pi / 4))], dtype=torch.float32))


def test_task_loss_matches_numpy_and_masks_missing_quaternions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, generator=g)
    label = torch.tensor([0, 2, 1, 1])
    qp = torch.nn.functional.normalize(torch.randn(4, 4, generator=g), dim=1)
    qt = torch.nn.functional.normalize(torch.randn(4, 4, generator=g), dim=1)
    has = torch.tensor([True, False, True, False])
    out = task_loss({"logits": logits, "quat_all": qp[:, None]}, label, qt, has, xi=0.5, eps=1e-4)
    lg = logits.double().numpy()
    ce = np.mean(np.log(np.exp(lg).sum(1)) - lg[np.arange(4), label.numpy()])
    dots = np.abs((qp.double() * qt.double()).sum(1).numpy())[[0, 2]]
    pose = np.mean(np.log(1e-4 + 1 - dots))
    assert float(out["ce"]) == pytest.approx(ce, rel=1e-5)
    assert float(out["pose"]) == pytest.approx(pose, rel=1e-5)
    assert float(out["total"]) == pytest.approx(ce + 0.5 * pose, rel=1e-5)
    none = task_loss({"logits": logits, "quat_all": qp[:, None]}, label, qt, torch.zeros(4, dtype=torch.bool), 0.5, 1e-4)
    assert float(none["pose"]) == 0.0


def test_task_loss_per_class_head_reads_the_true_class_slice():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 3, generator=g)
    label = torch.tensor([0, 2, 1, 2])
    qa = torch.nn.functional.normalize(torch.randn(4, 3, 4, generator=g), dim=-1)
    qt = torch.nn.functional.normalize(torch.randn(4, 4, generator=g), dim=1)
    out = task_loss({"logits": logits, "quat_all": qa}, label, qt, torch.ones(4, dtype=torch.bool), xi=1.0, eps=1e-4)
    picked = qa.double().numpy()[np.arange(4), label.numpy()]          # slice of the TRUE class, by hand
    dots = np.abs((picked * qt.double().numpy()).sum(1))
    assert float(out["pose"]) == pytest.approx(np.mean(np.log(1e-4 + 1 - dots)), rel=1e-5)
    # a wrong slice gives a different loss: the head really is per class
    wrong = task_loss({"logits": logits, "quat_all": qa}, (label + 1) % 3, qt, torch.ones(4, dtype=torch.bool), 1.0, 1e-4)
    assert float(wrong["pose"]) != pytest.approx(float(out["pose"]), rel=1e-4)


# ---------------------------------------------------------------- sampler, augmentation


def test_step_sampler_covers_each_epoch_and_is_a_function_of_step():
    s = StepSampler([7, 3], batch_size=4, seed=3, balanced=False)
    stream = torch.cat([s(k) for k in range(5)])  # 20 indices = 2 epochs of 10
    assert sorted(stream[:10].tolist()) == list(range(10)) and sorted(stream[10:].tolist()) == list(range(10))
    fresh = StepSampler([7, 3], batch_size=4, seed=3, balanced=False)
    assert torch.equal(fresh(3), s(3))
    assert not torch.equal(StepSampler([7, 3], 4, seed=4, balanced=False)(0), s(0))
    b = StepSampler([100, 3], batch_size=5, seed=0, balanced=True)
    for k in range(4):
        idx = b(k)
        assert (idx < 100).sum() == 3 and (idx >= 100).sum() == 2  # 5 split as 3 + 2 across the two files
    with pytest.raises(Sim2RealError):
        StepSampler([5, 5, 5], batch_size=2, seed=0, balanced=True)


def test_augment_changes_rgb_only_and_keeps_range():
    torch.manual_seed(0)
    aug = PhotometricAugment(AugmentConfig(enabled=True, jitter_p=1.0, noise_p=1.0, blur_p=1.0, grayscale_p=0.5))
    x = torch.rand(6, 4, 16, 16) * 2 - 1
    y = aug(x)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    torch.testing.assert_close(y[:, 3], x[:, 3])
    assert not torch.allclose(y[:, :3], x[:, :3])
    off = PhotometricAugment(AugmentConfig(enabled=True, jitter_p=0, blur_p=0, noise_p=0))
    torch.testing.assert_close(off(x), x)
    with pytest.raises(Sim2RealError):
        load_config(PoseConfig, "pose-tiny", ["augment.jitter_p=1.5"])


def test_recolour_maps_each_channel_affinely_onto_its_own_range():
    rgb = torch.rand(3, 3, 5, 5, dtype=torch.float64)
    lo = torch.tensor([[0.2, 0.9, 0.0], [1.0, 0.5, 0.3], [0.4, 0.4, 0.7]], dtype=torch.float64)
    hi = torch.tensor([[0.8, 0.1, 1.0], [0.0, 0.5, 0.6], [0.9, 0.2, 0.7]], dtype=torch.float64)
    got = recolour(rgb, lo, hi).numpy()
    r, l, h = rgb.numpy(), lo.numpy(), hi.numpy()
    for b in range(3):  # hand formula, image by image and channel by channel; hi < lo inverts the channel
        for c in range(3):
            np.testing.assert_allclose(got[b, c], l[b, c] + (h[b, c] - l[b, c]) * r[b, c], rtol=0, atol=1e-12)
    with pytest.raises(ValueError):
        recolour(rgb, lo[:2], hi)


def test_augment_recolours_a_grey_digit_into_a_two_colour_image():
    torch.manual_seed(1)
    grey = torch.where(torch.rand(8, 1, 12, 12) > 0.7, 1.0, -1.0).expand(8, 3, 12, 12)  # ink +1 on background -1
    y = PhotometricAugment(AugmentConfig(enabled=True, recolour_p=1.0, jitter_p=0, blur_p=0, noise_p=0))(grey)
    ink = grey[:, 0] > 0
    for b in range(8):  # each channel takes exactly one value on the ink and one on the background
        for c in range(3):
            assert torch.unique(y[b, c][ink[b]]).numel() == 1 and torch.unique(y[b, c][~ink[b]]).numel() == 1
    assert y.min() >= -1 and y.max() <= 1
    assert (y[:, 0] - y[:, 1]).abs().amax() > 0.1  # no longer grey
    kept = PhotometricAugment(AugmentConfig(enabled=True, recolour_p=0.0, jitter_p=0, blur_p=0, noise_p=0))
    torch.testing.assert_close(kept(grey), grey)
    with pytest.raises(Sim2RealError):
        load_config(PoseConfig, "pose-tiny", ["augment.recolour_p=2"])


def test_role_of():
    assert role_of(["source"]) == "source-only"
    assert role_of(["target", "target"]) == "target-only"
    assert role_of(["adapted", "target"]) == "semi-supervised"


# ---------------------------------------------------------------- training loop


def test_train_pose_run_folder_learning_and_loading(data, tmp_path):
    run = tmp_path / "run"
    res = train_pose([data["src"]], run, tiny_cfg(steps=60, val_every=30, log_every=10), val_path=data["val"],
                     show_progress=False)
    assert res["step"] == 60 and res["role"] == "source-only" and res["n_train"] == 96
    info = json.loads((run / "run.json").read_text())
    assert info["kind"] == "pose" and info["config"]["train"]["steps"] == 60 and info["class_names"] == ["class0", "class1", "class2"]
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "last.pt").is_file()
    assert (run / "checkpoints" / "best.pt").is_file()
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train_lines = [x for x in lines if x["split"] == "train"]
    assert [x["step"] for x in train_lines] == [10, 20, 30, 40, 50, 60]
    assert [x["step"] for x in lines if x["split"] == "val"] == [30, 60]
    # it learns: the classes of this synthetic data are easy (colour + shape)
    assert res["last_val"]["accuracy"] > 0.8
    assert train_lines[-1]["total"] < train_lines[0]["total"]
    model, minfo = load_pose_model(run)
    assert {"class_names", "use_depth", "image_size", "step", "kind"} <= set(minfo)
    assert minfo["kind"] == "pose" and minfo["step"] == 60 and minfo["image_size"] == (16, 16) and not model.training


def test_resume_continues_exactly(data, tmp_path):
    sets = {"augment.enabled": "true", "model.dropout": 0.3}
    train_pose([data["src"], data["tgt"]], tmp_path / "straight", tiny_cfg(**sets), show_progress=False)
    train_pose([data["src"], data["tgt"]], tmp_path / "split", tiny_cfg(steps=4, **sets), show_progress=False)
    from sim2real.train.pose import resume_config

    cfg = resume_config(tmp_path / "split", sets=["train.steps=8"])
    train_pose([data["src"], data["tgt"]], tmp_path / "split", cfg, resume=True, show_progress=False)
    a, _ = load_pose_model(tmp_path / "straight")
    b, _ = load_pose_model(tmp_path / "split")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    steps = [json.loads(x)["step"] for x in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6, 8]
    with pytest.raises(Sim2RealError, match="cannot resume with a different optim.lr"):
        resume_config(tmp_path / "split", sets=["optim.lr=0.1"])
    # the same config given again (as a pipeline does on resume) is accepted
    again = [f"{k}={v}" for k, v in {"steps": 8, "log_every": 2, "val_every": 4, "checkpoint_every": 4, "device": "cpu",
                                     "augment.enabled": "true", "model.dropout": 0.3}.items()]
    assert resume_config(tmp_path / "split", "pose-tiny", again).train.steps == 8


def test_interrupt_keeps_the_work_and_resume_matches(data, tmp_path, monkeypatch):
    import sim2real.train.pose as pose_mod

    # cosine schedule with warm-up: the learning rate is a pure function of the step, so resume is exact
    sets = {"steps": 7, "checkpoint_every": 100, "lr_schedule": "cosine", "warmup_steps": 2}
    train_pose([data["src"]], tmp_path / "straight", tiny_cfg(**sets), show_progress=False)
    real, calls = pose_mod.task_loss, []

    def interrupting(*a, **k):
        calls.append(1)
        if len(calls) == 6:  # Ctrl-C during step 6, after 5 completed steps
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(pose_mod, "task_loss", interrupting)
    with pytest.raises(KeyboardInterrupt):
        train_pose([data["src"]], tmp_path / "cut", tiny_cfg(**sets), show_progress=False)
    monkeypatch.setattr(pose_mod, "task_loss", real)
    assert torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=True)["step"] == 5
    train_pose([data["src"]], tmp_path / "cut", tiny_cfg(**sets), resume=True, show_progress=False)
    a, _ = load_pose_model(tmp_path / "straight")
    b, _ = load_pose_model(tmp_path / "cut")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


def test_cli_train_pose_and_user_errors(data, tmp_path, capsys):
    run = tmp_path / "cli_run"
    rc = main(["train-pose", "--train", str(data["src"]), "-o", str(run), "--config", "pose-tiny", "--set", "steps=3",
               "--set", "device=cpu", "--no-progress"])
    assert rc == 0 and "source-only run" in capsys.readouterr().out
    # an existing run folder is not clobbered without --resume
    rc = main(["train-pose", "--train", str(data["src"]), "-o", str(run), "--config", "pose-tiny"])
    err = capsys.readouterr().err
    assert rc == 2 and "--resume" in err and len(err.strip().splitlines()) == 1
    # class names that differ between --train files: one line listing both
    other = make_synthetic(tmp_path / "four.h5", n=8, size=16, num_classes=4, seed=5)
    rc = main(["train-pose", "--train", str(data["src"]), "--train", str(other), "-o", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "class3" in err and "[class0, class1, class2]" in err
    # unlabelled training data
    unl = make_synthetic(tmp_path / "unl.h5", n=8, size=16, num_classes=3, seed=6, labels=False)
    rc = main(["train-pose", "--train", str(unl), "-o", str(tmp_path / "y")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "'label'" in err and len(err.splitlines()) == 1
    # --val that is a --train file is refused
    rc = main(["train-pose", "--train", str(data["src"]), "--val", str(data["src"]), "-o", str(tmp_path / "z")])
    assert rc == 2 and "held out" in capsys.readouterr().err
