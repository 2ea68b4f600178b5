"""Face-verification metrics from pair embeddings or scores (pure numpy + scikit-learn; no model, no torch).

Three 10-fold protocols (``task.protocol``), which differ only in how a fold's threshold is chosen and
what is thresholded:

* ``insightface`` (the default: the protocol behind most published LFW/CFP-FP/AgeDB-30 numbers, those of
  ArcFace, CosFace's and MagFace's PyTorch re-implementations and insightface's model zoo):
  deepinsight/insightface ``recognition/arcface_torch/eval/verification.py`` @ bb221e6e (the file's newest
  commit; repository @ 7fadd420), ``evaluate`` → ``calculate_roc``: the embeddings (image + flip summed) are
  L2-normalized, a pair's distance is the squared L2 distance d = ‖e₁ − e₂‖² = 2 − 2·cos, "same" iff
  d < t, and t is the first best of the grid ``np.arange(0, 4, 0.01)`` on the training folds
  (:func:`grid_fold_accuracies`). Only ``calculate_roc``/``calculate_accuracy`` are transplanted: its
  ``calculate_val`` (VAL@FAR) calls ``scipy.interpolate.interp1d(far_train, thresholds, kind='slinear')``
  on a FAR curve with repeated values, which recent SciPy rejects (1.17.1: ValueError "Expect x to not have
  duplicates"), so TAR@FAR comes from :func:`tar_at_far` here.
* ``exact``: the exact optimum over the training folds' scores (:func:`best_threshold`, below).
* ``sphereface``: wy1iu/sphereface ``test/code/evaluation.m`` @ 2679f8e5 (repository @ f20b130a): a face's feature is
  [f(x); f(flip x)] concatenated, the mean feature of the training folds (both images of every pair) is
  subtracted before the cosine, and the threshold is the mean of all best thresholds of the grid
  (−1:1e-4:1) with "same" iff score > t and "different" iff score < t (:func:`sphereface_fold_accuracies`).

The ``exact`` protocol (LFW View 2, "unrestricted with labeled outside data"):

* a pair's score is the cosine similarity of its two embeddings; "same" iff score ≥ threshold;
* the pairs are cut into 10 **consecutive** folds (``KFold(10, shuffle=False)``): the files list the
  protocol's folds in order (LFW ``pairs.txt``: 10 × 600, identity-disjoint), so shuffling would mix them;
* for each fold the threshold is the one with the best accuracy on the other 9 folds, and the fold's
  accuracy is measured at it; the result is the mean and the standard deviation (ddof 0, as
  insightface prints it) over the 10 folds, in %.

The threshold is the exact optimum over the training folds' distinct scores (``roc_curve`` with
``drop_intermediate=False`` gives TPR/FPR at every one): accuracy(t) = (TPR·P + (1 − FPR)·N)/(P + N).
Ties go to the highest such score (fewest accepted pairs, as ``argmax`` picks the first), and the
threshold sits midway between the lowest accepted and the highest rejected training score.
insightface instead searches a grid (0.01 on the squared distance, i.e. 0.005 in cosine) and takes
the first maximum. On the same scores the two differ by whole pairs per fold, not by ties: on synthetic
scores (scripts/protocol_gap.py, docs/verification.md "Protocols") by −1.8 to +1.7 points on 600-pair sets
and −0.5 to +0.35 points on 6,000-pair sets, about 0 on average.

TAR at FAR (``tar_at_far``): the pooled ROC curve over all pairs, the largest true-accept rate whose
false-accept rate is ≤ FAR. Reported only when there are at least 1/FAR different pairs (FAR = 1e-3
needs ≥ 1,000: LFW has 3,000, CFP-FP 3,500, AgeDB-30 3,000), else None.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, roc_curve
from sklearn.model_selection import KFold
from sklearn.preprocessing import normalize

PROTOCOLS = ("insightface", "exact", "sphereface")
INSIGHTFACE_THRESHOLDS = np.arange(0, 4, 0.01)  # insightface eval/verification.py @ bb221e6e, evaluate()
SPHEREFACE_THRESHOLD_STEPS = 10000  # wy1iu/sphereface test/code/evaluation.m @ 2679f8e5: getThreshold(..., 10000)


def _check(scores: np.ndarray, issame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores, issame = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(issame, dtype=bool).ravel()
    if scores.shape != issame.shape:
        raise ValueError(f"{len(scores)} scores but {len(issame)} same/different labels")
    if not np.all(np.isfinite(scores)):
        raise ValueError("verification scores contain NaN/Inf (did the embeddings diverge?)")
    return scores, issame


def best_threshold(scores: np.ndarray, issame: np.ndarray) -> float:
    """The threshold maximizing the accuracy of "same iff score ≥ threshold" on these pairs (see module doc)."""
    scores, issame = _check(scores, issame)
    if issame.all():
        return -np.inf  # accept every pair
    if not issame.any():
        return np.inf  # accept none
    fpr, tpr, thresholds = roc_curve(issame, scores, drop_intermediate=False)  # thresholds decreasing, [0] = inf
    positives, negatives = issame.sum(), (~issame).sum()
    accuracy = (tpr * positives + (1.0 - fpr) * negatives) / (positives + negatives)
    i = int(np.argmax(accuracy))
    if i + 1 == len(thresholds):
        return -np.inf
    return float((thresholds[i] + thresholds[i + 1]) / 2.0)  # inf when i = 0 (accept none)


def fold_accuracies(scores: np.ndarray, issame: np.ndarray, n_folds: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy (%) of each of ``n_folds`` consecutive folds at the threshold chosen on the others;
    (accs, thresholds)."""
    scores, issame = _check(scores, issame)
    if len(scores) < n_folds:
        raise ValueError(f"{len(scores)} pairs cannot form {n_folds} folds")
    accs, thresholds = [], []
    for train, test in KFold(n_splits=n_folds, shuffle=False).split(scores):
        t = best_threshold(scores[train], issame[train])
        accs.append(100.0 * accuracy_score(issame[test], scores[test] >= t))
        thresholds.append(t)
    return np.asarray(accs), np.asarray(thresholds)


