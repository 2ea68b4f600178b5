"""The three 10-fold verification protocols (``task.protocol``) against transplants of their reference code.

``insightface``: ``LFold``, ``calculate_roc``, ``calculate_accuracy`` and the first half of ``evaluate``, copied
verbatim from deepinsight/insightface ``recognition/arcface_torch/eval/verification.py`` @ bb221e6e (the file's
newest commit; repository @ 7fadd420; MIT License, Copyright (c) 2016 David Sandberg). ``calculate_val`` is left
out: ``interpolate.interp1d(far_train, thresholds, kind='slinear')`` fails on recent SciPy (repeated FAR values).
``sphereface``: the 10-fold loop, ``getThreshold`` and ``getAccuracy`` of wy1iu/sphereface ``test/code/evaluation.m``
@ 2679f8e5 (the file's newest commit; repository @ f20b130a; MIT License, Weiyang Liu, Yandong Wen), transcribed
line by line from MATLAB to numpy.
"""

from __future__ import annotations

import numpy as np
import pytest
import sklearn
import sklearn.preprocessing
import torch
from sklearn.decomposition import PCA
from sklearn.model_selection import KFold

from podhl.data.bundle import VerificationSet
from podhl.tasks.base import Runtime
from podhl.tasks.verification import VerificationTask
from podhl.tasks.verification_metrics import (
    best_threshold,
    cosine_scores,
    fold_accuracies,
    grid_fold_accuracies,
    protocol_metrics,
    sphereface_fold_accuracies,
    sphereface_threshold,
    squared_distances,
    verification_metrics,
)


# ------------------------------------------------------------------ insightface, verbatim (pca = 0 path used)
class LFold:
    def __init__(self, n_splits=2, shuffle=False):
        self.n_splits = n_splits
        if self.n_splits > 1:
            self.k_fold = KFold(n_splits=n_splits, shuffle=shuffle)

    def split(self, indices):
        if self.n_splits > 1:
            return self.k_fold.split(indices)
        else:
            return [(indices, indices)]


def calculate_roc(thresholds, embeddings1, embeddings2, actual_issame, nrof_folds=10, pca=0):
    assert embeddings1.shape[0] == embeddings2.shape[0]
    assert embeddings1.shape[1] == embeddings2.shape[1]
    nrof_pairs = min(len(actual_issame), embeddings1.shape[0])
    nrof_thresholds = len(thresholds)
    k_fold = LFold(n_splits=nrof_folds, shuffle=False)

    tprs = np.zeros((nrof_folds, nrof_thresholds))
    fprs = np.zeros((nrof_folds, nrof_thresholds))
    accuracy = np.zeros((nrof_folds))  # noqa: UP034
    indices = np.arange(nrof_pairs)

    if pca == 0:
        diff = np.subtract(embeddings1, embeddings2)
        dist = np.sum(np.square(diff), 1)

    for fold_idx, (train_set, test_set) in enumerate(k_fold.split(indices)):
        if pca > 0:
            print("doing pca on", fold_idx)
            embed1_train = embeddings1[train_set]
            embed2_train = embeddings2[train_set]
            _embed_train = np.concatenate((embed1_train, embed2_train), axis=0)
            pca_model = PCA(n_components=pca)
            pca_model.fit(_embed_train)
            embed1 = pca_model.transform(embeddings1)
            embed2 = pca_model.transform(embeddings2)
            embed1 = sklearn.preprocessing.normalize(embed1)
            embed2 = sklearn.preprocessing.normalize(embed2)
            diff = np.subtract(embed1, embed2)
            dist = np.sum(np.square(diff), 1)

        # Find the best threshold for the fold
        acc_train = np.zeros((nrof_thresholds))  # noqa: UP034
        for threshold_idx, threshold in enumerate(thresholds):
            _, _, acc_train[threshold_idx] = calculate_accuracy(threshold, dist[train_set], actual_issame[train_set])
        best_threshold_index = np.argmax(acc_train)
        for threshold_idx, threshold in enumerate(thresholds):
            tprs[fold_idx, threshold_idx], fprs[fold_idx, threshold_idx], _ = calculate_accuracy(
                threshold, dist[test_set], actual_issame[test_set]
            )
        _, _, accuracy[fold_idx] = calculate_accuracy(
            thresholds[best_threshold_index], dist[test_set], actual_issame[test_set]
        )

    tpr = np.mean(tprs, 0)
    fpr = np.mean(fprs, 0)
    return tpr, fpr, accuracy


