"""Per-rank loaders of a :class:`~podhl.data.bundle.DataBundle`: the shuffled training loader, the
in-order test loader and un-augmented loaders over either split (feature passes, analyses).

The train order is torch's DistributedSampler (also for one process), seeded by the run seed and
re-shuffled per epoch, so N ranks with batch B see, step for step, the samples one process with
batch N·B sees. Evaluation splits are disjoint shards without padding, so reduced metrics are exact.
``gpu_resident=True`` keeps small in-memory sets on the device and augments there
(:mod:`podhl.data.gpu_loader`), with the same sampler and so the same batches.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from podhl.data.bundle import DataBundle
from podhl.data.gpu_loader import GpuResidentLoader
from podhl.data.samplers import ResumableSampler, ShardSampler
from podhl.errors import ConfigError


def eval_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int = 0,
    rank: int = 0,
    world: int = 1,
    pin_memory: bool = False,
    collate_fn=None,
) -> DataLoader:
    """In-order loader over ``dataset`` (this rank's shard when ``world`` > 1), no shuffling."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=ShardSampler(len(dataset), rank, world),
        num_workers=num_workers,
        pin_memory=pin_memory,
        collate_fn=collate_fn,
    )


class Loaders:
    def __init__(
        self,
        bundle: DataBundle,
        batch_size: int,
        eval_batch_size: int,
        num_workers: int,
        seed: int,
        rank: int,
        world: int,
        device: torch.device,
        gpu_resident: bool = False,
        pin_memory: bool = False,
        name: str = "dataset",
        collate_fn=None,
    ) -> None:
        """``collate_fn``: how samples become a batch (default: stacked tensors; detection: lists)."""
        self.bundle, self.eval_batch_size, self.num_workers = bundle, eval_batch_size, num_workers
        self.collate_fn = collate_fn
        self.rank, self.world, self.device, self.pin_memory = rank, world, device, pin_memory
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)  # seeds worker processes; re-seeded per epoch
        self.sampler = ResumableSampler(bundle.train, num_replicas=world, rank=rank, shuffle=True, seed=seed)
        self.gpu_resident = gpu_resident
        if gpu_resident:
            if bundle.resident_train is None:
                raise ConfigError(
                    f"trainer.gpu_resident=true needs an in-memory dataset (digits, mnist, cifar10/100 without "
                    f"resize, synthetic); '{name}' is read from image files"
                )
            self.train = GpuResidentLoader(
                bundle.resident_train, batch_size, self.sampler, device, augment=True, seed=seed
            )
        else:
            self.train = DataLoader(
                bundle.train,
                batch_size=batch_size,
                sampler=self.sampler,
                generator=self.generator,
                num_workers=num_workers,
                pin_memory=pin_memory,
                persistent_workers=num_workers > 0,
                collate_fn=collate_fn,
            )
        self.test = self.eval("test")

    def eval(self, split: str, shard: bool = True):
        """In-order, un-augmented loader over ``split`` ("train", "val" or "test"); this rank's shard if ``shard``."""
        if split not in ("train", "val", "test") or (split == "val" and self.bundle.val is None):
            raise ValueError(f"no split {split!r} in this dataset (val exists only with dataset.val_fraction > 0)")
        rank, world = (self.rank, self.world) if shard else (0, 1)
        if self.gpu_resident:
            arrays = getattr(self.bundle, f"resident_{split}")
            sampler = ShardSampler(len(arrays.labels), rank, world)
            return GpuResidentLoader(arrays, self.eval_batch_size, sampler, self.device, augment=False)
        dataset = (self.bundle.train_eval or self.bundle.train) if split == "train" else getattr(self.bundle, split)
        return eval_loader(
            dataset, self.eval_batch_size, self.num_workers, rank, world, self.pin_memory, self.collate_fn
        )

    def start_epoch(self, epoch: int, epoch_seed: int, skip_batches: int = 0) -> None:
        """Seed the epoch's order and augmentation, so a resumed run replays the same batches; with
        ``skip_batches`` the epoch starts after its first batches (a mid-epoch resume)."""
        self.generator.manual_seed(epoch_seed)
        if isinstance(self.train, GpuResidentLoader):
            self.train.manual_seed(epoch_seed)
        self.sampler.set_epoch(epoch)
        self.sampler.skip = skip_batches * self.batch_size

    def rng_state(self):
        """The state of the device-side augmentation's generator
        (None for the CPU loader: it uses torch's global RNG)."""
        return self.train.generator.get_state() if isinstance(self.train, GpuResidentLoader) else None

    def set_rng_state(self, state) -> None:
        if state is not None:
            self.train.generator.set_state(state)
