"""podhl-tables on a real multirun, the paper-values file against the papers, and the figures."""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from podhl.runs.reader import load_runs
from podhl.runs.tables import PAPER_VALUES, build_table, make_tables, paper_values

REPO = Path(__file__).resolve().parent.parent
PAPERS = REPO.parent / "shared" / "papers"


# ------------------------------------------------------------------ paper values

# Cells read by hand from the papers' text (shared/papers/*.md), not from paper_values.json.
HAND_READ = [
    ("pod_table1", "tiny_imagenet", "analysis.norm_split.low_acc", 54.65),
    ("pod_table2", "512", "test_acc", 94.25),
    ("pod_table4", "pod", "cifar100", 79.17),
    ("pod_table4", "cot", "facescrub", 94.30),
    ("pod_table4", "center", "tiny_imagenet", 60.71),
    ("pod_table5", "nac", "analysis.feature_variance.energy_variance", 1.82e-8),
    ("pod_table6", "imagenet30", "softmax", 79.86),
    ("pod_table6", "imagenet1000", "pod", 76.08),
    ("pod_table7", "mobilenetv2/cifar100", "pod", 55.66),
    ("pod_table8", "swin_b/imagenet500", "softmax", 88.74),
    ("pod_table8", "vit_b16_pretrained/imagenet1000", "pod", 81.20),
    ("pod_table9", "tiny_imagenet", "analysis.gda.gda_acc", 51.09),
    ("hl_table2", "cifar100/0.1", "1", 11.01),
    ("hl_table2", "cifar10/0.002", "0.1", 95.76),
    ("hl_table3", "cifar100/efficientnet_cifar", "softmax", 70.32),
    ("hl_table3", "cifar10/vit_b16", "hl", 73.04),
    ("hl_table4", "ccl", "train_time_h", 14.17),
    ("hl_table4", "hl10", "extra_flops_m", 50.46),
    ("hl_table5", "hl_ablation/nosep_epoch", "test_acc", 95.09),
]
HAND_READ_BMS = [  # HL Table VI: best, mean, std
    ("er", "cifar10", (95.53, 95.40, 0.1162)),
    ("hml", "cifar100", (73.84, 72.44, 1.5092)),
    ("hl", "tiny_imagenet", (66.02, 65.88, 0.2203)),
    ("softmax", "cifar10", (94.31, 93.68, 0.5568)),
]


HAND_READ_T7 = [  # HL Table VII (best, mean, std); §IV-G's text repeats the first four best/mean pairs
    ("magface", "lfw_acc", (99.35, 99.23, 0.0887)),
    ("hl", "lfw_acc", (99.25, 99.12, 0.1120)),
    ("hl", "cfp_fp_acc", (96.19, 95.91, 0.0229)),
    ("ccl", "cfp_fp_acc", (96.07, 95.37, 0.7396)),
    ("hl", "agedb_30_acc", (92.49, 92.33, 0.1142)),
    ("magface", "agedb_30_acc", (92.42, 92.16, 0.2149)),
    ("softmax", "agedb_30_acc", (89.13, 88.66, 0.2973)),
    ("center", "lfw_acc", (99.13, 99.07, 0.0505)),  # the paper's "CT" row (CL in the text)
    ("hml", "cfp_fp_acc", (91.57, 91.12, 0.3720)),
]


@pytest.mark.parametrize("row,col,bms", HAND_READ_T7)
def test_hl_table7_best_mean_std(row, col, bms):
    cell = paper_values()["hl_table7"]["values"][row][col]
    assert (cell["best"], cell["mean"], cell["std"]) == pytest.approx(bms)


@pytest.mark.parametrize("table,row,col,value", HAND_READ)
def test_paper_values_match_hand_read_cells(table, row, col, value):
    assert paper_values()[table]["values"][row][col] == pytest.approx(value, rel=1e-9)


@pytest.mark.parametrize("row,col,bms", HAND_READ_BMS)
def test_hl_table6_best_mean_std(row, col, bms):
    cell = paper_values()["hl_table6"]["values"][row][col]
    assert (cell["best"], cell["mean"], cell["std"]) == pytest.approx(bms)


def _numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, (int, float)):
        yield obj


