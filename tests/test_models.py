"""PixelDA networks: shapes, architecture (parameter counts derived by hand), private layers, modes."""

from __future__ import annotations

import pytest
import torch

from sim2real.models import Discriminator, Generator, TaskNet


def _n(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("size,cin", [((16, 16), 3), ((12, 20), 4), ((8, 8), 3)])
def test_generator_preserves_resolution_and_range(size, cin):
    g = Generator(cin, size, filters=8, blocks=2)
    x = torch.rand(3, cin, *size) * 2 - 1
    y = g(x, g.sample_noise(3))
    assert y.shape == x.shape
    assert float(y.detach().abs().max()) <= 1.0
    g0 = Generator(cin, size, noise_dim=0, filters=8, blocks=1)
    assert g0(x).shape == x.shape


def test_generator_noise_changes_output_and_checks_shapes():
    g = Generator(3, (8, 8), filters=8, blocks=1).eval()
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    z1, z2 = torch.full((2, 10), -0.9), torch.full((2, 10), 0.9)
    assert not torch.allclose(g(x, z1), g(x, z2))
    with pytest.raises(ValueError, match="z of shape"):
        g(x, torch.zeros(2, 5))
    with pytest.raises(ValueError, match="expected x"):
        g(torch.zeros(2, 4, 8, 8))


def test_generator_paper_size_parameter_count():
    """Paper G at 64x64 RGB-D, counted by hand: noise FC (no bias) + BN, conv_in, 6 blocks, conv1x1."""
    h = w = 64
    noise = 10 * h * w + 2 * h * w
    conv_in = (4 + 1) * 64 * 9 + 64
    block = 2 * (64 * 64 * 9) + 2 * (2 * 64)
    conv_out = 64 * 4 + 4
    assert _n(Generator(4, (64, 64))) == noise + conv_in + 6 * block + conv_out


def test_discriminator_pyramid_is_derived_from_the_module():
    d = Discriminator(3, (64, 64))
    assert d.feature_shape == (1024, 4, 4)  # 64 -> 32 -> 16 -> 8 -> 4 with 128..1024 filters
    strided = [m for m in d.features if isinstance(m, torch.nn.Conv2d) and m.stride == (2, 2)]
    assert [m.out_channels for m in strided] == [128, 256, 512, 1024]
    assert Discriminator(3, (32, 32)).feature_shape == (512, 4, 4)
    assert Discriminator(4, (48, 40), filters=8).feature_shape == (128, 3, 3)  # 48 -> 24 -> 12 -> 6 -> 3
    assert Discriminator(3, (4, 4), filters=8).feature_shape == (8, 4, 4)  # no stride-2 layer needed
    x = torch.randn(5, 3, 64, 64)
    assert d(x).shape == (5,)


def test_discriminator_regularisers_only_in_training():
    d = Discriminator(3, (16, 16), filters=8, dropout_keep=0.5, noise_std=0.5, image_noise=True)
    x = torch.randn(4, 3, 16, 16)
    d.eval()
    assert torch.equal(d(x), d(x))
    d.train()
    assert not torch.equal(d(x), d(x))
    plain = Discriminator(3, (16, 16), filters=8, dropout_keep=1.0, noise_std=0.0)
    assert not any(isinstance(m, torch.nn.Dropout) for m in plain.modules())


def test_tasknet_pose_mini_architecture_by_hand():
    """pose_mini at 64x64 RGB-D: conv5x5-32, pool | conv5x5-64, pool, FC128, FC4 quaternion, FC logits."""
    c, cin = 11, 4
    conv1 = cin * 32 * 25 + 32
    conv2 = 32 * 64 * 25 + 64
    fc = 64 * 16 * 16 * 128 + 128
    heads = 128 * 4 + 4 + 128 * c + c  # official shared quaternion head
    official = dict(quat_head="shared", quat_activation="tanh")
    assert _n(TaskNet(c, cin, (64, 64), private_layers=False, **official)) == conv1 + conv2 + fc + heads
    assert _n(TaskNet(c, cin, (64, 64), private_layers=True, **official)) == 2 * conv1 + conv2 + fc + heads
    # default per-class head: 4 outputs per class
    per_class = 128 * 4 * c + 4 * c + 128 * c + c
    assert _n(TaskNet(c, cin, (64, 64), private_layers=False)) == conv1 + conv2 + fc + per_class


def test_tasknet_per_class_head_returns_the_predicted_class_quaternion():
    net = TaskNet(3, 3, (16, 16), conv_widths=(4, 8), fc_widths=(16,)).eval()
    out = net(torch.randn(5, 3, 16, 16))
    assert out["quat_all"].shape == (5, 3, 4)
    torch.testing.assert_close(out["quat_all"].norm(dim=-1), torch.ones(5, 3))
    pred = out["logits"].argmax(1)
    torch.testing.assert_close(out["quat"], out["quat_all"][torch.arange(5), pred])
    shared = TaskNet(3, 3, (16, 16), conv_widths=(4, 8), fc_widths=(16,), quat_head="shared").eval()
    o2 = shared(torch.randn(5, 3, 16, 16))
    assert o2["quat_all"].shape == (5, 1, 4) and o2["quat"].shape == (5, 4)


def test_tasknet_outputs_logits_and_unit_quaternions():
    net = TaskNet(5, 3, (16, 16), conv_widths=(4, 8), fc_widths=(16,))
    out = net(torch.randn(6, 3, 16, 16), "source")
    assert out["logits"].shape == (6, 5)
    assert out["quat"].shape == (6, 4)
    torch.testing.assert_close(out["quat"].norm(dim=1), torch.ones(6))
    digits = TaskNet(10, 3, (32, 32), tower="digits")
    out = digits(torch.randn(2, 3, 32, 32))
    assert out["quat"] is None and out["logits"].shape == (2, 10)
    with pytest.raises(ValueError, match="domain"):
        net(torch.randn(1, 3, 16, 16), "real")
    with pytest.raises(ValueError, match="too small"):
        TaskNet(3, 3, (2, 2))


def test_tasknet_private_layers_route_by_domain():
    torch.manual_seed(0)
    net = TaskNet(3, 3, (16, 16), conv_widths=(4, 8), fc_widths=(16,), dropout=0.0).eval()
    x = torch.randn(2, 3, 16, 16)
    assert not torch.allclose(net(x, "source")["logits"], net(x, "target")["logits"])
    assert torch.equal(net(x, "target")["logits"], net(x, "adapted")["logits"])  # adapted shares target's layers
    net.zero_grad()
    net(x, "target")["logits"].sum().backward()
    assert all(p.grad is None for p in net.private_source.parameters())
    assert all(p.grad is not None for p in net.private_target.parameters())
    shared = TaskNet(3, 3, (16, 16), conv_widths=(4, 8), fc_widths=(16,), private_layers=False).eval()
    assert torch.equal(shared(x, "source")["logits"], shared(x, "target")["logits"])
    two = TaskNet(3, 3, (16, 16), conv_widths=(4, 8), fc_widths=(16,), num_private_layers=2)
    assert len(two.shared_conv) == 0 and len(two.private_source) == 2
