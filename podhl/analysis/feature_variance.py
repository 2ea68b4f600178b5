"""POD Table 5: how evenly the energy of the l2-normalized features spreads over their dimensions.

The paper (§4.2.3) reports "the variance of the 2048 dimensions feature eigen-vectors (normalized)
before the fully connected layer" after NaC vs POD training (1.82e-8 vs 1.53e-8) and reads a
smaller value as SC "balancing the energy of the features". The wording is terse (特征向量 means
both "feature vector" and "eigenvector"); the figures' magnitude (≈ (1/D)² scale for D = 2048)
matches the per-dimension energy statistic below, which we report as the primary value.

``feature_variance(source, layer="backbone", split="test")`` computes, over the N samples of
``split``, with f_b ∈ R^D the features of ``layer`` — ``backbone``: the pooled backbone output
that FC1 takes (the paper's "before the fully connected layer"; 2048-d for ResNet50),
``latent``: x — and x̃_b = f_b / ‖f_b‖:

* ``energy_variance`` (primary): E_d = (1/N) Σ_b x̃_bd² (energy of dimension d, Σ_d E_d = 1);
  the population variance over the D dimensions, (1/D) Σ_d (E_d − 1/D)².
* ``dim_variance_variance``: v_d = (1/N) Σ_b (x̃_bd − mean_b x̃_bd)²; population variance of v over d.
* ``eigenvalue_variance``: population variance of the D eigenvalues of the (population)
  covariance matrix of x̃ (the "eigen-vector" reading).
* ``mean_energy`` (= 1/D), ``dim`` D and ``num_samples`` N.

Enable: ``podhl-train loss=pod +analysis=feature_variance`` (``analysis.feature_variance.layer=latent``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def feature_variance(source, layer: str = "backbone", split: str = "test") -> dict:
    features, _ = source.features(split, layer=layer)
    return variance_stats(features)


def variance_stats(features: torch.Tensor) -> dict:
    """The statistics of the module docstring for features (N, D), in float64."""
    x = F.normalize(features.double(), dim=1)
    n, d = x.shape
    energy = x.square().mean(0)
    dim_var = x.var(0, unbiased=False)
    centered = x - x.mean(0)
    eig = torch.linalg.eigvalsh(centered.t() @ centered / n)
    return {
        "energy_variance": float(energy.var(unbiased=False)),
        "dim_variance_variance": float(dim_var.var(unbiased=False)),
        "eigenvalue_variance": float(eig.var(unbiased=False)),
        "mean_energy": float(energy.mean()),
        "dim": d,
        "num_samples": n,
    }
