"""PASCAL VOC detection through torchvision's ``VOCDetection`` (its VOCdevkit layout, split files and download).

``train_sets``/``test_sets`` are lists of (year, image set); the default is HL §IV-A's VOC07+12: VOC2007
trainval ∪ VOC2012 trainval for training (16,551 images), VOC2007 test (4,952) for testing. Expected tree
(``root`` = ``dataset.root``; ``dataset.download=true`` lets torchvision fetch and unpack the three tars)::

    <root>/VOCdevkit/VOC2007/{JPEGImages/<id>.jpg, Annotations/<id>.xml, ImageSets/Main/{trainval,test}.txt}
    <root>/VOCdevkit/VOC2012/{JPEGImages/<id>.jpg, Annotations/<id>.xml, ImageSets/Main/trainval.txt}

Boxes: the XML's 1-based inclusive pixel indices become continuous coordinates [xmin − 1, ymin − 1, xmax,
ymax] (so widths are xmax − xmin + 1, the +1 convention of VOC's own evaluation). ``difficult`` objects are
dropped from training and ignored by AP (HL's authors: ``voc_annotation.py``, ``get_map.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence
from xml.etree.ElementTree import parse as parse_xml

import torch
from torchvision.datasets import VOCDetection
from torchvision.io import ImageReadMode, read_image

from podhl.data.detection import VOC_CLASSES, DetectionBundle, DetectionDataset
from podhl.errors import DatasetNotFoundError

LAYOUT = (
    "  VOCdevkit/VOC2007/JPEGImages/<id>.jpg, VOCdevkit/VOC2007/Annotations/<id>.xml,\n"
    "  VOCdevkit/VOC2007/ImageSets/Main/trainval.txt and test.txt\n"
    "  VOCdevkit/VOC2012/JPEGImages/<id>.jpg, VOCdevkit/VOC2012/Annotations/<id>.xml,\n"
    "  VOCdevkit/VOC2012/ImageSets/Main/trainval.txt"
)
DEFAULT_TRAIN = (("2007", "trainval"), ("2012", "trainval"))
DEFAULT_TEST = (("2007", "test"),)


def parse_annotation(path: str | Path, class_names: Sequence[str] = VOC_CLASSES):
    """One VOC XML file → (boxes (N, 4) continuous xyxy, labels (N,) in 1..K, difficult (N,) bool)."""
    tree = VOCDetection.parse_voc_xml(parse_xml(path).getroot())["annotation"]
    index = {name: i + 1 for i, name in enumerate(class_names)}
    boxes, labels, difficult = [], [], []
    for obj in tree.get("object", []):
        name = str(obj["name"]).strip()
        if name not in index:
            raise DatasetNotFoundError(f"{path}: object class {name!r} is not one of the dataset's classes {list(class_names)}")
        box = obj["bndbox"]
        boxes.append([float(box["xmin"]) - 1.0, float(box["ymin"]) - 1.0, float(box["xmax"]), float(box["ymax"])])
        labels.append(index[name])
        difficult.append(str(obj.get("difficult", "0")).strip() == "1")
    return (torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(labels, dtype=torch.int64),
            torch.tensor(difficult, dtype=torch.bool))


class VOCBoxes(DetectionDataset):
    """The union of several ``VOCDetection`` splits (their file lists); images read with torchvision.io."""

    def __init__(self, splits: Sequence[VOCDetection], class_names: Sequence[str] = VOC_CLASSES, train: bool = False) -> None:
        super().__init__(train)
        self.class_names = tuple(class_names)
        self.files = [(image, xml) for split in splits for image, xml in zip(split.images, split.annotations)]

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int):
        image_path, xml_path = self.files[index]
        boxes, labels, difficult = parse_annotation(xml_path, self.class_names)
        return read_image(image_path, mode=ImageReadMode.RGB), boxes, labels, difficult


def _splits(root: str, sets, download: bool) -> list[VOCDetection]:
    out = []
    for year, image_set in sets:
        try:
            out.append(VOCDetection(root, year=str(year), image_set=str(image_set), download=download))
        except (RuntimeError, OSError) as err:
            raise DatasetNotFoundError(
                f"PASCAL VOC {year} {image_set} not found under {Path(root).resolve() / 'VOCdevkit'} ({err}).\n"
                f"Expected layout:\n{LAYOUT}\nPass dataset.download=true to let torchvision fetch it, or "
                f"dataset.root=<dir holding VOCdevkit/>."
            ) from err
    return out


def build(root: str, download: bool = False, train_sets=DEFAULT_TRAIN, test_sets=DEFAULT_TEST, augment: bool = True,
          min_size: int = 600, max_size: int = 1000, anchor_sizes: Sequence[int] = (128, 256, 512)) -> DetectionBundle:
    train = VOCBoxes(_splits(root, train_sets, download), train=True)
    test = VOCBoxes(_splits(root, test_sets, download), train=False)
    train.flip = bool(augment)
    return DetectionBundle(train, test, list(VOC_CLASSES), in_chans=3, min_size=int(min_size), max_size=int(max_size),
                           anchor_sizes=[int(a) for a in anchor_sizes], train_eval=train.evaluation_copy())
