"""``podhl-eval``: a trained run's checkpoint evaluated again reproduces its own final metrics exactly
(classification, verification, detection), other data can be scored, training records stay untouched,
``--export`` writes what the test recomputes, and the retrieval metrics match hand-computed values."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import FAST, read_metrics
from podhl.evaluate import main as podhl_eval

QUICK = ["~logger", "schedule.epochs=1"]
# The tiny detector of tests/test_detection.py, one epoch.
DETECTION = [
    "task=detection",
    "dataset=digits_boxes",
    "backbone=frcnn_tiny",
    "schedule=detection",
    "schedule.epochs=1",
    "schedule.batch_size=8",
    "schedule.optimizer.lr=1e-3",
    "task.rpn.post_nms_top_n_train=64",
    "task.rpn.post_nms_top_n_test=32",
    "task.roi.batch_size_per_image=32",
    "~logger",
]
VERIFICATION = ["task=verification", "dataset=digits_open", "task.eval_sets=[]", "task.flip=false"]


def train_run(run_dir: Path, *overrides: str):
    """Train in-process and record ``.hydra/`` as podhl-train does; returns the trainer."""
    from podhl.config import compose_run, run_names
    from podhl.engine.trainer import Trainer

    args = [*FAST, *overrides]
    cfg, choices = compose_run(args)
    trainer = Trainer.from_config(cfg, run_dir, run_names(cfg, choices))
    trainer.fit()
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create(args), run_dir / ".hydra" / "overrides.yaml")
    return trainer


def digests(run_dir: Path) -> dict[str, str]:
    """The training records' bytes (everything but eval/)."""
    return {
        str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and "eval" not in p.relative_to(run_dir).parts
    }


def eval_metrics(run_dir: Path, name: str) -> dict:
    return json.loads((run_dir / "eval" / name / "metrics.json").read_text())


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cls") / "run"
    return train_run(run, *QUICK), run