@pytest.mark.skipif(not PAPERS.is_dir(), reason="papers not available")
def test_every_paper_value_occurs_in_the_paper_text():
    """Each transcribed number appears in its paper (as written there: 95.10 for 95.1, 1.82e-8 for 1.82e-08)."""
    texts = {
        "pod": (PAPERS / "pod_loss_zhu_zu.md").read_text(),
        "hl": (PAPERS / "hypersphere_loss_wang_et_al.md").read_text(),
    }
    for name, spec in paper_values().items():
        text = texts[name.split("_")[0]]
        tokens = set(re.findall(r"\d+(?:\.\d+)?(?:e-?\d+)?", text))
        numbers = {float(t) for t in tokens}
        for value in _numbers(spec["values"]):
            assert any(math.isclose(value, n, rel_tol=1e-9) for n in numbers), f"{name}: {value} not in the paper"
        assert len(list(_numbers(spec["values"]))) >= len(spec["rows"]), name


def test_paper_values_tables_are_complete():
    specs = paper_values()
    assert len(specs["pod_table4"]["values"]) == 10 and all(len(v) == 4 for v in specs["pod_table4"]["values"].values())
    assert len(specs["hl_table2"]["values"]) == 14 and all(len(v) == 4 for v in specs["hl_table2"]["values"].values())
    assert len(specs["hl_table6"]["values"]) == 10 and len(specs["hl_table3"]["values"]) == 20
    assert len(specs["hl_table7"]["values"]) == 11 and all(len(v) == 3 for v in specs["hl_table7"]["values"].values())
    assert json.loads(PAPER_VALUES.read_text())  # ships with the package


# ------------------------------------------------------------------ tables from runs


def _fake_run(root: Path, name: str, overrides: list[str], **metrics) -> Path:
    """A finished run folder as podhl-train leaves it (only the files the table tools read)."""
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (run / "metrics.json").write_text(json.dumps({"status": "completed", "completed": True, **metrics}))
    return run


def test_best_mean_std_and_missing_cells(tmp_path):
    """HL Table VI reads each run's best test accuracy over epochs (the authors' best_acc), not its last epoch."""
    accs = [95.0, 96.5, 94.25]
    cell6 = dict(table="hl_table6", col="cifar10")
    for seed, acc in enumerate(accs):
        _fake_run(
            tmp_path, str(seed), ["loss=hl", f"seed={seed}"], test_acc=acc - 1, best_test_acc=acc, row="hl", **cell6
        )
    _fake_run(tmp_path, "3", ["loss=er", "seed=0"], test_acc=89.0, best_test_acc=90.0, row="er", **cell6)
    built = build_table(load_runs([tmp_path]), paper_values()["hl_table6"], "hl_table6")
    cell = built["cells"][("hl", "cifar10")]["ours"]
    mean = sum(accs) / 3
    std = math.sqrt(sum((a - mean) ** 2 for a in accs) / 2)
    assert cell["n"] == 3 and cell["best"] == 96.5
    assert cell["mean"] == pytest.approx(mean) and cell["std"] == pytest.approx(std)
    er = built["cells"][("er", "cifar10")]["ours"]
    assert er["n"] == 1 and er["std"] is None  # one run: no std, not 0
    assert built["cells"][("asl", "cifar10")]["ours"]["mean"] is None
    assert built["rows"][:3] == ["softmax", "asl", "er"]  # the paper's row order


