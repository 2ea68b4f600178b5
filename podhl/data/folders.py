"""Image-folder datasets that torchvision cannot download: Tiny ImageNet, FaceScrub, ImageNet.

Expected trees (``root`` is ``dataset.root``)::

    <root>/tiny-imagenet-200/train/<wnid>/images/*.JPEG       (the official zip, unchanged)
    <root>/tiny-imagenet-200/val/images/*.JPEG + val/val_annotations.txt
    <root>/facescrub/{train,test}/<person>/*.jpg               (faces cropped, any size; resized to 64)
    <root>/imagenet/{train,val}/<wnid>/*.JPEG                  (the usual ImageFolder layout)

Class indices follow the sorted folder names (torchvision's ImageFolder convention), so
"the first N classes" of ImageNet (POD Table 6: 30/100/200/500/1000) are the first N wnids.
"""

from __future__ import annotations

from pathlib import Path

from torchvision import transforms as T
from torchvision.datasets.folder import default_loader

from podhl.data.bundle import DataBundle, with_transform
from podhl.data.image_check import CheckedImageFolder, check_image_folder
from podhl.data.transforms import imagenet_transforms, small_image_transforms
from podhl.errors import DatasetFormatError, DatasetNotFoundError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _require_dir(path: Path, name: str, layout: str) -> None:
    if not path.is_dir():
        raise DatasetNotFoundError(
            f"{name} not found: expected the folder {path.resolve()}.\nExpected layout:\n{layout}\n"
            f"Set dataset.root=<dir> to point elsewhere (no automatic download exists for {name})."
        )


class _FirstClassesFolder(CheckedImageFolder):
    """ImageFolder restricted to the first ``max_classes`` sorted class folders (cheap scan)."""

    def __init__(self, root, max_classes: int | None = None, **kwargs):
        self._max_classes = max_classes
        super().__init__(root, **kwargs)

    def find_classes(self, directory):
        classes, _ = super().find_classes(directory)
        classes = classes[: self._max_classes] if self._max_classes else classes
        return classes, {c: i for i, c in enumerate(classes)}


class _TinyImageNetVal(CheckedImageFolder):
    """Tiny ImageNet's official val split: flat images + val_annotations.txt."""

    def __init__(self, val_dir: Path, class_to_idx: dict[str, int], transform=None):
        self.root = str(val_dir)
        self.transform, self.target_transform = transform, None
        self.loader = default_loader
        listing = val_dir / "val_annotations.txt"
        self.samples = []
        for n, line in enumerate(listing.read_text().splitlines(), 1):
            fields = line.split("\t")
            if not line.strip():
                continue
            if len(fields) < 2:
                raise DatasetFormatError(f"{listing}, line {n}: expected '<file>\\t<wnid>\\t...', got {line!r}")
            if fields[1] not in class_to_idx:
                raise DatasetFormatError(
                    f"{listing}, line {n}: class {fields[1]!r} of {fields[0]} has no folder in "
                    f"{val_dir.parent / 'train'} ({len(class_to_idx)} classes there)"
                )
            self.samples.append((str(val_dir / "images" / fields[0]), class_to_idx[fields[1]]))
        self.imgs = self.samples
        self.targets = [s[1] for s in self.samples]
        self.classes = sorted(class_to_idx, key=class_to_idx.get)
        self.class_to_idx = class_to_idx


TINY_LAYOUT = (
    "  tiny-imagenet-200/train/<wnid>/images/*.JPEG\n"
    "  tiny-imagenet-200/val/images/*.JPEG\n"
    "  tiny-imagenet-200/val/val_annotations.txt"
)


def tiny_imagenet(
    root: str, augment: bool = True, resize: int | None = None, skip_bad_images: bool = False
) -> DataBundle:
    base = Path(root) / "tiny-imagenet-200"
    _require_dir(base / "train", "Tiny ImageNet", TINY_LAYOUT)
    mean, std = (0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821)
    train_tf, test_tf = small_image_transforms(64, mean, std, augment=augment, resize=resize)
    train = CheckedImageFolder(str(base / "train"), transform=train_tf)
    val_dir = base / "val"
    if (val_dir / "val_annotations.txt").is_file():
        test = _TinyImageNetVal(val_dir, train.class_to_idx, transform=test_tf)
    else:  # already re-organized into class folders
        _require_dir(val_dir, "Tiny ImageNet val", TINY_LAYOUT)
        test = CheckedImageFolder(str(val_dir), transform=test_tf)
    for split in (train, test):
        check_image_folder(split, "Tiny ImageNet", skip_bad_images)
    return DataBundle(
        train,
        test,
        num_classes=len(train.classes),
        in_chans=3,
        image_size=resize or 64,
        train_eval=with_transform(train, test_tf),
    )


FACESCRUB_LAYOUT = "  facescrub/train/<person>/*.jpg\n  facescrub/test/<person>/*.jpg"


def facescrub(root: str, augment: bool = True, resize: int | None = None, skip_bad_images: bool = False) -> DataBundle:
    base = Path(root) / "facescrub"
    for split in ("train", "test"):
        _require_dir(base / split, "FaceScrub", FACESCRUB_LAYOUT)
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    train_tf, test_tf = small_image_transforms(64, mean, std, augment=augment, resize=resize)
    to64 = T.Resize((64, 64))
    train = CheckedImageFolder(str(base / "train"), transform=T.Compose([to64, train_tf]))
    test = CheckedImageFolder(str(base / "test"), transform=T.Compose([to64, test_tf]))
    for split in (train, test):
        check_image_folder(split, "FaceScrub", skip_bad_images)
    return DataBundle(
        train,
        test,
        num_classes=len(train.classes),
        in_chans=3,
        image_size=resize or 64,
        train_eval=with_transform(train, test.transform),
    )


IMAGENET_LAYOUT = "  imagenet/train/<wnid>/*.JPEG\n  imagenet/val/<wnid>/*.JPEG"


def imagenet(
    root: str, num_classes: int = 1000, augment: bool = True, crop: int = 224, skip_bad_images: bool = False
) -> DataBundle:
    base = Path(root) / "imagenet"
    for split in ("train", "val"):
        _require_dir(base / split, "ImageNet", IMAGENET_LAYOUT)
    train_tf, test_tf = imagenet_transforms(IMAGENET_MEAN, IMAGENET_STD, crop=crop, augment=augment)
    train = _FirstClassesFolder(str(base / "train"), max_classes=num_classes, transform=train_tf)
    test = _FirstClassesFolder(str(base / "val"), max_classes=num_classes, transform=test_tf)
    if train.classes != test.classes:
        raise DatasetNotFoundError(f"ImageNet train and val class folders differ under {base.resolve()}")
    for split in (train, test):
        check_image_folder(split, "ImageNet", skip_bad_images)
    return DataBundle(
        train,
        test,
        num_classes=len(train.classes),
        in_chans=3,
        image_size=crop,
        train_eval=with_transform(train, test_tf),
    )
