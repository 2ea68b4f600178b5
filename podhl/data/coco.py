"""COCO-format detection sets (RPC and any other ``instances_*.json`` + image folder), read with ``json``.

Each split is a COCO annotation file and the folder its ``file_name`` entries are relative to. Classes are
the training file's ``categories`` sorted by ``id`` (label k = the k-th, 1-based; 0 is the background); the
test file must list the same categories. ``bbox`` [x, y, w, h] becomes xyxy; ``iscrowd`` regions are read as
*difficult* (dropped in training, ignored by AP@0.5, as VOC's difficult objects are). Images without annotations are
kept (background-only training images).

Checked before training (every entry): the JSON parses; each annotation has a 4-number ``bbox`` with w, h ≥ 0 lying
at least partly inside its image (``width``/``height``, or the image header when absent); a box reaching past the
border is clipped to it, and one with w or h = 0 is dropped (COCO's own train2017 holds two, cocoapi#355), each with
one warning; every image file exists and passes :func:`~podhl.data.image_check.bad_images`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torchvision.io import ImageReadMode, read_image

from podhl.data.detection import DetectionBundle, DetectionDataset, fit_box
from podhl.data.image_check import bad_images, header_size, report_bad
from podhl.errors import DatasetFormatError, DatasetNotFoundError

log = logging.getLogger("podhl")

LAYOUT = (
    "  <train_json>  + <train_images>/<file_name>   (COCO 'images', 'annotations', 'categories')\n"
    "  <test_json>   + <test_images>/<file_name>"
)


def read_coco(json_path: str | Path) -> tuple[list[tuple[int, str]], list[dict]]:
    """(categories as sorted (id, name), images as dicts {file_name, size (w, h) or None, boxes [[x1,y1,x2,y2]],
    category_ids, crowd, where (per box: the annotation, for messages)}); boxes with w or h = 0 are left out."""
    try:
        data = json.loads(Path(json_path).read_text())
        categories = sorted((int(c["id"]), str(c["name"])) for c in data.get("categories", []))
        images = {
            int(im["id"]): {
                "file_name": str(im["file_name"]),
                "boxes": [],
                "category_ids": [],
                "crowd": [],
                "where": [],
                "size": _size(im),
            }
            for im in data.get("images", [])
        }
    except (ValueError, KeyError, TypeError, AttributeError) as err:  # JSON syntax, or entries without id/file_name
        raise DatasetFormatError(f"{json_path}: not a COCO annotation file ({type(err).__name__}: {err})") from None
    empty = []
    for n, ann in enumerate(data.get("annotations", [])):
        where = f"{json_path}, annotation id {ann.get('id', f'#{n}') if isinstance(ann, dict) else f'#{n}'}"
        try:
            x, y, w, h = (float(v) for v in ann["bbox"])
            image_id, category = int(ann["image_id"]), int(ann["category_id"])
        except (ValueError, KeyError, TypeError):
            raise DatasetFormatError(
                f"{where}: needs image_id, category_id and bbox [x, y, w, h] (4 numbers)"
            ) from None
        if not all(map(math.isfinite, (x, y, w, h))) or w < 0 or h < 0:
            raise DatasetFormatError(f"{where}: bbox {[x, y, w, h]} needs finite numbers and w, h ≥ 0; fix the box")
        if image_id not in images:
            continue
        record = images[image_id]
        if w == 0 or h == 0:
            empty.append(f"{where} ({record['file_name']})")
            continue
        record["boxes"].append([x, y, x + w, y + h])
        record["category_ids"].append(category)
        record["crowd"].append(bool(ann.get("iscrowd", 0)))
        record["where"].append(f"{where} ({record['file_name']})")
    if empty:
        log.warning("%s: %d boxes with w or h = 0 left out, e.g. %s", json_path, len(empty), empty[0])
    return categories, [images[k] for k in sorted(images)]


def _size(image: dict) -> tuple[int, int] | None:
    width, height = int(image.get("width") or 0), int(image.get("height") or 0)
    return (width, height) if width > 0 and height > 0 else None


class CocoBoxes(DetectionDataset):
    def __init__(
        self,
        json_path: str | Path,
        image_dir: str | Path,
        categories: Sequence[tuple[int, str]] | None = None,
        train: bool = False,
        skip_bad: bool = False,
        name: str = "COCO-format set",
    ) -> None:
        super().__init__(train)
        own, self.records = read_coco(json_path)
        self.image_dir, self.skip_bad = Path(image_dir), skip_bad
        bad = bad_images([str(self.image_dir / r["file_name"]) for r in self.records])
        report_bad(f"{name} ({json_path})", bad, len(self.records), skip_bad, what="images")
        drop = {p for p, _ in bad}
        self.records = [r for r in self.records if str(self.image_dir / r["file_name"]) not in drop]
        self.clipped = [note for r in self.records for note in self._fit(r)]
        self.categories = list(categories) if categories is not None else own
        if categories is not None and sorted(own) != sorted(self.categories):
            raise DatasetNotFoundError(
                f"{json_path}: its categories differ from the training file's ({len(own)} vs {len(self.categories)})"
            )
        self.label_of = {cid: i + 1 for i, (cid, _) in enumerate(self.categories)}
        for record in self.records:
            unknown = set(record["category_ids"]) - set(self.label_of)
            if unknown:
                raise DatasetNotFoundError(f"{json_path}: annotations of unknown category ids {sorted(unknown)}")

    @property
    def class_names(self) -> list[str]:
        return [name for _, name in self.categories]

    def _fit(self, record: dict) -> list[str]:
        """Clip the record's boxes to its image (a box wholly outside is an error); the notes of the clipped ones."""
        width, height = record["size"] or header_size(self.image_dir / record["file_name"])
        notes = []
        for k, box in enumerate(record["boxes"]):
            fitted, changed = fit_box(box, width, height)
            shown = f"[x {box[0]:g}, y {box[1]:g}, w {box[2] - box[0]:g}, h {box[3] - box[1]:g}]"
            if fitted is None:
                raise DatasetFormatError(
                    f"{record['where'][k]}: the box {shown} lies entirely outside the "
                    f"{width}×{height} image; fix the box or the image size"
                )
            if changed:
                notes.append(f"{record['where'][k]}: {shown} in a {width}×{height} image")
            record["boxes"][k] = fitted
        return notes

    def __len__(self) -> int:
        return len(self.records)

    def describe(self, index: int) -> str:
        return str(self.image_dir / self.records[index]["file_name"])

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
            f"{name}: expected the {what} {path.resolve()}.\n"
            f"Expected layout (paths relative to dataset.root):\n{LAYOUT}\n"
            f"Set dataset.root=<dir> or dataset.train_json/train_images/test_json/test_images."
        )