def test_classification_eval_reproduces_the_run_and_exports(digits_run, capsys):
    trainer, run = digits_run
    before = digests(run)
    assert podhl_eval([str(run), "checkpoint=last", "--export"]) == 0
    head, _, *rows = capsys.readouterr().out.splitlines()
    assert head.split() == ["metric", "value", "run", "(epoch", "1)"]
    [acc] = [row.split() for row in rows if row.startswith("test_acc ")]
    assert acc[1] == acc[2] == f"{read_metrics(run)['test_acc']:.4f}"  # the printed table: value and the run's
    assert digests(run) == before  # metrics.json, history.csv, checkpoints: byte-identical
    m, trained = eval_metrics(run, "digits"), read_metrics(run)
    for key in ("test_acc", "test_loss", "test_feature_norm"):
        assert m[key] == trained[key], key  # exactly: the same model, data and code path
    assert m["checkpoint_epoch"] == 1 and m["criterion_loaded"] and m["exported"] == ["embeddings.npz"]
    # the export against embeddings computed here from the trained model and the test images
    data = trainer.task.data
    images = torch.stack([data.test[i][0] for i in range(len(data.test))])
    labels = np.array([int(data.test[i][1]) for i in range(len(data.test))])
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.model(images).numpy()
        predicted = trainer.criterion.logits(torch.from_numpy(expected)).argmax(1).numpy()
    saved = np.load(run / "eval" / "digits" / "embeddings.npz")
    np.testing.assert_array_equal(saved["labels"], labels)
    np.testing.assert_allclose(saved["embeddings"], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(saved["predictions"], predicted)
    assert 100.0 * float(np.mean(saved["predictions"] == labels)) == pytest.approx(trained["test_acc"])


def test_a_plain_key_override_changes_the_data(digits_run):
    """``dataset.split_seed=1`` (a key, applied to the run's config as it is): another 20 % of digits is the
    test split; test_acc is the trained model's accuracy on exactly those images."""
    from podhl.data import build_data

    trainer, run = digits_run
    assert podhl_eval([str(run), "checkpoint=last", "dataset.split_seed=1", "eval.name=resplit"]) == 0
    m = eval_metrics(run, "resplit")
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    cfg.dataset.split_seed = 1
    test = build_data(cfg.dataset).test
    images = torch.stack([test[i][0] for i in range(len(test))])
    labels = torch.tensor([int(test[i][1]) for i in range(len(test))])
    trainer.model.eval()
    with torch.no_grad():
        predicted = trainer.criterion.logits(trainer.model(images)).argmax(1)
    assert m["test_acc"] == pytest.approx(100.0 * float((predicted == labels).float().mean()))
    original = trainer.task.data.test
    assert not torch.equal(images, torch.stack([original[i][0] for i in range(len(original))]))  # other images
    assert m["overrides"] == ["dataset.split_seed=1"]


def test_a_gpu_run_evaluates_on_the_cpu(digits_run, tmp_path):
    """A run recorded with trainer.device=cuda evaluates where podhl-eval runs (trainer.device=auto; the
    checkpoint's tensors are mapped to that device)."""
    import shutil

    _, run = digits_run
    copy = tmp_path / "gpu_run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("eval"))
    cfg = OmegaConf.load(copy / ".hydra" / "config.yaml")
    cfg.trainer.device = "cuda"
    OmegaConf.save(cfg, copy / ".hydra" / "config.yaml")
    assert podhl_eval([str(copy), "checkpoint=last"]) == 0
    m = eval_metrics(copy, "digits")
    from podhl.engine.validate import resolve_device

    expected = str(resolve_device("auto"))
    assert m["device"] == expected and (expected != "cpu" or m["test_acc"] == read_metrics(run)["test_acc"])


def test_eval_of_the_best_checkpoint_on_a_second_dataset(digits_run):
    """A 10-digit classifier scored as an embedder on digits_open's 6-9 pairs: its criterion (10 classes) does
    not fit digits_open's 6 training classes, so only the pair metrics are reported."""
    _, run = digits_run
    assert podhl_eval([str(run), *VERIFICATION, "eval.name=open", "--export"]) == 0
    m = eval_metrics(run, "open")
    assert m["checkpoint"].endswith("best.pt") and m["dataset"] == "digits_open" and not m["criterion_loaded"]
    assert m["verify_acc"] == m["digits_open_acc"] and 50.0 <= m["verify_acc"] <= 100.0
    assert not any(k.startswith(("test_", "val_")) for k in m)
    pairs = np.load(run / "eval" / "open" / "pairs_digits_open.npz")
    e = pairs["embeddings"] / np.linalg.norm(pairs["embeddings"], axis=1, keepdims=True)
    np.testing.assert_allclose(pairs["scores"], (e[0::2] * e[1::2]).sum(1), rtol=1e-6, atol=1e-6)
    assert pairs["issame"].dtype == bool and len(pairs["issame"]) == 3000 and pairs["issame"].sum() == 1500


def test_verification_eval_reproduces_the_run_and_exports_pairs(tmp_path):
    from podhl.tasks.verification_metrics import protocol_metrics

    run = tmp_path / "run"
    trainer = train_run(run, *QUICK, *VERIFICATION)
    assert podhl_eval([str(run), "checkpoint=last", "export=true"]) == 0
    m, trained = eval_metrics(run, "digits_open"), read_metrics(run)
    for key in ("verify_acc", "digits_open_acc", "digits_open_acc_std", "digits_open_threshold", "test_acc"):
        assert m[key] == trained[key], key
    pairs = trainer.task.pairs["digits_open"]
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.model(pairs.normalized(0, len(pairs.images), torch.device("cpu"))).numpy()
    saved = np.load(run / "eval" / "digits_open" / "pairs_digits_open.npz")
    np.testing.assert_allclose(saved["embeddings"], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(saved["issame"], pairs.issame)
    e = expected.astype(np.float64)
    cosine = (e[0::2] * e[1::2]).sum(1) / (np.linalg.norm(e[0::2], axis=1) * np.linalg.norm(e[1::2], axis=1))
    np.testing.assert_allclose(saved["scores"], cosine, rtol=1e-5, atol=1e-6)
    # the saved embeddings give the run's number under the run's protocol (task.protocol, default insightface)
    again = protocol_metrics(saved["embeddings"], saved["issame"], trainer.task.protocol, 10, 1e-3)
    assert again["acc"] == pytest.approx(m["digits_open_acc"])
    assert np.load(run / "eval" / "digits_open" / "embeddings.npz")["embeddings"].shape == (
        len(trainer.task.data.test),
        32,
    )


def test_detection_eval_reproduces_the_run_and_exports_coco(tmp_path):
    from pycocotools.coco import COCO

    from podhl.tasks.detection_metrics import ImageDetections, ImageTruth, average_precision

    run = tmp_path / "run"
    train_run(run, *DETECTION)
    before = digests(run)
    assert podhl_eval([str(run), "--export"]) == 0
    assert digests(run) == before
    m, trained = eval_metrics(run, "digits_boxes"), read_metrics(run)
    for key in ("map50", "box_acc", "box_acc_matched", "detections_per_image"):
        assert m[key] == trained[key], key
    folder = run / "eval" / "digits_boxes"
    detections = json.loads((folder / "detections.json").read_text())
    gt = COCO(str(folder / "ground_truth.json"))
    results = gt.loadRes(str(folder / "detections.json"))  # pycocotools reads both files
    images = sorted(gt.getImgIds())
    assert len(images) == 16 and len(results.getAnnIds()) == len(detections)
    assert len(detections) == pytest.approx(m["detections_per_image"] * len(images))
    # AP@0.5 recomputed from the two files (xywh back to xyxy) equals the evaluation's
    dets, truths = [], []
    for i in images:
        mine = [d for d in detections if d["image_id"] == i]
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in mine)]).reshape(-1, 4)
        dets.append(
            ImageDetections(boxes, np.array([d["score"] for d in mine]), np.array([d["category_id"] for d in mine]))
        )
        anns = gt.loadAnns(gt.getAnnIds(imgIds=[i]))
        truths.append(
            ImageTruth(
                np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]).reshape(-1, 4),
                np.array([a["category_id"] for a in anns]),
                np.array([bool(a["iscrowd"]) for a in anns]),
            )
        )
    assert 100.0 * average_precision(dets, truths, 0.5)["map"] == pytest.approx(m["map50"], abs=1e-4)


