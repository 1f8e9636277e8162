"""The training engine: sampler, config resume rules, meter, checkpoint selection, update order, the method registry."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from sim2real.engine.loop import Update, apply_updates
from sim2real.engine.metrics import Meter, check_health
from sim2real.engine.run import RESUMABLE, diff_keys, resumable_keys
from sim2real.engine.sampler import StepSampler
from sim2real.engine.validate import better
from sim2real.errors import Sim2RealError


def test_chain_sampler_is_the_concatenation_of_successive_permutations():
    """"chain" seeding: epochs are successive randperm draws of one generator; batches straddle epochs."""
    n, b, seed = 7, 3, 11
    g = torch.Generator().manual_seed(seed)
    stream = torch.cat([torch.randperm(n, generator=g) for _ in range(6)])  # the hand-built reference
    s = StepSampler([n], b, seed, seeding="chain")
    for step in (0, 1, 2, 5, 9, 3, 0, 11):  # random access, also backwards, gives the same batches
        assert torch.equal(s(step), stream[step * b:(step + 1) * b]), step


def test_epoch_sampler_sees_every_sample_once_per_epoch_and_balances_files():
    s = StepSampler([5, 3], 4, seed=0, balanced=True)
    first = torch.cat([s(k) for k in range(3)])  # streams of 2 + 2 per step
    a, b = first[first < 5], first[first >= 5]
    assert sorted(a.tolist()[:5]) == [0, 1, 2, 3, 4] and sorted(b.tolist()[:3]) == [5, 6, 7]
    assert torch.equal(StepSampler([5, 3], 4, 0, balanced=True)(2), s(2))  # a pure function of the step


@dataclasses.dataclass
class _Train:
    steps: int = dataclasses.field(default=10, metadata=RESUMABLE)
    lr: float = 0.1


@dataclasses.dataclass
class _Perf:
    device: str = "cpu"


@dataclasses.dataclass
class _Cfg:
    train: _Train = dataclasses.field(default_factory=_Train)
    perf: _Perf = dataclasses.field(default_factory=_Perf, metadata=RESUMABLE)


def test_resumable_keys_come_from_field_metadata():
    assert resumable_keys(_Cfg) == ["train.steps", "perf.*"]
    assert diff_keys({"train": {"steps": 1, "lr": 0.1}}, {"train": {"steps": 2, "lr": 0.1}}) == ["train.steps"]


def test_meter_means_are_exact_and_health_check_names_the_loss(tmp_path):
    m = Meter()
    vals = [0.1, 0.2, 0.7]
    for v in vals:
        m.add({"loss": torch.tensor(v, dtype=torch.float32), "acc": torch.tensor(1.0)})
    means, maxes = m.flush()
    ref = sum(float(torch.tensor(v, dtype=torch.float32)) for v in vals) / 3  # python float64 reference
    assert means["loss"] == ref and maxes["loss"] == pytest.approx(0.7)
    with pytest.raises(Sim2RealError, match="non-finite loss"):
        check_health({"loss": float("nan")}, 5, 1000.0, tmp_path, None)
    with pytest.raises(Sim2RealError, match=r"diverged \(loss reached"):
        check_health({"loss": 2e3, "acc": 1.0}, 5, 1000.0, tmp_path, 4)
    check_health({"d/real_logit": 5e3}, 5, 1000.0, tmp_path, 4)  # logits are not losses


def test_better_uses_the_keys_in_order_with_ties_broken_by_the_next():
    a = {"acc30_sym": 0.5, "median_angle_sym_deg": 20.0, "accuracy": 0.9}
    assert better(a, None)
    assert better({**a, "acc30_sym": 0.6}, a) and not better({**a, "acc30_sym": 0.4}, a)
    assert better({**a, "median_angle_sym_deg": 19.0}, a) and not better(dict(a), a)
    assert better({"accuracy": 0.8}, {"accuracy": 0.7})  # no pose keys: accuracy
    by_mean = (("acc30_sym", True), ("mean_angle_sym_deg", False))
    assert better({**a, "mean_angle_sym_deg": 1.0}, {**a, "mean_angle_sym_deg": 2.0}, by_mean)


def test_updates_are_applied_in_order_so_a_later_update_sees_the_earlier():
    """Two parameters, two optimisers: the second update's loss reads the first parameter after its step."""
    p, q = torch.nn.Parameter(torch.tensor(1.0)), torch.nn.Parameter(torch.tensor(0.0))
    opts = {"a": torch.optim.SGD([p], lr=0.5), "b": torch.optim.SGD([q], lr=1.0)}
    seen = []

    def step():
        loss_a = p ** 2  # d/dp = 2p = 2 -> p = 1 - 0.5 * 2 = 0
        yield Update("a", loss_a, {"a": loss_a})
        seen.append(float(p.detach()))
        loss_b = (q - p.detach() - 3.0) ** 2  # sees p = 0: d/dq = 2 (q - 3) = -6 -> q = 6
        yield Update("b", loss_b, {"b": loss_b})
        return {"extra": torch.tensor(1.0)}

    m = apply_updates(step(), opts)
    assert seen == [0.0] and float(q.detach()) == 6.0 and set(m) == {"a", "b", "extra"}


