"""The device-resident input path: same crops/flips distribution as torchvision, same batches, same run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chi2_contingency, chisquare
from test_data_folders import _image
from torchvision import transforms as T

from conftest import build_trainer
from podhl.data.gpu_loader import random_crop_flip
from podhl.errors import ConfigError

R0, C0 = 10, 5  # marker pixel: unflipped column lands in [1, 9], flipped in [22, 30]


def _cells(images: torch.Tensor) -> np.ndarray:
    """Histogram over (row offset, column offset, flip) recovered from the marker's position."""
    flat = images[:, 0].flatten(1).argmax(1)
    rows, cols = flat // 32, flat % 32
    flipped = cols >= 16
    cols = torch.where(flipped, 31 - cols, cols)
    oy, ox = R0 + 4 - rows, C0 + 4 - cols
    assert oy.min() >= 0 and oy.max() <= 8 and ox.min() >= 0 and ox.max() <= 8
    index = (oy * 9 + ox) * 2 + flipped.long()
    return np.bincount(index.numpy(), minlength=162)


def test_batched_crop_flip_matches_torchvision_distribution():
    n = 4000
    image = torch.zeros(1, 3, 32, 32)
    image[:, :, R0, C0] = 1.0
    batch = image.expand(n, -1, -1, -1).contiguous()
    ours = _cells(random_crop_flip(batch, pad=4, flip=True, generator=torch.Generator().manual_seed(0)))
    torch.manual_seed(0)
    tv = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()])
    reference = _cells(torch.stack([tv(image[0]) for _ in range(n)]))
    for counts in (ours, reference):
        assert counts.sum() == n and chisquare(counts).pvalue > 1e-3  # uniform over 81 offsets × 2 flips
    assert chi2_contingency(np.stack([ours, reference])).pvalue > 1e-3  # same distribution
    # and content is copied exactly (the marker survives every crop)
    out = random_crop_flip(batch, pad=4, flip=True, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out.sum(dim=(1, 2, 3)), batch.sum(dim=(1, 2, 3)))


def test_resident_run_equals_the_cpu_loader_run(train, tmp_path):
    # digits has no augmentation, so both paths must see identical batches and train identically
    _, cpu = train("schedule.epochs=2", "trainer.deterministic=true", run_dir=tmp_path / "cpu")
    _, resident = train(
        "schedule.epochs=2", "trainer.deterministic=true", "trainer.gpu_resident=true", run_dir=tmp_path / "res"
    )
    for key in ("test_acc", "train_loss", "train_acc", "mean_feature_norm"):
        assert abs(cpu[key] - resident[key]) <= 1e-6 * max(1.0, abs(cpu[key])), key


def test_resident_needs_an_in_memory_dataset(tmp_path):
    for split in ("train", "test"):
        for person in ("a", "b"):
            _image(tmp_path / "facescrub" / split / person / "1.jpg")
    with pytest.raises(ConfigError, match="in-memory dataset"):
        build_trainer(
            "trainer.gpu_resident=true",
            "dataset=facescrub",
            "dataset.num_classes=2",
            f"dataset.root={tmp_path}",
            run_dir=tmp_path / "run",
        )
