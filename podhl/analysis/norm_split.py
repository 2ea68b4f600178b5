"""POD Table 1: accuracy of samples with a low vs a high latent-feature norm.

``norm_split(source, split="test")`` collects the latent features x of ``split``, computes
M = mean ‖x‖ over its samples and reports the accuracy of the criterion's prediction (argmax of
``criterion.logits``: cosine argmax for the POD family) separately for samples with ‖x‖ < M
("low value") and ‖x‖ ≥ M ("high value"). Enable: ``podhl-train loss=cosine +analysis=norm_split``.
"""

from __future__ import annotations

import torch

from podhl.analysis.common import accuracy


@torch.no_grad()
def norm_split(source, split: str = "test") -> dict:
    features, labels = source.features(split)
    pred = source.predict(features)
    norms = features.norm(dim=1)
    mean = norms.mean()
    low = norms < mean
    return {
        "split": split,
        "mean_norm": float(mean),
        "low_acc": accuracy(pred[low], labels[low]),
        "high_acc": accuracy(pred[~low], labels[~low]),
        "low_count": int(low.sum()),
        "high_count": int((~low).sum()),
        "acc": accuracy(pred, labels),
    }
