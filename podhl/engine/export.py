"""``podhl-eval --export``: what an evaluation computed, as files other tools read.

* ``embeddings.npz`` (classification, verification with a test split): ``embeddings`` (N, d) float32, the
  latent features x of the evaluated split's images (test, or ``eval.split=val``; model in eval mode, no
  augmentation), ``labels`` (N,) int64 and ``predictions`` (N,), the criterion's argmax (absent when its
  state was not loaded);
* ``pairs_<set>.npz`` (verification, one per set): ``embeddings`` (2P, d) as the task scores them (with
  ``task.flip``: f(x) + f(mirror x)), ``scores`` (P,) the cosine similarity of rows 2i and 2i+1 and
  ``issame`` (P,) bool;
* ``detections.json`` (detection): COCO results, ``[{image_id, category_id, bbox: [x, y, w, h], score}]``
  for every detection of every test image (image_id: the test image's index, category_id: its class 1..K),
  and ``ground_truth.json``, the test boxes as a COCO dataset (``iscrowd`` = VOC's difficult flag, which
  COCOeval ignores like VOC's AP does), so that ``COCO(gt).loadRes(detections)`` works.

The same ``trainer.limit_test_batches`` as the evaluation applies.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from podhl.engine.records import atomic_write
from podhl.tasks.verification_metrics import cosine_scores


def _save_npz(path: Path, **arrays) -> str:
    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, write)
    return path.name


def _save_json(path: Path, obj) -> str:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f)

    atomic_write(path, write)
    return path.name


@torch.no_grad()
def split_embeddings(parts, limit: int | None, predict: bool, split: str = "test") -> dict[str, np.ndarray]:
    """Features, labels (and the criterion's predictions) of ``split``, the first ``limit`` batches."""
    feats, labels, preds = [], [], []
    parts.criterion.eval()
    for i, (f, y) in enumerate(parts.task.feature_batches(parts.model, split, shard=False)):
        if limit is not None and i >= int(limit):
            break
        feats.append(f.float().cpu())
        labels.append(y.cpu())
        if predict:
            preds.append(parts.criterion.logits(f).argmax(1).cpu())
    parts.criterion.train()
    out = {"embeddings": torch.cat(feats).numpy(), "labels": torch.cat(labels).numpy()}
    if predict:
        out["predictions"] = torch.cat(preds).numpy()
    return out


@torch.no_grad()
def coco_detections(parts, limit: int | None) -> tuple[list[dict], dict]:
    """(COCO results, COCO ground truth) of the test images, detected as ``DetectionTask.evaluate`` does."""
    from podhl.tasks.detection import unwrap

    task, criterion = parts.task, parts.criterion
    detector = unwrap(parts.model)
    was_training = detector.training
    detector.eval()
    criterion.eval()
    detector.set_scorer(criterion.logits)
    results, images, annotations = [], [], []
    loader = task.loaders.test
    total = len(loader) if limit is None else min(int(limit), len(loader))
    image_id = 0
    try:
        for i, (batch_images, targets) in enumerate(loader):
            if i >= total:
                break
            with task.runtime.autocast():
                outputs = detector(task._images_to_device(batch_images))
            for image, out, target in zip(batch_images, outputs, targets, strict=True):
                boxes = out["boxes"].float().cpu().numpy()
                for box, score, label in zip(
                    boxes, out["scores"].float().cpu().numpy(), out["labels"].cpu().numpy(), strict=True
                ):
                    x1, y1, x2, y2 = (float(v) for v in box)
                    results.append(
                        {
                            "image_id": image_id,
                            "category_id": int(label),
                            "bbox": [x1, y1, x2 - x1, y2 - y1],
                            "score": float(score),
                        }
                    )
                images.append({"id": image_id, "height": int(image.shape[-2]), "width": int(image.shape[-1])})
                for box, label, difficult in zip(
                    target["boxes"].numpy(), target["labels"].numpy(), target["difficult"].numpy(), strict=True
                ):
                    x1, y1, x2, y2 = (float(v) for v in box)
                    annotations.append(
                        {
                            "id": len(annotations) + 1,
                            "image_id": image_id,
                            "category_id": int(label),
                            "bbox": [x1, y1, x2 - x1, y2 - y1],
                            "area": (x2 - x1) * (y2 - y1),
                            "iscrowd": int(bool(difficult)),
                        }
                    )
                image_id += 1
    finally:
        detector.set_scorer(None)
        detector.train(was_training)
        criterion.train()
    names = list(task.data.class_names)
    categories = [{"id": i + 1, "name": str(n)} for i, n in enumerate(names)]
    return results, {"images": images, "annotations": annotations, "categories": categories}


def export_outputs(
    parts, cfg: DictConfig, out_dir: Path, criterion_loaded: bool, split: str = "test"
) -> dict[str, str]:
    """Write the task's export files into ``out_dir``; returns {file name: what it holds}. ``split``: the
    evaluated split, whose embeddings ``embeddings.npz`` holds (detection: always the test images)."""
    from podhl.tasks.classification import ClassificationTask
    from podhl.tasks.detection import DetectionTask
    from podhl.tasks.verification import VerificationTask

    task = parts.task
    limit = cfg.trainer.get("limit_test_batches")
    files: dict[str, str] = {}
    if isinstance(task, DetectionTask):
        results, truth = coco_detections(parts, limit)
        files[_save_json(out_dir / "detections.json", results)] = "COCO results of the test images"
        files[_save_json(out_dir / "ground_truth.json", truth)] = "the test boxes as a COCO dataset"
        return files
    if isinstance(task, ClassificationTask) and len(task.data.test):
        arrays = split_embeddings(parts, limit, predict=criterion_loaded, split=split)
        files[_save_npz(out_dir / "embeddings.npz", **arrays)] = f"{split} embeddings, labels, predictions"
    if isinstance(task, VerificationTask):
        for name, pairs in task.pairs.items():
            embeddings = task.embed(parts.model, pairs)
            scores = cosine_scores(embeddings.numpy())  # plain cosines (every protocol's TAR@FAR reads them)
            files[
                _save_npz(
                    out_dir / f"pairs_{name}.npz",
                    embeddings=embeddings.numpy(),
                    scores=np.asarray(scores, dtype=np.float64),
                    issame=np.asarray(pairs.issame, dtype=bool),
                )
            ] = f"{name}: pair embeddings, cosine scores, is-same flags"
    return files
