"""Every experiment config (one per paper table/figure) composes, and every smoke variant runs end to end."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from podhl.config import compose_config
from podhl.config import CONFIG_DIR

EXP_DIR = Path(CONFIG_DIR) / "experiment"
ROW_DIR = Path(CONFIG_DIR) / "row"
EXPERIMENTS = sorted(p.stem for p in EXP_DIR.glob("*.yaml"))
SMOKES = sorted(p.stem for p in (EXP_DIR / "smoke").glob("*.yaml"))


def sweep_params(experiment: str) -> dict[str, list[str]]:
    """The experiment's ``hydra.sweeper.params`` as key → list of values (comma lists)."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    assert cfg.hydra.mode is not None and str(cfg.hydra.mode).endswith("MULTIRUN"), f"{experiment} is not a sweep"
    params = cfg.hydra.sweeper.params or {}
    return {k: [v.strip() for v in str(params[k]).split(",")] for k in params}


def all_jobs(params: dict[str, list[str]]) -> list[list[str]]:
    keys = list(params)
    return [[f"{k}={v}" for k, v in zip(keys, combo)] for combo in itertools.product(*(params[k] for k in keys))]


GROUP_KEYS = ("loss", "dataset", "backbone", "schedule")


def covering_jobs(params: dict[str, list[str]]) -> list[list[str]]:
    """Jobs that together use every value of every config-group/row-group sweep key (numeric keys: first and last)."""
    first = {k: v[0] for k, v in params.items()}
    jobs = [[f"{k}={v}" for k, v in first.items()], [f"{k}={v[-1]}" for k, v in params.items()]]
    for key, values in params.items():
        if key in GROUP_KEYS or key.startswith("+row/"):
            for value in values[1:-1]:
                jobs.append([f"{k}={value if k == key else first[k]}" for k in params])
    return jobs


def test_there_is_an_experiment_per_table_and_a_smoke_variant_per_runnable_one():
    wanted = {"pod_table1", "pod_table2", "pod_table4", "pod_table5", "pod_table6", "pod_table6_imagenet", "pod_table7",
              "pod_table8", "pod_table9", "pod_fig4", "pod_fig5", "pod_fig6",
              "hl_table2", "hl_table3", "hl_table4", "hl_table5", "hl_table6", "hl_fig2"}
    assert wanted <= set(EXPERIMENTS)
    assert wanted <= set(SMOKES)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes(experiment):
    params = sweep_params(experiment) if experiment != "quickstart" else {"loss": ["softmax", "pod"]}
    for job in covering_jobs(params):
        cfg = compose_config([f"experiment={experiment}", *job])
        assert cfg.schedule.epochs > 0 and cfg.loss._target_


def _compose(*overrides):
    return compose_config(list(overrides))


