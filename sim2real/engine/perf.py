"""The ``perf`` config section the adaptation methods share (torch-free, so configs load without torch).

Speed settings change how fast a step runs, not what it computes: the whole section may change on ``--resume``.
PixelDA's section extends it with its own two switches (``reuse_fake``, ``freeze_inactive``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class PerfConfig:
    """Speed settings: they change how fast a step runs, not what it computes."""

    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:N``."""
    amp: Literal["auto", "bf16", "fp32"] = "auto"
    """Mixed precision: ``auto`` = bf16 autocast on CUDA, fp32 on the CPU (losses, penalties and alignment terms
    run in fp32 either way)."""
    channels_last: bool | None = None
    """NHWC memory format; null = on."""
    data_on_device: bool | None = None
    """Keep the datasets on the GPU; null = when they fit in a quarter of the free GPU memory."""
    foreach: bool = True
    """Batched optimiser / clipping kernels (fused Adam on CUDA)."""
