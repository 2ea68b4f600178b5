"""Trainer behaviour in-process: resume equivalence, NaN stop, hooks, analyses."""

from __future__ import annotations

import pytest
import torch

from conftest import build_trainer, read_metrics
from podhl.engine.run_folder import read_checkpoint as load_checkpoint
from podhl.errors import ConfigError, NonFiniteLossError

DET = ["trainer.deterministic=true", "schedule.epochs=3", "seed=3"]


def test_resume_equals_uninterrupted_run(train, tmp_path):
    _, full = train(*DET, run_dir=tmp_path / "full")
    _, part = train(*DET, "trainer.stop_after=1", run_dir=tmp_path / "resumed")
    assert part["epochs"] == 1 and not part["completed"]
    _, part = train(*DET, "trainer.stop_after=1", "resume=true", run_dir=tmp_path / "resumed")
    assert part["epochs"] == 2
    trainer, resumed = train(*DET, "resume=true", run_dir=tmp_path / "resumed")
    assert resumed["completed"] and resumed["epochs"] == 3
    for key in ("test_acc", "best_test_acc", "best_epoch", "train_loss", "train_acc", "mean_feature_norm"):
        assert resumed[key] == full[key], key
    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(tmp_path / "resumed" / "last.pt")
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]


def test_resume_refuses_a_different_experiment(train, tmp_path):
    train("schedule.epochs=2", "trainer.stop_after=1", run_dir=tmp_path / "r")
    with pytest.raises(ConfigError, match="seed"):
        train("schedule.epochs=2", "resume=true", "seed=5", run_dir=tmp_path / "r")


def test_nan_loss_stops_with_epoch_and_keeps_last_good_checkpoint(tmp_path):
    trainer = build_trainer("schedule.epochs=3", "trainer.stop_after=1", run_dir=tmp_path)
    trainer.fit()
    good = load_checkpoint(tmp_path / "last.pt")
    original = trainer.criterion.forward

    def poisoned(features, labels, step=0):
        out = original(features, labels, step)
        return {**out, "loss": out["loss"] * float("nan")}

    trainer.criterion.forward = poisoned
    with pytest.raises(NonFiniteLossError, match="epoch 2, batch 1"):
        trainer.fit()
    kept = load_checkpoint(tmp_path / "last.pt")
    assert kept["epoch"] == good["epoch"] == 1
    assert all(torch.equal(v, kept["model"][k]) for k, v in good["model"].items())


def count_test_samples(source) -> dict:
    """A minimal analysis: the number of test samples its feature source yields."""
    _, labels = source.features("test")
    return {"num_test": int(labels.numel())}


class _Recorder:
    """Wraps a criterion's hooks to record the order and arguments the trainer calls them with."""

    def __init__(self, criterion):
        self.calls = []
        for name in ("on_epoch_start", "after_optimizer_step", "on_epoch_end"):
            original = getattr(criterion, name)

            def hook(*args, _name=name, _orig=original, **kw):
                self.calls.append((_name, args, kw))
                return _orig(*args, **kw)

            setattr(criterion, name, hook)


def test_hooks_and_epoch_statistics(tmp_path):
    trainer = build_trainer("schedule.epochs=2", "trainer.limit_train_batches=3", run_dir=tmp_path)
    rec = _Recorder(trainer.criterion)
    trainer.fit()
    names = [c[0] for c in rec.calls]
    assert names == (["on_epoch_start"] + ["after_optimizer_step"] * 3 + ["on_epoch_end"]) * 2
    assert [c[1][0] for c in rec.calls if c[0] == "on_epoch_start"] == [1, 2]
    steps = [c for c in rec.calls if c[0] == "after_optimizer_step"]
    features, labels = steps[0][1][0], steps[0][1][1]
    assert features.shape == (64, 32) and not features.requires_grad and labels.shape == (64,)
    # on_epoch_end receives the mean l2 norm of the epoch's training features
    norms = [c[1][0].norm(dim=1).mean().item() for c in steps[3:]]
    stats = [c for c in rec.calls if c[0] == "on_epoch_end"][1][1][1]
    assert stats["num_samples"] == 3 * 64
    assert stats["mean_feature_norm"] == pytest.approx(sum(norms) / 3, rel=1e-5)


