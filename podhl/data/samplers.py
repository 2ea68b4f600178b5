"""Samplers for multi-process runs."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from torch.utils.data import DistributedSampler, Sampler


class ShardSampler(Sampler[int]):
    """Every ``world``-th index starting at ``rank``, in order, without padding (exact test metrics)."""

    def __init__(self, length: int, rank: int, world: int) -> None:
        self.indices = range(rank, length, world)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class ResumableSampler(DistributedSampler):
    """torch's DistributedSampler whose epoch can start after its first ``skip`` samples, so a run resumed
    from a mid-epoch checkpoint sees exactly the batches the interrupted run had not yet seen."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.skip = 0

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.skip, None)

    def __len__(self) -> int:
        return super().__len__() - self.skip
