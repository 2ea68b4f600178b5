"""Loss presets, nested ones included (``loss=hl_ablation/plain_epoch``): each composes, instantiates and
trains through the criterion hooks; the HL Table IV/V and POD Fig. 6 presets hold the papers' settings;
the CLI and a multirun value list select them; every YAML value carries its source."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf

from podhl.config import CONFIG_DIR, compose_config, config_options
from podhl.losses import BatchEWMA, EpochEWMA, HypersphereLoss, PODLoss, WholeTrainingSet

LOSS_DIR = Path(CONFIG_DIR) / "loss"

# HL Table V, rows 1-7 (row 8 is loss=hl): generalized class center, class center separation, updating way
TABLE_V = {
    "hl_ablation/plain_nosep_dataset": (False, False, WholeTrainingSet),  # × × per epoch using all training set
    "hl_ablation/plain_nosep_epoch": (False, False, EpochEWMA),  # × × per epoch by EWMA
    "hl_ablation/plain_epoch": (False, True, EpochEWMA),  # × ✓ per epoch by EWMA
    "hl_ablation/plain_batch": (False, True, BatchEWMA),  # × ✓ per mini-batch by EWMA
    "hl_ablation/nosep_epoch": (True, False, EpochEWMA),  # ✓ × per epoch by EWMA
    "hl_ablation/nosep_batch": (True, False, BatchEWMA),  # ✓ × per mini-batch by EWMA
    "hl_ablation/epoch": (True, True, EpochEWMA),  # ✓ ✓ per epoch by EWMA
    "hl": (True, True, BatchEWMA),  # ✓ ✓ per mini-batch by EWMA (row 8)
}


def build(name: str, *overrides: str, num_classes: int = 10, feat_dim: int = 32):
    return instantiate(compose_config([f"loss={name}", *overrides]).loss, num_classes=num_classes, feat_dim=feat_dim)


def test_nested_presets_are_options_of_the_loss_group():
    options = config_options("loss")
    assert set(TABLE_V) - {"hl"} <= set(options) and {"hl10", "pod_alpha_0", "pod_alpha_0_1"} <= set(options)


@pytest.mark.filterwarnings("ignore:PEDCC. feature dimension")
@pytest.mark.parametrize("name", config_options("loss"))
def test_every_preset_trains_through_the_hooks(name, tmp_path, monkeypatch):
    """Three epochs of a plain loop over the criterion protocol, past any warm start (t1 = 5)."""
    monkeypatch.setenv("PODHL_CACHE_DIR", str(tmp_path))
    torch.manual_seed(0)
    criterion = build(name)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(20, 32, generator=g) * 3, torch.arange(20) % 10) for _ in range(2)]
    for epoch in (5, 6, 7):
        criterion.train()
        criterion.on_epoch_start(epoch)
        for features, labels in batches:
            for step in range(criterion.steps_per_batch):
                f = features.clone().requires_grad_(True)
                kw = {"prepared": criterion.prepare_batch(f.detach(), labels, step)} if criterion.needs_prepared_batch() else {}
                terms = criterion(f, labels, step=step, **kw)
                assert terms["loss"].ndim == 0 and torch.isfinite(terms["loss"])
                terms["loss"].backward()
                assert torch.isfinite(f.grad).all()
                with torch.no_grad():
                    criterion.after_optimizer_step(f.detach(), labels, step, **kw)
        if criterion.needs_feature_pass:
            criterion.feature_pass(iter(batches))
        criterion.on_epoch_end(epoch, {"mean_feature_norm": 3.0, "num_samples": 40})
        assert all(math.isfinite(v) for v in criterion.epoch_metrics().values() if not math.isnan(v))
    criterion.eval()
    assert criterion.logits(batches[0][0]).shape == (20, 10)
    if isinstance(criterion, HypersphereLoss):
        assert criterion.n_c >= 1 and criterion.centers.norm(dim=1).max() == pytest.approx(criterion.radius)


@pytest.mark.parametrize("name", sorted(TABLE_V))
def test_hl_table5_rows(name):
    generalized, separation, update = TABLE_V[name]
    loss = build(name)
    assert (loss.generalized, loss.separation, type(loss.center_update)) == (generalized, separation, update)
    assert loss.beta0 == (0.1 if separation else 0.0) and loss.threshold == (loss.epsilon * loss.sphere_radius
                                                                               if generalized else 0.0)
    hl = OmegaConf.to_container(compose_config(["loss=hl"]).loss)
    preset = OmegaConf.to_container(compose_config([f"loss={name}"]).loss)
    changed = {k for k in hl if hl[k] != preset[k]}
    assert changed <= {"generalized", "separation", "center_update"}  # the rest is loss=hl


def test_hl_table4_hl10_and_pod_fig6_presets():
    hl10 = build("hl10")
    assert isinstance(hl10.center_update, BatchEWMA) and hl10.center_update.every == 10
    assert compose_config(["loss=hl10"]).loss.update_every == 10
    for name, alpha in (("pod_alpha_0", 0.0), ("pod", 0.01), ("pod_alpha_0_1", 0.1)):
        loss = build(name)
        assert isinstance(loss, PODLoss) and loss.alpha == alpha and loss.lam == 1.0  # POD Fig. 6: λ = 1


def test_presets_from_the_cli_and_in_a_multirun_value_list(run_cli, tmp_path):
    names = ["hl_ablation/plain_nosep_dataset", "hl_ablation/epoch", "hl10", "pod_alpha_0_1"]
    _, sweep = run_cli(f"loss={','.join(names)}", "schedule.epochs=1", "trainer.limit_train_batches=2",
                       "trainer.save_checkpoints=false", multirun=True)
    summary = (sweep / "summary.md").read_text()
    for job, name in enumerate(names):
        assert f"loss={name}" in summary
        cfg = OmegaConf.load(sweep / str(job) / ".hydra" / "config.yaml").loss
        assert cfg == compose_config([f"loss={name}", "schedule.epochs=1"]).loss
    assert OmegaConf.load(sweep / "0" / ".hydra" / "config.yaml").loss.center_update == "dataset"


def test_every_yaml_value_names_its_source():
    """Each key with a value in podhl/conf/loss/**.yaml has a comment on its line (paper section,
    equation or table, the authors' code, or "our choice" and why)."""
    for path in sorted(LOSS_DIR.rglob("*.yaml")):
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines, start=1):
            if re.match(r"^\s*[A-Za-z_][\w]*:\s*\S", line) and not line.lstrip().startswith("_target_:"):
                assert "#" in line, f"{path.relative_to(LOSS_DIR)}:{number}: {line}"
        assert yaml.safe_load(path.read_text()) is not None