def test_analysis_hook_writes_results(train, tmp_path):
    trainer, metrics = train(
        "schedule.epochs=1",
        "+analysis.count._target_=test_trainer.count_test_samples",
        "+analysis.count._partial_=true",
    )
    assert metrics["analysis"] == {"count": {"num_test": 360}}
    assert (tmp_path / "run" / "analysis.json").is_file()


def test_param_groups_from_the_criterion_reach_the_optimizer(tmp_path):
    trainer = build_trainer(run_dir=tmp_path)
    groups = trainer.optimizers[0].param_groups
    assert [g["name"] for g in groups] == ["model", "criterion0"]
    assert trainer.criterion.classifier.weight in groups[1]["params"]


def test_hl_with_gradient_accumulation_equals_the_whole_batch(train, tmp_path):
    """HL's per-step center update (Algorithm 1) is computed from the whole batch before any micro-batch's
    loss: accumulating 2 micro-batches gives the same centers, classifier and weights as one batch
    (GroupNorm: the model itself is batch-size independent)."""
    common = [
        "loss=hl",
        "loss.warmup_epochs=1",
        "schedule.epochs=2",
        "trainer.limit_train_batches=4",
        "backbone.norm=group",
        "trainer.deterministic=true",
        "seed=2",
    ]
    whole, _ = train(*common, run_dir=tmp_path / "whole")
    micro, _ = train(*common, "schedule.accumulate_grad_batches=2", run_dir=tmp_path / "micro")
    a, b = whole.criterion, micro.criterion
    assert a.n_c == b.n_c == 4  # epoch 2: one update per step
    assert torch.allclose(a.centers, b.centers, atol=1e-5)
    assert torch.allclose(a.classifier.weight, b.classifier.weight, atol=1e-5)
    for (name, p), q in zip(whole.model.named_parameters(), micro.model.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-5), name
    assert not torch.equal(a.centers, torch.zeros_like(a.centers))


def test_hl_that_never_leaves_its_warm_start_warns_and_notes_it(train, tmp_path, caplog):
    """Issue 20 item 5: ``loss=hl`` (warmup_epochs 5) over 2 epochs is plain softmax throughout: a
    warning at start-up and a note in metrics.json; a run that leaves the warm start has neither."""
    with caplog.at_level("WARNING", logger="podhl"):
        _, metrics = train("loss=hl", "schedule.epochs=2", "trainer.limit_train_batches=2", run_dir=tmp_path / "w")
    warned = [r.getMessage() for r in caplog.records if "warm start" in r.getMessage()]
    assert len(warned) == 1
    assert "loss.warmup_epochs=5" in warned[0] and "schedule.epochs=2" in warned[0]
    assert "plain softmax throughout" in warned[0]
    assert metrics["notes"] == warned
    assert read_metrics(tmp_path / "w")["notes"] == warned
    caplog.clear()
    with caplog.at_level("WARNING", logger="podhl"):
        _, metrics = train(
            "loss=hl",
            "loss.warmup_epochs=1",
            "schedule.epochs=2",
            "trainer.limit_train_batches=2",
            run_dir=tmp_path / "ok",
        )
    assert not [r for r in caplog.records if "warm start" in r.getMessage()]
    assert "notes" not in metrics and "notes" not in read_metrics(tmp_path / "ok")


def test_warm_start_is_declared_by_the_criterion():
    from podhl.losses.center.ccl import ConstrainedCenterLoss
    from podhl.losses.hypersphere.loss import HypersphereLoss
    from podhl.losses.linear.softmax import SoftmaxLoss

    assert SoftmaxLoss(10, 8).warm_start_epochs == 0
    assert HypersphereLoss(10, 8, warmup_epochs=3).warm_start_epochs == 3
    assert ConstrainedCenterLoss(10, 8).warm_start_epochs == 1
