"""The post-training analyses (POD Tables 1, 5, 9) on hand-made data, through the feature-source interface."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from podhl.analysis.feature_variance import variance_stats
from podhl.analysis.gda import gda
from podhl.losses import CosineLoss


def test_variance_stats_by_hand():
    # x̃ = e0, e0, e1: energies (2/3, 1/3) → population variance (1/6)²
    s = variance_stats(torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.0, 3.0]]))
    assert s["energy_variance"] == pytest.approx(1 / 36)
    # per-dimension variances: both (2/3)(1/3) = 2/9 → their variance 0
    assert s["dim_variance_variance"] == pytest.approx(0.0, abs=1e-12)
    # covariance [[2/9, −2/9], [−2/9, 2/9]]: eigenvalues 0 and 4/9 → variance (2/9)²
    assert s["eigenvalue_variance"] == pytest.approx((2 / 9) ** 2)
    balanced = variance_stats(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    assert balanced["energy_variance"] == pytest.approx(0.0, abs=1e-12)


def test_gda_on_gaussian_classes():
    g = torch.Generator().manual_seed(5)
    means = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]])

    def sample(n):
        y = torch.arange(3).repeat(n)
        return means[y] + torch.randn(len(y), 3, generator=g) * torch.tensor([0.5, 1.0, 1.5]), y

    train_set, test_set = sample(100), sample(50)
    crit = CosineLoss(3, 3)
    crit.pedcc = torch.nn.functional.normalize(means, dim=1)
    stub = SimpleNamespace(
        features=lambda split, layer="latent": train_set if split == "train" else test_set,
        predict=lambda f: crit.logits(f).argmax(1),
    )
    out = gda(stub, shrinkage=0.0)
    assert out["gda_acc"] > 95.0
    cos_pred = torch.nn.functional.normalize(test_set[0], dim=1).matmul(crit.pedcc.t()).argmax(1)
    assert out["cosine_acc"] == pytest.approx(100.0 * float((cos_pred == test_set[1]).float().mean()))
    assert out["num_train"] == 300 and out["num_test"] == 150
    with pytest.raises(ValueError, match="shrinkage"):
        gda(stub, shrinkage=1.5)
    # fewer samples per class than dimensions (CIFAR-100's 500 images in 512 dims): shrinkage still fits
    wide = torch.randn(30, 40, generator=g), torch.arange(30) % 3
    few = SimpleNamespace(
        features=lambda split, layer="latent": wide, predict=lambda f: torch.zeros(len(f), dtype=torch.long)
    )
    assert 0.0 <= gda(few)["gda_acc"] <= 100.0


def test_gda_says_when_a_class_has_too_few_samples():
    x, y = torch.randn(9, 4), torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    y_short = y.clone()
    y_short[-2:] = 0  # class 2 keeps one sample
    stub = SimpleNamespace(
        num_classes=3,
        features=lambda split, layer="latent": (x, y_short if split == "train" else y),
        predict=lambda f: torch.zeros(len(f), dtype=torch.long),
    )
    out = gda(stub)
    assert out["gda_acc"] is None and "class 2 has 1" in out["skipped"] and out["cosine_acc"] == pytest.approx(100 / 3)
