"""Detection readers: VOC XML on a tiny tree in the real VOCdevkit layout, COCO JSON, the digits composite,
missing files, flipping and the smoke stand-in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torchvision.io import write_jpeg, write_png

from podhl.config import compose_config
from podhl.data import build_detection_data
from podhl.data.box_composites import digits_boxes
from podhl.data.detection import VOC_CLASSES, TensorDetectionDataset, collate_detection
from podhl.errors import ConfigError, DatasetNotFoundError


def _xml(filename: str, objects: list[tuple[str, int, int, int, int, int]]) -> str:
    body = "".join(
        f"<object><name>{n}</name><pose>Left</pose><truncated>0</truncated><difficult>{d}</difficult>"
        f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        for n, x1, y1, x2, y2, d in objects
    )
    return (
        f"<annotation><folder>VOC</folder><filename>{filename}</filename><size><width>48</width><height>32</height>"
        f"<depth>3</depth></size><segmented>0</segmented>{body}</annotation>"
    )


def make_voc(root: Path) -> None:
    """VOC2007 trainval (2 images) + test (1), VOC2012 trainval (1): the layout torchvision's VOCDetection reads."""
    files = {
        ("2007", "000001"): [("dog", 1, 2, 20, 30, 0), ("person", 10, 5, 40, 25, 1)],
        ("2007", "000002"): [("car", 5, 5, 15, 15, 0)],
        ("2007", "000003"): [("tvmonitor", 3, 4, 30, 20, 0), ("cat", 20, 1, 48, 32, 1)],
        ("2012", "2008_000001"): [("aeroplane", 2, 2, 46, 30, 0)],
    }
    sets = {
        ("2007", "trainval"): ["000001", "000002"],
        ("2007", "test"): ["000003"],
        ("2012", "trainval"): ["2008_000001"],
    }
    for (year, image_id), objects in files.items():
        base = root / "VOCdevkit" / f"VOC{year}"
        for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        write_jpeg(torch.full((3, 32, 48), 100, dtype=torch.uint8), str(base / "JPEGImages" / f"{image_id}.jpg"))
        (base / "Annotations" / f"{image_id}.xml").write_text(_xml(f"{image_id}.jpg", objects))
    for (year, name), ids in sets.items():
        (root / "VOCdevkit" / f"VOC{year}" / "ImageSets" / "Main" / f"{name}.txt").write_text("\n".join(ids) + "\n")


def test_voc_reader_on_the_real_layout(tmp_path):
    make_voc(tmp_path)
    bundle = build_detection_data(
        compose_config(["dataset.val_fraction=0", "dataset=voc0712", f"dataset.root={tmp_path}"]).dataset
    )
    assert bundle.class_names == list(VOC_CLASSES) and bundle.num_classes == 20
    assert (len(bundle.train), len(bundle.test)) == (3, 1)  # 07 trainval ∪ 12 trainval; 07 test
    assert (bundle.min_size, bundle.max_size, bundle.anchor_sizes) == (600, 1000, [128, 256, 512])
    image, target = bundle.train_eval[0]
    assert image.shape == (3, 32, 48) and image.dtype == torch.float32 and 0.3 < float(image.mean()) < 0.5
    # training drops the difficult person; 1-based inclusive pixels → continuous [xmin − 1, ymin − 1, xmax, ymax]
    assert target["boxes"].tolist() == [[0.0, 1.0, 20.0, 30.0]] and target["labels"].tolist() == [
        VOC_CLASSES.index("dog") + 1
    ]
    assert bundle.train_eval[2][1]["labels"].tolist() == [1]  # VOC2012's aeroplane
    image, target = bundle.test[0]  # evaluation keeps difficult objects, flagged
    assert target["labels"].tolist() == [20, VOC_CLASSES.index("cat") + 1]
    assert target["difficult"].tolist() == [False, True]
    assert target["boxes"][1].tolist() == [19.0, 0.0, 48.0, 32.0]
    assert not bundle.test.flip and bundle.train.flip and not bundle.train_eval.flip


def test_voc_missing_files_name_the_layout(tmp_path):
    cfg = compose_config(["dataset=voc0712", f"dataset.root={tmp_path}"]).dataset
    with pytest.raises(DatasetNotFoundError, match="VOCdevkit/VOC2012/ImageSets/Main/trainval.txt") as err:
        build_detection_data(cfg)
    assert str(tmp_path) in str(err.value) and "dataset.download=true" in str(err.value)