def tar_at_far(scores: np.ndarray, issame: np.ndarray, far: float = 1e-3) -> float | None:
    """True-accept rate (%) at false-accept rate ≤ ``far`` on the pooled ROC; None with fewer than 1/far negatives."""
    scores, issame = _check(scores, issame)
    negatives = int((~issame).sum())
    if negatives == 0 or not issame.any() or negatives * far < 1.0 - 1e-9:
        return None
    fpr, tpr, _ = roc_curve(issame, scores, drop_intermediate=False)
    return 100.0 * float(tpr[fpr <= far].max())


def verification_metrics(
    scores: np.ndarray, issame: np.ndarray, n_folds: int = 10, far: float = 1e-3
) -> dict[str, float | None]:
    """``acc`` (mean over folds, %), ``acc_std`` (std over folds, ddof 0), ``threshold`` (mean chosen
    cosine threshold), ``tar_at_far`` (%, or None) and ``pairs``."""
    accs, thresholds = fold_accuracies(scores, issame, n_folds)
    finite = thresholds[np.isfinite(thresholds)]
    return {
        "acc": float(accs.mean()),
        "acc_std": float(accs.std()),
        "threshold": float(finite.mean()) if len(finite) else None,
        "tar_at_far": tar_at_far(scores, issame, far),
        "pairs": int(len(np.asarray(issame).ravel())),
    }


# ---------------------------------------------------------------------- insightface: a grid over distances
def squared_distances(embeddings: np.ndarray) -> np.ndarray:
    """‖e₂ᵢ − e₂ᵢ₊₁‖² of the L2-normalized rows (= 2 − 2·cos): insightface ``test``
    (``sklearn.preprocessing.normalize``), then ``calculate_roc`` (``np.sum(np.square(e1 − e2), 1)``)."""
    e = normalize(np.asarray(embeddings, dtype=np.float64))
    return np.sum(np.square(np.subtract(e[0::2], e[1::2])), 1)


def grid_fold_accuracies(
    dist: np.ndarray, issame: np.ndarray, n_folds: int = 10, thresholds: np.ndarray = INSIGHTFACE_THRESHOLDS
) -> tuple[np.ndarray, np.ndarray]:
    """insightface ``calculate_roc`` (pca = 0): "same" iff d < t; per consecutive fold, t = the first grid value
    with the best accuracy on the other folds (``np.argmax``); (accuracy of each fold in %, chosen distance t).
    The same counts as insightface's per-threshold loop (``calculate_accuracy``), vectorized over the grid."""
    dist, issame = _check(dist, issame)
    if len(dist) < n_folds:
        raise ValueError(f"{len(dist)} pairs cannot form {n_folds} folds")
    thresholds = np.asarray(thresholds, dtype=np.float64)
    accs, chosen = [], []
    for train, test in KFold(n_splits=n_folds, shuffle=False).split(np.arange(len(dist))):
        correct = (np.less(dist[train][:, None], thresholds[None, :]) == issame[train][:, None]).sum(0)
        t = thresholds[int(np.argmax(correct))]
        accs.append(100.0 * float(np.sum(np.less(dist[test], t) == issame[test])) / len(test))
        chosen.append(t)
    return np.asarray(accs), np.asarray(chosen)


