"""Image classification: a dataset of (image, label), a feature network, accuracy of the criterion's argmax."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from omegaconf import DictConfig
from torch import nn

from podhl.data import build_data
from podhl.models import build_model
from podhl.tasks.base import LoadersTask, Runtime, StepOutput
from podhl.tasks.stats import EpochStats


class ClassificationTask(LoadersTask):
    """Train and test on one labelled image dataset (``dataset`` config group); ``test_acc`` is the top-1 accuracy."""

    primary_metric = "test_acc"

    def setup(self, cfg: DictConfig, runtime: Runtime) -> None:
        self.runtime = runtime
        self.dataset_name = str(cfg.dataset.name)
        self.data = build_data(cfg.dataset)
        self.build_loaders(cfg, runtime, self.data, gpu_resident=bool(cfg.trainer.gpu_resident))

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    def build_model(self, cfg: DictConfig) -> nn.Module:
        return build_model(cfg.backbone, cfg.model, self.data.in_chans, self.data.image_size)

    def describe(self) -> str:
        val = f" / {len(self.data.val)} validation" if self.data.val is not None else ""
        return (
            f"{self.dataset_name}: {len(self.data.train)} train{val} / {len(self.data.test)} test images, "
            f"{self.num_classes} classes"
        )

    # ------------------------------------------------------------------ training
    def to_device(self, batch):
        images, labels = batch
        return self.runtime.images_to_device(images), labels.to(self.runtime.device, non_blocking=True)

    def split(self, batch, parts: int):
        images, labels = batch
        return list(zip(images.chunk(parts), labels.chunk(parts), strict=True))

    def batch_size(self, batch) -> int:
        return len(batch[1])

    def forward(self, model: nn.Module, batch) -> StepOutput:
        images, labels = batch
        with self.runtime.autocast():
            features = model(images)
        return StepOutput(features.float(), labels)  # losses always run in fp32

    @torch.no_grad()
    def feature_batches(
        self, model: nn.Module, split: str, shard: bool = True
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        was_training = model.training
        model.eval()
        try:
            for batch in self.loaders.eval(split, shard):
                out = self.forward(model, self.to_device(batch))
                yield out.features, out.labels
        finally:
            model.train(was_training)

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(
        self, model: nn.Module, criterion: nn.Module, limit_batches: int | None = None, split: str = "test"
    ) -> dict[str, float]:
        """Top-1 accuracy of ``criterion.logits``, the criterion's terms and the mean feature norm on ``split``
        (keys ``<split>_acc``, ``<split>_loss``, ...)."""
        criterion.eval()
        stats = EpochStats(self.runtime.device)
        for i, (features, labels) in enumerate(self.feature_batches(model, split)):
            if limit_batches is not None and i >= limit_batches:
                break
            stats.add_predictions(criterion, features, labels)
            stats.add_terms(criterion(features, labels), len(labels))
        criterion.train()
        out = stats.reduce()
        out.pop("n")
        return {f"{split}_{k}": v for k, v in out.items()}
