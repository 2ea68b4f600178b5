"""Detection data: what every detection reader returns, the training flip, and the list collate.

A detection sample is ``(image, target)``: ``image`` a float tensor (C, H, W) in [0, 1] at the file's own
size (the detector resizes, as torchvision's ``GeneralizedRCNNTransform`` does), ``target`` a dict with
``boxes`` (N, 4) float xyxy in pixels (continuous coordinates: a VOC box of 1-based inclusive pixel indices
xmin..xmax covers [xmin − 1, xmax]), ``labels`` (N,) int64 in 1..K (0 is the background the detector adds),
``difficult`` (N,) bool and ``image_id``. Training copies drop ``difficult`` objects (the authors' VOC
annotation script drops them; COCO ``iscrowd`` regions are read as difficult) and flip horizontally with
p = 0.5 (or, with ``task.augment=authors``, go through the HL authors' letterbox augmentation,
:mod:`podhl.data.letterbox`); evaluation copies keep every object (difficult ones are ignored by AP@0.5, HL's
authors' code) and never flip. Batches are lists (images of different sizes): :func:`collate_detection`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from podhl.data.image_check import read_sample

#: PASCAL VOC's 20 classes in the usual alphabetical order (labels 1..20; torchvision's and the authors' order)
VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


class DetectionDataset(Dataset):
    """Base class: subclasses implement ``__len__`` and ``load(index) -> (image, boxes, labels, difficult)``
    (image uint8 or float (C, H, W); boxes (N, 4) float xyxy; labels (N,) int64 1..K; difficult (N,) bool)."""

    skip_bad = (
        False  # a sample that fails to load: error naming it (False), or the next sample (dataset.skip_bad_images)
    )

    def __init__(self, train: bool = False) -> None:
        self.flip = train  # random horizontal flip, p = 0.5
        # task.augment=authors: the HL authors' letterbox/scale/aspect/HSV/flip (podhl.data.letterbox.AuthorsAugment)
        # in place of the flip, on training copies whose flip is on
        self.augmentation = None
        self.drop_difficult = train  # training never sees difficult objects

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def describe(self, index: int) -> str:
        """The sample's files, for error messages."""
        return f"{type(self).__name__} sample {index}"

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        index, (image, boxes, labels, difficult) = read_sample(
            len(self), index, self.load, self.describe, self.skip_bad
        )
        image = image.float().div_(255.0) if image.dtype == torch.uint8 else image.float()
        boxes, labels, difficult = boxes.float().reshape(-1, 4), labels.long().reshape(-1), difficult.bool().reshape(-1)
        if self.drop_difficult:
            keep = ~difficult
            boxes, labels, difficult = boxes[keep], labels[keep], difficult[keep]
        if self.flip and self.augmentation is not None:
            image, boxes, keep = self.augmentation(image, boxes)
            labels, difficult = labels[keep], difficult[keep]
        elif self.flip and bool(torch.rand(()) < 0.5):  # the torch stream the loop seeds per epoch (and per worker)
            width = image.shape[-1]
            image = image.flip(-1)
            boxes = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
        return image, {"boxes": boxes, "labels": labels, "difficult": difficult, "image_id": torch.tensor(index)}

    def evaluation_copy(self) -> DetectionDataset:
        """The same samples without flipping (training objects only: difficult ones stay dropped)."""
        clone = copy.copy(self)
        clone.flip = False
        clone.augmentation = None
        return clone


def fit_box(box: Sequence[float], width: float, height: float) -> tuple[list[float] | None, bool]:
    """A continuous xyxy box clipped to the ``width`` × ``height`` image: (clipped box, whether it changed), or
    (None, _) when no part of it is inside. Boxes reaching past the image are clipped (our choice: annotation tools
    overshoot the border by a pixel or so, the visible part is the object in the image, and torchvision's and
    detectron2's transforms clip boxes to the image the same way)."""
    x1, y1, x2, y2 = box
    if x1 >= width or y1 >= height or x2 <= 0 or y2 <= 0:
        return None, True
    clipped = [max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))]
    return clipped, clipped != list(box)


class TensorDetectionDataset(DetectionDataset):
    """Images and boxes held in memory (generated composites, stand-ins, tests)."""

    def __init__(
        self,
        images: Sequence[torch.Tensor],
        boxes: Sequence[torch.Tensor],
        labels: Sequence[torch.Tensor],
        difficult: Sequence[torch.Tensor] | None = None,
        train: bool = False,
    ) -> None:
        super().__init__(train)
        self.images, self.boxes, self.labels = list(images), list(boxes), list(labels)
        self.difficult = (
            list(difficult)
            if difficult is not None
            else [torch.zeros(len(lab), dtype=torch.bool) for lab in self.labels]
        )

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int):
        return self.images[index], self.boxes[index], self.labels[index], self.difficult[index]


@dataclass
class DetectionBundle:
    """Train/test detection datasets, their classes, and the geometry the detector needs.

    ``min_size``/``max_size``: the detector resizes each image so its shorter side is ``min_size`` unless the
    longer side would pass ``max_size`` (torchvision's ``GeneralizedRCNNTransform``); ``anchor_sizes``: the
    RPN's anchor side lengths in pixels of the resized image."""

    train: Dataset
    test: Dataset
    class_names: list[str]
    in_chans: int
    min_size: int
    max_size: int
    anchor_sizes: list[int]
    train_eval: Dataset | None = None  # the training set without flipping (feature passes, analyses)
    synthetic: bool = False  # a generated stand-in or composite
    # the classification loaders' GPU-resident path does not apply to detection
    resident_train: Any = None
    resident_test: Any = None
    resident_val: Any = None
    val: Dataset | None = None  # the validation hold-out of the training images (podhl.data.split), unflipped
    split: dict | None = None  # its record for metrics.json

    @property
    def num_classes(self) -> int:
        """Object classes (the detector adds the background class 0)."""
        return len(self.class_names)


def collate_detection(batch: Sequence[tuple[torch.Tensor, dict]]) -> tuple[list[torch.Tensor], list[dict]]:
    """A batch as two lists (images keep their own sizes; the detector pads them, as torchvision's reference does)."""
    images, targets = zip(*batch, strict=True) if batch else ((), ())
    return list(images), list(targets)
