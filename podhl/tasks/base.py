"""The task seam: what a run trains and how it is judged.

A task builds the data and the model, turns a training batch into the features and labels the
criterion sees (plus any loss terms of its own, e.g. a detector's box regression), and evaluates
the model. The training loop (``podhl.engine.trainer``) only talks to this interface, so it never
branches on a task's or a loss's name. Three tasks plug in here: image classification, face
verification (classification training, pair-verification evaluation) and detection (a detector
whose region classifier is the criterion).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from podhl.data import Loaders


@dataclass
class Runtime:
    """Where and how tensors run: device, rank/world size, autocast dtype, memory format."""

    device: torch.device
    rank: int = 0
    world: int = 1
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    progress: bool = True  # tqdm bars (rank 0 only)

    def autocast(self):
        return nullcontext() if self.amp_dtype is None else torch.autocast(self.device.type, dtype=self.amp_dtype)

    def images_to_device(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images


@dataclass
class StepOutput:
    """One (micro-)batch through the model: what the criterion sees, and the task's own loss terms."""

    features: torch.Tensor  # (N, feat_dim) fp32, with grad in training
    labels: torch.Tensor  # (N,) int64 class indices
    terms: dict[str, torch.Tensor] = field(default_factory=dict)  # added to the criterion's "loss"
    # rows of each image, in order (detection: sampled RoIs per image), passed as ``groups=`` to a criterion
    # whose ``takes_groups`` is true (loss=hl_official_detection: the authors' per-image center chain)
    groups: list[int] | None = None


class Task:
    """Base class; see :class:`podhl.tasks.classification.ClassificationTask` for the reference task."""

    #: the metric whose best value selects ``best.pt`` (higher is better); reported as ``best_<name>``
    primary_metric: str = "test_acc"
    #: what chooses best.pt when the dataset has a validation split (``dataset.val_fraction`` > 0)
    validation_metric: str = "val_acc"
    # the backbones the task builds its model from: backbone.kind in their YAML (absent: "features", an image
    # -> pooled features network); checked before any data is read (podhl/engine/build.py)
    backbone_kind: str = "features"
    backbone_examples: str = "backbone=small_cnn or backbone=resnet18"

    def setup(self, cfg: DictConfig, runtime: Runtime) -> None:
        """Build datasets and loaders from the composed config (files are checked here, before training)."""
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        """Classes the criterion scores (detection: object classes + background)."""
        raise NotImplementedError

    def build_model(self, cfg: DictConfig) -> nn.Module:
        """The model; it has ``feat_dim``, the width of the features the criterion receives."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line for the log: what data the run uses."""
        return type(self).__name__

    # ------------------------------------------------------------------ training
    def start_epoch(self, epoch: int, epoch_seed: int, skip_batches: int = 0) -> None:
        """Seed the epoch's sample order and augmentation; ``skip_batches``: start after the epoch's first
        batches (resuming a mid-epoch checkpoint)."""

    def rng_state(self) -> Any:
        """Random state the task keeps outside torch's global RNG (saved in mid-epoch checkpoints)."""
        return None

    def set_rng_state(self, state: Any) -> None:
        pass

    def train_batches(self) -> Iterable[Any]:
        raise NotImplementedError

    def to_device(self, batch: Any) -> Any:
        raise NotImplementedError

    def split(self, batch: Any, parts: int) -> list[Any]:
        """Micro-batches for gradient accumulation."""
        raise NotImplementedError

    def batch_size(self, batch: Any) -> int:
        raise NotImplementedError

    def forward(self, model: nn.Module, batch: Any) -> StepOutput:
        raise NotImplementedError

    def feature_batches(
        self, model: nn.Module, split: str, shard: bool = True
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(features, labels) over ``split`` without augmentation, model in eval mode (feature passes, analyses)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ evaluation
    @property
    def has_validation(self) -> bool:
        """Whether the data has a validation hold-out (``dataset.val_fraction`` > 0)."""
        return getattr(getattr(self, "data", None), "val", None) is not None

    def evaluate(
        self, model: nn.Module, criterion: nn.Module, limit_batches: int | None = None, split: str = "test"
    ) -> dict[str, float]:
        """Metrics of the current model on ``split`` ("test" or "val"; exact over ranks); "test" must contain
        ``primary_metric``, "val" ``validation_metric``."""
        raise NotImplementedError


class LoadersTask(Task):
    """A task whose training batches come from ``self.loaders`` (a :class:`podhl.data.Loaders` built in
    ``setup``): epoch seeding, mid-epoch skipping and the loader's random state are the loaders'."""

    loaders: Loaders

    def build_loaders(self, cfg: DictConfig, runtime: Runtime, data: Any, **options: Any) -> None:
        """``self.loaders`` for ``data``: the global batch split over ranks, the evaluation batch
        (``schedule.eval_batch_size``, default the per-rank batch), workers and pinned memory (auto on CUDA)."""
        per_rank = int(cfg.schedule.batch_size) // runtime.world
        tcfg = cfg.trainer
        pin = tcfg.pin_memory if tcfg.pin_memory != "auto" else runtime.device.type == "cuda"
        self.loaders = Loaders(
            data,
            per_rank,
            int(cfg.schedule.get("eval_batch_size") or per_rank),
            int(tcfg.num_workers),
            int(cfg.seed),
            runtime.rank,
            runtime.world,
            runtime.device,
            pin_memory=bool(pin),
            name=str(cfg.dataset.name),
            **options,
        )

    def start_epoch(self, epoch: int, epoch_seed: int, skip_batches: int = 0) -> None:
        self.loaders.start_epoch(epoch, epoch_seed, skip_batches)

    def rng_state(self) -> Any:
        return self.loaders.rng_state()

    def set_rng_state(self, state: Any) -> None:
        self.loaders.set_rng_state(state)

    def train_batches(self) -> Iterable[Any]:
        return self.loaders.train