def test_paper_settings_in_the_configs():
    """Spot checks against the papers' text: datasets, losses, seeds, recipes, the ablation switches."""
    p4 = sweep_params("pod_table4")
    assert p4["loss"] == "softmax,center,am,arc,cm,cot,pedcc,cosine,nac,pod".split(",")
    assert p4["dataset"] == ["cifar10", "cifar100", "tiny_imagenet", "facescrub"] and len(p4["seed"]) == 3
    cfg = _compose("experiment=pod_table4", "loss=pod", "dataset=cifar10")
    assert cfg.schedule.optimizer.lr == 0.1 and list(cfg.schedule.scheduler.milestones) == [30, 60, 90]
    assert cfg.backbone.timm_name == "resnet50" and cfg.model.feat_dim == 256  # POD Table 3
    assert sweep_params("pod_table2")["model.feat_dim"] == ["9", "32", "64", "128", "256", "512", "1024"]
    assert sweep_params("pod_fig5")["loss.lam"][0] == "0.01" and sweep_params("pod_fig5")["loss.lam"][-1] == "100000"
    imagenet = _compose("experiment=pod_table6_imagenet", "+row/pod_table6_imagenet=imagenet500", "loss=pod")
    assert imagenet.dataset.num_classes == 500 and imagenet.model.feat_dim == 1024
    vit = _compose("experiment=pod_table8", "+row/pod_table8_net=vit_b16", "+row/pod_table8_data=cifar100", "loss=pod")
    assert vit.backbone.pretrained and vit.dataset.resize == 224 and vit.schedule.optimizer.weight_decay == 0
    swin = _compose("experiment=pod_table8", "+row/pod_table8_net=swin_b", "+row/pod_table8_data=imagenet100", "loss=softmax")
    assert swin.schedule.epochs == 300 and swin.schedule.optimizer.lr == 1e-3 and swin.dataset.num_classes == 100
    fig6 = _compose("experiment=pod_fig6", "+row/pod_fig6=pod_alpha01")
    assert fig6.dataset.num_classes == 5 and fig6.model.feat_dim == 2 and fig6.loss.alpha == 0.1
    assert "latent_features" in fig6.analysis
    # HL: 5 seeds, §IV-A recipe, ResNet34 on Tiny ImageNet, Table V rows
    h6 = sweep_params("hl_table6")
    assert len(h6["seed"]) == 5 and len(h6["loss"]) == 10
    tiny = _compose("experiment=hl_table6", "loss=hl", "+row/hl_table6_data=tiny_imagenet")
    assert tiny.backbone.timm_name == "resnet34" and tiny.schedule.epochs == 240 and tiny.schedule.batch_size == 256
    assert tiny.model.fc1 is False
    rows = {r: _compose("experiment=hl_table5", f"+row/hl_table5={r}").loss for r in ("row1", "row4", "row8")}
    assert (rows["row1"].generalized, rows["row1"].separation, rows["row1"].center_update) == (False, False, "dataset")
    assert (rows["row4"].generalized, rows["row4"].separation, rows["row4"].center_update) == (False, True, "batch")
    assert (rows["row8"].generalized, rows["row8"].separation, rows["row8"].center_update) == (True, True, "batch")
    assert _compose("experiment=hl_table4", "+row/hl_table4=hl10").loss.update_every == 10
    h2 = sweep_params("hl_table2")
    assert h2["loss.lam"] == ["0.001", "0.002", "0.005", "0.01", "0.02", "0.05", "0.1"]
    assert h2["loss.beta"] == ["0.001", "0.01", "0.1", "1"]
    assert len(sweep_params("hl_table3")["+row/hl_table3"]) == 10


def test_row_groups_match_the_paper_tables():
    """Each table keyed by a row group has one row file per paper row (podhl-tables finds them by name)."""
    from podhl.analysis.tables import paper_values

    for name, spec in paper_values().items():
        for axis in ("row_axis", "col_axis"):
            for alternatives in spec.get(axis, []):
                for key in alternatives:
                    if key.startswith("row/"):
                        files = {p.stem for p in (ROW_DIR / key[4:]).glob("*.yaml")}
                        labels = {part for k in (spec["rows"] if axis == "row_axis" else spec["cols"]) for part in k.split("/")}
                        assert files & labels, f"{name}: no row file of {key} matches the table"


def _run_smoke(train, tmp_path, experiment):
    jobs = all_jobs(sweep_params(f"smoke/{experiment}"))
    assert 1 <= len(jobs) <= 12, f"smoke/{experiment} has {len(jobs)} jobs: keep smoke sweeps tiny"
    results = []
    for i, job in enumerate(jobs):
        run_dir = tmp_path / f"job{i}"
        trainer, metrics = train(f"experiment=smoke/{experiment}", *job, run_dir=run_dir)
        assert metrics["completed"], (experiment, job)
        assert metrics["test_acc"] is not None and 0.0 <= metrics["test_acc"] <= 100.0
        assert not (run_dir / "last.pt").exists()
        results.append((job, trainer, metrics, run_dir))
    return results


@pytest.mark.parametrize("experiment", SMOKES)
def test_smoke_variant_runs(train, tmp_path, experiment):
    results = _run_smoke(train, tmp_path, experiment)
    if experiment == "pod_fig6":
        for job, trainer, metrics, run_dir in results:
            assert (run_dir / "features.npz").is_file() and (run_dir / "features.png").is_file()
            assert trainer.model.feat_dim == 2
            assert metrics["analysis"]["latent_features"]["num_points"] > 0
            assert list((run_dir / "tb").rglob("projector_config.pbtxt")), "no TensorBoard projector embedding"
    if experiment == "pod_table1":
        assert "low_acc" in results[0][2]["analysis"]["norm_split"]
    if experiment == "hl_table6":
        assert len(results) == 10  # every loss of HL Table VI