def calculate_accuracy(threshold, dist, actual_issame):
    predict_issame = np.less(dist, threshold)
    tp = np.sum(np.logical_and(predict_issame, actual_issame))
    fp = np.sum(np.logical_and(predict_issame, np.logical_not(actual_issame)))
    tn = np.sum(np.logical_and(np.logical_not(predict_issame), np.logical_not(actual_issame)))
    fn = np.sum(np.logical_and(np.logical_not(predict_issame), actual_issame))

    tpr = 0 if (tp + fn == 0) else float(tp) / float(tp + fn)
    fpr = 0 if (fp + tn == 0) else float(fp) / float(fp + tn)
    acc = float(tp + tn) / dist.size
    return tpr, fpr, acc


def insightface_evaluate(embeddings, actual_issame, nrof_folds=10, pca=0):
    """``evaluate`` up to ``calculate_roc`` (its ``calculate_val`` half crashes on recent SciPy)."""
    # Calculate evaluation metrics
    thresholds = np.arange(0, 4, 0.01)
    embeddings1 = embeddings[0::2]
    embeddings2 = embeddings[1::2]
    tpr, fpr, accuracy = calculate_roc(
        thresholds, embeddings1, embeddings2, np.asarray(actual_issame), nrof_folds=nrof_folds, pca=pca
    )
    return tpr, fpr, accuracy


def insightface_test(embeddings_list, issame_list, nfolds=10):
    """The end of ``test``: flip fusion by summing, then ``sklearn.preprocessing.normalize``."""
    embeddings = embeddings_list[0] + embeddings_list[1]
    embeddings = sklearn.preprocessing.normalize(embeddings)
    _, _, accuracy = insightface_evaluate(embeddings, issame_list, nrof_folds=nfolds)
    acc2, std2 = np.mean(accuracy), np.std(accuracy)
    return acc2, std2, accuracy