# ---------------------------------------------------------------------- SphereFace: fold-mean subtraction
def sphereface_threshold(scores: np.ndarray, issame: np.ndarray, steps: int = SPHEREFACE_THRESHOLD_STEPS) -> float:
    """evaluation.m ``getThreshold``: the mean of every grid value (−steps:steps)/steps whose accuracy
    (``getAccuracy``: same with score > t plus different with score < t) is the best. Counted by sorting."""
    grid = np.arange(-steps, steps + 1) / steps
    positives, negatives = np.sort(scores[issame]), np.sort(scores[~issame])
    correct = (len(positives) - np.searchsorted(positives, grid, side="right")) + np.searchsorted(
        negatives, grid, side="left"
    )
    return float(np.mean(grid[correct == correct.max()]))


def sphereface_fold_accuracies(
    features: np.ndarray, issame: np.ndarray, n_folds: int = 10, steps: int = SPHEREFACE_THRESHOLD_STEPS
) -> tuple[np.ndarray, np.ndarray]:
    """evaluation.m's 10-fold loop on features (2P, D) (rows 2i, 2i+1 a pair; D = 2d with the flip concatenated):
    per fold, subtract the mean of the training folds' features (both images), L2-normalize, cosine, threshold by
    :func:`sphereface_threshold` on the training folds; (accuracy of each fold in %, chosen cosine threshold).
    Folds: consecutive (evaluation.m: ``fold = ceil(i / 600)``, LFW's 10 × 600 = ``KFold(10)`` on 6,000 pairs)."""
    features = np.asarray(features, dtype=np.float64)
    left, right = features[0::2], features[1::2]
    _, issame = _check(np.zeros(len(left)), issame)
    if len(left) < n_folds:
        raise ValueError(f"{len(left)} pairs cannot form {n_folds} folds")
    accs, chosen = [], []
    for train, test in KFold(n_splits=n_folds, shuffle=False).split(left):
        mu = np.mean(np.concatenate([left[train], right[train]]), 0)
        a, b = left - mu, right - mu
        a, b = a / np.sqrt(np.sum(a**2, 1, keepdims=True)), b / np.sqrt(np.sum(b**2, 1, keepdims=True))
        scores = np.sum(a * b, 1)
        t = sphereface_threshold(scores[train], issame[train], steps)
        s, same = scores[test], issame[test]
        accs.append(100.0 * float(np.sum(s[same] > t) + np.sum(s[~same] < t)) / len(test))
        chosen.append(t)
    return np.asarray(accs), np.asarray(chosen)


# ---------------------------------------------------------------------- one entry point for the task
def cosine_scores(embeddings: np.ndarray) -> np.ndarray:
    """Cosine similarity of rows 2i and 2i+1."""
    e = normalize(np.asarray(embeddings, dtype=np.float64))
    return np.sum(e[0::2] * e[1::2], 1)


def protocol_metrics(
    embeddings: np.ndarray, issame: np.ndarray, protocol: str = "insightface", n_folds: int = 10, far: float = 1e-3
) -> dict[str, float | None]:
    """:func:`verification_metrics`' dict under ``protocol`` for embeddings (2P, D) (rows 2i, 2i+1 a pair; for
    ``sphereface`` with flip, D = 2d: image and flip concatenated). ``threshold`` is always a cosine: insightface's
    distance t read as 1 − t/2; SphereFace's the cosine of the mean-subtracted features. ``tar_at_far`` is read
    off the pooled ROC of the plain cosine scores under every protocol."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown verification protocol '{protocol}'; known: {', '.join(PROTOCOLS)}")
    embeddings = np.asarray(embeddings, dtype=np.float64)
    scores = cosine_scores(embeddings)
    if protocol == "exact":
        return verification_metrics(scores, issame, n_folds, far)
    if protocol == "insightface":
        accs, thresholds = grid_fold_accuracies(squared_distances(embeddings), issame, n_folds)
        thresholds = 1.0 - thresholds / 2.0
    else:
        accs, thresholds = sphereface_fold_accuracies(embeddings, issame, n_folds)
    return {
        "acc": float(accs.mean()),
        "acc_std": float(accs.std()),
        "threshold": float(thresholds.mean()),
        "tar_at_far": tar_at_far(scores, issame, far),
        "pairs": int(len(np.asarray(issame).ravel())),
    }
