"""Complement Objective Training (COT) and the hard-mining loss (HML): values, gradients, training."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.optim.optimizer import register_optimizer_step_post_hook

from conftest import read_history, read_metrics
from podhl.config import compose_config
from podhl.data import build_data
from podhl.losses import COTLoss, HardMiningLoss
from podhl.losses.functional import complement_entropy, hard_mining_loss


def _logits(seed=0, n=5, k=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g, dtype=torch.float64) * 2, torch.randint(0, k, (n,), generator=g)


def _complement_entropy_loop(z, y, norm):
    total = 0.0
    for i in range(z.shape[0]):
        p = [math.exp(v) for v in z[i].tolist()]
        s = sum(p)
        p = [v / s for v in p]
        g = int(y[i])
        h = 0.0
        for j, pj in enumerate(p):
            if j != g:
                q = pj / (1 - p[g])
                h -= q * math.log(q)
        total += h
    return total / z.shape[0] / norm


@pytest.mark.parametrize("normalize_by", ["k_minus_1", "k"])
def test_complement_entropy_matches_loop(normalize_by):
    z, y = _logits()
    k = z.shape[1]
    ref = _complement_entropy_loop(z, y, k - 1 if normalize_by == "k_minus_1" else k)
    assert float(complement_entropy(z, y, normalize_by)) == pytest.approx(ref, rel=1e-12)


def test_complement_entropy_equals_minus_official_code():
    """henry8527/COT code/COT.py: Σ_{j≠g} P log P / (N·K) with ε's; ours with normalize_by=k is its negative."""
    z, y = _logits(seed=3, n=8, k=6)
    p = F.softmax(z, dim=1)
    yg = p.gather(1, y[:, None])
    px = p / ((1 - yg) + 1e-7)
    zerohot = torch.ones_like(p).scatter_(1, y[:, None], 0)
    official = (px * torch.log(px + 1e-10) * zerohot).sum() / len(y) / z.shape[1]
    assert float(-complement_entropy(z, y, "k")) == pytest.approx(float(official), rel=1e-5)


def test_negated_complement_entropy_is_minimal_at_uniform_non_targets():
    k = 5
    y = torch.tensor([2])
    uniform = torch.zeros(1, k, dtype=torch.float64)
    uniform[0, 2] = 3.0  # any target logit; non-targets equal
    best = -complement_entropy(uniform, y)
    assert float(best) == pytest.approx(-math.log(k - 1) / (k - 1), rel=1e-12)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        z = uniform + torch.randn(1, k, generator=g, dtype=torch.float64)
        assert float(-complement_entropy(z, y)) > float(best)
    z = uniform.clone().requires_grad_(True)
    (-complement_entropy(z, y)).backward()
    assert float(z.grad.abs().max()) < 1e-12  # stationary point


def test_complement_entropy_gradcheck_and_extreme_logits():
    z, y = _logits(seed=1)
    assert torch.autograd.gradcheck(lambda a: complement_entropy(a, y), (z.requires_grad_(True),))
    big = torch.tensor([[80.0, -80.0, 0.0], [0.0, 0.0, 200.0]], requires_grad=True)
    out = complement_entropy(big, torch.tensor([0, 2]))
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(big.grad).all()


def test_hard_mining_loss_matches_loop_and_gradcheck():
    z, y = _logits(seed=2, n=6)
    for r in (1.0, 2.0, 3.5):
        ref = 0.0
        for i in range(z.shape[0]):
            lse = math.log(sum(math.exp(v) for v in z[i].tolist()))
            ref += (lse - float(z[i, y[i]])) ** r
        assert float(hard_mining_loss(z, y, r)) == pytest.approx(ref / z.shape[0], rel=1e-12)
    assert float(hard_mining_loss(z, y, 1.0)) == pytest.approx(float(F.cross_entropy(z, y)), rel=1e-12)
    assert torch.autograd.gradcheck(lambda a: hard_mining_loss(a, y, 2.0), (z.requires_grad_(True),))


def test_hard_mining_weights_hard_samples_up_and_easy_down():
    y = torch.tensor([0])
    hard = torch.tensor([[0.0, 3.0, 3.0]])  # CE > 1
    easy = torch.tensor([[5.0, 0.0, 0.0]])  # CE < 1
    assert float(hard_mining_loss(hard, y, 2.0)) > float(F.cross_entropy(hard, y))
    assert float(hard_mining_loss(easy, y, 2.0)) < float(F.cross_entropy(easy, y))


def test_modules_terms_and_bad_hyperparameters():
    x = torch.randn(6, 8)
    y = torch.randint(0, 3, (6,))
    cot = COTLoss(3, 8)
    assert set(cot(x, y, step=0)) == {"loss", "ce"}
    out = cot(x, y, step=1)
    assert set(out) == {"loss", "complement"} and float(out["loss"].detach()) == -float(out["complement"].detach())
    hml = HardMiningLoss(3, 8, power=2.0)
    assert set(hml(x, y)) == {"loss", "ce", "hm"}
    with pytest.raises(ValueError, match="normalize_by"):
        COTLoss(3, 8, normalize_by="n")
    with pytest.raises(ValueError, match="power"):
        HardMiningLoss(3, 8, power=0.5)


def test_cot_runs_two_optimizer_steps_per_batch(train, tmp_path):
    overrides = ["loss=cot", "schedule.epochs=2"]
    steps: dict[int, int] = {}  # optimizer id -> steps taken (torch's global post-step hook)
    handle = register_optimizer_step_post_hook(
        lambda opt, args, kwargs: steps.__setitem__(id(opt), steps.get(id(opt), 0) + 1)
    )
    try:
        trainer, m = train(*overrides, run_dir=tmp_path / "cot")
    finally:
        handle.remove()
    assert len(trainer.optimizers) == 2
    cfg = compose_config(overrides)
    batches = math.ceil(len(build_data(cfg.dataset).train) / cfg.schedule.batch_size)
    assert [steps.get(id(opt), 0) for opt in trainer.optimizers] == [2 * batches, 2 * batches]
    assert m["completed"] and math.isfinite(m["train_loss"]) and m["test_acc"] > 60.0
    # each optimizer owns its momentum state
    w = trainer.criterion.classifier.weight
    b0 = trainer.optimizers[0].state[w]["momentum_buffer"]
    b1 = trainer.optimizers[1].state[w]["momentum_buffer"]
    assert not torch.allclose(b0, b1)
    row = read_history(tmp_path / "cot")[-1]
    assert row["train_complement"] > 0 and row["train_loss_step1"] == pytest.approx(-row["train_complement"])


def test_hml_cli_two_epochs(run_cli):
    _, run = run_cli("loss=hml", "schedule.epochs=2", "dataset.val_fraction=0")  # the threshold below predates splits
    m = read_metrics(run)
    assert m["completed"] and math.isfinite(m["train_loss"]) and m["test_acc"] > 60.0
