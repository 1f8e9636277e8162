"""Batch-norm statistics of G: precise BN against a numpy average, the train-mode context restores the run, and
export recomputes G's statistics (recorded, reproducible, optional)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from sim2real.cli import main
from sim2real.data import h5
from sim2real.engine.bn import batch_statistics, bn_layers, precise_bn_
from sim2real.models.loading import load_generator
from sim2real.testing import make_synthetic


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4, momentum=0.1), nn.ReLU(),
                         nn.Conv2d(4, 2, 1), nn.BatchNorm2d(2))


def test_precise_bn_is_the_average_of_the_batch_statistics():
    net = _net().eval()
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(5, 3, 6, 6, generator=g) * (1 + b) + b for b in range(4)]
    # hand derivation: the first BN layer sees conv1(x); its statistics per batch are the per-channel mean and the
    # unbiased variance over (N, H, W); precise BN stores their plain average over the batches
    conv = net[0]
    with torch.no_grad():
        feats = [conv(x).numpy() for x in batches]
    means = np.mean([f.mean(axis=(0, 2, 3)) for f in feats], axis=0)
    vars_ = np.mean([f.transpose(1, 0, 2, 3).reshape(4, -1).var(axis=1, ddof=1) for f in feats], axis=0)
    assert precise_bn_(net, len(batches), lambda i: net(batches[i])) == 2
    bn = net[1]
    np.testing.assert_allclose(bn.running_mean.numpy(), means, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.running_var.numpy(), vars_, rtol=1e-5, atol=1e-6)
    assert not net.training and bn.momentum == 0.1 and net[4].momentum == 0.1  # mode and momenta restored


def test_precise_bn_without_batch_norm_does_nothing():
    net = nn.Sequential(nn.Conv2d(3, 2, 1))
    calls = []
    assert precise_bn_(net, 3, calls.append) == 0 and calls == []


def test_batch_statistics_is_train_mode_and_leaves_the_running_statistics_alone():
    net = _net()
    with torch.no_grad():
        net.train()(torch.randn(4, 3, 6, 6))  # some running statistics
    net.eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(3, 3, 6, 6)
    with torch.no_grad(), batch_statistics(net):
        y = net(x)
    assert not net.training
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    # the output is the train-mode one: each channel of the last BN's output has batch mean 0 (beta = 0)
    np.testing.assert_allclose(y.mean(dim=(0, 2, 3)).numpy(), 0.0, atol=1e-5)
    with torch.no_grad():
        assert not torch.allclose(net(x), y)  # eval mode differs


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("bn_run")
    src = make_synthetic(d / "s.h5", n=20, size=16, num_classes=3, seed=0)
    tgt = make_synthetic(d / "t.h5", n=18, size=16, num_classes=3, seed=1, domain="target", labels=False)
    assert main(["adapt", "--source", str(src), "--target", str(tgt), "-o", str(d / "run"), "--config",
                 "pixelda-tiny", "--set", "train.steps=4"]) == 0
    return {"source": src, "run": d / "run", "dir": d}


def _export(run, out, *extra):
    return main(["export", str(run["run"]), "--source", str(run["source"]), "-o", str(out), "--quiet", *extra])


@pytest.mark.slow
def test_export_recomputes_g_statistics_and_records_it(run, tmp_path):
    from sim2real.adapt.export import BN_STREAM

    a, b, old = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "old.h5"
    assert _export(run, a, "--bn-batches", "3") == 0
    assert _export(run, b, "--bn-batches", "3", "--batch-size", "5") == 0
    assert _export(run, old, "--bn-batches", "0") == 0
    ra, rold = h5.read(a), h5.read(old)
    assert np.array_equal(ra.rgb, h5.read(b).rgb)  # the batch size of translation does not matter
    prov, prov_old = json.loads(ra.attrs["provenance"]), json.loads(rold.attrs["provenance"])
    assert prov["batch_norm_statistics"].startswith("recomputed: the average of 3 train-mode batches")
    assert prov_old["batch_norm_statistics"].startswith("none")
    # an independent reproduction: the checkpoint's G, precise BN on the documented batches, then eval mode
    G, info = load_generator(run["run"])
    assert bn_layers(G)
    src = h5.read(run["source"])
    x_all = torch.from_numpy(src.rgb).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    bs = min(info["config"]["train"]["batch_size"], len(src))
    seed = info["seed"]

    def forward(i):
        rng = np.random.default_rng([seed, BN_STREAM, i])
        idx = np.sort(rng.choice(len(src), size=bs, replace=False))
        z = torch.from_numpy(rng.uniform(-1, 1, (bs, G.noise_dim)).astype(np.float32))
        G(x_all[idx], z)

    old_G = load_generator(run["run"])[0]
    precise_bn_(G, 3, forward)
    from sim2real.adapt.export import noise

    z = torch.from_numpy(noise(seed, 0, len(src), 1, G.noise_dim))
    with torch.no_grad():
        mine = ((G(x_all, z).clamp(-1, 1) + 1) * 127.5).round().numpy().transpose(0, 2, 3, 1)
        theirs_old = ((old_G(x_all, z).clamp(-1, 1) + 1) * 127.5).round().numpy().transpose(0, 2, 3, 1)
    assert np.abs(mine - ra.rgb.astype(float)).max() <= 1  # same images up to one rounding level
    assert np.abs(theirs_old - rold.rgb.astype(float)).max() <= 1
    assert np.abs(ra.rgb.astype(float) - rold.rgb.astype(float)).mean() > 0.5  # the statistics changed the images


@pytest.mark.slow
def test_export_resume_refuses_other_bn_statistics(run, tmp_path, capsys):
    out = tmp_path / "a.h5"
    assert _export(run, out, "--bn-batches", "2") == 0
    assert _export(run, out, "--bn-batches", "2", "--resume") == 0
    assert "already complete" in capsys.readouterr().out
    assert _export(run, out, "--bn-batches", "3", "--resume") != 0
    assert "exported from other inputs" in capsys.readouterr().err
    assert _export(run, tmp_path / "c.h5", "--bn-batches", "-1") != 0
    assert "--bn-batches -1: expected an integer >= 0" in capsys.readouterr().err