def build(
    root: str,
    train_json: str,
    train_images: str,
    test_json: str,
    test_images: str,
    name: str = "COCO-format set",
    augment: bool = True,
    min_size: int = 600,
    max_size: int = 1000,
    anchor_sizes: Sequence[int] = (128, 256, 512),
    skip_bad_images: bool = False,
) -> DetectionBundle:
    base = Path(root)
    paths = {
        k: base / v
        for k, v in dict(
            train_json=train_json, train_images=train_images, test_json=test_json, test_images=test_images
        ).items()
    }
    for key, path in paths.items():
        _require(path, "file" if key.endswith("json") else "folder", name)
    train = CocoBoxes(paths["train_json"], paths["train_images"], train=True, skip_bad=skip_bad_images, name=name)
    test = CocoBoxes(
        paths["test_json"],
        paths["test_images"],
        categories=train.categories,
        train=False,
        skip_bad=skip_bad_images,
        name=name,
    )
    clipped = train.clipped + test.clipped
    if clipped:
        log.warning(
            "%s: %d boxes reach past their image and are clipped to it, e.g. %s", name, len(clipped), clipped[0]
        )
    train.flip = bool(augment)
    return DetectionBundle(
        train,
        test,
        train.class_names,
        in_chans=3,
        min_size=int(min_size),
        max_size=int(max_size),
        anchor_sizes=[int(a) for a in anchor_sizes],
        train_eval=train.evaluation_copy(),
    )