def test_method_registry():
    from sim2real.adapt import get_method, method_of_kind
    from sim2real.adapt.pixelda.config import PixelDAConfig

    spec = get_method(None)
    assert spec.name == "pixelda" and spec.config_class() is PixelDAConfig and method_of_kind("pixelda") is spec
    with pytest.raises(Sim2RealError, match=r"--method dtnx: unknown adaptation method \(known: coral, dann, dtn, i2i, mmd, pixelda\)"):
        get_method("dtnx")


def test_lr_schedules_match_their_formulas_and_every_trainer_uses_the_shared_one():
    import math

    from sim2real.adapt.feature.config import FeatureDAConfig
    from sim2real.adapt.pixelda.config import PixelDAConfig
    from sim2real.engine.schedule import lr_factor
    from sim2real.train.pose_config import PoseConfig

    # staircase: TF exponential_decay(staircase=True), 0.5 every 10 steps
    assert [lr_factor("staircase", s, 100, 0.5, 10) for s in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]
    assert lr_factor("step", 25, 100, 0.5, 10) == 0.25  # train-pose's name for it
    # cosine over 100 steps: 1 at 0, 1/2 at the middle, (1 + cos(pi/4)) / 2 a quarter in, 0 at and after the end
    cos = [lr_factor("cosine", s, 100) for s in (0, 25, 50, 100, 150)]
    assert cos[0] == 1.0 and math.isclose(cos[1], (1 + math.sqrt(0.5)) / 2) and math.isclose(cos[2], 0.5)
    assert abs(cos[3]) < 1e-15 and abs(cos[4]) < 1e-15
    # linear warm-up, then the cosine over the remaining 80 steps
    assert [lr_factor("cosine", s, 100, warmup_steps=20) for s in (0, 19)] == [1 / 20, 1.0]
    assert math.isclose(lr_factor("cosine", 60, 100, warmup_steps=20), 0.5)
    # Ganin et al.'s anneal: (1 + 10 p) ** -0.75
    assert math.isclose(lr_factor("anneal", 30, 120), 3.5 ** -0.75)
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'linear'"):
        lr_factor("linear", 0, 10)

    pixelda = PixelDAConfig()
    pixelda.optim.lr_schedule, pixelda.train.steps = "cosine", 40
    from sim2real.adapt.pixelda.step import PixelDAStep

    step = PixelDAStep.__new__(PixelDAStep)  # lr_factor needs only the optim section and the horizon
    step.optim, step.horizon = pixelda.optim, pixelda.train.steps
    assert math.isclose(step.lr_factor(20), 0.5) and step.lr_factor(0) == 1.0
    pixelda.optim.lr_schedule = "staircase"
    assert step.lr_factor(30000) == 0.95  # the official 0.95 every 20,000 steps
    pose = PoseConfig()
    pose.train.steps = 40
    assert math.isclose(pose.lr_factor(20), 0.5)  # train-pose's default is cosine
    from sim2real.config import from_dict

    feature = from_dict(FeatureDAConfig, {"optim": {"lr_schedule": "cosine"}, "train": {"steps": 40}}, "feature config")
    assert feature.optim.lr_schedule == "cosine"
    with pytest.raises(Sim2RealError, match="lr_schedule"):
        from_dict(PixelDAConfig, {"optim": {"lr_schedule": "linear"}}, "pixelda config")