def test_coco_reader_on_a_tiny_json(tmp_path):
    (tmp_path / "imgs").mkdir()
    for name in ("a.png", "b.png"):
        write_png(torch.zeros(3, 40, 50, dtype=torch.uint8), str(tmp_path / "imgs" / name))
    data = {
        "images": [
            {"id": 7, "file_name": "a.png", "width": 50, "height": 40},
            {"id": 3, "file_name": "b.png", "width": 50, "height": 40},
        ],
        "categories": [{"id": 12, "name": "tea"}, {"id": 5, "name": "gum"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 12, "bbox": [1, 2, 10, 20], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 5, "bbox": [20, 5, 8, 8], "iscrowd": 1},
            {"id": 3, "image_id": 7, "category_id": 5, "bbox": [30, 5, 0, 8], "iscrowd": 0},  # empty box: skipped
        ],
    }
    (tmp_path / "train.json").write_text(json.dumps(data))
    (tmp_path / "test.json").write_text(json.dumps(data))
    overrides = [
        "dataset.val_fraction=0",
        "dataset=rpc",
        f"dataset.root={tmp_path}",
        "dataset.train_json=train.json",
        "dataset.train_images=imgs",
        "dataset.test_json=test.json",
        "dataset.test_images=imgs",
        "dataset.num_classes=2",
    ]
    bundle = build_detection_data(compose_config(overrides).dataset)
    assert bundle.class_names == ["gum", "tea"]  # categories sorted by id: gum (5) → 1, tea (12) → 2
    assert len(bundle.train) == 2
    image, target = bundle.test[1]  # images sorted by id: b.png (3), a.png (7)
    assert image.shape == (3, 40, 50)
    assert target["boxes"].tolist() == [[1.0, 2.0, 11.0, 22.0], [20.0, 5.0, 28.0, 13.0]]
    assert target["labels"].tolist() == [2, 1] and target["difficult"].tolist() == [False, True]  # iscrowd → difficult
    assert bundle.train_eval[1][1]["labels"].tolist() == [2]  # training drops it
    assert bundle.test[0][1]["boxes"].shape == (0, 4)  # an image without objects
    with pytest.raises(ConfigError, match="declares num_classes=200 but its training split holds 2"):
        build_detection_data(compose_config(overrides[:-1]).dataset)
    with pytest.raises(DatasetNotFoundError, match="instances_val2019.json"):
        build_detection_data(
            compose_config(["dataset.val_fraction=0", "dataset=rpc", f"dataset.root={tmp_path}"]).dataset
        )


def test_flip_moves_boxes_with_the_pixels():
    image = torch.zeros(3, 10, 20)
    image[:, 2:5, 1:6] = 1.0  # the object's pixels: x in [1, 6)
    ds = TensorDetectionDataset([image], [torch.tensor([[1.0, 2.0, 6.0, 5.0]])], [torch.tensor([3])], train=True)
    seen = set()
    for _ in range(30):
        img, target = ds[0]
        x1, y1, x2, y2 = (int(v) for v in target["boxes"][0].tolist())
        assert img[0, y1:y2, x1:x2].min() == 1.0 and img[0].sum() == 15  # the box still covers exactly the object
        seen.add(x1)
    assert seen == {1, 14}  # both orientations occur
    images, targets = collate_detection([ds[0], ds[0]])
    assert isinstance(images, list) and len(targets) == 2


def test_digits_composite_is_deterministic_with_boxes_on_the_digits():
    a, b = digits_boxes(train_images=6, test_images=3, seed=1), digits_boxes(train_images=6, test_images=3, seed=1)
    assert a.synthetic and a.class_names == [str(d) for d in range(10)] and (len(a.train), len(a.test)) == (6, 3)
    for i in range(6):
        (xa, ta), (xb, tb) = a.train_eval[i], b.train_eval[i]
        assert torch.equal(xa, xb) and torch.equal(ta["boxes"], tb["boxes"])
        assert 64 <= xa.shape[1] <= 96 and 64 <= xa.shape[2] <= 96 and 1 <= len(ta["labels"]) <= 3
        for box in ta["boxes"].long().tolist():
            x1, y1, x2, y2 = box
            assert 10 <= x2 - x1 <= 28 and xa[0, y1:y2, x1:x2].max() > 0.5  # a digit's ink inside its box
    assert not torch.equal(a.train_eval[0][0], digits_boxes(train_images=1, test_images=1, seed=2).train_eval[0][0])


def test_smoke_standin_is_synthetic_with_the_dataset_classes():
    cfg = compose_config(["dataset.val_fraction=0", "dataset=rpc", "smoke=cpu"])
    bundle = build_detection_data(cfg.dataset)
    assert bundle.synthetic and bundle.num_classes == 200 and len(bundle.train) == 2
    _, target = bundle.train[0]
    assert target["labels"].min() >= 1 and target["labels"].max() <= 200
    with pytest.raises(ConfigError, match="task=detection"):
        from podhl.data import build_data

        build_data(compose_config(["dataset.val_fraction=0", "dataset=digits_boxes"]).dataset)
