"""The folder loaders parse the documented layouts (tiny generated image trees, not a dataset stand-in)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from podhl.data.folders import facescrub, imagenet, tiny_imagenet


def _image(path: Path, size: int = 70) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), color=(len(path.name) * 9 % 255, 10, 200)).save(path)


def test_tiny_imagenet_official_layout(tmp_path):
    base = tmp_path / "tiny-imagenet-200"
    wnids = ["n01", "n02", "n03"]
    for w in wnids:
        for i in range(2):
            _image(base / "train" / w / "images" / f"{w}_{i}.JPEG", 64)
    lines = []
    for i, w in enumerate(["n03", "n01"]):
        _image(base / "val" / "images" / f"val_{i}.JPEG", 64)
        lines.append(f"val_{i}.JPEG\t{w}\t0\t0\t10\t10")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    bundle = tiny_imagenet(str(tmp_path))
    assert bundle.num_classes == 3 and len(bundle.train) == 6 and len(bundle.test) == 2
    assert [y for _, y in bundle.test] == [2, 0]  # n03 -> 2, n01 -> 0 (sorted wnids, as in train)
    assert bundle.train[0][0].shape == (3, 64, 64)


def test_imagenet_keeps_the_first_n_sorted_classes(tmp_path):
    for split in ("train", "val"):
        for w in ["n09", "n01", "n05"]:
            _image(tmp_path / "imagenet" / split / w / "a.JPEG", 300)
    bundle = imagenet(str(tmp_path), num_classes=2)
    assert bundle.num_classes == 2 and bundle.train.classes == ["n01", "n05"]
    assert bundle.test[0][0].shape == (3, 224, 224)


def test_facescrub_resizes_to_64(tmp_path):
    for split in ("train", "test"):
        for person in ["alice", "bob"]:
            _image(tmp_path / "facescrub" / split / person / "1.jpg", 97)
    bundle = facescrub(str(tmp_path))
    assert bundle.num_classes == 2 and bundle.train[0][0].shape == (3, 64, 64)
