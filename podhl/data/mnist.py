"""MNIST through torchvision (``root`` holds ``MNIST/raw``; ``download=true`` fetches it).

Images stay a uint8 tensor in memory and are normalized on access (no PIL round-trip).
``num_classes < 10`` keeps the first classes (POD Fig. 6 uses MNIST's first five).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.datasets import MNIST

from podhl.data.bundle import DataBundle
from podhl.data.tensor_dataset import TensorImageDataset
from podhl.errors import DatasetNotFoundError

MEAN, STD = (0.1307,), (0.3081,)


def _decompress_gz(raw: Path) -> None:
    """MNIST as the four ``*-ubyte.gz`` downloads: decompress them next to themselves (what torchvision's
    own download does), so a user can drop the files in as they come."""
    from torchvision.datasets.utils import extract_archive

    for gz in sorted(raw.glob("*-ubyte.gz")):
        if not gz.with_suffix("").exists():
            try:
                extract_archive(str(gz), str(raw))
            except OSError as err:
                raise DatasetNotFoundError(
                    f"MNIST: cannot decompress {gz} ({err}); decompress the four *-ubyte.gz "
                    f"files in {raw} yourself (gunzip)"
                ) from None


def _load(root: str, train: bool, download: bool) -> MNIST:
    _decompress_gz(Path(root) / "MNIST" / "raw")
    try:
        return MNIST(root=root, train=train, download=download)
    except RuntimeError as err:
        raise DatasetNotFoundError(
            f"MNIST not found under {Path(root).resolve() / 'MNIST' / 'raw'} (expects the four *-ubyte files, or "
            f"their *-ubyte.gz downloads). Pass dataset.download=true to fetch it, "
            f"or dataset.root=<dir holding MNIST/>."
        ) from err


def build(root: str, download: bool = False, num_classes: int = 10, resize: int | None = None) -> DataBundle:
    splits = []
    for train in (True, False):
        ds = _load(root, train, download)
        images, labels = ds.data.unsqueeze(1), ds.targets
        keep = labels < num_classes
        images, labels = images[keep], labels[keep]
        if resize:
            images = torch.nn.functional.interpolate(images.float(), size=(resize, resize), mode="bilinear")
            images = images.round().clamp(0, 255).to(torch.uint8)
        splits.append(TensorImageDataset(images, labels, MEAN, STD))
    return DataBundle(
        splits[0],
        splits[1],
        num_classes=num_classes,
        in_chans=1,
        image_size=resize or 28,
        resident_train=splits[0].resident(),
        resident_test=splits[1].resident(),
    )
