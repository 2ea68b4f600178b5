"""PASCAL VOC detection (and any data in its format) through torchvision's ``VOCDetection`` layout,
split files and download.

``train_sets``/``test_sets`` are lists of (year, image set); the default is HL §IV-A's VOC07+12: VOC2007
trainval ∪ VOC2012 trainval for training (16,551 images), VOC2007 test (4,952) for testing. Expected tree
(``root`` = ``dataset.root``; ``dataset.download=true`` lets torchvision fetch and unpack the three tars)::

    <root>/VOCdevkit/VOC2007/{JPEGImages/<id>.jpg, Annotations/<id>.xml, ImageSets/Main/{trainval,test}.txt}
    <root>/VOCdevkit/VOC2012/{JPEGImages/<id>.jpg, Annotations/<id>.xml, ImageSets/Main/trainval.txt}

Boxes: the XML's 1-based inclusive pixel indices become continuous coordinates [xmin − 1, ymin − 1, xmax,
ymax] (so widths are xmax − xmin + 1, the +1 convention of VOC's own evaluation). ``difficult`` objects are
dropped from training and ignored by AP (HL's authors: ``voc_annotation.py``, ``get_map.py``).

Classes: ``classes`` (``dataset.classes``) in label order; None takes VOC's 20 when every object name is one of
them (VOC itself: fixed labels even on a subset), else the names in the training annotations, sorted (a user's own
VOC-format data, as the COCO reader takes its file's categories).

Checked before training (every file): each XML parses and each object has a known class and a numeric box with
xmin ≤ xmax, ymin ≤ ymax inside the image (``<size>``, or the image header when it is absent); a box reaching past the
border is clipped to it (one warning); every image passes :func:`~podhl.data.image_check.bad_images`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.etree.ElementTree import ParseError
from xml.etree.ElementTree import parse as parse_xml

import torch
from torchvision.datasets import VOCDetection
from torchvision.io import ImageReadMode, read_image

from podhl.data.detection import VOC_CLASSES, DetectionBundle, DetectionDataset, fit_box
from podhl.data.image_check import bad_images, header_size, report_bad
from podhl.errors import ConfigError, DatasetFormatError, DatasetNotFoundError

log = logging.getLogger("podhl")
LAYOUT = (
    "  VOCdevkit/VOC2007/JPEGImages/<id>.jpg, VOCdevkit/VOC2007/Annotations/<id>.xml,\n"
    "  VOCdevkit/VOC2007/ImageSets/Main/trainval.txt and test.txt\n"
    "  VOCdevkit/VOC2012/JPEGImages/<id>.jpg, VOCdevkit/VOC2012/Annotations/<id>.xml,\n"
    "  VOCdevkit/VOC2012/ImageSets/Main/trainval.txt"
)
DEFAULT_TRAIN = (("2007", "trainval"), ("2012", "trainval"))
DEFAULT_TEST = (("2007", "test"),)
CORNERS = ("xmin", "ymin", "xmax", "ymax")


@dataclass
class Annotation:
    """One XML file: the image size it states (None if absent or 0)
    and its objects (name, xyxy continuous, difficult)."""

    path: str
    size: tuple[int, int] | None
    objects: list[tuple[str, list[float], bool]]


def read_annotation(path: str | Path) -> Annotation:
    """Parse one VOC XML file; a malformed file or object raises :class:`DatasetFormatError` naming it."""
    try:
        root = parse_xml(path).getroot()
    except ParseError as err:
        raise DatasetFormatError(f"{path}: malformed XML ({err})") from None
    except OSError as err:
        raise DatasetNotFoundError(f"{path}: cannot be read ({err.strerror or err})") from None
    try:
        size = tuple(int(float(root.findtext(f"size/{k}") or 0)) for k in ("width", "height"))
    except ValueError:
        size = (0, 0)
    objects = []
    for k, obj in enumerate(root.findall("object"), 1):
        name = (obj.findtext("name") or "").strip()
        where = f"{path}, object {k} ({name!r})"
        try:
            xmin, ymin, xmax, ymax = (float(obj.findtext(f"bndbox/{c}")) for c in CORNERS)
        except (TypeError, ValueError):
            raise DatasetFormatError(f"{where}: <bndbox> needs numbers in {', '.join(CORNERS)}") from None
        if not all(map(math.isfinite, (xmin, ymin, xmax, ymax))):
            raise DatasetFormatError(f"{where}: <bndbox> holds a non-finite number")
        for low, high, a, b in (("xmin", "xmax", xmin, xmax), ("ymin", "ymax", ymin, ymax)):
            if b < a:
                raise DatasetFormatError(
                    f"{where}: {high} {b:g} < {low} {a:g} (a box needs {low} ≤ {high}); fix the box"
                )
        objects.append((name, [xmin - 1.0, ymin - 1.0, xmax, ymax], (obj.findtext("difficult") or "0").strip() == "1"))
    return Annotation(str(path), size if min(size) > 0 else None, objects)


def resolve_classes(classes: Sequence[str] | None, train: Sequence[Annotation]) -> tuple[str, ...]:
    """``dataset.classes`` if given; else VOC's 20 when every training object is a VOC class, else the sorted names."""
    if classes is not None:
        names = tuple(str(c) for c in classes)
        if not names or len(set(names)) != len(names):
            raise ConfigError(f"dataset.classes must list distinct class names, got {list(classes)}")
        return names
    found = {name for ann in train for name, _, _ in ann.objects}
    return VOC_CLASSES if found <= set(VOC_CLASSES) else tuple(sorted(found))


