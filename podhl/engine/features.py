"""The feature source analyses read (``podhl/analysis``): features and labels of a split, the
criterion's predictions, and the run folder to write figures into. Analyses never see the loop."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class FeatureSource:
    LAYERS = ("latent", "backbone")
    SPLITS = ("train", "test")

    def __init__(
        self,
        task,
        model: nn.Module,
        criterion: nn.Module,
        run_dir: Path,
        device: torch.device,
        label: str = "",
        epoch: int = 0,
    ) -> None:
        self.task, self.model, self.criterion = task, model, criterion
        self.run_dir, self.device, self.label, self.epoch = Path(run_dir), device, label, epoch

    @property
    def num_classes(self) -> int:
        return int(self.task.num_classes)

    @property
    def centroids(self) -> torch.Tensor | None:
        """The criterion's fixed class centroids (PEDCC) on the CPU, if it has them."""
        pedcc = getattr(self.criterion, "pedcc", None)
        return pedcc.detach().float().cpu() if isinstance(pedcc, torch.Tensor) else None

    @torch.no_grad()
    def features(self, split: str = "test", layer: str = "latent") -> tuple[torch.Tensor, torch.Tensor]:
        """All features (fp32, CPU) and labels of ``split`` without augmentation; every rank gets all.

        ``layer="latent"``: x, what the criterion sees; ``"backbone"``: the pooled backbone features
        before FC1 (``model.backbone``)."""
        if split not in self.SPLITS:
            raise ValueError(f"split must be one of {self.SPLITS}, got {split!r}")
        if layer not in self.LAYERS:
            raise ValueError(f"layer must be one of {self.LAYERS}, got {layer!r}")
        module = self.model if layer == "latent" else self.model.backbone
        feats, labels = [], []
        for f, y in self.task.feature_batches(module, split, shard=False):
            feats.append(f.float().cpu())
            labels.append(y.cpu())
        return torch.cat(feats), torch.cat(labels)

    @torch.no_grad()
    def predict(self, features: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """The criterion's prediction (argmax of ``criterion.logits``) for CPU ``features``, on CPU."""
        self.criterion.eval()
        return torch.cat(
            [
                self.criterion.logits(features[i : i + batch_size].to(self.device)).argmax(1).cpu()
                for i in range(0, features.shape[0], batch_size)
            ]
        )