def test_retrieval_metrics_by_hand():
    """Six 2-d embeddings at angles 0°, 10°, 90°, 55°, 30°, 170° with classes 0, 0, 1, 1, 0, 1 (R = 2 for every
    query). Nearest neighbours by angle, relevant ones marked +:
      q0 (0°):   10°+, 30°+          P@1 1, R-prec 1,   AP@R (1 + 1)/2 = 1
      q1 (10°):  0°+, 30°+           1, 1, 1
      q2 (90°):  55°+, 30°−          1, 1/2, (1 + 0)/2 = 1/2
      q3 (55°):  30°−, 90°+          0, 1/2, (0 + 1/2)/2 = 1/4
      q4 (30°):  10°+, 55°−          1, 1/2, 1/2
      q5 (170°): 90°+, 55°+          1, 1, 1
    precision@1 = 5/6, R-precision = 4.5/6, MAP@R = 4.25/6."""
    from podhl.analysis.retrieval import retrieval_metrics

    angles = torch.tensor([0.0, 10.0, 90.0, 55.0, 30.0, 170.0]) * math.pi / 180
    embeddings = torch.stack([angles.cos(), angles.sin()], 1) * torch.tensor([1.0, 2.0, 0.5, 3.0, 1.0, 1.5])[:, None]
    out = retrieval_metrics(embeddings, torch.tensor([0, 0, 1, 1, 0, 1]), batch_size=4)
    assert out["precision_at_1"] == pytest.approx(5 / 6)
    assert out["r_precision"] == pytest.approx(4.5 / 6)
    assert out["mean_average_precision_at_r"] == pytest.approx(4.25 / 6)