class VOCBoxes(DetectionDataset):
    """Checked VOC samples: (image path, annotation); images read with torchvision.io, boxes parsed once up front."""

    def __init__(
        self, images: Sequence[str], annotations: Sequence[Annotation], class_names: Sequence[str], train: bool = False
    ) -> None:
        super().__init__(train)
        self.class_names = tuple(class_names)
        index = {name: i + 1 for i, name in enumerate(self.class_names)}
        self.images, self.xmls, self.target_tensors = list(images), [a.path for a in annotations], []
        self.clipped: list[str] = []
        for image, ann in zip(self.images, annotations, strict=True):
            width, height = ann.size or header_size(image)
            boxes = []
            for k, (name, box, _) in enumerate(ann.objects, 1):
                where = f"{ann.path}, object {k} ({name!r})"
                if name not in index:
                    raise DatasetFormatError(
                        f"{where}: class {name!r} is not one of the dataset's {len(index)} classes "
                        f"{list(self.class_names)}; add it to dataset.classes (or fix the name)"
                    )
                fitted, changed = fit_box(box, width, height)
                if fitted is None:
                    raise DatasetFormatError(
                        f"{where}: the box {_shown(box)} lies entirely outside the {width}×{height} "
                        f"image; fix the box or the image size"
                    )
                if changed:
                    self.clipped.append(f"{where}: {_shown(box)} in a {width}×{height} image")
                boxes.append(fitted)
            self.target_tensors.append(
                (
                    torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                    torch.tensor([index[n] for n, _, _ in ann.objects], dtype=torch.int64),
                    torch.tensor([d for _, _, d in ann.objects], dtype=torch.bool),
                )
            )

    def __len__(self) -> int:
        return len(self.images)

    def describe(self, index: int) -> str:
        return f"{self.images[index]} (annotation {self.xmls[index]})"

    def load(self, index: int):
        return (read_image(self.images[index], mode=ImageReadMode.RGB), *self.target_tensors[index])


def _shown(box: Sequence[float]) -> str:
    """A continuous box as the XML wrote it (1-based inclusive)."""
    x1, y1, x2, y2 = box
    return f"xmin {x1 + 1:g}, ymin {y1 + 1:g}, xmax {x2:g}, ymax {y2:g}"


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


def _files(root: str, sets, download: bool, skip_bad: bool, split: str) -> tuple[list[str], list[Annotation]]:
    """The split's (image, parsed annotation) pairs, images checked (bad ones dropped when ``skip_bad``)."""
    pairs = [
        (image, xml) for s in _splits(root, sets, download) for image, xml in zip(s.images, s.annotations, strict=True)
    ]
    bad = bad_images([image for image, _ in pairs])
    report_bad(f"PASCAL VOC {split}", bad, len(pairs), skip_bad, what="images")
    drop = {p for p, _ in bad}
    pairs = [(image, xml) for image, xml in pairs if image not in drop]
    return [image for image, _ in pairs], [read_annotation(xml) for _, xml in pairs]


def build(
    root: str,
    download: bool = False,
    train_sets=DEFAULT_TRAIN,
    test_sets=DEFAULT_TEST,
    classes: Sequence[str] | None = None,
    augment: bool = True,
    min_size: int = 600,
    max_size: int = 1000,
    anchor_sizes: Sequence[int] = (128, 256, 512),
    skip_bad_images: bool = False,
) -> DetectionBundle:
    train_images, train_ann = _files(root, train_sets, download, skip_bad_images, "train")
    test_images, test_ann = _files(root, test_sets, download, skip_bad_images, "test")
    names = resolve_classes(classes, train_ann)
    if classes is None and names != VOC_CLASSES:
        log.info("VOC-format data: %d classes from the training annotations (sorted): %s", len(names), ", ".join(names))
    train = VOCBoxes(train_images, train_ann, names, train=True)
    test = VOCBoxes(test_images, test_ann, names, train=False)
    clipped = train.clipped + test.clipped
    if clipped:
        log.warning(
            "PASCAL VOC: %d boxes reach past their image and are clipped to it, e.g. %s", len(clipped), clipped[0]
        )
    for split in (train, test):
        split.skip_bad = bool(skip_bad_images)
    train.flip = bool(augment)
    return DetectionBundle(
        train,
        test,
        list(names),
        in_chans=3,
        min_size=int(min_size),
        max_size=int(max_size),
        anchor_sizes=[int(a) for a in anchor_sizes],
        train_eval=train.evaluation_copy(),
    )
