"""``hparams_search``: Optuna searches whose objective is the validation metric (docs/tuning.md).

The presets' search spaces are the papers' own (POD §4.2.4 Fig. 5; HL §IV-B Table II), checked against the
numbers in the papers' text; a real 3-trial search on digits checks that what Optuna maximizes is each trial's
``best_val_acc`` (never a test number) and that its folder reads like any sweep.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import yaml

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="the [tune] extra (hydra-optuna-sweeper)")
import optuna  # noqa: E402
from hydra.core.override_parser.overrides_parser import OverridesParser  # noqa: E402

from podhl.config import compose_config, config_options  # noqa: E402
from podhl.runs import tables  # noqa: E402

PRESETS = config_options("hparams_search")


def _space(cfg) -> dict:
    """The preset's search space, parsed as the sweeper parses it: key -> Hydra sweep (or a fixed value)."""
    parser = OverridesParser.create()
    return {k: parser.parse_override(f"{k}={v}").value() for k, v in cfg.hydra.sweeper.params.items()}


def _log_interval(sweep) -> tuple[float, float]:
    assert "log" in sweep.tags, sweep  # log-uniform: Optuna's LogUniformDistribution
    return sweep.start, sweep.end


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_as_an_optuna_search_on_validation(preset):
    cfg = compose_config([f"hparams_search={preset}"], return_hydra_config=True)
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert cfg.hydra.sweeper.direction == "maximize"
    assert cfg.hydra.mode.name == "MULTIRUN"
    assert cfg.dataset.val_fraction == 0.1  # the objective is a validation metric, never test
    assert cfg.hydra.sweeper.n_trials >= 1


def test_pod_lambda_searches_lg_lambda_from_minus_2_to_3():
    cfg = compose_config(["hparams_search=pod_lambda"], return_hydra_config=True)
    assert cfg.loss._target_.endswith("PODLoss")
    space = _space(cfg)
    assert set(space) == {"loss.lam"}
    low, high = _log_interval(space["loss.lam"])
    assert (math.log10(low), math.log10(high)) == pytest.approx((-2.0, 3.0))  # POD §4.2.4, Fig. 5
    assert cfg.loss.alpha == 0.01  # α fixed at the paper's value (§4.2.5)
    assert cfg.hydra.sweeper.sampler.seed == 0


def test_hl_grid_is_table_2():
    cfg = compose_config(["hparams_search=hl_grid"], return_hydra_config=True)
    assert cfg.loss._target_.endswith("HypersphereLoss") and cfg.model.fc1 is False
    assert cfg.hydra.sweeper.sampler._target_ == "optuna.samplers.GridSampler"
    space = _space(cfg)
    assert set(space) == {"loss.lam", "loss.beta"}
    lams = [float(x) for x in space["loss.lam"].list]
    betas = [float(x) for x in space["loss.beta"].list]
    assert lams == [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1]  # HL §IV-B: "We try λ ∈ {...}"
    assert betas == [0.001, 0.01, 0.1, 1.0]  # HL §IV-B: "and β ∈ {...}"
    assert cfg.hydra.sweeper.n_trials == len(lams) * len(betas)  # the whole grid, 7 × 4
    assert (cfg.loss.epsilon, cfg.loss.phi, cfg.loss.radius) == (0.05, 0.99, 40.0)  # fixed as in §III-B, §IV-A


