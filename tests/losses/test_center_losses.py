"""Center loss (Wen et al. 2016) and constrained center loss (CCL): values, update rules, training."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import read_history, split_features
from podhl.losses import CenterLoss, ConstrainedCenterLoss
from podhl.losses.functional import center_penalty, center_update_from_sums, class_sums, constrained_centers

C, D = 4, 3


def center_update(centers, features, labels, alpha):
    """Wen et al. eq. 4 on one batch's features (the loss works from per-class sums, reduced over ranks)."""
    sums, counts = class_sums(features.to(centers.dtype), labels, centers.shape[0])
    return center_update_from_sums(centers, sums, counts, alpha)


def _batch(seed=0, n=9, absent=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, D, generator=g, dtype=torch.float64)
    y = torch.randint(0, C, (n,), generator=g)
    y[y == absent] = 0  # class `absent` has no sample in the batch
    y[:3] = torch.tensor([0, 1, 2])
    c = torch.randn(C, D, generator=g, dtype=torch.float64)
    return x, y, c


def test_center_penalty_matches_formula():
    x, y, c = _batch()
    ref = sum(0.5 * sum((x[i, k] - c[y[i], k]) ** 2 for k in range(D)) for i in range(len(y))) / len(y)
    assert float(center_penalty(x, c, y)) == pytest.approx(float(ref), rel=1e-12)


def test_center_penalty_gradcheck():
    x, y, c = _batch()
    x.requires_grad_(True)
    c.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: center_penalty(a, b, y), (x, c))


def test_center_update_matches_per_class_loop_with_absent_class():
    x, y, c = _batch()
    alpha = 0.5
    ref = c.clone()
    for j in range(C):
        members = [i for i in range(len(y)) if int(y[i]) == j]
        delta = sum((c[j] - x[i] for i in members), torch.zeros(D, dtype=c.dtype)) / (1 + len(members))
        ref[j] = c[j] - alpha * delta
    new = center_update(c, x, y, alpha)
    torch.testing.assert_close(new, ref)
    assert torch.equal(new[3], c[3])  # absent class untouched


def test_center_loss_state_and_hooks():
    crit = CenterLoss(C, D, lam=0.1, alpha=0.5)
    assert "centers" in dict(crit.named_buffers())
    assert all(p is not crit.centers for g in crit.param_groups() for p in g["params"])
    x, y, _ = _batch()
    x = x.float()
    before = crit.centers.clone()
    out = crit(x, y)
    assert torch.equal(crit.centers, before)  # forward does not change state
    ce = torch.nn.functional.cross_entropy(crit.logits(x), y)
    out = {k: v.detach() for k, v in out.items()}
    assert float(out["ce"]) == pytest.approx(float(ce.detach()), rel=1e-6)
    assert float(out["loss"]) == pytest.approx(float((ce + 0.1 * center_penalty(x, before, y)).detach()), rel=1e-6)
    with torch.no_grad():
        crit.after_optimizer_step(x, y)
    torch.testing.assert_close(crit.centers, center_update(before, x, y, 0.5))


@pytest.mark.parametrize(
    "cls,kw,name",
    [
        (CenterLoss, {"lam": -1}, "lam"),
        (CenterLoss, {"alpha": 0.0}, "alpha"),
        (CenterLoss, {"alpha": 1.5}, "alpha"),
        (ConstrainedCenterLoss, {"radius": 0}, "radius"),
        (ConstrainedCenterLoss, {"lam": -0.1}, "lam"),
    ],
)
def test_bad_hyperparameters(cls, kw, name):
    with pytest.raises(ValueError, match=name):
        cls(C, D, **kw)


def test_constrained_centers_match_loop_and_norm():
    x, y, _ = _batch(seed=1, n=12)
    prev = torch.randn(C, D, dtype=torch.float64)
    sums = torch.zeros(C, D, dtype=torch.float64)
    counts = torch.zeros(C, dtype=torch.float64)
    for i in range(len(y)):
        sums[y[i]] += x[i]
        counts[y[i]] += 1
    new = constrained_centers(sums, counts, 40.0, prev)
    for k in range(C):
        members = [x[i] for i in range(len(y)) if int(y[i]) == k]
        if members:
            mean = sum(members) / len(members)
            torch.testing.assert_close(new[k], 40.0 * mean / math.sqrt(float((mean**2).sum())))
            assert float(new[k].norm()) == pytest.approx(40.0)
        else:
            assert torch.equal(new[k], prev[k])


def test_ccl_feature_pass_over_batches_equals_whole_set():
    x, y, _ = _batch(seed=2, n=20)
    x = x.float()
    crit = ConstrainedCenterLoss(C, D, lam=0.01, radius=40.0)
    assert float(crit(x, y)["ccl"]) == 0.0  # no centers before the first pass
    crit.feature_pass(iter([(x[:7], y[:7]), (x[7:15], y[7:15]), (x[15:], y[15:])]))
    assert bool(crit.initialized)
    for k in range(C):
        mask = y == k
        if mask.any():
            mean = x[mask].double().mean(0)
            torch.testing.assert_close(crit.centers[k], (40.0 * mean / mean.norm()).float())
        else:
            assert torch.equal(crit.centers[k], torch.zeros(D))
    out = {k: v.detach() for k, v in crit(x, y).items()}
    assert float(out["ccl"]) == pytest.approx(float(center_penalty(x, crit.centers, y)), rel=1e-6)
    assert float(out["loss"]) == pytest.approx(float(out["ce"] + 0.01 * out["ccl"]), rel=1e-6)
    resumed = ConstrainedCenterLoss(C, D, lam=0.01, radius=40.0)
    resumed.load_state_dict(crit.state_dict())  # checkpoints carry the centers and the flag
    assert bool(resumed.initialized) and torch.equal(resumed.centers, crit.centers)


def test_center_trains_on_digits(train, tmp_path):
    trainer, m = train("loss=center", "schedule.epochs=2", run_dir=tmp_path / "center")
    assert m["completed"] and math.isfinite(m["train_loss"]) and m["test_acc"] > 60.0
    crit = trainer.criterion
    params = {id(p) for opt in trainer.optimizers for g in opt.param_groups for p in g["params"]}
    assert id(crit.centers) not in params
    row = read_history(tmp_path / "center")[-1]
    assert "train_center" in row and "train_ce" in row
    # centers moved towards the class means (start: Xavier draw, far from the features)
    feats, labels = split_features(trainer.model, "train")
    means = torch.stack([feats[labels == k].mean(0) for k in range(10)])
    assert float((crit.centers.cpu() - means).norm(dim=1).mean()) < float(means.norm(dim=1).mean())


def test_ccl_trains_on_digits(train, tmp_path):
    trainer, m = train("loss=ccl", "schedule.epochs=2", run_dir=tmp_path / "ccl")
    assert m["completed"] and math.isfinite(m["train_loss"]) and m["test_acc"] > 60.0
    crit = trainer.criterion
    torch.testing.assert_close(crit.centers.norm(dim=1), torch.full((10,), 40.0))
    h1, h2 = read_history(tmp_path / "ccl")
    assert h1["train_ccl"] == 0.0 and h2["train_ccl"] > 0.0  # penalty starts after the first pass
    assert h2["loss_center_norm"] == pytest.approx(40.0)