def test_retrieval_in_podhl_eval_and_training(digits_run, tmp_path):
    """``+metrics=retrieval``: after training's last epoch (analysis.json) and in podhl-eval (same model: equal)."""
    from podhl.analysis.retrieval import retrieval_metrics

    trainer, run = digits_run
    assert podhl_eval([str(run), "checkpoint=last", "+metrics=retrieval", "eval.name=retrieval"]) == 0
    m = eval_metrics(run, "retrieval")
    data = trainer.task.data
    images = torch.stack([data.test[i][0] for i in range(len(data.test))])
    trainer.model.eval()
    with torch.no_grad():
        expected = retrieval_metrics(
            trainer.model(images), torch.tensor([int(data.test[i][1]) for i in range(len(data.test))])
        )
    for key, value in expected.items():
        assert m[f"retrieval_{key}"] == pytest.approx(value, abs=1e-6), key
    assert m["analysis"]["retrieval"]["n"] == len(data.test)
    other = tmp_path / "trained"
    train_run(other, *QUICK, "+metrics=retrieval")
    found = json.loads((other / "analysis.json").read_text())["retrieval"]
    assert 0.0 <= found["mean_average_precision_at_r"] <= found["r_precision"] <= 1.0 and found["n"] == len(data.test)
    assert read_metrics(other)["analysis"]["retrieval"] == found


def test_errors_exit_2_with_one_line(digits_run, tmp_path, caplog):
    _, run = digits_run
    caplog.set_level(logging.ERROR, logger="podhl")
    cases = [
        ([str(tmp_path / "nowhere")], "configuration error: ", "no such run folder"),
        ([str(run), "checkpoint=middle.pt"], "configuration error: ", "checkpoint=middle.pt"),
        (
            [str(run), "dataset=no_such_dataset"],
            "configuration error: ",
            "'dataset/no_such_dataset' (options: casia_webface,",
        ),
        ([str(run), "dataset=mnist", f"dataset.root={tmp_path / 'none'}"], "data error: ", "MNIST not found"),
    ]
    for argv, prefix, detail in cases:
        caplog.clear()
        assert podhl_eval(argv) == 2, argv
        [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert "\n" not in record.getMessage()
        assert record.getMessage().startswith(prefix) and detail in record.getMessage(), record.getMessage()
    empty = tmp_path / "no_checkpoints"
    train_run(empty, *QUICK, "trainer.save_checkpoints=false")
    caplog.clear()
    assert podhl_eval([str(empty)]) == 2
    assert "holds no best.pt" in caplog.records[-1].getMessage()


def test_console_script_line(tmp_path):
    """The installed entry point (python -m podhl.evaluate): a missing run is one line on stderr, exit 2."""
    proc = subprocess.run(
        [sys.executable, "-m", "podhl.evaluate", str(tmp_path / "missing")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "configuration error" in lines[0], proc.stderr


def _has_split() -> bool:
    import inspect

    from podhl.tasks.classification import ClassificationTask

    return "split" in inspect.signature(ClassificationTask.evaluate).parameters


@pytest.mark.skipif(not _has_split(), reason="task.evaluate has no validation split in this version")
def test_eval_of_the_validation_split(tmp_path):
    """``eval.split=val``: the validation metrics of the checkpoint's epoch, as the run recorded them."""
    run = tmp_path / "run"
    train_run(run, *QUICK, "dataset.val_fraction=0.1")
    assert podhl_eval([str(run), "checkpoint=last", "eval.split=val", "eval.name=val", "--export"]) == 0
    m, trained = eval_metrics(run, "val"), read_metrics(run)
    assert m["val_acc"] == trained["val_acc"] and m["val_loss"] == trained["val_loss"] and m["split"] == "val"
    assert not any(k.startswith("test_") for k in m)
    saved = np.load(run / "eval" / "val" / "embeddings.npz")  # the validation images' embeddings
    assert len(saved["labels"]) == trained["split"]["val_size"]
    assert 100.0 * float(np.mean(saved["predictions"] == saved["labels"])) == pytest.approx(m["val_acc"])