@pytest.mark.parametrize(
    ("overrides", "own"),
    [
        (["hparams_search=equal_budget", "loss=softmax"], {}),
        (["hparams_search=equal_budget/pod"], {"loss.lam": (0.01, 1000.0)}),
        (["hparams_search=equal_budget/hl"], {"loss.lam": (0.001, 0.1), "loss.beta": (0.001, 1.0)}),
    ],
)
def test_equal_budget_gives_every_loss_the_same_trials_and_shared_space(overrides, own):
    cfg = compose_config(overrides, return_hydra_config=True)
    base = compose_config(["hparams_search=equal_budget", "loss=softmax"], return_hydra_config=True)
    assert cfg.hydra.sweeper.n_trials == base.hydra.sweeper.n_trials
    assert cfg.hydra.sweeper.sampler.seed == base.hydra.sweeper.sampler.seed
    space = _space(cfg)
    assert _log_interval(space.pop("schedule.optimizer.lr")) == (0.005, 0.5)  # the shared space
    assert {k: _log_interval(v) for k, v in space.items()} == own
    loss = cfg.hydra.runtime.choices.loss
    assert cfg.hydra.sweeper.study_name == f"tune_{loss}"  # one Optuna study per loss
    assert cfg.hydra.sweep._get_node("dir")._value().endswith("_tune_${hydra.runtime.choices.loss}")  # one folder


def test_a_3_trial_search_maximizes_the_validation_accuracy(tmp_path, capsys):
    sweep = tmp_path / "search"
    args = [
        sys.executable, "-m", "podhl.train", "hparams_search=optuna",
        "trainer.progress=false", "trainer.device=cpu", "schedule.epochs=1", "trainer.limit_train_batches=4",
        "dataset.val_fraction=0.1",
        "schedule.optimizer.lr=tag(log, interval(0.005, 0.5))", "hydra.sweeper.n_trials=3",
        f"hydra.sweep.dir={sweep}", f"paths.output_dir={tmp_path}",
        f"hydra.sweeper.storage=sqlite:///{tmp_path / 'study.db'}", "hydra.sweeper.study_name=digits",
    ]  # fmt: skip
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "TEST metric" not in proc.stdout + proc.stderr  # a split: no warning
    trials = [sweep / str(n) / "metrics.json" for n in range(3)]  # job n = Optuna trial n (one trial at a time)
    metrics = [json.loads(m.read_text()) for m in trials]
    study = optuna.load_study(study_name="digits", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert [t.number for t in study.trials] == [0, 1, 2]
    for m, path, trial in zip(metrics, trials, study.trials, strict=True):
        assert m["split"]["val_fraction"] == 0.1 and m["objective_metric"] == "best_val_acc"
        assert m["objective"] == m["best_val_acc"]
        assert trial.value == pytest.approx(m["best_val_acc"])  # what podhl-train returned to Optuna
        overrides = yaml.safe_load((path.parent / ".hydra" / "overrides.yaml").read_text())
        assert f"schedule.optimizer.lr={trial.params['schedule.optimizer.lr']}" in overrides  # the same trial
    assert len({t.params["schedule.optimizer.lr"] for t in study.trials}) == 3  # three settings, three folders
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    best = max(metrics, key=lambda m: m["best_val_acc"])
    assert result["best_value"] == pytest.approx(best["best_val_acc"])  # Optuna's best = the best validation
    # the search lands in podhl-tables like any sweep: one row per trial setting
    capsys.readouterr()
    tables.main([str(sweep), "--out", str(tmp_path / "tables"), "--metric", "best_val_acc", "--no-curves"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| schedule.optimizer.lr=")]
    assert len(rows) == 3, rows
    for m, path in zip(metrics, trials, strict=True):  # each row shows its trial's objective
        overrides = yaml.safe_load((path.parent / ".hydra" / "overrides.yaml").read_text())
        lr = next(o for o in overrides if o.startswith("schedule.optimizer.lr="))
        assert any(row.startswith(f"| {lr} |") and f"| {m['best_val_acc']:.2f} |" in row for row in rows), rows


def test_a_search_without_validation_split_warns_that_it_optimizes_test(tmp_path):
    args = [
        sys.executable, "-m", "podhl.train", "hparams_search=optuna", "smoke=cpu", "dataset.val_fraction=0",
        "schedule.optimizer.lr=interval(0.01, 0.1)", "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={tmp_path / 's'}",
    ]  # fmt: skip
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "no validation split, so the objective returned to the sweeper is a TEST metric" in proc.stdout + proc.stderr
