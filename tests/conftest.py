"""Shared fixtures: tiny meshes written in tmp_path and a headless renderer environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``sim2real ARGS`` as a user would (a fresh process); returns the completed process."""
    e = dict(os.environ)
    e.setdefault("SIM2REAL_PROGRESS", "0")
    if env:
        e.update(env)
    return subprocess.run([sys.executable, "-m", "sim2real", *args], cwd=cwd, env=e, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def mesh_folder(tmp_path: Path) -> Path:
    """Three small asymmetric meshes (never seen elsewhere) in PLY, STL and OBJ, in metres."""
    import trimesh

    folder = tmp_path / "meshes"
    folder.mkdir()
    # an L-shaped bracket: a box plus a thin arm (asymmetric)
    a = trimesh.creation.box((0.08, 0.03, 0.02))
    arm = trimesh.creation.box((0.02, 0.06, 0.02))
    arm.apply_translation((0.03, 0.045, 0.0))
    trimesh.util.concatenate([a, arm]).export(folder / "bracket.ply")
    # a cone offset on a cylinder
    cyl = trimesh.creation.cylinder(radius=0.02, height=0.07, sections=24)
    cone = trimesh.creation.cone(radius=0.03, height=0.04, sections=24)
    cone.apply_translation((0.0, 0.0, 0.035))
    trimesh.util.concatenate([cyl, cone]).export(folder / "rocket.stl")
    # a flattened icosphere with a knob
    s = trimesh.creation.icosphere(subdivisions=2, radius=0.03)
    s.apply_scale((1.0, 0.6, 0.8))
    knob = trimesh.creation.box((0.015, 0.015, 0.03))
    knob.apply_translation((0.0, 0.0, 0.03))
    trimesh.util.concatenate([s, knob]).export(folder / "pebble.obj")
    return folder


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def random_banks(seed: int = 0, n: int = 8, size: int = 16, classes: int = 3):
    """(source, target) :class:`~sim2real.engine.bank.TensorBank` of random uint8 RGB, as a method's step reads them:
    source with labels and unit quaternions, target unlabelled; drawn from ``torch.Generator().manual_seed(seed)``."""
    import torch

    from sim2real.engine.bank import TensorBank

    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, 4, generator=g)
    src = TensorBank(rgb=torch.randint(0, 256, (n, size, size, 3), generator=g, dtype=torch.uint8),
                     label=torch.randint(0, classes, (n,), generator=g), quat=q / q.norm(dim=1, keepdim=True),
                     has_quat=torch.ones(n, dtype=torch.bool))
    tgt = TensorBank(rgb=torch.randint(0, 256, (n, size, size, 3), generator=g, dtype=torch.uint8))
    return src, tgt


def affine_per_channel(a, b) -> bool:
    """Each image channel of ``b`` ``(B, C>=3, H, W)`` is an affine map of ``a``'s (|correlation| 1, or ``b`` constant
    there): what a per-image, per-channel recolouring leaves."""
    for i in range(a.shape[0]):
        for c in range(3):
            if float(b[i, c].std()) < 1e-6:
                continue
            r = np.corrcoef(a[i, c].flatten().double().numpy(), b[i, c].flatten().double().numpy())[0, 1]
            if abs(abs(r) - 1) > 1e-4:
                return False
    return True
