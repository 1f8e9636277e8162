"""Symmetry proposals from the geometry alone: candidate rotations scored on surface samples, for a person to confirm.

:func:`propose_symmetry` is the engine of ``tools/propose_symmetries.py``; what it returns is an ordinary
:class:`~sim2real.symmetry.Symmetry` annotation (model frame, metres; conventions in :mod:`sim2real.symmetry`).
Needs trimesh (surface sampling) and scipy (nearest neighbours); no GL.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

from sim2real.symmetry import ContinuousSymmetry, Symmetry, rotation_about


@dataclasses.dataclass
class SymmetryProposal:
    """What :func:`propose_symmetry` found; for a person to confirm.

    Attributes:
        symmetry: the proposed annotation (None: no symmetry within ``tol``).
        scores: candidate -> symmetric Chamfer distance of the transformed surface samples / diameter
            (``"<axis> <angle>"`` for n-fold rotations, ``"<axis> continuous"`` = the max over the sweep).
        floor: the same score for the identity (two independent surface samplings): the sampling noise level.
        tol: the acceptance threshold (fraction of the diameter) used.
        hausdorff: candidate -> 99th percentile of the nearest-neighbour distances / diameter.
        hausdorff_tol: its acceptance threshold.
        diameter: metres. centre: the surface centroid the candidate axes pass through (metres, model frame).
        axes: candidate axis name -> unit vector (model frame).
    """

    symmetry: Symmetry | None
    scores: dict[str, float]
    floor: float
    tol: float
    diameter: float
    centre: np.ndarray
    axes: dict[str, np.ndarray]
    hausdorff: dict[str, float] = dataclasses.field(default_factory=dict)
    hausdorff_tol: float = 0.05

    def summary(self) -> str:
        """One line: what was proposed."""
        if self.symmetry is None:
            return "none"
        parts = []
        for c in self.symmetry.continuous:
            parts.append(f"continuous about {np.round(c.axis, 3).tolist()}")
        if len(self.symmetry.discrete):
            parts.append(f"{len(self.symmetry.discrete)} discrete")
        return ", ".join(parts)


def _surface_samples(obj: Any, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Two independent surface samplings ``(n, 3)`` and the diameter of a mesh / parts / point set."""
    from sim2real.render.assets import diameter_of

    if isinstance(obj, np.ndarray) or (isinstance(obj, (list, tuple)) and obj and not hasattr(obj[0], "faces")):
        pts = np.asarray(obj, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) < 4:
            raise ValueError(f"propose_symmetry: expected a mesh or (P, 3) points, got shape {pts.shape}")
        return pts, pts, diameter_of(pts)
    import trimesh

    if isinstance(obj, (list, tuple)):
        obj = trimesh.util.concatenate([trimesh.Trimesh(p.vertices, p.faces, process=False) for p in obj])
    elif isinstance(obj, trimesh.Scene):
        obj = obj.dump(concatenate=True)
    a, _ = trimesh.sample.sample_surface(obj, n, seed=seed)
    b, _ = trimesh.sample.sample_surface(obj, n, seed=seed + 1)
    return np.asarray(a, np.float64), np.asarray(b, np.float64), diameter_of(obj.vertices)


