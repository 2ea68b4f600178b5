"""Every experiment (one per paper table/figure) composes, names its table cell, and runs in smoke mode.

One test covers ``experiment=glob(*)``: for every experiment, jobs that together use every value of
every config-group sweep key (and the first and last value of the other keys) are composed with
``smoke=cpu``; a job is trained in-process when it brings something no earlier job ran (a loss,
backbone, dataset, schedule, task, set of analyses or FC1 setting), so every option every experiment
uses is trained at least once without running the sweeps' cross products. Experiments on the small
CNN go first, so most losses are first exercised there.
"""

from __future__ import annotations

import pytest

from conftest import FAST
from podhl.config import compose_config, compose_run, config_options, run_names
from podhl.engine.trainer import Trainer
from podhl.runs.tables import paper_values

EXPERIMENTS = sorted(config_options("experiment"), key=lambda e: (not e.startswith(("quickstart", "repro_")), e))
GROUPS = ("loss", "dataset", "backbone", "schedule", "task")


def sweep_params(experiment: str, *extra: str) -> dict[str, list[str]]:
    """The experiment's ``hydra.sweeper.params`` as key → list of values."""
    cfg = compose_config([f"experiment={experiment}", *extra], return_hydra_config=True)
    assert str(cfg.hydra.mode).endswith("MULTIRUN"), f"{experiment} is not a sweep"
    params = cfg.hydra.sweeper.params or {}
    return {k: [v.strip() for v in str(params[k]).split(",")] for k in params}


def covering_jobs(params: dict[str, list[str]]) -> list[list[str]]:
    """Jobs that use every value of every config-group key, and the first and last value of the others."""
    first = {k: v[0] for k, v in params.items()}
    jobs = [[f"{k}={v}" for k, v in first.items()], [f"{k}={v[-1]}" for k, v in params.items()]]
    for key, values in params.items():
        if key in GROUPS:
            jobs += [[f"{k}={value if k == key else first[k]}" for k in params] for value in values[1:-1]]
    return jobs


def test_there_is_an_experiment_for_every_table_and_figure():
    wanted = {
        "pod_table1",
        "pod_table2",
        "pod_table4",
        "pod_table5",
        "pod_table6",
        "pod_table6_imagenet",
        "pod_table7",
        "pod_table8_vit",
        "pod_table8_swin",
        "pod_table9",
        "pod_fig4",
        "pod_fig5",
        "pod_fig6",
        "hl_table2",
        "hl_table3",
        "hl_table3_vit",
        "hl_table4",
        "hl_table5",
        "hl_table6",
        "hl_table6_tiny",
        "hl_fig2",
    }
    assert wanted <= set(EXPERIMENTS)
    tables = {
        str(compose_config([f"experiment={e}"]).table.name)
        for e in EXPERIMENTS
        if compose_config([f"experiment={e}"]).table
    }
    assert set(paper_values()) <= tables, set(paper_values()) - tables


