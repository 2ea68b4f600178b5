"""COCO-format detection sets (RPC and any other ``instances_*.json`` + image folder), read with ``json``.

Each split is a COCO annotation file and the folder its ``file_name`` entries are relative to. Classes are
the training file's ``categories`` sorted by ``id`` (label k = the k-th, 1-based; 0 is the background); the
test file must list the same categories. ``bbox`` [x, y, w, h] becomes xyxy; boxes with w or h ≤ 0 are
skipped; ``iscrowd`` regions are read as *difficult* (dropped in training, ignored by AP@0.5, as VOC's
difficult objects are). Images without annotations are kept (background-only training images).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from torchvision.io import ImageReadMode, read_image

from podhl.data.detection import DetectionBundle, DetectionDataset
from podhl.errors import DatasetNotFoundError

LAYOUT = "  <train_json>  + <train_images>/<file_name>   (COCO 'images', 'annotations', 'categories')\n" \
         "  <test_json>   + <test_images>/<file_name>"


def read_coco(json_path: str | Path) -> tuple[list[tuple[int, str]], list[dict]]:
    """(categories as sorted (id, name), images as dicts {file_name, boxes [[x1,y1,x2,y2]], category_ids, crowd})."""
    data = json.loads(Path(json_path).read_text())
    categories = sorted((int(c["id"]), str(c["name"])) for c in data.get("categories", []))
    images = {int(im["id"]): {"file_name": im["file_name"], "boxes": [], "category_ids": [], "crowd": []}
              for im in data.get("images", [])}
    for ann in data.get("annotations", []):
        x, y, w, h = (float(v) for v in ann["bbox"])
        if w <= 0 or h <= 0 or int(ann["image_id"]) not in images:
            continue
        record = images[int(ann["image_id"])]
        record["boxes"].append([x, y, x + w, y + h])
        record["category_ids"].append(int(ann["category_id"]))
        record["crowd"].append(bool(ann.get("iscrowd", 0)))
    return categories, [images[k] for k in sorted(images)]


class CocoBoxes(DetectionDataset):
    def __init__(self, json_path: str | Path, image_dir: str | Path, categories: Sequence[tuple[int, str]] | None = None,
                 train: bool = False) -> None:
        super().__init__(train)
        own, self.records = read_coco(json_path)
        self.categories = list(categories) if categories is not None else own
        if categories is not None and sorted(own) != sorted(self.categories):
            raise DatasetNotFoundError(f"{json_path}: its categories differ from the training file's "
                                       f"({len(own)} vs {len(self.categories)})")
        self.label_of = {cid: i + 1 for i, (cid, _) in enumerate(self.categories)}
        self.image_dir = Path(image_dir)
        for record in self.records:
            unknown = set(record["category_ids"]) - set(self.label_of)
            if unknown:
                raise DatasetNotFoundError(f"{json_path}: annotations of unknown category ids {sorted(unknown)}")

    @property
    def class_names(self) -> list[str]:
        return [name for _, name in self.categories]

    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int):
        record = self.records[index]
        image = read_image(str(self.image_dir / record["file_name"]), mode=ImageReadMode.RGB)
        boxes = torch.tensor(record["boxes"], dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor([self.label_of[c] for c in record["category_ids"]], dtype=torch.int64)
        return image, boxes, labels, torch.tensor(record["crowd"], dtype=torch.bool)


def _require(path: Path, what: str, name: str) -> None:
    exists = path.is_file() if what == "file" else path.is_dir()
    if not exists:
        raise DatasetNotFoundError(
            f"{name}: expected the {what} {path.resolve()}.\nExpected layout (paths relative to dataset.root):\n{LAYOUT}\n"
            f"Set dataset.root=<dir> or dataset.train_json/train_images/test_json/test_images."
        )


def build(root: str, train_json: str, train_images: str, test_json: str, test_images: str, name: str = "COCO-format set",
          augment: bool = True, min_size: int = 600, max_size: int = 1000,
          anchor_sizes: Sequence[int] = (128, 256, 512)) -> DetectionBundle:
    base = Path(root)
    paths = {k: base / v for k, v in dict(train_json=train_json, train_images=train_images, test_json=test_json,
                                          test_images=test_images).items()}
    for key, path in paths.items():
        _require(path, "file" if key.endswith("json") else "folder", name)
    train = CocoBoxes(paths["train_json"], paths["train_images"], train=True)
    test = CocoBoxes(paths["test_json"], paths["test_images"], categories=train.categories, train=False)
    for split in (train, test):
        if split.records:
            _require(split.image_dir / split.records[0]["file_name"], "file", name)
    train.flip = bool(augment)
    return DetectionBundle(train, test, train.class_names, in_chans=3, min_size=int(min_size), max_size=int(max_size),
                           anchor_sizes=[int(a) for a in anchor_sizes], train_eval=train.evaluation_copy())
