"""AP@0.5 (VOC all-point, the authors' get_map.py rules) and the best-box accuracy (get_classify_acc.py):
a hand-computed case, the +1-pixel IoU, and pycocotools' COCOeval where the two definitions must agree."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from podhl.tasks.detection_metrics import (
    ImageDetections,
    ImageTruth,
    average_precision,
    best_box_accuracy,
    box_iou,
    voc_ap,
)


def det(rows):
    """rows: (x1, y1, x2, y2, score, label)"""
    a = np.array(rows, dtype=np.float64).reshape(-1, 6)
    return ImageDetections(a[:, :4], a[:, 4], a[:, 5].astype(np.int64))


def truth(rows, difficult=None):
    a = np.array(rows, dtype=np.float64).reshape(-1, 5)
    flags = np.zeros(len(a), dtype=bool) if difficult is None else np.array(difficult, dtype=bool)
    return ImageTruth(a[:, :4], a[:, 4].astype(np.int64), flags)


# Image A: a1 (class 1), a2 (class 1, difficult), a3 (class 2); image B: b1 (class 1).
A_TRUTH = truth([[0, 0, 10, 10, 1], [20, 0, 30, 10, 1], [40, 0, 50, 10, 2]], difficult=[False, True, False])
B_TRUTH = truth([[0, 0, 10, 10, 1]])
A_DETS = det(
    [
        [0, 0, 10, 10, 0.9, 1],  # d1: a1 → TP
        [20, 0, 30, 10, 0.8, 1],  # d2: the difficult a2 → ignored
        [0, 0, 10, 10, 0.7, 1],  # d3: a1 again → FP (already matched)
        [60, 60, 70, 70, 0.6, 1],  # d4: nothing → FP
        [40, 0, 44, 10, 0.95, 2],  # d6: a3 at IoU 0.4 → FP
        [40, 0, 48, 10, 0.3, 2],  # d7: a3 at IoU 0.8 → TP
        [40, 0, 49, 10, 0.1, 1],  # d8: class 1 on a3 (IoU 0.9) → FP for class 1; a3's best-IoU box
        [80, 80, 90, 90, 0.99, 3],  # class 3 has no object: not in the mean
    ]
)
B_DETS = det([[0, 0, 10, 10, 0.5, 1]])  # d5: b1 → TP


def test_hand_computed_average_precision():
    # class 1, by score: d1 TP, d2 ignored, d3 FP, d4 FP, d5 TP, d8 FP; 2 non-difficult objects
    #   recall    .5 .5 .5 .5  1  1;  precision 1 1 1/2 1/3 1/2 2/5 → envelope 1 up to recall .5, 1/2 up to 1
    #   AP = .5·1 + .5·.5 = .75
    # class 2: d6 FP (IoU .4 < .5), d7 TP → recall 0, 1; precision 0, 1/2 → AP = .5
    result = average_precision([A_DETS, B_DETS], [A_TRUTH, B_TRUTH])
    assert result["per_class"] == pytest.approx({1: 0.75, 2: 0.5})
    assert result["map"] == pytest.approx(0.625)
    assert result["num_objects"] == {1: 2, 2: 1}


def test_hand_computed_best_box_accuracy():
    # a1 → d1 (first of the two IoU-1 boxes, class 1) ✓; a2 (difficult, counted) → d2 ✓;
    # a3 → d8 (IoU .9, class 1) ✗; b1 → d5 ✓  ⇒ 3 / 4
    acc = best_box_accuracy([A_DETS, B_DETS], [A_TRUTH, B_TRUTH])
    assert acc == {"accuracy": 0.75, "correct": 3, "matched": 4, "objects": 4}
    # an object without a detection at IoU ≥ 0.5 leaves both counts
    acc = best_box_accuracy([det([[0, 0, 4, 10, 0.9, 1]])], [truth([[0, 0, 10, 10, 1]])])
    assert acc == {"accuracy": 0.0, "correct": 0, "matched": 0, "objects": 1}


def test_voc_all_point_interpolation():
    assert voc_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert voc_ap(np.array([]), np.array([])) == 0.0
    # [T, F, T] with two objects: 5/6 (the 11-point VOC07 metric would give 0.848)
    assert voc_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])) == pytest.approx(5 / 6)


def test_iou_conventions():
    assert box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10]])[0, 0] == pytest.approx(50 / 150)
    # the authors' +1 formula on inclusive pixel indices: [0, 9] is 10 pixels wide
    assert box_iou([[0, 0, 9, 9]], [[5, 0, 14, 9]], plus_one=True)[0, 0] == pytest.approx(50 / 150)
    assert box_iou([[0, 0, 1, 1]], [[5, 5, 6, 6]])[0, 0] == 0.0


# ---------------------------------------------------------------------------------------------- pycocotools


def coco_ap(detections, truths, num_classes):
    """Per-class AP from pycocotools' COCOeval at IoU 0.5 (101 recall points), no detection cap, one area range."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, dets = [], [], []
    for i, (d, t) in enumerate(zip(detections, truths, strict=True)):
        images.append({"id": i, "width": 1000, "height": 1000})
        for box, label in zip(t.boxes, t.labels, strict=True):
            w, h = box[2] - box[0], box[3] - box[1]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": int(label),
                    "bbox": [*box[:2], w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
        for box, score, label in zip(d.boxes, d.scores, d.labels, strict=True):
            dets.append(
                {
                    "image_id": i,
                    "category_id": int(label),
                    "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                    "score": float(score),
                }
            )
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {
            "images": images,
            "annotations": anns,
            "categories": [{"id": k} for k in range(1, num_classes + 1)],
        }
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.params.iouThrs = np.array([0.5])
        ev.params.maxDets = [10_000]
        ev.params.areaRng, ev.params.areaRngLbl = [[0, 1e12]], ["all"]
        ev.evaluate()
        ev.accumulate()
    out = {}
    for k, cat in enumerate(ev.params.catIds):
        precision = ev.eval["precision"][0, :, k, 0, 0]
        if (precision > -1).any():
            out[cat] = float(precision[precision > -1].mean())
    return out


def grid_case(seed: int, images: int = 12, num_classes: int = 3):
    """Objects in separate cells of a grid (a detection can only overlap its own cell's object), detections that
    are jittered copies (IoU ≥ 0.67, some with a wrong class) or false positives in empty cells."""
    rng = np.random.default_rng(seed)
    dets, truths = [], []
    for _ in range(images):
        cells = rng.permutation(16)
        n_obj = int(rng.integers(1, 6))
        gt_rows, det_rows = [], []
        for c in cells[:n_obj]:
            x, y = 100 * (c % 4), 100 * (c // 4)
            label = int(rng.integers(1, num_classes + 1))
            gt_rows.append([x + 10, y + 10, x + 70, y + 70, label])
            for _ in range(int(rng.integers(0, 3))):
                j = rng.uniform(-5, 5, size=4)
                wrong = rng.random() < 0.2
                det_rows.append(
                    [
                        x + 10 + j[0],
                        y + 10 + j[1],
                        x + 70 + j[2],
                        y + 70 + j[3],
                        rng.random(),
                        int(rng.integers(1, num_classes + 1)) if wrong else label,
                    ]
                )
        for c in cells[n_obj : n_obj + int(rng.integers(0, 3))]:
            x, y = 100 * (c % 4), 100 * (c // 4)
            det_rows.append([x + 10, y + 10, x + 60, y + 60, rng.random(), int(rng.integers(1, num_classes + 1))])
        truths.append(truth(gt_rows))
        dets.append(det(det_rows))
    return dets, truths


def test_agrees_exactly_with_pycocotools_where_the_definitions_coincide():
    """All-point VOC and 101-point COCO AP are equal when the precision envelope is flat up to recall 1:
    perfect detections, false positives that all score above the true positives, or no true positive."""
    objects = [truth([[10, 10, 60, 60, 1], [110, 10, 160, 60, 2]]), truth([[10, 110, 60, 160, 1]])]
    perfect = [det([[10, 10, 60, 60, 0.9, 1], [110, 10, 160, 60, 0.8, 2]]), det([[10, 110, 60, 160, 0.7, 1]])]
    fp_first = [
        det([[10, 10, 60, 60, 0.5, 1], [300, 300, 350, 350, 0.99, 1], [110, 10, 160, 60, 0.8, 2]]),
        det([[10, 110, 60, 160, 0.4, 1], [300, 300, 340, 340, 0.95, 2]]),
    ]
    none = [det([[300, 300, 350, 350, 0.9, 1]]), det([[400, 400, 450, 450, 0.9, 2]])]
    for dets, expected in ((perfect, {1: 1.0, 2: 1.0}), (fp_first, {1: 2 / 3, 2: 1 / 2}), (none, {1: 0.0, 2: 0.0})):
        ours = average_precision(dets, objects)["per_class"]
        assert ours == pytest.approx(expected, abs=1e-12)
        assert coco_ap(dets, objects, 2) == pytest.approx(ours, abs=1e-12)


def coco_101_point(recall: np.ndarray, precision: np.ndarray) -> float:
    """COCOeval's interpolation of a precision/recall curve: the monotone envelope read at recall 0, .01, …, 1."""
    envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    idx = np.searchsorted(recall, np.linspace(0, 1, 101), side="left")
    return float(np.mean([envelope[i] if i < len(envelope) else 0.0 for i in idx]))


@pytest.mark.parametrize("seed", range(5))
def test_matches_pycocotools_up_to_the_interpolation(seed):
    """Where each detection can only overlap one object, VOC and COCO match detections alike: our precision/recall
    curve read at COCO's 101 recall points is pycocotools' AP exactly, and the all-point area differs from that
    101-point mean of the same non-increasing envelope by at most 1/100."""
    dets, truths = grid_case(seed)
    result = average_precision(dets, truths)
    ours, theirs = result["per_class"], coco_ap(dets, truths, 3)
    assert set(ours) == set(theirs) == {1, 2, 3}
    for c in ours:
        assert coco_101_point(*result["curves"][c]) == pytest.approx(theirs[c], abs=1e-12)
        assert abs(ours[c] - theirs[c]) <= 0.01 + 1e-12, (c, ours[c], theirs[c])
    assert max(abs(ours[c] - theirs[c]) for c in ours) > 1e-4  # the two interpolations really differ here
