"""Sample grids of a PixelDA run: ``source | G(source, z_1) ... G(source, z_K) | target`` per row.

Grids use a fixed set of source and target images and fixed noise draws (from their own seeded
generator, never the global RNG, so writing a grid does not change the training run). G runs with batch statistics,
all the grid's images in one batch, as in training (:func:`sim2real.engine.bn.batch_statistics`: its running
statistics are restored after); ``sim2real export`` first recomputes those statistics from the source, so its images
match these. ``batch_stats=False`` runs G in eval mode instead (I2I Adapt, whose shared encoder's statistics mix
both domains by design).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from sim2real.data.tensors import tensor_to_rgb
from sim2real.engine.amp import Speed, autocast, to_memory_format
from sim2real.utils import atomic_write_bytes


class SampleGrid:
    """Fixed inputs for the periodic sample grids.

    Args:
        src_x: ``(R, C, H, W)`` source images in [-1, 1] (one grid row each).
        tgt_x: ``(R', C, H, W)`` target images (shown in the last column; unpaired with the row's source).
        draws: K noise draws per source image.
        noise_dim: G's z dimension.
        seed: seeds the fixed noise.
        batch_stats: G with batch statistics (PixelDA's G, as in training) or in eval mode (running statistics).
    """

    def __init__(self, src_x: torch.Tensor, tgt_x: torch.Tensor, draws: int, noise_dim: int, seed: int,
                 batch_stats: bool = True) -> None:
        self.batch_stats = batch_stats
        self.src_x = src_x
        self.tgt_x = tgt_x
        g = torch.Generator().manual_seed(seed)
        self.z = torch.rand(draws, src_x.shape[0], max(noise_dim, 1), generator=g).mul_(2).sub_(1)[..., :noise_dim]
        self.draws = draws

    @torch.no_grad()
    def render(self, G: torch.nn.Module, speed: Speed) -> np.ndarray:
        """The grid as uint8 ``(rows * h', cols * w', 3)`` (RGB channels only; 2-px grey separators)."""
        from sim2real.engine.bn import batch_statistics, running_statistics

        rows = self.src_x.shape[0]
        xs = to_memory_format(self.src_x.to(speed.device), speed).repeat(self.draws, 1, 1, 1)
        z = self.z.reshape(-1, self.z.shape[-1]).to(speed.device) if self.z.shape[-1] else None
        mode = batch_statistics if self.batch_stats else running_statistics
        with mode(G), autocast(speed):
            out = G(xs, z).float()
        cols = [tensor_to_rgb(self.src_x)] + [tensor_to_rgb(o) for o in out.split(rows)]
        tgt = tensor_to_rgb(self.tgt_x)
        tgt = tgt[np.arange(rows) % len(tgt)]
        cols.append(tgt)
        return compose_grid(cols)


def compose_grid(columns: list[np.ndarray], gap: int = 2, min_size: int = 64) -> np.ndarray:
    """Tile columns of uint8 ``(R, H, W, 3)`` images into one image; small images are upscaled (nearest)."""
    r, h, w, _ = columns[0].shape
    scale = max(1, int(np.ceil(min_size / max(h, w))))
    hh, ww = h * scale, w * scale
    out = np.full((r * hh + (r + 1) * gap, len(columns) * ww + (len(columns) + 1) * gap, 3), 128, np.uint8)
    for j, col in enumerate(columns):
        big = col.repeat(scale, axis=1).repeat(scale, axis=2)
        for i in range(r):
            y, x = gap + i * (hh + gap), gap + j * (ww + gap)
            out[y:y + hh, x:x + ww] = big[i]
    return out


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write a uint8 ``(H, W, 3)`` image as PNG atomically (under ``torchrun``, rank 0 only)."""
    from PIL import Image

    from sim2real.engine.distributed import is_main

    if not is_main():
        return

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
