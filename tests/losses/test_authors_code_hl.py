"""Hypersphere Loss against the authors' code (TCCofWANG/Hypersphere_loss ``Cifar10_HL_main.py``), on tiny
tensors; references written out from that code's lines, never from podhl's functions: the newest
dead-zone rule (ba67071), the earlier versions (4c035a7: d⁴, no dead zone; 733989d: 0/1 indicator, d²),
the EWMA update with its zero reset of absent classes, and the λ/β ramps.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from podhl.config import compose_config
from podhl.losses import HypersphereLoss, OfficialSwitches


def build(name: str, *overrides: str, num_classes: int, feat_dim: int):
    return instantiate(compose_config([f"loss={name}", *overrides]).loss, num_classes=num_classes, feat_dim=feat_dim)


def norm(v: list[float]) -> float:
    return math.sqrt(sum(a * a for a in v))


# ======================================================================== Hypersphere Loss
def code_gcl(f, y, unit_centers, radius: float, rho: float, version: str) -> float:
    """``gCL.forward`` of Cifar10_HL_main.py without its loss_weight: dists = ‖f − radius·c[y]‖,
    thres = alpha·rho with alpha = 0.998·radius, divided by 2·feat.numel()."""
    thres = 0.998 * radius * rho
    total = 0.0
    for fi, yi in zip(f.tolist(), y.tolist(), strict=True):
        d = norm([a - radius * c for a, c in zip(fi, unit_centers[yi].tolist(), strict=True)])
        if version == "ba67071":  # indicate1 = where(d > thres, 1, 0)*d; sum((indicate1*dists)**2)
            total += ((d if d > thres else 0.0) * d) ** 2
        elif version == "4c035a7":  # indicate = 1*dists; sum((indicate*dists)**2)
            total += (d * d) ** 2
        elif version == "733989d":  # indicate = where(d > thres, 1, 0); sum((indicate*dists)**2)
            total += ((1.0 if d > thres else 0.0) * d) ** 2
    return total / (2 * f.numel())


def _features_around(unit_centers, radius, y, distances, seed=0):
    """Features at the given distances from their class centers radius·c[y], in random directions."""
    g = torch.Generator().manual_seed(seed)
    u = F.normalize(torch.randn(len(y), unit_centers.shape[1], generator=g, dtype=torch.float64), dim=1)
    return radius * unit_centers[y] + u * torch.tensor(distances, dtype=torch.float64).unsqueeze(1)


@pytest.mark.parametrize(
    "preset,version,rho,distances",
    [
        ("hl_official", "ba67071", 0.05, [0.5, 1.5, 1.99, 2.01, 3.0, 12.0]),  # thres = 0.998·40·0.05 = 1.996
        ("hl_official_versions/no_dead_zone", "4c035a7", 0.5, [0.5, 1.5, 5.0, 19.0, 21.0, 40.0]),
        ("hl_official_versions/indicator_d2", "733989d", 0.5, [0.5, 5.0, 19.9, 20.0, 30.0, 45.0]),  # thres = 19.96
    ],
)
def test_hl_official_penalty_is_the_code_of_that_version(preset, version, rho, distances):
    loss = build(preset, "loss.warmup_epochs=0", "schedule.epochs=10", num_classes=4, feat_dim=5)
    loss.on_epoch_start(1)
    g = torch.Generator().manual_seed(3)
    unit = F.normalize(torch.randn(4, 5, generator=g, dtype=torch.float64), dim=1).float()
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    f = _features_around(unit.double(), 40.0, y, distances).float()
    out = loss(f, y, prepared=40.0 * unit)
    assert float(out["center"].detach()) == pytest.approx(
        code_gcl(f, y, unit, 40.0, rho, version), rel=1e-5
    )  # HL runs in fp32


def test_hl_official_dead_zone_is_the_codes_threshold_not_the_papers():
    official = build("hl_official", "schedule.epochs=10", num_classes=10, feat_dim=512)
    paper = build("hl", num_classes=10, feat_dim=512)
    assert official.threshold == pytest.approx(0.998 * 40 * 0.05)  # alpha*rho = 1.996
    assert paper.threshold == pytest.approx(0.05 * 40 * 0.99839, rel=1e-5)  # ε·a, a from §III-A: 1.99678
    assert official.threshold / paper.threshold == pytest.approx(0.998 / 0.99839, rel=1e-5)


def code_center_momentum(f, y, unit_centers, num_center: int, sep_weight: float, radius: float, beta=0.99):
    """``get_center_momentum`` of Cifar10_HL_main.py @ba67071 (unit centers in, unit centers out)."""
    class_num, dim = unit_centers.shape
    center = [[0.0] * dim for _ in range(class_num)]
    rows, labels = f.tolist(), y.tolist()
    if num_center == 1:
        for fi, yi in zip(rows, labels, strict=True):
            center[yi] = [a + b for a, b in zip(center[yi], fi, strict=True)]
    else:
        centers = (radius * unit_centers).tolist()
        total = [sum(c[k] for c in centers) for k in range(dim)]
        mean = [[(total[k] - c[k]) / (class_num - 1) for k in range(dim)] for c in centers]
        for fi, yi in zip(rows, labels, strict=True):
            v = [beta * c + (1 - beta) * a for c, a in zip(centers[yi], fi, strict=True)]
            center[yi] = [s + vk - sep_weight * mk for s, vk, mk in zip(center[yi], v, mean[yi], strict=True)]
    return torch.tensor([[v / norm(c) for v in c] if norm(c) > 1e-5 else c for c in center], dtype=torch.float64)


@pytest.mark.parametrize("absent", ["zero", "keep"])
def test_hl_ewma_update_is_the_codes_with_its_zero_reset(absent):
    official = OfficialSwitches(bias_correction=False, absent_class_center=absent)
    loss = HypersphereLoss(4, 5, warmup_epochs=0, beta=0.1, official=official)
    loss.on_epoch_start(1)
    g = torch.Generator().manual_seed(4)
    f1, y1 = torch.randn(8, 5, generator=g) * 3, torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    f2, y2 = torch.randn(6, 5, generator=g) * 3, torch.tensor([0, 1, 3, 0, 1, 3])  # no class 2
    prepared = loss.prepare_batch(f1, y1)
    first = prepared.to_dense()
    unit1 = code_center_momentum(f1, y1, torch.zeros(4, 5, dtype=torch.float64), 1, 0.1, 40.0)
    assert torch.allclose(first.double() / 40.0, unit1, atol=1e-6)  # the update sums in fp32
    loss.after_optimizer_step(f1, y1, prepared=prepared)
    second = loss.prepare_batch(f2, y2).to_dense()
    unit2 = code_center_momentum(f2, y2, first.double() / 40.0, 2, 0.1, 40.0)
    second = second.double()
    if absent == "zero":  # the code: class 2 is absent, so its center is reset to the zero vector
        assert torch.allclose(second / 40.0, unit2, atol=1e-6) and not second[2].any()
    else:  # podhl's default: it keeps its center; the others are the code's
        keep = torch.tensor([0, 1, 3])
        assert torch.allclose(second[keep] / 40.0, unit2[keep], atol=1e-6) and torch.equal(second[2], first[2].double())


def test_hl_official_ramps_are_the_codes():
    """β = linspace(0, β, T)[epoch] at the start of (0-based) epoch k; λ = linspace(0, λ, T)[k] set after
    epoch k, so epoch k uses linspace[k − 1] and epoch 0 the initial loss_weight."""
    total = 10
    loss = build("hl_official", f"schedule.epochs={total}", num_classes=4, feat_dim=5)
    for k in range(total):
        loss.on_epoch_start(k + 1)
        code_lambda = 0.002 if k == 0 else 0.002 * (k - 1) / (total - 1)
        assert loss.lam == pytest.approx(code_lambda, abs=1e-15)
        assert loss.beta == pytest.approx(0.1 * k / (total - 1), abs=1e-15)
