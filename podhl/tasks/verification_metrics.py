"""Face-verification metrics from pair scores (pure numpy + scikit-learn; no model, no torch).

The protocol (LFW View 2, "unrestricted with labeled outside data"; insightface ``verification.py``):

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
the first maximum; the two can differ by a tie at the 0.01 % level.

TAR at FAR (``tar_at_far``): the pooled ROC curve over all pairs, the largest true-accept rate whose
false-accept rate is ≤ FAR. Reported only when there are at least 1/FAR different pairs (FAR = 1e-3
needs ≥ 1,000: LFW has 3,000, CFP-FP 3,500, AgeDB-30 3,000), else None.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, roc_curve
from sklearn.model_selection import KFold


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
