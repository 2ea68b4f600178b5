"""CIFAR-10/100 through torchvision (``download=true`` fetches them on a machine with internet)."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.datasets import CIFAR10, CIFAR100

from podhl.data.bundle import DataBundle, with_transform
from podhl.data.gpu_loader import ResidentArrays
from podhl.data.transforms import small_image_transforms
from podhl.errors import DatasetNotFoundError

_SETS = {
    10: (CIFAR10, "cifar-10-batches-py", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    100: (CIFAR100, "cifar-100-python", (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def build(
    root: str, num_classes: int = 10, download: bool = False, augment: bool = True, resize: int | None = None
) -> DataBundle:
    if num_classes not in _SETS:
        raise ValueError(f"CIFAR has 10 or 100 classes, got num_classes={num_classes}")
    cls, folder, mean, std = _SETS[num_classes]
    train_tf, test_tf = small_image_transforms(32, mean, std, augment=augment, resize=resize)
    try:
        train = cls(root, train=True, transform=train_tf, download=download)
        test = cls(root, train=False, transform=test_tf, download=download)
    except RuntimeError as err:
        raise DatasetNotFoundError(
            f"CIFAR-{num_classes} not found: expected the python-version batches in "
            f"{Path(root).resolve() / folder}. Pass dataset.download=true to fetch them, "
            f"or dataset.root=<dir holding {folder}/>."
        ) from err
    resident = {}
    if not resize:  # the GPU-resident path holds the raw 32 px uint8 arrays

        def arrays(ds, augment_split: bool) -> ResidentArrays:
            images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
            return ResidentArrays(
                images, torch.tensor(ds.targets), mean, std, pad=4 if augment_split else 0, flip=augment_split
            )

        resident = dict(resident_train=arrays(train, augment), resident_test=arrays(test, False))
    return DataBundle(
        train,
        test,
        num_classes=num_classes,
        in_chans=3,
        image_size=resize or 32,
        train_eval=with_transform(train, test_tf),
        **resident,
    )
