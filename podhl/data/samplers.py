"""Samplers for multi-process runs."""

from __future__ import annotations

from typing import Iterator

from torch.utils.data import Sampler


class ShardSampler(Sampler[int]):
    """Every ``world``-th index starting at ``rank``, in order, without padding (exact test metrics)."""

    def __init__(self, length: int, rank: int, world: int) -> None:
        self.indices = range(rank, length, world)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