def test_paper_settings_in_the_configs():
    """Spot checks against the papers' text: datasets, losses, seeds, recipes, the ablation presets."""
    p4 = sweep_params("pod_table4")
    assert p4["loss"] == "softmax,center,am,arc,cm,cot,pedcc,cosine,nac,pod".split(",")
    assert p4["dataset"] == ["cifar10", "cifar100", "tiny_imagenet", "facescrub"] and len(p4["seed"]) == 3
    cfg = compose_config(["experiment=pod_table4", "loss=pod", "dataset=cifar10"])
    assert cfg.schedule.optimizer.lr == 0.1 and list(cfg.schedule.scheduler.milestones) == [30, 60, 90]
    assert cfg.backbone.timm_name == "resnet50" and cfg.model.feat_dim == 256  # POD Table 3
    assert sweep_params("pod_table2")["model.feat_dim"] == ["9", "32", "64", "128", "256", "512", "1024"]
    assert sweep_params("pod_fig5")["loss.lam"][0] == "0.01" and sweep_params("pod_fig5")["loss.lam"][-1] == "100000"
    imagenet = compose_config(["experiment=pod_table6_imagenet", "dataset=imagenet500", "loss=pod"])
    assert imagenet.dataset.num_classes == 500 and imagenet.model.feat_dim == 1024
    vit = compose_config(["experiment=pod_table8_vit", "dataset=cifar100_224", "loss=pod"])
    assert vit.backbone.pretrained and vit.dataset.resize == 224 and vit.schedule.optimizer.weight_decay == 0
    assert vit.model.fc1 is False
    swin = compose_config(["experiment=pod_table8_swin", "dataset=imagenet100", "loss=softmax"])
    assert swin.schedule.epochs == 300 and swin.schedule.optimizer.lr == 1e-3 and swin.dataset.num_classes == 100
    fig6 = compose_config(["experiment=pod_fig6", "loss=pod_alpha_0_1"])
    assert fig6.dataset.num_classes == 5 and fig6.model.feat_dim == 2 and fig6.loss.alpha == 0.1
    assert "latent_features" in fig6.analysis
    h6 = sweep_params("hl_table6")
    assert len(h6["seed"]) == 5 and len(h6["loss"]) == 10 and h6["dataset"] == ["cifar10", "cifar100"]
    tiny = compose_config(["experiment=hl_table6_tiny", "loss=hl", "dataset=tiny_imagenet"])
    assert tiny.backbone.timm_name == "resnet34" and tiny.schedule.epochs == 240 and tiny.schedule.batch_size == 256
    assert tiny.model.fc1 is False
    h2 = sweep_params("hl_table2")
    assert h2["loss.lam"] == ["0.001", "0.002", "0.005", "0.01", "0.02", "0.05", "0.1"]
    assert h2["loss.beta"] == ["0.001", "0.01", "0.1", "1"]
    assert len(sweep_params("hl_table3")["backbone"]) + len(sweep_params("hl_table3_vit")["backbone"]) == 10
    assert len(sweep_params("hl_table5")["loss"]) == 8 and "hl10" in sweep_params("hl_table4")["loss"]


def test_smoke_config_shrinks_any_experiment():
    cfg = compose_config(["experiment=pod_table8_vit", "dataset=imagenet1000", "smoke=cpu"], return_hydra_config=True)
    assert cfg.schedule.epochs == 1 and cfg.trainer.limit_train_batches == 1 and cfg.trainer.device == "cpu"
    assert cfg.dataset.standin and cfg.backbone.pretrained is False and not cfg.trainer.save_checkpoints
    assert str(cfg.hydra.sweeper.params.seed) == "0"


_ran: set[tuple] = set()


def _novelty(cfg, choices: dict[str, str]) -> set[tuple]:
    parts = {(g, choices.get(g)) for g in GROUPS}
    return parts | {("analysis", tuple(sorted(cfg.analysis or {}))), ("fc1", bool(cfg.model.fc1))}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_runs_in_smoke_mode(tmp_path, experiment):
    jobs = covering_jobs(sweep_params(experiment, "smoke=cpu"))
    for i, job in enumerate(jobs):
        cfg, choices = compose_run([*FAST, f"experiment={experiment}", "smoke=cpu", *job])
        assert cfg.schedule.epochs == 1 and cfg.trainer.limit_train_batches == 1
        if cfg.table:  # the cell this job writes into metrics.json is one the paper's table has
            spec, names = paper_values()[cfg.table.name], run_names(cfg, choices)
            assert names["row"] in spec["rows"], (experiment, job, names["row"])
            if not spec.get("cols_are_metrics") and not experiment.startswith("repro_"):  # repro_*: extra columns
                assert names["col"] in spec["cols"], (experiment, job, names["col"])
        new = _novelty(cfg, choices) - _ran
        if not new:
            continue  # everything this job uses was trained by an earlier job: composing it was the test
        _ran.update(new)
        trainer = Trainer.from_config(cfg, tmp_path / f"job{i}", run_names(cfg, choices))
        metrics = trainer.fit()
        assert metrics["completed"] and metrics["status"] == "completed", (experiment, job)
        assert 0.0 <= metrics[metrics["primary_metric"]] <= 100.0
        assert not (tmp_path / f"job{i}" / "last.pt").exists()
        if cfg.table:
            assert metrics["table"] == cfg.table.name and metrics["row"]
        if "latent_features" in cfg.analysis:
            assert (tmp_path / f"job{i}" / "features.npz").is_file() and (
                tmp_path / f"job{i}" / "features.png"
            ).is_file()
            assert list((tmp_path / f"job{i}" / "tb").rglob("projector_config.pbtxt")), (
                "no TensorBoard projector embedding"
            )
        if "norm_split" in cfg.analysis:
            assert "low_acc" in metrics["analysis"]["norm_split"]
