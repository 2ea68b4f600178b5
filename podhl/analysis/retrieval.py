"""Retrieval metrics of the embeddings: precision@1, R-precision and MAP@R (Musgrave et al., "A Metric
Learning Reality Check", ECCV 2020, §3.2), computed by pytorch-metric-learning's ``AccuracyCalculator``.

Every sample of ``split`` is a query against all the others (leave-one-out: the query itself is not
retrieved); neighbours are ranked by cosine similarity (our choice: the score podhl's verification uses).
For a query of class c with R = (number of other samples of class c):

* precision@1: 1 if the nearest neighbour has class c;
* R-precision: (samples of class c among the R nearest) / R;
* MAP@R: (1/R) Σ_{i ≤ R} P(i)·[neighbour i has class c], P(i) the precision of the first i neighbours.

Each is averaged over queries (queries whose class has no other sample are left out). Enable with
``+metrics=retrieval`` (training: after the last epoch, in ``analysis.json``; ``podhl-eval``: in
``eval/<name>/metrics.json``). Cost: a k-NN search over all pairs, O(N²·d); measured in docs/after-training.md.
"""

from __future__ import annotations

import time

import torch

METRICS = ("precision_at_1", "r_precision", "mean_average_precision_at_r")


def retrieval_metrics(
    embeddings: torch.Tensor, labels: torch.Tensor, batch_size: int = 4096, device: str | torch.device = "cpu"
) -> dict[str, float]:
    """precision@1, R-precision and MAP@R of ``embeddings`` (N, d) with ``labels`` (N,), leave-one-out, cosine.

    ``batch_size``: query rows per similarity block (memory: batch_size × N floats)."""
    from pytorch_metric_learning.distances import CosineSimilarity
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    calculator = AccuracyCalculator(
        include=METRICS,
        k="max_bin_count",  # R of the largest class: enough neighbours for R-precision and MAP@R of every query
        device=torch.device(device),
        knn_func=CustomKNN(CosineSimilarity(), batch_size=int(batch_size)),
    )
    out = calculator.get_accuracy(embeddings.float(), labels)
    return {name: float(out[name]) for name in METRICS}


@torch.no_grad()
def retrieval(source, split: str = "test", layer: str = "latent", batch_size: int = 4096) -> dict:
    """The analysis entry (``+metrics=retrieval``): retrieval metrics of ``split``'s features (``layer``)."""
    features, labels = source.features(split, layer)
    t0 = time.perf_counter()
    out = retrieval_metrics(features, labels, batch_size=batch_size, device=source.device)  # the run's device
    return {
        "split": split,
        "layer": layer,
        "n": len(labels),
        **out,
        "seconds": round(time.perf_counter() - t0, 3),
    }
