"""The contract between dataset builders and the trainer."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset

from podhl.errors import ConfigError, DatasetNotFoundError


@dataclass
class DataBundle:
    """Train/test datasets of (image tensor C×H×W, int label) and their shape facts."""

    train: Dataset
    test: Dataset
    num_classes: int
    in_chans: int
    image_size: int  # side length the model sees (after any resize)


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


def build_loaders(
    bundle: DataBundle,
    batch_size: int,
    num_workers: int,
    seed: int,
    pin_memory: bool = False,
    eval_batch_size: int | None = None,
    train_sampler=None,
) -> tuple[DataLoader, DataLoader, torch.Generator]:
    """Seeded loaders. The returned generator is re-seeded per epoch by the trainer (resume-exact)."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    common = dict(num_workers=num_workers, pin_memory=pin_memory, persistent_workers=num_workers > 0)
    train = DataLoader(
        bundle.train,
        batch_size=batch_size,
        shuffle=train_sampler is None,
        sampler=train_sampler,
        drop_last=False,
        generator=generator,
        **common,
    )
    test = DataLoader(bundle.test, batch_size=eval_batch_size or batch_size, shuffle=False, **common)
    return train, test, generator
