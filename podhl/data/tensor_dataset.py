"""A dataset over an in-memory uint8 image tensor, normalized on access (no PIL round-trip)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.utils.data import Dataset


class TensorImageDataset(Dataset):
    """``images``: uint8 (N, C, H, W) or float in [0, 1]; returns (normalized float image, label)."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        mean: Sequence[float],
        std: Sequence[float],
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
        self.images = images
        self.labels = labels.long()
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self.transform = transform
        self.targets = self.labels.tolist()

    def resident(self, pad: int = 0, flip: bool = False):
        """These tensors as :class:`ResidentArrays` for the GPU-resident loader."""
        from podhl.data.gpu_loader import ResidentArrays

        return ResidentArrays(
            self.images, self.labels, self.mean.flatten().tolist(), self.std.flatten().tolist(), pad, flip
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        image = self.images[index]
        image = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
        if self.transform is not None:
            image = self.transform(image)
        return (image - self.mean) / self.std, int(self.labels[index])
