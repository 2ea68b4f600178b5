"""The two numbers of HL Tables VIII–IX, in numpy, defined as the authors' code computes them
(TCCofWANG/Hypersphere_loss @ 8946f56c/87301df, ``faster_rcnn_HL/get_map.py`` + ``utils/utils_map.py`` and
``get_classify_acc.py``).

**AP@0.5** (:func:`average_precision`), per class c over the whole test set:

* the detections of class c, sorted by score (descending, stable: image order, then detection order);
* each is matched to the ground-truth object of class c in its image with the highest IoU (first one on
  ties); if that IoU ≥ 0.5: a *difficult* object → ignored (neither TP nor FP); an object not yet matched →
  TP (now matched); an object already matched → FP. IoU < 0.5 → FP;
* recall = cumulative TP / #non-difficult objects of c; precision = cumulative TP / max(TP + FP, 1);
* AP = **all-point interpolation** (VOC2010+ ``voc_ap``: the area under the monotone precision envelope,
  Σ Δrecall · precision), not VOC2007's 11-point mean;
* mAP = mean over the classes with at least one non-difficult object (a class without detections: AP 0).

**Best-box accuracy** (:func:`best_box_accuracy`): for every ground-truth object (difficult ones included),
the detection of its image with the highest IoU (any class; first one on ties); if that IoU ≥ 0.5 the object
counts, and it is correct when that detection's class is the object's. Accuracy = correct / counted; objects
with no detection at IoU ≥ 0.5 are left out of both (the denominator is reported as ``matched``).

IoU: ``plus_one=False`` (default) for continuous box coordinates, which is what this project's readers give
(a VOC box [xmin − 1, xmax] in continuous coordinates has the width xmax − xmin + 1 the authors' +1 formula
gives on the XML's inclusive pixel indices); ``plus_one=True`` is the authors' formula on pixel indices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class ImageDetections:
    boxes: np.ndarray  # (n, 4) xyxy
    scores: np.ndarray  # (n,)
    labels: np.ndarray  # (n,) 1..K


@dataclass
class ImageTruth:
    boxes: np.ndarray  # (m, 4) xyxy
    labels: np.ndarray  # (m,) 1..K
    difficult: np.ndarray  # (m,) bool


def box_iou(a: np.ndarray, b: np.ndarray, plus_one: bool = False) -> np.ndarray:
    """(len(a), len(b)) IoU of xyxy boxes; 0 where they do not intersect."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    one = 1.0 if plus_one else 0.0
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + one
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + one
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    area_a = (a[:, 2] - a[:, 0] + one) * (a[:, 3] - a[:, 1] + one)
    area_b = (b[:, 2] - b[:, 0] + one) * (b[:, 3] - b[:, 1] + one)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(inter > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated AP (VOC2010+, the authors' ``voc_ap``): area under the monotone precision envelope."""
    mrec = np.concatenate([[0.0], np.asarray(recall, dtype=np.float64), [1.0]])
    mpre = np.concatenate([[0.0], np.asarray(precision, dtype=np.float64), [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.where(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))


def _best_same_class(det: ImageDetections, gt: ImageTruth, plus_one: bool) -> tuple[np.ndarray, np.ndarray]:
    """For each detection: the highest IoU with a ground-truth object of its class, and that object's index."""
    if len(det.labels) == 0 or len(gt.labels) == 0:
        return np.full(len(det.labels), -1.0), np.zeros(len(det.labels), dtype=np.int64)
    iou = box_iou(det.boxes, gt.boxes, plus_one)
    iou = np.where(det.labels[:, None] == gt.labels[None, :], iou, -1.0)
    best = np.argmax(iou, axis=1)  # first maximum, like the authors' strict '>'
    return iou[np.arange(len(best)), best], best


def average_precision(
    detections: Sequence[ImageDetections],
    truths: Sequence[ImageTruth],
    iou_threshold: float = 0.5,
    plus_one: bool = False,
) -> dict[str, object]:
    """``{"map": mean AP over classes with objects, "per_class": {label: AP}, "num_objects": {label: n},
    "curves": {label: (recall, precision)}}`` (fractions; the curves in score order, before interpolation)."""
    if len(detections) != len(truths):
        raise ValueError(f"{len(detections)} detection lists for {len(truths)} images")
    rows = []  # per image: label, score, ovmax, matched object id (global), difficult flag
    offset = 0
    for det, gt in zip(detections, truths, strict=True):
        ovmax, best = _best_same_class(det, gt, plus_one)
        difficult = gt.difficult[best] if len(gt.labels) else np.zeros(len(best), dtype=bool)
        rows.append(
            (det.labels.astype(np.int64), det.scores.astype(np.float64), ovmax, best + offset, difficult.astype(bool))
        )
        offset += len(gt.labels)
    labels, scores, ovmax, matched, difficult = (
        np.concatenate([r[i] for r in rows]) if rows else np.zeros(0) for i in range(5)
    )
    gt_labels = (
        np.concatenate([t.labels[~t.difficult.astype(bool)] for t in truths]) if truths else np.zeros(0, dtype=np.int64)
    )
    classes, counts = np.unique(gt_labels.astype(np.int64), return_counts=True)
    per_class, curves = {}, {}
    for c, npos in zip(classes.tolist(), counts.tolist(), strict=True):
        sel = np.where(labels == c)[0]
        order = sel[np.argsort(-scores[sel], kind="stable")]
        hit = ovmax[order] >= iou_threshold
        ignored = hit & difficult[order].astype(bool)
        candidate = hit & ~ignored
        first = np.zeros(len(order), dtype=bool)  # the first (highest-scoring) detection of each object is its TP
        if candidate.any():
            idx = np.where(candidate)[0]
            _, first_of_object = np.unique(matched[order][idx], return_index=True)
            first[idx[first_of_object]] = True
        tp = first.astype(np.float64)
        fp = (~first & ~ignored).astype(np.float64)
        ctp, cfp = np.cumsum(tp), np.cumsum(fp)
        recall = ctp / max(npos, 1)
        precision = ctp / np.maximum(ctp + cfp, 1.0)
        per_class[c] = voc_ap(recall, precision)
        curves[c] = (recall, precision)
    mean = float(np.mean(list(per_class.values()))) if per_class else 0.0
    return {
        "map": mean,
        "per_class": per_class,
        "num_objects": dict(zip(classes.tolist(), counts.tolist(), strict=True)),
        "curves": curves,
    }


def best_box_accuracy(
    detections: Sequence[ImageDetections],
    truths: Sequence[ImageTruth],
    iou_threshold: float = 0.5,
    plus_one: bool = False,
) -> dict[str, float]:
    """``{"accuracy", "correct", "matched", "objects"}``: the class accuracy of each object's best-IoU detection."""
    correct = matched = objects = 0
    for det, gt in zip(detections, truths, strict=True):
        objects += len(gt.labels)
        if len(gt.labels) == 0 or len(det.labels) == 0:
            continue
        iou = box_iou(gt.boxes, det.boxes, plus_one)
        best = np.argmax(iou, axis=1)
        hit = iou[np.arange(len(best)), best] >= iou_threshold
        matched += int(hit.sum())
        correct += int((hit & (det.labels[best] == gt.labels)).sum())
    return {
        "accuracy": correct / matched if matched else 0.0,
        "correct": correct,
        "matched": matched,
        "objects": objects,
    }
