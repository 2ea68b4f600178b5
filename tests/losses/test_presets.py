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
                kw = (
                    {"prepared": criterion.prepare_batch(f.detach(), labels, step)}
                    if criterion.needs_prepared_batch()
                    else {}
                )
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
    assert loss.beta0 == (0.1 if separation else 0.0) and loss.threshold == (
        loss.epsilon * loss.sphere_radius if generalized else 0.0
    )
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
    _, sweep = run_cli(
        f"loss={','.join(names)}",
        "schedule.epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.save_checkpoints=false",
        multirun=True,
    )
    summary = (sweep / "summary.md").read_text()
    for job, name in enumerate(names):
        assert f"loss={name}" in summary
        cfg = OmegaConf.load(sweep / str(job) / ".hydra" / "config.yaml").loss
        assert cfg == compose_config([f"loss={name}", "schedule.epochs=1"]).loss
    assert OmegaConf.load(sweep / "0" / ".hydra" / "config.yaml").loss.center_update == "dataset"


# What a source comment must name (issue "every default traceable"): a paper's section, equation, table,
# figure, algorithm or appendix; or the authors' code as repository + file + commit (the commit and the
# file on the value's line, the repository on that line or in the file's header comment); or podhl's
# own choice, said as such, with a reason after it.
PAPER_PLACE = re.compile(r"§\s*[\dIVX]|\beqs?\.\s*\d|\bTable\s+[\dIVX]|\bFig\.\s*\d|\bAlgorithm\s+\d|\bAppendix\b")
COMMIT = re.compile(r"@[0-9a-f]{7,40}\b|\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b")  # @digits, or hex
CODE_FILE = re.compile(r"[\w/-]+\.(?:py|yml|yaml|prototxt|cpp|cu|sh)\b")
REPOSITORY = re.compile(r"\b[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*\b")
OWN_CHOICE = re.compile(r"\b(?:our|podhl's) choice\b\W+\S+(?:\s+\S+){2,}")
VALUE_LINE = re.compile(r"^\s*([A-Za-z_]\w*):\s*\S")
HYDRA_KEYS = {"_target_", "_partial_"}
SCHEDULE_DIR = Path(CONFIG_DIR) / "schedule"


def source_problem(comment: str, header: str) -> str | None:
    """Why a value's comment does not name a source (None when it does)."""
    if PAPER_PLACE.search(comment) or OWN_CHOICE.search(comment):
        return None
    if COMMIT.search(comment):
        if not CODE_FILE.search(comment):
            return "a commit without the file it is in"
        if not (REPOSITORY.search(comment) or REPOSITORY.search(header)):
            return "a commit and a file, but no repository (owner/name) on the line or in the header"
        return None
    return 'no paper section/equation/table, no repository+file+commit, no "our choice" with a reason'


def yaml_value_problems(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    header = "\n".join(line for line in lines if line.lstrip().startswith("#"))
    problems = []
    for number, line in enumerate(lines, start=1):
        match = VALUE_LINE.match(line)
        if not match or match.group(1) in HYDRA_KEYS:
            continue
        comment = line.split("#", 1)[1] if "#" in line else ""
        problem = source_problem(comment, header) if comment else "no comment"
        if problem:
            problems.append(f"{path.name}:{number}: {problem}: {line.strip()}")
    return problems


@pytest.mark.parametrize(
    "path",
    sorted([*LOSS_DIR.rglob("*.yaml"), *SCHEDULE_DIR.rglob("*.yaml")]),
    ids=lambda p: str(p.relative_to(CONFIG_DIR)),
)
def test_every_yaml_value_names_its_source(path):
    """Each key with a value in podhl/conf/loss/**.yaml and podhl/conf/schedule/**.yaml has a comment on
    its line naming its source: a paper section/equation/table, the authors' code (repository, file,
    commit), or "our choice"/"podhl's choice" and why."""
    assert yaml.safe_load(path.read_text()) is not None
    assert not yaml_value_problems(path), "\n".join(yaml_value_problems(path))


@pytest.mark.parametrize(
    "comment,ok",
    [
        ("λ ≥ 0 (POD §4.2.5)", True),
        ("HL Table II", True),
        ("eq. 17", True),
        ("POD Fig. 6 panel", True),
        ("TCCofWANG/Hypersphere_loss Cifar10_HL_main.py @ba67071", True),
        ("our choice: a fixed seed, not the run's", True),
        ("podhl's choice, the smallest integer above 1", True),
        ("the paper's value", False),
        ("official code", False),
        ("our choice", False),
        ("Cifar10_HL_main.py", False),
        ("@ba67071 gCL", False),
        ("λ = 0.002", False),
    ],
)
def test_the_source_rule(comment, ok):
    assert (source_problem(comment, "# header without a repository") is None) == ok
