"""Batches as a pure function of the step number: a resumed run sees exactly the batches an uninterrupted one would.

Each *stream* walks through a fresh random permutation of its samples per epoch; a batch that crosses an epoch
boundary takes the rest of one permutation and the start of the next, so no sample is skipped and nothing is
truncated. Two ways to seed the permutations (both pure functions of the step):

* ``"epoch"``: epoch ``e`` of stream ``s`` is ``randperm`` seeded by ``SeedSequence([seed, s, e])`` (random access);
* ``"chain"``: the epochs are successive ``randperm`` draws of one generator seeded with ``seed`` (what
  ``sim2real adapt`` runs have always used, so their checkpoints resume onto the same batches).
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch

from sim2real.errors import Sim2RealError


class StepSampler:
    """Index batches of step ``step`` (0-based): ``sampler(step)`` -> CPU int64 ``(batch_size,)`` global indices.

    Under ``torchrun`` each rank gets its contiguous share of that global batch
    (:func:`sim2real.engine.distributed.shard`), so the global batch does not depend on the number of processes.

    Args:
        group_sizes: samples per group (files concatenated in this order).
        batch_size: indices per step.
        seed: run seed (``"epoch"``) or the generator seed (``"chain"``).
        balanced: False: one stream over all samples; True: one stream per group, ``batch_size`` split evenly.
        seeding: how epochs are permuted (module docstring).
    """

    def __init__(self, group_sizes: Sequence[int], batch_size: int, seed: int, balanced: bool = False,
                 seeding: Literal["epoch", "chain"] = "epoch") -> None:
        if not group_sizes or min(group_sizes) < 1:
            raise ValueError("StepSampler: every group needs at least one sample")
        if seeding not in ("epoch", "chain"):
            raise ValueError(f"StepSampler: seeding must be 'epoch' or 'chain', got {seeding!r}")
        from sim2real.engine.distributed import check_batch_size

        check_batch_size(batch_size)  # under torchrun: equal shares of the global batch, said before any step
        self.seed, self.seeding = int(seed), seeding
        self.offsets = np.concatenate([[0], np.cumsum(group_sizes)[:-1]]).astype(np.int64)
        if balanced and len(group_sizes) > 1:
            k = len(group_sizes)
            if batch_size < k:
                raise Sim2RealError(f"batch_size={batch_size}: mix: balanced needs at least one sample per --train file ({k})")
            self.streams = [(int(self.offsets[g]), int(group_sizes[g]), batch_size // k + (1 if g < batch_size % k else 0))
                            for g in range(k)]
        else:
            self.streams = [(0, int(sum(group_sizes)), batch_size)]
        self._cache: dict[tuple[int, int], torch.Tensor] = {}
        self._chains: dict[int, tuple[torch.Generator, int]] = {}  # stream -> (generator, next epoch it draws)

    def _perm(self, stream: int, n: int, epoch: int) -> torch.Tensor:
        key = (stream, epoch)
        if key in self._cache:
            return self._cache[key]
        if len(self._cache) > 8:
            self._cache.clear()
        if self.seeding == "epoch":
            seed = int(np.random.SeedSequence([self.seed, stream, epoch]).generate_state(1)[0])
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        else:
            g, nxt = self._chains.get(stream, (None, 0))
            if g is None or nxt > epoch:  # (re)start the chain: epochs are drawn in order
                g, nxt = torch.Generator().manual_seed(self.seed), 0
            while nxt <= epoch:
                perm = torch.randperm(n, generator=g)
                nxt += 1
            self._chains[stream] = (g, nxt)
        self._cache[key] = perm
        return perm

    def __call__(self, step: int) -> torch.Tensor:
        parts = []
        for s, (offset, n, b) in enumerate(self.streams):
            pos = step * b
            got = 0
            while got < b:
                epoch, start = divmod(pos + got, n)
                take = min(b - got, n - start)
                parts.append(self._perm(s, n, epoch)[start:start + take] + offset)
                got += take
        from sim2real.engine.distributed import shard

        return shard(torch.cat(parts))  # under torchrun: this rank's share of the global batch
