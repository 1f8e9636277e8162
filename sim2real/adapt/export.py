"""Apply a trained PixelDA generator to a source dataset -> an "adapted" HDF5 file.

Each source sample is adapted ``per_source`` times with independent noise draws z; output sample
``i * per_source + k`` is draw k of source sample i. Labels, poses, masks, depth and the per-class data
(``class_names``, ``model_points``, ``diameters``, ``extents``, ``symmetries``, ``K``) are copied exactly; only ``rgb`` is
G's output. For RGB-D runs G also outputs a depth *channel* (in [-1, 1], relative to the object centre);
it is not converted back to metres: the source's metric depth is copied instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sim2real.data import h5
from sim2real.data.tensors import tensor_to_rgb
from sim2real.errors import Sim2RealError
from sim2real.models.loading import load_generator
from sim2real.engine.amp import resolve_speed, to_memory_format
from sim2real.engine.bank import TensorBank
from sim2real.engine.device import resolve_device
from sim2real.utils import progress

PER_SAMPLE_COPY = ("depth", "mask", "label", "quat", "trans")


@torch.no_grad()
def export_adapted(run_dir: str | Path, source: str | Path, out: str | Path, per_source: int = 1,
                   step: int | str | None = None, batch_size: int = 256, device: str = "auto",
                   seed: int | None = None) -> dict[str, Any]:
    """Write ``out``: the source samples passed through the run's G (``per_source`` draws each).

    Args:
        run_dir: a ``sim2real adapt`` run folder.
        source: source HDF5 (same image size, and depth for RGB-D runs).
        out: the adapted HDF5 file to write (atomically).
        per_source: K noise draws per source sample (K >= 1).
        step: checkpoint (None = best.pt when the run had --val, else last.pt; "best", "last" or a step number).
        batch_size: images per G call.
        device: ``auto`` / ``cpu`` / ``cuda[:N]``.
        seed: seeds the noise draws (default: the run's seed); recorded in the file.

    Returns:
        ``{"out", "n", "step", "per_source"}``.
    """
    if per_source < 1:
        raise Sim2RealError(f"--per-source {per_source}: expected an integer >= 1")
    if batch_size < 1:
        raise Sim2RealError(f"--batch-size {batch_size}: expected an integer >= 1")
    out_dir = Path(out).parent
    if not out_dir.is_dir():
        raise Sim2RealError(f"{out}: the output folder {out_dir} does not exist")
    G, info = load_generator(run_dir, step)
    if per_source > 1 and G.noise_dim == 0:
        raise Sim2RealError(f"--per-source {per_source}: the generator of {run_dir} takes no noise (a {info.get('kind', '?')} "
                            "run is deterministic), so every draw would be the same image; use --per-source 1")
    data = h5.read(source)
    if data.image_size != tuple(info["image_size"]):
        raise Sim2RealError(f"{source}: images are {data.image_size[0]}x{data.image_size[1]}, but the generator in "
                            f"{run_dir} was trained on {info['image_size'][0]}x{info['image_size'][1]} (size mismatch)")
    use_depth = info["use_depth"]
    if use_depth and data.depth is None:
        raise Sim2RealError(f"{source}: has no 'depth' dataset, but the run was trained on RGB-D input")
    # G is class-agnostic: it translates any image of its size. Classes its run never adapted on (other objects, or
    # those left out with train.source_classes) are allowed and named in the provenance: the unseen-class study.
    run_seen = list((info.get("config", {}).get("train", {}) or {}).get("source_classes") or info["class_names"])
    unseen = [c for c in (data.class_names or []) if c not in run_seen]
    seed = info["seed"] if seed is None else int(seed)
    dev = resolve_device(device)
    # fp32 on every device: the output is quantised to uint8, and bf16's 8-bit mantissa would cost ~1 level.
    speed = resolve_speed(dev, amp="fp32")
    G = to_memory_format(G.to(dev), speed)
    tensors = TensorBank.from_data([data], use_depth, keep=())
    n, k = len(data), per_source
    rgb = np.empty((n * k,) + data.rgb.shape[1:], np.uint8)
    gen = torch.Generator().manual_seed(seed)
    bar = progress(total=n * k, desc="export", unit="img")
    try:
        for start in range(0, n, batch_size):
            idx = torch.arange(start, min(n, start + batch_size))
            x = tensors.batch(idx, dev, speed.channels_last)["x"]
            b = x.shape[0]
            # z for (sample i, draw j) is row i*K + j of this batch's draws: independent of batch_size.
            z = torch.rand(b * k, max(G.noise_dim, 1), generator=gen).mul_(2).sub_(1)[:, :G.noise_dim]
            xx = x.repeat_interleave(k, dim=0)
            y = G(xx, z.to(dev) if G.noise_dim > 0 else None)
            rgb[start * k:(start + b) * k] = tensor_to_rgb(y)
            bar.update(b * k)
    finally:
        bar.close()
    arrays: dict[str, np.ndarray] = {"rgb": rgb}
    for key in PER_SAMPLE_COPY:
        arr = getattr(data, key)
        if arr is not None:
            arrays[key] = np.repeat(arr, k, axis=0)
    for key in ("K", "model_points", "diameters", "extents", "symmetries"):
        arr = getattr(data, key)
        if arr is not None:
            arrays[key] = arr
    provenance = {"run_dir": str(Path(run_dir).resolve()), "checkpoint": str(Path(info["checkpoint"]).resolve()),
                  "step": info["step"],
                  "per_source": k, "source": str(Path(source).resolve()), "source_n": n,
                  "order": "sample i, draw j -> index i * per_source + j", "depth": "copied from the source (metres)",
                  "adapted_on_classes": run_seen, "classes_unseen_in_adaptation": unseen}
    attrs = h5.make_attrs("adapted", info["config"], seed, provenance=json.dumps(provenance, sort_keys=True))
    h5.write(out, arrays, attrs, class_names=data.class_names)
    return {"out": str(out), "n": n * k, "step": info["step"], "per_source": k, "checkpoint": info["checkpoint"],
            "unseen": unseen}