def propose_symmetry(mesh_or_points: Any, tol: float = 0.01, hausdorff_tol: float = 0.05, n_points: int = 20000,
                     folds: Sequence[int] = (2, 3, 4, 6), sweep_step_deg: float = 15.0, seed: int = 0) -> SymmetryProposal:
    """Propose a symmetry annotation from the geometry alone (no texture), for a person to confirm.

    Candidate axes: the model axes x, y, z and the principal axes of the surface (those not within 2 degrees
    of a model axis), through the surface centroid. Candidates per axis: n-fold rotations (360/n degrees) and a
    continuous symmetry (every angle of a ``sweep_step_deg`` sweep; the sweep is skipped, and the score is the
    worst n-fold one, when an n-fold rotation already fails). A transform passes when

    * the symmetric Chamfer distance (mean nearest-neighbour distance, both ways) between one surface sampling
      and another, transformed sampling is below ``tol`` x diameter, and
    * the 99th percentile of those nearest-neighbour distances (a robust Hausdorff distance) is below
      ``hausdorff_tol`` x diameter: a handle, cap or spout covers little surface (small mean) but moves far.

    With a continuous axis, 180 degree flips about the perpendicular candidate axes are tested too. Without one,
    the accepted n-fold rotations (largest n per axis) are closed into a group and every element is re-checked.
    Texture and colour are invisible to this test: confirm with renders.

    Args:
        mesh_or_points: a ``trimesh.Trimesh`` / ``Scene``, a list of meshes (model frame, metres), or ``(P, 3)`` points.
        tol: Chamfer threshold, fraction of the diameter.
        hausdorff_tol: 99th-percentile distance threshold, fraction of the diameter.
        n_points: surface samples per sampling.
        folds: n of the n-fold rotations tried.
        sweep_step_deg: angular step of the continuous sweep, degrees.
        seed: surface-sampling seed.

    Returns:
        :class:`SymmetryProposal` (``scores`` = Chamfer / diameter, ``hausdorff`` = 99th percentile / diameter).
    """
    from scipy.spatial import cKDTree

    a, b, diam = _surface_samples(mesh_or_points, n_points, seed)
    if diam <= 0:
        raise ValueError("propose_symmetry: degenerate geometry (zero diameter)")
    tree_a, tree_b = cKDTree(a), cKDTree(b)
    centre = b.mean(axis=0)

    def measure(T: np.ndarray) -> tuple[float, float]:
        R, t = T[:3, :3], T[:3, 3]
        d1, _ = tree_a.query(b @ R.T + t, k=1)  # transformed b -> a
        d2, _ = tree_b.query((a - t) @ R, k=1)  # a -> transformed b, as T^-1 a -> b (no tree per candidate)
        return (float((d1.mean() + d2.mean()) / 2 / diam),
                float(max(np.percentile(d1, 99), np.percentile(d2, 99)) / diam))

    axes: dict[str, np.ndarray] = {"x": np.eye(3)[0], "y": np.eye(3)[1], "z": np.eye(3)[2]}
    _, vecs = np.linalg.eigh(np.cov((b - centre).T))
    for k in range(3):
        v = vecs[:, 2 - k]
        v = v if v[np.argmax(np.abs(v))] > 0 else -v
        if all(abs(float(v @ u)) < math.cos(math.radians(2.0)) for u in axes.values()):
            axes[f"pca{k + 1}"] = v
    scores: dict[str, float] = {}
    haus: dict[str, float] = {}

    def check(name: str, T: np.ndarray) -> bool:
        scores[name], haus[name] = measure(T)
        return scores[name] < tol and haus[name] < hausdorff_tol

    check("identity", np.eye(4))
    passed: dict[str, int] = {}
    continuous: list[str] = []
    sweep = [t for t in np.arange(sweep_step_deg, 360.0 - 1e-9, sweep_step_deg)]
    for name, ax in axes.items():
        ok_all = True
        for n in folds:
            if check(f"{name} {360.0 / n:g}", rotation_about(ax, 360.0 / n, centre)):
                passed[name] = max(passed.get(name, 0), n)
            else:
                ok_all = False
        worst_c = max(scores[f"{name} {360.0 / n:g}"] for n in folds)
        worst_h = max(haus[f"{name} {360.0 / n:g}"] for n in folds)
        if ok_all:
            for t in sweep:
                c, h = measure(rotation_about(ax, float(t), centre))
                worst_c, worst_h = max(worst_c, c), max(worst_h, h)
        scores[f"{name} continuous"], haus[f"{name} continuous"] = worst_c, worst_h
        if ok_all and worst_c < tol and worst_h < hausdorff_tol:
            continuous.append(name)

    def on_axis(ax: np.ndarray) -> np.ndarray:
        # any point of the axis line will do: take the one closest to the origin, snapped to it when near
        c = centre - float(centre @ ax) * ax
        return np.zeros(3) if np.linalg.norm(c) < 0.005 * diam else c

    proposal = dict(scores=scores, floor=scores["identity"], tol=tol, diameter=diam, centre=centre, axes=axes,
                    hausdorff=haus, hausdorff_tol=hausdorff_tol)
    if continuous:
        main = min(continuous, key=lambda k: scores[f"{k} continuous"])
        ax = axes[main]
        cont = [ContinuousSymmetry(ax, on_axis(ax))]
        others = [k for k in continuous if abs(float(axes[k] @ ax)) < 0.999]
        if others:  # two axes: a sphere-like object, every rotation is a symmetry
            cont.append(ContinuousSymmetry(axes[others[0]], on_axis(axes[others[0]])))
        disc = []
        perp = [k for k in axes if abs(float(axes[k] @ ax)) < 0.05]
        flips = [k for k in perp if scores[f"{k} 180"] < tol and haus[f"{k} 180"] < hausdorff_tol]
        if flips and len(cont) == 1:
            disc.append(rotation_about(axes[min(flips, key=lambda k: scores[f"{k} 180"])], 180.0, on_axis(ax)))
        return SymmetryProposal(Symmetry._checked(disc, cont, "proposal"), **proposal)
    if len(passed) == 1:  # one axis: any point of it will do, as for a continuous one
        c = on_axis(axes[next(iter(passed))])
    else:  # several axes meet at the centroid
        c = np.zeros(3) if np.linalg.norm(centre) < 0.005 * diam else centre
    kept = []
    for k, T in enumerate(_close_group([rotation_about(axes[name], 360.0 / n, c) for name, n in passed.items()])):
        if check(f"group element {k + 1}", T):
            kept.append(T)
    sym = Symmetry._checked(kept, [], "proposal") if kept else None
    return SymmetryProposal(sym, **proposal)


def _close_group(gens: list[np.ndarray], limit: int = 48) -> list[np.ndarray]:
    """Non-identity elements of the group generated by 4x4 rigid transforms (capped at ``limit``)."""
    elems = [np.eye(4)]

    def known(T: np.ndarray) -> bool:
        return any(np.allclose(T, E, atol=1e-6) for E in elems)

    frontier = [g for g in gens]
    while frontier and len(elems) < limit:
        T = frontier.pop()
        if known(T):
            continue
        elems.append(T)
        frontier += [T @ g for g in gens] + [g @ T for g in gens]
    return elems[1:]
