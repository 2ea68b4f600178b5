"""The contract between dataset builders and the trainer."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from podhl.data.gpu_loader import ResidentArrays
from podhl.data.samplers import ShardSampler
from podhl.errors import ConfigError, DatasetNotFoundError


@dataclass
class DataBundle:
    """Train/test datasets of (image tensor C×H×W, int label) and their shape facts."""

    train: Dataset
    test: Dataset
    num_classes: int
    in_chans: int
    image_size: int  # side length the model sees (after any resize)
    # Optional in-memory tensors of both splits, for ``trainer.gpu_resident=true`` (small sets only).
    resident_train: ResidentArrays | None = None
    resident_test: ResidentArrays | None = None
    # The train split with the test transforms (no augmentation), for feature passes and analyses;
    # None when the train split has no augmentation anyway.
    train_eval: Dataset | None = None


def with_transform(dataset: Dataset, transform) -> Dataset:
    """A shallow copy of a torchvision-style dataset (same samples/files) with another ``transform``."""
    clone = copy.copy(dataset)
    clone.transform = transform
    return clone


def build_data(dataset_cfg: DictConfig) -> DataBundle:
    """Instantiate ``dataset.source`` and check it against the config's declared shape."""
    try:
        bundle = instantiate(dataset_cfg.source)
    except InstantiationException as err:  # surface our own errors (missing files) unwrapped
        if isinstance(err.__cause__, (ConfigError, DatasetNotFoundError)):
            raise err.__cause__ from None
        raise
    if not isinstance(bundle, DataBundle):
        raise ConfigError(f"dataset.source._target_ must return a DataBundle, got {type(bundle).__name__}")
    declared = int(dataset_cfg.num_classes)
    if bundle.num_classes != declared:
        raise ConfigError(
            f"dataset '{dataset_cfg.name}' declares num_classes={declared} but its files hold "
            f"{bundle.num_classes} classes"
        )
    return bundle


def eval_loader(dataset: Dataset, batch_size: int, num_workers: int, rank: int = 0, world: int = 1, pin_memory: bool = False) -> DataLoader:
    """In-order loader over ``dataset`` (this rank's shard when ``world`` > 1), no shuffling."""
    return DataLoader(dataset, batch_size=batch_size, sampler=ShardSampler(len(dataset), rank, world),
                      num_workers=num_workers, pin_memory=pin_memory)


def build_loaders(
    bundle: DataBundle,
    batch_size: int,
    num_workers: int,
    seed: int,
    rank: int = 0,
    world: int = 1,
    pin_memory: bool = False,
    eval_batch_size: int | None = None,
) -> tuple[DataLoader, DataLoader, torch.Generator]:
    """Per-rank loaders. ``batch_size`` is the per-rank batch.

    The train order is torch's DistributedSampler (also for one process), seeded by ``seed`` and
    re-shuffled by ``set_epoch``: N ranks with batch B see, step for step, the samples one process
    with batch N·B sees. The test set is split into disjoint shards (no padding), so reduced test
    metrics are exact. The returned generator seeds worker processes; the trainer re-seeds it per epoch.
    """
    generator = torch.Generator()
    generator.manual_seed(seed)
    common = dict(num_workers=num_workers, pin_memory=pin_memory, persistent_workers=num_workers > 0)
    sampler = DistributedSampler(bundle.train, num_replicas=world, rank=rank, shuffle=True, seed=seed)
    train = DataLoader(bundle.train, batch_size=batch_size, sampler=sampler, generator=generator, **common)
    test = eval_loader(bundle.test, eval_batch_size or batch_size, num_workers, rank, world, pin_memory)
    return train, test, generator
