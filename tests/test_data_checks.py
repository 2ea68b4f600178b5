"""Every data error is found before training with the file named (exit code 2), or, for what a cheap pass cannot
see, at the sample with the file named (README "Failure behaviour": what is checked when). Each test builds its
bad files itself, tiny, in tmp_path."""

from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path

import pytest
import torch
from PIL import Image
from test_detection_data import _xml, make_voc
from test_verification import _faces, _png, _write_rec
from torch.utils.data import DataLoader
from torchvision.io import write_jpeg, write_png

from podhl.config import compose_config
from podhl.data import build_data, build_detection_data
from podhl.data.faces import load_bin
from podhl.data.folders import tiny_imagenet
from podhl.data.image_check import BadSampleError, bad_images
from podhl.errors import DatasetFormatError, DatasetNotFoundError


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("PODHL_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))  # also seen by the CLI subprocesses


def _jpeg(path: Path, size: int = 24, value: int = 90) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = torch.arange(3 * size * size).reshape(3, size, size).remainder(251).add(value).clamp(0, 255).to(torch.uint8)
    write_jpeg(image, str(path))
    return path.read_bytes()


def _facescrub(root: Path) -> Path:
    """Two people × one JPEG per split; returns one training file."""
    for split in ("train", "test"):
        for person in ("a", "b"):
            _jpeg(root / "facescrub" / split / person / "1.jpg")
    return root / "facescrub" / "train" / "a" / "1.jpg"


def _output(proc) -> str:
    return proc.stdout + proc.stderr


# ------------------------------------------------------------------ image folders


def test_truncated_jpeg_stops_the_cli_before_training(run_cli, tmp_path):
    victim = _facescrub(tmp_path)
    whole = victim.read_bytes()
    victim.write_bytes(whole[: len(whole) // 2])  # a valid header, cut short
    assert victim.read_bytes()[:3] == b"\xff\xd8\xff"
    proc, run = run_cli(
        "dataset=facescrub", "dataset.num_classes=2", f"dataset.root={tmp_path}", "schedule.epochs=1", check=False
    )
    assert proc.returncode == 2, _output(proc)[-3000:]
    assert f"{victim}: truncated JPEG" in _output(proc) and "Traceback" not in _output(proc)
    assert "data error: " in _output(proc) and "configuration error" not in _output(proc)
    assert not (run / "last.pt").exists()


def test_a_file_changed_after_a_passing_check_is_read_again(tmp_path):
    victim = _facescrub(tmp_path)
    paths = sorted(str(p) for p in (tmp_path / "facescrub").rglob("*.jpg"))
    assert bad_images(paths) == []
    whole = victim.read_bytes()
    victim.write_bytes(whole[:-40] + b"\0" * 40)  # same size, end-of-image marker gone
    stat = victim.stat()
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a later save, even on a coarse clock
    assert bad_images(paths) == [(str(victim), "truncated JPEG (no end-of-image marker)")]
    victim.write_bytes(whole)
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2 * 10**9))
    assert bad_images(paths) == []


def test_a_complete_jpeg_with_a_long_trailer_passes(tmp_path):
    path = tmp_path / "x.jpg"
    path.write_bytes(_jpeg(path) + b"\x00" * 5000)  # e.g. a camera's trailer after the end-of-image marker
    assert bad_images([str(path)]) == []


def test_damaged_file_is_named_at_the_sample_or_replaced(tmp_path, caplog):
    victim = _facescrub(tmp_path)
    cfg = compose_config(
        [
            "dataset.val_fraction=0",
            "dataset=facescrub",
            "dataset.num_classes=2",
            f"dataset.root={tmp_path}",
            "dataset.augment=false",
        ]
    )
    bundle = build_data(cfg.dataset)
    whole = victim.read_bytes()
    victim.write_bytes(whole[:200] + bytes(len(whole) - 202) + whole[-2:])  # damaged inside, head and tail intact
    index = [p for p, _ in bundle.train.samples].index(str(victim))
    with pytest.raises(BadSampleError, match=f"^{victim} cannot be read"):
        bundle.train[index]
    loader = DataLoader(bundle.train, batch_size=2, num_workers=1)  # a worker's error comes back with the same line
    with pytest.raises(BadSampleError) as err:
        next(iter(loader))
    assert str(err.value).startswith(f"{victim} cannot be read") and "Traceback" not in str(err.value)
    skipping = build_data(
        compose_config(
            [
                "dataset.val_fraction=0",
                "dataset=facescrub",
                "dataset.num_classes=2",
                f"dataset.root={tmp_path}",
                "dataset.augment=false",
                "dataset.skip_bad_images=true",
            ]
        ).dataset
    )
    with caplog.at_level(logging.WARNING, logger="podhl"):
        image, label = skipping.train[index]
    assert label == skipping.train.samples[index + 1][1] and torch.equal(image, skipping.train[index + 1][0])
    assert f"skipped {victim}" in caplog.text


def test_file_damaged_inside_stops_epoch_one_with_its_name(run_cli, tmp_path):
    """Head and tail intact: the cheap pass cannot see it; the sample names it (through a loader worker), exit 2."""
    victim = _facescrub(tmp_path)
    whole = victim.read_bytes()
    victim.write_bytes(whole[:200] + bytes(len(whole) - 202) + whole[-2:])
    proc, run = run_cli(
        "dataset=facescrub",
        "dataset.num_classes=2",
        f"dataset.root={tmp_path}",
        "schedule.epochs=1",
        "schedule.batch_size=2",
        "trainer.num_workers=1",
        check=False,
    )
    assert proc.returncode == 2, _output(proc)[-3000:]
    assert f"{victim} cannot be read" in _output(proc) and "Traceback" not in _output(proc)
    assert json.loads((run / "metrics.json").read_text())["status"] == "failed"


def test_val_annotations_with_an_unknown_class(tmp_path):
    base = tmp_path / "tiny-imagenet-200"
    _jpeg(base / "train" / "n01" / "images" / "a.JPEG", 64)
    _jpeg(base / "val" / "images" / "val_0.JPEG", 64)
    (base / "val" / "val_annotations.txt").write_text(
        "val_0.JPEG\tn01\t0\t0\t9\t9\nval_1.JPEG\tn99999999\t0\t0\t9\t9\n"
    )
    with pytest.raises(
        DatasetFormatError, match=r"val_annotations.txt, line 2: class 'n99999999' of val_1.JPEG has no folder"
    ):
        tiny_imagenet(str(tmp_path))


# ------------------------------------------------------------------ face data


def _rec_cfg(root: Path, *extra: str):
    return compose_config(
        ["dataset=casia_webface_rec", f"dataset.root={root}", "dataset.num_classes=7", *extra]
    ).dataset


def test_truncated_rec_and_idx_past_its_end_are_found_up_front(tmp_path):
    faces, labels = _faces(8)  # labels 0..7 → classes 0..7 of 8? digits 0..7
    _write_rec(tmp_path, faces, labels)
    classes = len(set(labels.tolist()))

    def cfg(*extra):
        return compose_config(
            [
                "dataset.val_fraction=0",
                "dataset=casia_webface_rec",
                f"dataset.root={tmp_path}",
                f"dataset.num_classes={classes}",
                *extra,
            ]
        ).dataset

    assert len(build_data(cfg()).train) == 8
    rec = tmp_path / "train.rec"
    offsets = dict(line.split("\t") for line in (tmp_path / "train.idx").read_text().splitlines())
    rec.write_bytes(rec.read_bytes()[: int(offsets["8"]) + 40])  # image 8 cut short, the identity records gone
    with pytest.raises(DatasetFormatError) as err:
        build_data(cfg())
    assert f"{rec} record 8: record at offset {offsets['8']} is cut short" in str(err.value)
    assert "1 of 8 records" in str(err.value) and "dataset.skip_bad_images=true" in str(err.value)
    assert len(build_data(cfg("dataset.skip_bad_images=true")).train) == 7
    idx = (tmp_path / "train.idx").read_text().replace(f"3\t{offsets['3']}", "3\t999999")
    (tmp_path / "train.idx").write_text(idx)
    with pytest.raises(DatasetFormatError, match=r"record 3: offset 999999 is past the end of the file"):
        build_data(cfg())


def test_rec_record_that_does_not_decode_is_named(tmp_path):
    faces, labels = _faces(4)
    _write_rec(tmp_path, faces, labels)
    rec = tmp_path / "train.rec"
    data = bytearray(rec.read_bytes())
    start = data.index(b"IDAT")  # the first image's pixel data: damaged, framing and signature intact
    data[start : start + 30] = b"\xff" * 30
    rec.write_bytes(bytes(data))
    bundle = build_data(
        compose_config(
            [
                "dataset=casia_webface_rec",
                f"dataset.root={tmp_path}",
                f"dataset.num_classes={len(set(labels.tolist()))}",
            ]
        ).dataset
    )
    with pytest.raises(BadSampleError, match=f"^{rec} record 1 cannot be read"):
        bundle.train[0]


def test_bad_bin_files_are_named(tmp_path):
    (tmp_path / "html.bin").write_text("<html>404</html>")
    with pytest.raises(DatasetFormatError, match=f"{tmp_path / 'html.bin'} is not a readable pickle"):
        load_bin(tmp_path / "html.bin")
    faces, _ = _faces(4)
    bins = [_png(f) for f in faces]
    bins[2] = b"\x89PNG\r\n\x1a\n" + b"junk" * 10
    with open(tmp_path / "lfw.bin", "wb") as fh:
        pickle.dump((bins, [True, False]), fh)
    with pytest.raises(DatasetFormatError, match=r"lfw.bin: image 2 \(pair 2\) does not decode as an image"):
        load_bin(tmp_path / "lfw.bin")


def test_bin_that_is_not_a_pickle_stops_the_cli(run_cli, tmp_path):
    faces, labels = _faces(8)
    _write_rec(tmp_path, faces, labels)
    (tmp_path / "lfw.bin").write_bytes(b"\x00" * 64)
    proc, _ = run_cli(
        "task=verification",
        "dataset=casia_webface_rec",
        f"dataset.root={tmp_path}",
        f"dataset.num_classes={len(set(labels.tolist()))}",
        "task.eval_sets=[lfw]",
        "schedule.epochs=1",
        "schedule.batch_size=4",
        check=False,
    )
    assert proc.returncode == 2, _output(proc)[-3000:]
    assert f"{tmp_path / 'lfw.bin'} is not a readable pickle" in _output(proc) and "Traceback" not in _output(proc)


def test_non_image_in_a_face_folder(tmp_path):
    faces, labels = _faces(4)
    for i, (face, y) in enumerate(zip(faces, labels, strict=True)):
        (tmp_path / f"id{y}").mkdir(exist_ok=True)
        Image.fromarray(face).save(tmp_path / f"id{y}" / f"{i}.png")
    (tmp_path / f"id{labels[0]}" / "notes.jpg").write_text("not a face")
    args = ["dataset.val_fraction=0", "dataset=casia_webface", f"dataset.root={tmp_path}", "dataset.num_classes=4"]
    with pytest.raises(DatasetNotFoundError, match=r"notes.jpg: not an image"):
        build_data(compose_config(args).dataset)
    assert len(build_data(compose_config(args + ["dataset.skip_bad_images=true"]).dataset).train) == 4


# ------------------------------------------------------------------ detection data


def _voc_cfg(root: Path, *extra: str):
    return compose_config(["dataset.val_fraction=0", "dataset=voc0712", f"dataset.root={root}", *extra]).dataset


def _annotation(root: Path, year: str, image_id: str) -> Path:
    return root / "VOCdevkit" / f"VOC{year}" / "Annotations" / f"{image_id}.xml"


def test_voc_box_with_xmax_below_xmin_stops_the_cli(run_cli, tmp_path):
    make_voc(tmp_path)
    xml = _annotation(tmp_path, "2007", "000002")
    xml.write_text(_xml("000002.jpg", [("car", 5, 5, 15, 15, 0), ("dog", 20, 3, 10, 12, 0)]))
    proc, _ = run_cli(
        "task=detection",
        "dataset=voc0712",
        f"dataset.root={tmp_path}",
        "backbone=frcnn_tiny",
        "schedule.epochs=1",
        check=False,
    )
    assert proc.returncode == 2, _output(proc)[-3000:]
    assert f"{xml}, object 2 ('dog'): xmax 10 < xmin 20" in _output(proc) and "NaN" not in _output(proc)


def test_voc_malformed_xml_and_non_image_are_named_up_front(tmp_path):
    make_voc(tmp_path)
    xml = _annotation(tmp_path, "2012", "2008_000001")
    xml.write_text("<annotation><object><name>dog</name>")
    with pytest.raises(DatasetFormatError, match=f"{xml}: malformed XML"):
        build_detection_data(_voc_cfg(tmp_path))
    make_voc(tmp_path)
    image = tmp_path / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000003.jpg"
    image.write_text("GIF? no")
    with pytest.raises(DatasetNotFoundError, match=f"{image}: not an image"):
        build_detection_data(_voc_cfg(tmp_path))
    bundle = build_detection_data(_voc_cfg(tmp_path, "dataset.skip_bad_images=true"))
    assert (len(bundle.train), len(bundle.test)) == (3, 0)


def test_boxes_past_the_border_are_clipped_and_boxes_outside_are_errors(tmp_path, caplog):
    make_voc(tmp_path)  # images are 48 × 32
    xml = _annotation(tmp_path, "2007", "000001")
    xml.write_text(_xml("000001.jpg", [("dog", 1, 2, 60, 30, 0)]))
    with caplog.at_level(logging.WARNING, logger="podhl"):
        bundle = build_detection_data(_voc_cfg(tmp_path))
    assert bundle.train_eval[0][1]["boxes"].tolist() == [[0.0, 1.0, 48.0, 30.0]]
    assert "1 boxes reach past their image and are clipped" in caplog.text and str(xml) in caplog.text
    xml.write_text(_xml("000001.jpg", [("dog", 1, 2, 20, 30, 0), ("cat", 50, 2, 60, 30, 0)]))
    with pytest.raises(
        DatasetFormatError, match=r"object 2 \('cat'\): the box .* lies entirely outside the 48×32 image"
    ):
        build_detection_data(_voc_cfg(tmp_path))


def test_voc_format_data_with_its_own_classes(tmp_path):
    make_voc(tmp_path)
    for (year, image_id), name in {
        ("2007", "000001"): "teapot",
        ("2007", "000002"): "kettle",
        ("2007", "000003"): "kettle",
        ("2012", "2008_000001"): "cup",
    }.items():
        _annotation(tmp_path, year, image_id).write_text(_xml(f"{image_id}.jpg", [(name, 1, 2, 20, 30, 0)]))
    bundle = build_detection_data(_voc_cfg(tmp_path, "dataset.num_classes=3"))
    assert bundle.class_names == ["cup", "kettle", "teapot"]  # sorted names of the training annotations
    assert bundle.train_eval[0][1]["labels"].tolist() == [3] and bundle.test[0][1]["labels"].tolist() == [2]
    ordered = build_detection_data(
        _voc_cfg(tmp_path, "dataset.num_classes=4", "dataset.classes=[teapot,cup,kettle,mug]")
    )
    assert ordered.class_names == ["teapot", "cup", "kettle", "mug"] and ordered.train_eval[0][1][
        "labels"
    ].tolist() == [1]
    xml = _annotation(tmp_path, "2007", "000003")
    xml.write_text(_xml("000003.jpg", [("spoon", 1, 2, 20, 30, 0)]))  # a test class the training set lacks
    with pytest.raises(DatasetFormatError, match=f"{xml}, object 1 \\('spoon'\\): class 'spoon' is not one of"):
        build_detection_data(_voc_cfg(tmp_path, "dataset.num_classes=3"))


def _coco(root: Path, annotations: list[dict], images: int = 3) -> list[str]:
    (root / "imgs").mkdir(exist_ok=True)
    names = [f"{i}.png" for i in range(images)]
    for name in names:
        write_png(torch.zeros(3, 40, 50, dtype=torch.uint8), str(root / "imgs" / name))
    data = {
        "images": [{"id": i, "file_name": n, "width": 50, "height": 40} for i, n in enumerate(names)],
        "categories": [{"id": 1, "name": "tea"}],
        "annotations": annotations,
    }
    for split in ("train", "test"):
        (root / f"{split}.json").write_text(json.dumps(data))
    return names


def _coco_cfg(root: Path, *extra: str):
    return compose_config(
        [
            "dataset.val_fraction=0",
            "dataset=rpc",
            f"dataset.root={root}",
            "dataset.train_json=train.json",
            "dataset.train_images=imgs",
            "dataset.test_json=test.json",
            "dataset.test_images=imgs",
            "dataset.num_classes=1",
            *extra,
        ]
    ).dataset


def test_coco_missing_image_and_boxes(tmp_path, caplog):
    def ann(i, image, bbox):
        return {"id": i, "image_id": image, "category_id": 1, "bbox": bbox}

    names = _coco(tmp_path, [ann(1, 0, [1, 2, 10, 20]), ann(2, 1, [45, 30, 10, 20]), ann(3, 2, [5, 5, 4, 0])])
    with caplog.at_level(logging.WARNING, logger="podhl"):
        bundle = build_detection_data(_coco_cfg(tmp_path))
    assert bundle.test[1][1]["boxes"].tolist() == [[45.0, 30.0, 50.0, 40.0]]  # clipped to the 50 × 40 image
    assert "annotation id 2 (1.png): [x 45, y 30, w 10, h 20] in a 50×40 image" in caplog.text
    assert "1 boxes with w or h = 0 left out, e.g." in caplog.text and "annotation id 3 (2.png)" in caplog.text
    (tmp_path / "imgs" / names[2]).unlink()  # not the first image
    with pytest.raises(DatasetNotFoundError, match=f"{tmp_path / 'imgs' / names[2]}: missing"):
        build_detection_data(_coco_cfg(tmp_path))
    assert len(build_detection_data(_coco_cfg(tmp_path, "dataset.skip_bad_images=true")).train) == 2
    _coco(tmp_path, [ann(1, 0, [60, 2, 10, 20])])
    with pytest.raises(DatasetFormatError, match=r"train.json, annotation id 1 \(0.png\): the box .* entirely outside"):
        build_detection_data(_coco_cfg(tmp_path))
    _coco(tmp_path, [ann(1, 0, [6, 2, -10, 20])])
    with pytest.raises(DatasetFormatError, match=r"annotation id 1: bbox .* needs finite numbers and w, h ≥ 0"):
        build_detection_data(_coco_cfg(tmp_path))
    (tmp_path / "train.json").write_text("{not json")
    with pytest.raises(DatasetFormatError, match=r"train.json: not a COCO annotation file"):
        build_detection_data(_coco_cfg(tmp_path))


def test_detection_image_damaged_inside_is_named_at_the_sample(tmp_path):
    make_voc(tmp_path)
    bundle = build_detection_data(_voc_cfg(tmp_path))
    image = tmp_path / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000002.jpg"
    whole = image.read_bytes()
    image.write_bytes(whole[:20] + bytes(len(whole) - 22) + whole[-2:])
    with pytest.raises(BadSampleError, match=f"^{image} \\(annotation .*000002.xml\\) cannot be read"):
        bundle.train[1]