# ------------------------------------------------------------------ SphereFace evaluation.m, line by line
def sphereface_evaluation(featureLs, featureRs, flags, thrNum=10000, n_folds=10):  # noqa: N803
    """``featureLs``/``featureRs``: D × P (MATLAB's columns are pairs); ``flags`` ±1; fold = ceil(i / (P/10))."""
    fold = np.ceil(np.arange(1, len(flags) + 1) / (len(flags) // n_folds))
    ACCs = np.zeros(n_folds)  # noqa: N806
    thresholds_chosen = np.zeros(n_folds)
    for i in range(1, n_folds + 1):
        valFold = np.where(fold != i)[0]  # noqa: N806
        testFold = np.where(fold == i)[0]  # noqa: N806
        mu = np.mean(np.concatenate([featureLs[:, valFold], featureRs[:, valFold]], 1), 1, keepdims=True)
        Ls = featureLs - mu  # noqa: N806
        Rs = featureRs - mu  # noqa: N806
        Ls = Ls / np.sqrt(np.sum(Ls**2, 0))  # noqa: N806
        Rs = Rs / np.sqrt(np.sum(Rs**2, 0))  # noqa: N806
        scores = np.sum(Ls * Rs, 0)
        threshold = getThreshold(scores[valFold], flags[valFold], thrNum)
        ACCs[i - 1] = getAccuracy(scores[testFold], flags[testFold], threshold)
        thresholds_chosen[i - 1] = threshold
    return ACCs, thresholds_chosen


def getThreshold(scores, flags, thrNum):  # noqa: N802, N803
    accuracys = np.zeros(2 * thrNum + 1)
    thresholds = np.arange(-thrNum, thrNum + 1) / thrNum
    for i in range(2 * thrNum + 1):
        accuracys[i] = getAccuracy(scores, flags, thresholds[i])
    bestThreshold = np.mean(thresholds[accuracys == np.max(accuracys)])  # noqa: N806
    return bestThreshold


def getAccuracy(scores, flags, threshold):  # noqa: N802
    return (len(np.where(scores[flags == 1] > threshold)[0]) + len(np.where(scores[flags != 1] < threshold)[0])) / len(
        scores
    )


# ------------------------------------------------------------------ fixed random embeddings
def embeddings(pairs: int, dim: int = 16, seed: int = 0, signal: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Rows 2i, 2i+1 a pair: a 'same' pair shares an identity vector plus noise; about half the pairs are the same."""
    rng = np.random.default_rng(seed)
    same = rng.random(pairs) < 0.5
    ident = rng.normal(size=(pairs, dim))
    a = ident + rng.normal(scale=signal, size=(pairs, dim))
    other = np.where(same[:, None], ident, rng.normal(size=(pairs, dim)))
    b = other + rng.normal(scale=signal, size=(pairs, dim))
    e = np.empty((2 * pairs, dim))
    e[0::2], e[1::2] = a, b
    return e, same


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_insightface_protocol_equals_its_reference(seed):
    e, same = embeddings(600, seed=seed)
    flipped = e + np.random.default_rng(seed + 10).normal(scale=0.3, size=e.shape)  # 'f(flip x)'
    acc, std, fold_accs = insightface_test([e, flipped], same)
    assert 0.6 < acc < 0.99  # a realistic overlap: neither trivial nor chance
    ours, thresholds = grid_fold_accuracies(squared_distances(e + flipped), same)
    assert np.allclose(ours, 100.0 * fold_accs, rtol=0, atol=1e-9)  # fold by fold (one pair = 1.7 points)
    assert np.all(np.isin(thresholds, np.arange(0, 4, 0.01)))
    m = protocol_metrics(e + flipped, same, "insightface")  # the task sums image and flip, as insightface's test()
    assert m["acc"] == pytest.approx(100.0 * acc, abs=1e-9) and m["acc_std"] == pytest.approx(100.0 * std, abs=1e-9)
    assert m["threshold"] == pytest.approx(np.mean(1.0 - thresholds / 2.0))  # reported as a cosine


def test_insightface_grid_and_exact_by_hand():
    """Per fold, cosines 0.9, 0.713 (same) and 0.6, 0.1 (different); fold 0's different pair scores 0.667.
    Distances d = 2 − 2·cos: 0.2, 0.574 | 0.8, 1.8, fold 0's 0.666. insightface: on every fold's training folds
    the first grid value with d < t separating them is 0.58 (0.574 < 0.58 ≤ 0.666), so fold 0's pair
    (d = 0.666) is rejected: 100 % everywhere. exact: fold 0's threshold, from folds 1-9, is midway between
    0.713 and 0.6 (0.6565), which accepts 0.667: 3/4 on fold 0; folds 1-9 train with 0.667 and use 0.69: 100 %."""
    scores, same = [], []
    for fold in range(10):
        scores += [0.9, 0.713, 0.667 if fold == 0 else 0.6, 0.1]
        same += [True, True, False, False]
    scores, same = np.array(scores), np.array(same)
    grid, t = grid_fold_accuracies(2.0 - 2.0 * scores, same)
    assert t == pytest.approx([0.58] * 10)
    assert grid.tolist() == [100.0] * 10
    exact, thresholds = fold_accuracies(scores, same)
    assert exact.tolist() == [75.0] + [100.0] * 9
    assert thresholds == pytest.approx([0.6565] + [0.69] * 9)


@pytest.mark.parametrize("seed", [0, 1])
def test_sphereface_protocol_equals_its_reference(seed):
    """evaluation.m on features [f(x); f(flip x)] (2d per face), 200 pairs = 10 folds of 20."""
    e, same = embeddings(200, dim=8, seed=seed)
    flipped = e + np.random.default_rng(seed + 10).normal(scale=0.3, size=e.shape)
    features = np.concatenate([e, flipped], 1) + 0.7  # an offset the fold-mean subtraction removes
    flags = np.where(same, 1, -1)
    ref_accs, ref_t = sphereface_evaluation(features[0::2].T, features[1::2].T, flags, thrNum=2000)
    accs, t = sphereface_fold_accuracies(features, same, steps=2000)
    assert np.allclose(accs, 100.0 * ref_accs, rtol=0, atol=1e-9) and np.array_equal(t, ref_t)
    assert 60 < accs.mean() < 99


def test_sphereface_protocol_full_grid_matches_the_reference():
    """The default 1e-4 grid (thrNum = 10000) once, on one fold's training scores."""
    e, same = embeddings(60, dim=8, seed=3)
    scores = cosine_scores(e)
    flags = np.where(same, 1, -1)
    assert sphereface_threshold(scores, same) == getThreshold(scores, flags, 10000)


def test_sphereface_threshold_by_hand():
    """Same 0.5, 0.3; different 0.2, -0.1; grid step 0.1. A score on the grid value counts as wrong either way
    (same needs score > t, different score < t). Correct pairs: t = -0.1: 2 + 0; 0.0, 0.1: 2 + 1; 0.2: 2 + 1
    (0.2 < 0.2 false); 0.3: 1 + 2; 0.4: 1 + 2; 0.5: 0 + 2. Best 3 at t = 0.0 ... 0.4 → their mean, 0.2."""
    scores, same = np.array([0.5, 0.3, 0.2, -0.1]), np.array([True, True, False, False])
    assert sphereface_threshold(scores, same, steps=10) == pytest.approx(0.2)
    assert getThreshold(scores, np.where(same, 1, -1), 10) == pytest.approx(0.2)


def test_sphereface_mean_subtraction_by_hand():
    """Two folds of 2 pairs each (2-d features). Fold 1's training mean is the mean of fold 2's four features."""
    f = np.array(
        [[1.0, 1.0], [1.0, 2.0], [2.0, 1.0], [1.0, 3.0],  # fold 1: pair (a, b) same, pair (c, d) different
         [3.0, 1.0], [3.0, 2.0], [1.0, 1.0], [3.0, 3.0]]  # fold 2
    )  # fmt: skip
    same = np.array([True, False, True, False])
    mu = f[4:].mean(0)  # (2.5, 1.75)
    g = f - mu
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    cos = (g[0::2] * g[1::2]).sum(1)  # the scores fold 1 is judged with
    accs, t = sphereface_fold_accuracies(f, same, n_folds=2, steps=1000)
    expected_t = sphereface_threshold(cos[2:], same[2:], steps=1000)
    assert t[0] == pytest.approx(expected_t)
    assert accs[0] == 100.0 * np.mean(np.where(same[:2], cos[:2] > t[0], cos[:2] < t[0]))
    assert not np.allclose(cos, cosine_scores(f))  # the subtraction changes the scores


def test_sphereface_embedding_concatenates_the_flip():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(20, 3))  # not mirror-invariant
    images = torch.randint(0, 256, (6, 1, 4, 5), dtype=torch.uint8)
    pairs = VerificationSet("toy", images, np.array([True, False, True]), [0.5], [0.25])
    x = (images.float() / 255 - 0.5) / 0.25
    for protocol, flip, expected in (
        ("sphereface", True, torch.cat([model(x), model(x.flip(-1))], 1)),
        ("sphereface", False, model(x)),
        ("insightface", True, model(x) + model(x.flip(-1))),
        ("exact", True, model(x) + model(x.flip(-1))),
    ):
        task = VerificationTask(sets={}, eval_sets=[], flip=flip, protocol=protocol)
        task.runtime, task.eval_batch_size = Runtime(device=torch.device("cpu"), progress=False), 4
        out = task.embed(model, pairs)
        assert out.shape == expected.shape and torch.allclose(out, expected.detach(), atol=1e-6)


def test_all_three_protocols_on_the_same_embeddings():
    """One set of embeddings, three protocols: each equals its own reference; ``exact`` equals the pre-existing
    score-based metrics; on the training folds the exact optimum is never beaten by the grid."""
    e, same = embeddings(600, seed=5)
    flipped = e + np.random.default_rng(15).normal(scale=0.3, size=e.shape)
    fused, concat = e + flipped, np.concatenate([e, flipped], 1)
    results = {p: protocol_metrics(concat if p == "sphereface" else fused, same, p) for p in ("insightface", "exact")}
    results["sphereface"] = protocol_metrics(concat, same, "sphereface")
    acc, _, _ = insightface_test([e, flipped], same)
    assert results["insightface"]["acc"] == pytest.approx(100.0 * acc, abs=1e-9)
    assert results["exact"] == verification_metrics(cosine_scores(fused), same)
    ref, _ = sphereface_evaluation(concat[0::2].T, concat[1::2].T, np.where(same, 1, -1), thrNum=10000)
    assert results["sphereface"]["acc"] == pytest.approx(100.0 * ref.mean(), abs=1e-9)
    assert len({round(r["acc"], 9) for r in results.values()}) > 1  # the choice matters on these embeddings
    scores, dist = cosine_scores(fused), squared_distances(fused)
    for train, _ in KFold(10).split(scores):
        exact_t = best_threshold(scores[train], same[train])
        grid = np.arange(0, 4, 0.01)
        grid_best = np.mean((dist[train][:, None] < grid) == same[train][:, None], 0).max()
        assert np.mean((scores[train] >= exact_t) == same[train]) >= grid_best
    with pytest.raises(ValueError, match="unknown verification protocol"):
        protocol_metrics(fused, same, "lfw")
