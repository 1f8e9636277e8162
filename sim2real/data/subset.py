"""A stratified, deterministic subset of a labelled HDF5 file (``sim2real subset``): "a few labelled target images".

PixelDA's Table 6 asks what a *few* labelled target images add (1,000 LineMod images take PixelDA from 23.5 to
13.3 deg). :func:`stratified_index` draws them so that every class is represented as in the file:

* ``per_class=False``: ``n`` images in all, split over the classes in proportion to their counts by the largest
  remainder method (every class with images gets at least one when ``n`` >= the number of such classes);
* ``per_class=True``: ``n`` images of every class (all of a class that has fewer, with a note).

Within a class the images are a uniform draw without replacement; the result depends only on (labels, n,
per_class, seed), and the indices are returned sorted (file order), so the subset of a subset with the same
arguments is itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from sim2real.errors import Sim2RealError


def class_quota(counts: np.ndarray, n: int) -> np.ndarray:
    """How many images of each class a proportional draw of ``n`` takes (largest remainder; sums to ``min(n, N)``)."""
    counts = np.asarray(counts, np.int64)
    total = int(counts.sum())
    n = min(int(n), total)
    present = counts > 0
    if n >= int(present.sum()):  # one each first: a class with images is never left out
        base = present.astype(np.int64)
        rest = n - int(base.sum())
        share = (counts - base) * rest / max(total - int(base.sum()), 1)
    else:
        base = np.zeros_like(counts)
        rest, share = n, counts * n / total
    q = base + np.floor(share).astype(np.int64)
    left = n - int(q.sum())
    if left:
        frac = share - np.floor(share)
        # ties broken by class id (stable sort of -frac): deterministic
        for c in np.argsort(-frac, kind="stable"):
            if left == 0:
                break
            if q[c] < counts[c]:
                q[c] += 1
                left -= 1
    return np.minimum(q, counts)


def stratified_index(labels: np.ndarray, n: int, per_class: bool = False, seed: int = 0,
                     num_classes: int | None = None) -> np.ndarray:
    """Sorted indices of a stratified draw from ``labels`` (module docstring)."""
    if n < 1:
        raise Sim2RealError(f"-n {n}: expected an integer >= 1")
    labels = np.asarray(labels, np.int64)
    k = int(num_classes if num_classes is not None else (labels.max() + 1 if len(labels) else 0))
    counts = np.bincount(labels, minlength=k)
    quota = np.minimum(counts, n) if per_class else class_quota(counts, n)
    rng = np.random.default_rng(seed)
    picks = []
    for c in range(k):  # one generator, classes in order: the draw of class c does not depend on later classes' sizes
        idx = np.flatnonzero(labels == c)
        perm = rng.permutation(len(idx))
        picks.append(idx[np.sort(perm[:quota[c]])])
    return np.sort(np.concatenate(picks)) if picks else np.zeros(0, np.int64)


def write_subset(src: str | Path, out: str | Path, n: int, per_class: bool = False, seed: int = 0) -> dict[str, Any]:
    """Write ``out``: the stratified subset of labelled ``src`` with every per-sample array and the per-class data.

    Returns:
        ``{"out", "n", "per_class_counts": {name: count}, "short": [names with fewer than asked]}``.
    """
    from sim2real.data import h5

    data = h5.read(src)
    if data.label is None or data.class_names is None:
        raise Sim2RealError(f"{src}: has no 'label' dataset (subset draws per class: expected a labelled file)")
    index = stratified_index(data.label, n, per_class=per_class, seed=seed, num_classes=len(data.class_names))
    sub = data.subset(index)
    counts = np.bincount(sub.label, minlength=len(data.class_names))
    have = np.bincount(data.label, minlength=len(data.class_names))
    short = [name for name, c, h in zip(data.class_names, counts, have) if per_class and h < n]
    arrays: dict[str, np.ndarray] = {k: getattr(sub, k) for k in ("rgb", "depth", "mask", "label", "quat", "trans")
                                     if getattr(sub, k) is not None}
    for key in ("K", "model_points", "diameters", "extents"):
        if getattr(data, key) is not None:
            arrays[key] = getattr(data, key)
    provenance = {"subset_of": str(Path(src).resolve()), "subset_of_n": len(data), "n": int(n),
                  "per_class": bool(per_class), "seed": int(seed),
                  "indices_sha1": __import__("hashlib").sha1(index.astype("<i8").tobytes()).hexdigest()}
    domain = data.attrs.get("domain", "target")
    attrs = h5.make_attrs(domain, data.attrs.get("config", "{}"), seed, provenance=json.dumps(provenance, sort_keys=True))
    h5.write(out, arrays, attrs, class_names=list(data.class_names), symmetries=data.symmetries,
             extra={"subset_index": index.astype(np.int64)})
    return {"out": str(out), "n": int(len(index)), "of": len(data),
            "per_class_counts": {name: int(c) for name, c in zip(data.class_names, counts)}, "short": short}
