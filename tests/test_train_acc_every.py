"""``trainer.train_acc_every``: the running train accuracy scores every N-th batch (and the epoch's last) over
all classes, or none (issue 23: the B×C scoring pass is 8–20 % of a step at C = 10,575)."""

from __future__ import annotations

import pytest
import torch

from conftest import build_trainer
from podhl.errors import ConfigError
from podhl.tasks.stats import EpochStats

# 1,437 digits training images at batch 256: 6 batches an epoch
DIGITS = ["dataset=digits", "backbone=small_cnn", "loss=softmax", "schedule.epochs=1", "dataset.val_fraction=0"]


def _fit_counting(tmp_path, every):
    trainer = build_trainer(*DIGITS, f"trainer.train_acc_every={every}", "schedule.batch_size=256", run_dir=tmp_path)
    scored, logits, train_epoch, inside = [], trainer.criterion.logits, trainer._train_epoch, []

    def spy(features):
        out = logits(features)
        if inside and not torch.is_grad_enabled():  # the scoring pass (the loss' own forward runs with grad)
            scored.append(len(features))
        return out

    def epoch(*args, **kwargs):
        inside.append(True)
        try:
            return train_epoch(*args, **kwargs)
        finally:
            inside.clear()

    trainer.criterion.logits, trainer._train_epoch = spy, epoch
    trainer.fit()
    return trainer, scored


@pytest.mark.parametrize("every", [0, 1, 3])
def test_scored_batches_and_the_accuracy_over_them(tmp_path, every):
    trainer, scored = _fit_counting(tmp_path, every)
    batches = len(trainer.task.loaders.train)
    expected = [] if every == 0 else [i for i in range(batches) if i % every == 0 or i == batches - 1]
    assert len(scored) == len(expected)
    row = trainer.history[-1]
    if every == 0:
        assert "train_acc" not in row
    else:
        assert 0.0 <= row["train_acc"] <= 100.0
    assert row["train_loss"] > 0 and row["train_feature_norm"] > 0


def test_accuracy_is_over_the_scored_samples_only():
    class Fixed(torch.nn.Module):
        def logits(self, features):
            return features  # argmax of the feature itself

    stats = EpochStats(torch.device("cpu"))
    right = torch.eye(4)  # predicts 0, 1, 2, 3
    stats.add_predictions(Fixed(), right, torch.arange(4))  # 4 of 4 right
    stats.add_predictions(Fixed(), right, torch.zeros(4, dtype=torch.long), score=False)  # not scored
    stats.add_predictions(Fixed(), right, torch.tensor([0, 0, 0, 0]))  # 1 of 4 right
    stats.add_terms({"loss": torch.tensor(1.0)}, 4)
    out = stats.reduce()
    assert out["acc"] == pytest.approx(100.0 * 5 / 8) and out["n"] == 12 and out["feature_norm"] == 1.0


def test_a_mid_epoch_state_from_before_keeps_loading():
    stats = EpochStats(torch.device("cpu"))
    stats.load({"counts": torch.tensor([10.0, 7.0, 20.0], dtype=torch.float64), "sums": {}})
    out = stats.reduce()
    assert out["acc"] == pytest.approx(70.0) and out["n"] == 10


def test_a_negative_value_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="train_acc_every"):
        build_trainer(*DIGITS, "trainer.train_acc_every=-1", run_dir=tmp_path)
