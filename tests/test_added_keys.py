"""A typo'd key added with ``+`` under podhl's own nodes fails with exit 2 and the closest key; config
groups, keys some config declares, arguments a ``_target_`` takes, ``++`` and a user's own nodes still pass."""

from __future__ import annotations

import pytest

from podhl.config import compose_run
from podhl.errors import ConfigError


def test_cli_refuses_a_typo_with_the_closest_key_and_writes_nothing(run_cli):
    proc, run = run_cli("+trainer.epoch=3", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "unknown key trainer.epoch" in out and "did you mean schedule.epochs" in out and "++trainer.epoch" in out
    assert "Traceback" not in out
    assert not (run / "metrics.json").exists() and not (run / ".hydra").exists()


@pytest.mark.parametrize(
    "overrides, unknown, closest",
    [
        (["+schedule.epoch=3"], "schedule.epoch for schedule=quick", "schedule.epochs"),
        (["loss=arc", "+loss.scales=64"], "loss.scales for loss=arc", "loss.scale"),
        (["+model.fc=false"], "model.fc", "model.fc1"),
        (["+dataset.source.resiz=16"], "dataset.source.resiz for dataset=digits", "dataset.source.resize"),
    ],
)
def test_typos_are_refused_with_the_closest_key(overrides, unknown, closest):
    with pytest.raises(ConfigError, match=f"unknown key {unknown} \\(did you mean {closest}[ ?]"):
        compose_run(overrides)


def test_a_key_the_chosen_loss_does_not_take_is_refused_though_another_loss_has_it():
    with pytest.raises(ConfigError, match="unknown key loss.margin for loss=softmax"):
        compose_run(["+loss.margin=0.3"])  # loss=arc has a margin; softmax would fail to build with it


def test_legitimate_additions_pass(tmp_path):
    cfg, _ = compose_run(["+schedule.optimizer.nesterov=true"])  # an argument of torch.optim.SGD
    assert cfg.schedule.optimizer.nesterov is True
    cfg, _ = compose_run(["+schedule.eval_batch_size=8", "+dataset.standin=true"])  # declared by detection, smoke=cpu
    assert cfg.schedule.eval_batch_size == 8 and cfg.dataset.standin is True
    cfg, choices = compose_run(["+analysis=gda", "++trainer.epoch=3"])  # a config group; ++ forces a key in
    assert choices["analysis"] == "gda" and cfg.trainer.epoch == 3
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "a.yaml").write_text("# @package _global_\nmine:\n  x: 1\n")
    cfg, choices = compose_run([f"hydra.searchpath=[file://{tmp_path}]", "+mine=a", "+mine.y=2", "+other.z=3"])
    assert choices["mine"] == "a" and cfg.mine.y == 2 and cfg.other.z == 3  # a user's own group and nodes