def test_podhl_tables_on_a_real_multirun(run_cli, tmp_path):
    sweep = tmp_path / "sweep"
    run_cli(
        "experiment=repro_table4_digits",
        "loss=softmax,pod",
        "seed=0,1",
        "schedule.epochs=1",
        "trainer.limit_train_batches=2",
        multirun=True,
        run_dir=sweep,
    )
    runs = sorted(sweep.glob("*/metrics.json"))
    assert len(runs) == 4  # softmax, pod × 2 seeds
    # Our mean per loss, computed here from the jobs' own files.
    by_loss: dict[str, list[float]] = {}
    for m in runs:
        loss = next(
            line.split("=", 1)[1]
            for line in (m.parent / ".hydra" / "overrides.yaml").read_text().splitlines()
            if line.startswith("- loss=")
        )
        by_loss.setdefault(loss, []).append(json.loads(m.read_text())["test_acc"])

    out = tmp_path / "tables"
    proc = subprocess.run(
        [sys.executable, "-m", "podhl.runs.tables", str(sweep), "--table", "pod_table4", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (out / "pod_table4.md").read_text().splitlines()
    at = next(i for i, line in enumerate(md) if line.startswith("| row |"))
    header = md[at].split(" | ")
    assert header[1] == "CIFAR10 ours" and header[2] == "CIFAR10 paper" and "digits ours" in md[at]
    assert any(line.startswith("protocol: ") for line in md[:at])
    rows = [line for line in md[at + 2 :] if line.startswith("| ")]
    assert [r.split(" | ")[0][2:] for r in rows][:10] == list(paper_values()["pod_table4"]["rows"].values())
    col = header.index("digits ours")
    cells = {r.split(" | ")[0][2:]: r.split(" | ") for r in rows}
    softmax_mean = sum(by_loss["softmax"]) / 2
    assert cells["Softmax Loss"][col] == f"{softmax_mean:.2f}"
    assert cells["Softmax Loss"][1] == "—" and cells["Softmax Loss"][2] == "93.25"  # no CIFAR10 run; the paper's value
    assert cells["Center Loss"][col] == "—"  # no center run: missing, not 0
    assert cells["Softmax Loss"][col + 1] == "—"  # the paper has no digits column
    with (out / "pod_table4.csv").open() as fh:
        table = {r["row"]: r for r in csv.DictReader(fh)}
    assert float(table["pod"]["digits:ours_mean"]) == pytest.approx(sum(by_loss["pod"]) / 2)
    assert (
        table["pod"]["digits:n"] == "2"
        and table["center"]["digits:ours_mean"] == ""
        and table["center"]["digits:n"] == "0"
    )
    assert float(table["softmax"]["cifar10:paper_mean"]) == 93.25 and table["softmax"]["cifar10:diff_mean"] == ""
    assert (out / "pod_table4_curves_digits.png").stat().st_size > 0
    assert list((out / "tb_hparams").rglob("events.out.tfevents*")), "no TensorBoard HParams"
    assert not (sweep / "tb_hparams").exists()


def test_hl_table7_columns_are_the_verification_metrics(tmp_path):
    """Each run gives one value per set (its final 10-fold accuracy); cells are best/mean/std over the seeds."""
    lfw = [99.0, 99.3, 98.9]
    for seed, acc in enumerate(lfw):
        _fake_run(
            tmp_path,
            f"hl{seed}",
            ["loss=hl", f"seed={seed}"],
            table="hl_table7",
            row="hl",
            col=None,
            lfw_acc=acc,
            cfp_fp_acc=95.0 + seed,
            agedb_30_acc=None,
            primary_metric="verify_acc",
        )
    built = build_table(load_runs([tmp_path]), paper_values()["hl_table7"], "hl_table7")
    assert built["cols"] == ["lfw_acc", "cfp_fp_acc", "agedb_30_acc"] and built["rows"][-1] == "hl"
    cell = built["cells"][("hl", "lfw_acc")]
    assert (
        cell["ours"]["best"] == 99.3 and cell["ours"]["mean"] == pytest.approx(sum(lfw) / 3) and cell["ours"]["n"] == 3
    )
    assert cell["paper"] == {"best": 99.25, "mean": 99.12, "std": 0.112}
    assert built["cells"][("hl", "agedb_30_acc")]["ours"]["mean"] is None  # no value: "—", not 0
    written = make_tables([tmp_path], "hl_table7", tmp_path / "t", hparams=False, curves=False)
    header = next(line for line in written["markdown"].read_text().splitlines() if line.startswith("| row |"))
    assert "LFW ours best" in header and "AgeDB-30 paper std" in header


def test_auto_table_and_diff(tmp_path):
    cell = dict(table="pod_table6", row="cifar10")
    _fake_run(tmp_path, "0", ["loss=pod", "dataset=cifar10", "seed=0"], test_acc=94.0, col="pod", **cell)
    _fake_run(tmp_path, "1", ["loss=pod", "dataset=cifar10", "seed=1"], test_acc=95.0, col="pod", **cell)
    _fake_run(tmp_path, "2", ["loss=softmax", "dataset=cifar10", "seed=0"], test_acc=93.0, col="softmax", **cell)
    written = make_tables([tmp_path], "pod_table6", tmp_path / "t", hparams=False, curves=False)
    with written["csv"].open() as fh:
        table = {r["row"]: r for r in csv.DictReader(fh)}
    assert float(table["cifar10"]["pod:diff_mean"]) == pytest.approx(94.5 - 94.31)
    assert float(table["cifar10"]["softmax:diff_mean"]) == pytest.approx(93.0 - 93.25)
    assert table["imagenet30"]["pod:ours_mean"] == "" and float(table["imagenet30"]["pod:paper_mean"]) == 86.47
    auto = make_tables([tmp_path], None, tmp_path / "a", hparams=False, curves=False)
    text = auto["markdown"].read_text()
    assert "pod" in text and "softmax" in text


# ------------------------------------------------------------------ figures


def test_figures_write_pngs(tmp_path):
    import numpy as np

    from podhl.runs.figures import class_means, plot_curves, plot_feature_grid, plot_loss_vs_lambda

    for i, loss in enumerate(("softmax", "pod")):
        run = tmp_path / loss
        run.mkdir()
        (run / "history.csv").write_text("epoch,test_acc,train_loss\n1,50,2.0\n2,70,1.0\n")
        f = np.random.default_rng(i).normal(size=(50, 2)).astype(np.float32)
        y = np.arange(50) % 5
        np.savez(run / "features.npz", features=f, labels=y, class_means=class_means(f, y, 5))
    means = class_means(np.array([[0.0, 2.0], [2.0, 4.0], [5.0, 5.0]]), np.array([0, 0, 2]), 3)
    assert means[0].tolist() == [1.0, 3.0] and np.isnan(means[1]).all() and means[2].tolist() == [5.0, 5.0]
    png = plot_curves({"softmax": [tmp_path / "softmax"], "pod": [tmp_path / "pod"]}, tmp_path / "fig4.png")
    assert png.stat().st_size > 0
    assert (
        plot_loss_vs_lambda({"cifar10": [(0.01, 1.0), (1.0, 1.1), (1e5, 3.0)]}, tmp_path / "fig5.png").stat().st_size
        > 0
    )
    assert (
        plot_feature_grid({"softmax": tmp_path / "softmax", "pod": tmp_path / "pod"}, tmp_path / "fig6.png")
        .stat()
        .st_size
        > 0
    )


def test_every_run_lands_in_a_row_or_is_listed_with_the_reason(tmp_path):
    """Default grouping: runs lacking an override another run has still get a row (key shown as —);
    failed, unfinished and other tables' runs are listed as left out, never silently dropped."""
    for seed in range(3):
        _fake_run(tmp_path, f"s{seed}", ["loss=softmax", f"seed={seed}"], test_acc=90.0 + seed)
        _fake_run(tmp_path, f"h{seed}", ["loss=hl", "loss.warmup_epochs=1", f"seed={seed}"], test_acc=91.0 + seed)
    _fake_run(
        tmp_path, "f", ["loss=pod", "seed=0"], test_acc=None, status="failed", completed=False, error="NaN at epoch 2"
    )
    _fake_run(tmp_path, "r", ["loss=pod", "seed=1"], test_acc=50.0, status="stopped", completed=False, epochs=3)
    auto = make_tables([tmp_path], None, tmp_path / "a", hparams=False, curves=False)["markdown"].read_text()
    assert "loss=softmax loss.warmup_epochs=—" in auto and "loss=hl loss.warmup_epochs=1" in auto
    assert "90.00" not in auto and "91.00" in auto  # softmax mean over seeds 0..2 is 91.00, hl's 92.00
    assert "92.00" in auto
    assert "NaN at epoch 2" in auto and "stopped after 3 epochs" in auto
    other = make_tables([tmp_path], "pod_table4", tmp_path / "b", hparams=False, curves=False)["markdown"].read_text()
    # not launched through an experiment, and no dataset recorded: pod_table4's column axis cannot place them
    assert other.count("has no value for 'dataset'") == 7


# ------------------------------------------------------------------ statistics (issue 20, item 2)

SOFTMAX = {0: 90.0, 1: 91.5, 2: 89.0}
POD = {0: 91.0, 1: 93.0, 2: 90.5}


def _stats_sweep(root: Path, pod_seeds=(0, 1, 2), progress="false") -> Path:
    for seed, acc in SOFTMAX.items():
        _fake_run(root, f"s{seed}", ["loss=softmax", f"seed={seed}", "trainer.progress=False"], test_acc=acc, seed=seed)
    for i, seed in enumerate(pod_seeds):
        acc = list(POD.values())[i]
        _fake_run(
            root, f"p{seed}", ["loss=pod", f"seed={seed}", f"trainer.progress={progress}"], test_acc=acc, seed=seed
        )
    return root


def _read_csv(path: Path) -> dict[str, dict[str, str]]:
    with path.open() as fh:
        return {r["row"]: r for r in csv.DictReader(fh)}


def test_confidence_intervals_and_paired_test_against_scipy(tmp_path):
    from scipy import stats

    sweep = _stats_sweep(tmp_path / "sweep")
    before = sorted(p.relative_to(sweep) for p in sweep.rglob("*"))
    written = make_tables([sweep], out=tmp_path / "out", reference="softmax", curves=True)
    assert sorted(p.relative_to(sweep) for p in sweep.rglob("*")) == before  # nothing written into the input
    assert (tmp_path / "out" / "tb_hparams").is_dir()
    table = _read_csv(written["csv"])
    assert set(table) == {"loss=softmax", "loss=pod"}  # trainer.progress False = false: not a grouping key
    pod = list(POD.values())
    half = stats.t.ppf(0.975, 2) * stats.tstd(pod) / math.sqrt(3)
    row = table["loss=pod"]
    assert float(row["test_acc:ours_ci_low"]) == pytest.approx(sum(pod) / 3 - half)
    assert float(row["test_acc:ours_ci_high"]) == pytest.approx(sum(pod) / 3 + half)
    d = [POD[s] - SOFTMAX[s] for s in (0, 1, 2)]
    d_half = stats.t.ppf(0.975, 2) * stats.tstd(d) / math.sqrt(3)
    assert float(row["test_acc:vs_ref_diff"]) == pytest.approx(sum(d) / 3)
    assert float(row["test_acc:vs_ref_low"]) == pytest.approx(sum(d) / 3 - d_half)
    assert float(row["test_acc:vs_ref_high"]) == pytest.approx(sum(d) / 3 + d_half)
    p = stats.ttest_rel([POD[s] for s in (0, 1, 2)], [SOFTMAX[s] for s in (0, 1, 2)]).pvalue
    assert float(row["test_acc:vs_ref_p"]) == pytest.approx(p)
    assert row["test_acc:vs_ref_test"] == "paired"
    assert row["test_acc:vs_ref_significant"] == str(sum(d) / 3 - d_half > 0)
    assert table["loss=softmax"]["test_acc:vs_ref_diff"] == ""  # the reference row itself
    md = written["markdown"].read_text()
    assert "test_acc ours 95 % CI" in md and "test_acc Δ vs softmax" in md
    assert f"p={p:.3g}" in md and "paired t-test" in md


def test_unpaired_seeds_fall_back_to_welch(tmp_path):
    from scipy import stats

    sweep = _stats_sweep(tmp_path / "sweep", pod_seeds=(3, 4, 5))
    written = make_tables([sweep], out=tmp_path / "out", reference="softmax", hparams=False, curves=False)
    row = _read_csv(written["csv"])["loss=pod"]
    a, b = list(POD.values()), list(SOFTMAX.values())
    assert row["test_acc:vs_ref_test"] == "welch"
    assert float(row["test_acc:vs_ref_p"]) == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert float(row["test_acc:vs_ref_diff"]) == pytest.approx(sum(a) / 3 - sum(b) / 3)
    assert "(Welch, unpaired: no seed shared)" in written["markdown"].read_text()


def test_one_run_has_no_interval_and_by_chooses_the_keys(tmp_path):
    sweep = tmp_path / "sweep"
    _fake_run(sweep, "a", ["loss=softmax", "seed=0", "optimizer.lr=1.0"], test_acc=90.0, seed=0)
    _fake_run(sweep, "b", ["loss=softmax", "seed=1", "optimizer.lr=1"], test_acc=92.0, seed=1)
    _fake_run(sweep, "c", ["loss=pod", "seed=0", "optimizer.lr=0.5"], test_acc=91.0, seed=0)
    table = _read_csv(make_tables([sweep], out=tmp_path / "o1", hparams=False, curves=False)["csv"])
    assert set(table) == {"loss=softmax optimizer.lr=1", "loss=pod optimizer.lr=0.5"}  # 1.0 = 1
    assert table["loss=pod optimizer.lr=0.5"]["test_acc:ours_ci_low"] == ""  # n = 1: no CI
    table = _read_csv(make_tables([sweep], out=tmp_path / "o2", hparams=False, curves=False, by=["loss"])["csv"])
    assert set(table) == {"loss=softmax", "loss=pod"} and table["loss=softmax"]["test_acc:n"] == "2"
