"""PixelDA's memorisation check: is G copying target training images instead of adapting the renders?

The paper (Bousmalis et al. 2017, Sec. 5, Fig. 4/5) shows adapted samples next to their nearest neighbour in the
target training set by pixel L2 distance: if the neighbours are near-copies, G has memorised target images.

Here each of ``n`` adapted samples (a seeded random subset) gets its nearest target training image by pixel L2
distance over the RGB channels (uint8 values; ranking by L2 equals ranking by RMS). As a yardstick the same is
done for ``n`` target training images against the *other* target training images (leave-one-out): a typical
distance between two different real images. Distances are reported as RMS per pixel channel on the 0-255 scale
(``L2 / sqrt(H * W * 3)``); an exact copy has distance 0.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sim2real.errors import Sim2RealError

#: Adapted samples closer than this RMS distance (0-255 scale) to a target image are flagged as near-copies.
NEAR_COPY_RMS = 2.0


def nearest_neighbours(queries: np.ndarray, bank: np.ndarray, exclude: np.ndarray | None = None,
                       chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Nearest bank image of each query by pixel L2 distance.

    Args:
        queries: uint8 ``(Q, H, W, 3)``.
        bank: uint8 ``(N, H, W, 3)``.
        exclude: ``(Q,)`` bank index to skip for each query (leave-one-out), or None.
        chunk: bank images per matrix product (bounds memory at ``Q * chunk`` floats).

    Returns:
        ``(index (Q,) int64, rms (Q,) float64)``: bank index of the nearest image and the RMS distance
        per pixel channel on the 0-255 scale.
    """
    q = np.asarray(queries, dtype=np.float32).reshape(len(queries), -1)
    b_all = np.asarray(bank).reshape(len(bank), -1)
    if q.shape[1] != b_all.shape[1]:
        raise ValueError(f"nearest_neighbours: query images {queries.shape[1:]} vs bank images {bank.shape[1:]}")
    if len(b_all) == 0 or (exclude is not None and len(b_all) < 2):
        raise ValueError("nearest_neighbours: the bank needs images to compare with")
    qq = np.einsum("ij,ij->i", q, q, dtype=np.float64)
    best_d = np.full(len(q), np.inf)
    best_i = np.zeros(len(q), dtype=np.int64)
    for s in range(0, len(b_all), chunk):
        b = b_all[s:s + chunk].astype(np.float32)
        bb = np.einsum("ij,ij->i", b, b, dtype=np.float64)
        d2 = qq[:, None] + bb[None, :] - 2.0 * (q @ b.T).astype(np.float64)
        if exclude is not None:
            rows = np.nonzero((exclude >= s) & (exclude < s + len(b)))[0]
            d2[rows, exclude[rows] - s] = np.inf
        j = np.argmin(d2, axis=1)
        d = d2[np.arange(len(q)), j]
        better = d < best_d
        best_d[better] = d[better]
        best_i[better] = j[better] + s
    rms = np.sqrt(np.clip(best_d, 0, None) / q.shape[1])
    return best_i, rms


@dataclasses.dataclass
class MemorisationResult:
    """Outcome of :func:`memorisation_check` (arrays are per checked adapted sample)."""

    adapted_path: str
    target_path: str
    adapted_domain: str
    sample_index: np.ndarray  # (n,) indices into the adapted file
    neighbour_index: np.ndarray  # (n,) indices into the target training file
    distance: np.ndarray  # (n,) RMS 0-255
    reference_distance: np.ndarray  # (m,) target -> other target images, RMS 0-255
    adapted_rgb: np.ndarray  # (n, H, W, 3) uint8
    neighbour_rgb: np.ndarray  # (n, H, W, 3) uint8

    def summary(self) -> dict:
        """JSON-ready numbers (no images)."""
        return {
            "adapted": self.adapted_path, "target_train": self.target_path, "adapted_domain": self.adapted_domain,
            "n_checked": int(len(self.distance)),
            "median_nn_distance": float(np.median(self.distance)),
            "min_nn_distance": float(np.min(self.distance)),
            "median_target_to_target_distance": float(np.median(self.reference_distance)),
            "near_copies": int(np.sum(self.distance < NEAR_COPY_RMS)),
            "near_copy_threshold": NEAR_COPY_RMS,
            "distance_unit": "RMS per pixel channel, 0-255 scale",
        }


def memorisation_check(adapted, target, n: int = 24, seed: int = 0) -> MemorisationResult:
    """Run the check for an adapted dataset against the target training set.

    Args:
        adapted: :class:`~sim2real.data.h5.H5Data` of adapted images (``sim2real export`` output).
        target: :class:`~sim2real.data.h5.H5Data` of the target images G was trained against.
        n: how many adapted samples (and target yardstick samples) to check.
        seed: which samples (seeded choice, recorded by the index arrays).
    """
    if adapted.image_size != target.image_size:
        raise Sim2RealError(f"{adapted.path}: images are {adapted.image_size[0]}x{adapted.image_size[1]}, the target "
                            f"training set {target.path} has {target.image_size[0]}x{target.image_size[1]}")
    if len(target) < 2:
        raise Sim2RealError(f"{target.path}: needs at least 2 images for the memorisation check")
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(adapted), size=min(n, len(adapted)), replace=False))
    nn_i, nn_d = nearest_neighbours(adapted.rgb[idx], target.rgb)
    ref = np.sort(rng.choice(len(target), size=min(n, len(target)), replace=False))
    _, ref_d = nearest_neighbours(target.rgb[ref], target.rgb, exclude=ref)
    return MemorisationResult(adapted_path=str(adapted.path), target_path=str(target.path),
                              adapted_domain=str(adapted.attrs.get("domain")), sample_index=idx, neighbour_index=nn_i,
                              distance=nn_d, reference_distance=ref_d, adapted_rgb=adapted.rgb[idx],
                              neighbour_rgb=target.rgb[nn_i])
