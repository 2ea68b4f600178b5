"""A loader that keeps a whole small dataset on the device and augments batches there.

For MNIST, CIFAR, digits and synthetic sets the decoded uint8 images fit in GPU memory (CIFAR-10:
150 MB), so the input pipeline becomes a gather + a batched pad-crop/flip + normalize: no workers,
no per-image Python, no host→device copies. Same order as the CPU path (the same sampler) and the
same augmentation distribution as torchvision's RandomCrop(padding) + RandomHorizontalFlip.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class ResidentArrays:
    """A dataset split as tensors: images uint8 (N, C, H, W) (or float in [0, 1]) and int labels."""

    images: torch.Tensor
    labels: torch.Tensor
    mean: Sequence[float]
    std: Sequence[float]
    pad: int = 0  # random-crop padding (0: no crop)
    flip: bool = False  # random horizontal flip, p = 0.5


def random_crop_flip(
    images: torch.Tensor, pad: int, flip: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Batched torchvision-equivalent RandomCrop(size, padding=pad) + RandomHorizontalFlip(0.5).

    Each image gets its own offsets (uniform in [0, 2·pad]² over the zero-padded image) and flip.
    """
    b, _, h, w = images.shape
    device = images.device
    if pad > 0:
        padded = F.pad(images, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (b,), device=device, generator=generator)
        ox = torch.randint(0, 2 * pad + 1, (b,), device=device, generator=generator)
        rows = (oy[:, None] + torch.arange(h, device=device))[:, None, :, None]  # (B, 1, H, 1)
        cols = (ox[:, None] + torch.arange(w, device=device))[:, None, None, :]  # (B, 1, 1, W)
        batch = torch.arange(b, device=device)[:, None, None, None]
        chans = torch.arange(images.shape[1], device=device)[None, :, None, None]
        images = padded[batch, chans, rows, cols]
    if flip:
        mask = torch.rand(b, device=device, generator=generator) < 0.5
        images = torch.where(mask[:, None, None, None], images.flip(-1), images)
    return images


class GpuResidentLoader:
    """Iterates (normalized float images, labels) batches of a :class:`ResidentArrays` on ``device``."""

    def __init__(
        self, arrays: ResidentArrays, batch_size: int, sampler, device: torch.device, augment: bool, seed: int = 0
    ) -> None:
        self.images = arrays.images.to(device)
        self.labels = arrays.labels.long().to(device)
        self.mean = torch.tensor(arrays.mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(arrays.std, device=device).view(1, -1, 1, 1)
        self.pad, self.flip = (arrays.pad, arrays.flip) if augment else (0, False)
        self.batch_size, self.sampler, self.device = batch_size, sampler, device
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)

    def manual_seed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def __len__(self) -> int:
        return (len(self.sampler) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.as_tensor(list(iter(self.sampler)), device=self.device, dtype=torch.long)
        for idx in order.split(self.batch_size):
            x = self.images[idx]
            x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
            x = random_crop_flip(x, self.pad, self.flip, self.generator)
            yield (x - self.mean) / self.std, self.labels[idx]
