"""podhl-tables as a fair comparison (issue 20): protocol headers, claim verdicts, Welch on partial pairing,
placing runs outside experiments into a paper table, no writes into inputs, curve bands, and a real sweep."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from podhl.runs.claims import pairs, paper_claims, verdict
from podhl.runs.tables import make_tables, paper_values

REPO = Path(__file__).resolve().parent.parent


def fake_run(
    root: Path,
    name: str,
    overrides: list[str],
    history: list[dict] | None = None,
    config: str | None = None,
    **metrics,
) -> Path:
    """A finished run folder as podhl-train writes it: metrics.json (with the run's names), the Hydra
    overrides, history.csv (one row per epoch) and optionally .hydra/config.yaml."""
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if config is not None:
        (run / ".hydra" / "config.yaml").write_text(config)
    names = {k: v for k, v in (o.split("=", 1) for o in overrides) if k in ("loss", "dataset", "backbone")}
    seed = next((int(o.split("=")[1]) for o in overrides if o.startswith("seed=")), None)
    body = {"status": "completed", "completed": True, "primary_metric": "test_acc", "seed": seed, **names, **metrics}
    (run / "metrics.json").write_text(json.dumps(body))
    if history:
        cols = list(history[0])
        (run / "history.csv").write_text(
            ",".join(cols) + "\n" + "".join(",".join(str(r[c]) for c in cols) + "\n" for r in history)
        )
    return run


def read_csv(path: Path, key: str = "row") -> dict[str, dict[str, str]]:
    with path.open() as fh:
        return {r[key]: r for r in csv.DictReader(fh)}


def paired(a: list[float], b: list[float]) -> tuple[float, float, float, float]:
    """mean(d), CI low, CI high, p of the paired t-test, by hand (scipy for the t quantile and the test)."""
    from scipy import stats

    d = [x - y for x, y in zip(a, b, strict=True)]
    mean = sum(d) / len(d)
    half = stats.t.ppf(0.975, len(d) - 1) * stats.tstd(d) / math.sqrt(len(d))
    return mean, mean - half, mean + half, float(stats.ttest_rel(a, b).pvalue)


# ------------------------------------------------------------------ claims

# Fabricated digits accuracies per seed: POD clearly above NaC; NaC and Cosine within noise; Cosine clearly
# below softmax (the paper's Table 4 says above).
ACC = {
    "pod": [95.0, 96.0, 95.6],
    "nac": [93.0, 94.2, 93.5],
    "cosine": [93.4, 93.6, 93.9],
    "softmax": [95.1, 95.9, 95.8],
}


def claims_sweep(root: Path) -> Path:
    for loss, accs in ACC.items():
        for seed, acc in enumerate(accs):
            fake_run(root, f"{loss}{seed}", [f"loss={loss}", "dataset=digits", f"seed={seed}"], test_acc=acc)
    return root


def test_claim_verdicts_holds_not_significant_reversed(tmp_path):
    sweep = claims_sweep(tmp_path / "sweep")
    written = make_tables([sweep], out=tmp_path / "out", hparams=False, curves=False, claims=True)
    rows = {(r["id"], r["pair"]): r for r in csv.DictReader(written["claims_csv"].open())}
    chain = {pair: rows[("pod_table4_chain", pair)] for pair in ("pod > nac", "nac > cosine", "cosine > softmax")}
    for pair, row in chain.items():
        a, b = pair.split(" > ")
        diff, low, high, p = paired(ACC[a], ACC[b])
        assert float(row["diff"]) == pytest.approx(diff) and float(row["p"]) == pytest.approx(p)
        assert float(row["low"]) == pytest.approx(low) and float(row["high"]) == pytest.approx(high)
        assert row["test"] == "paired" and row["n"] == "3" and row["where"] == "dataset=digits"
        expected = "holds" if low > 0 else "reversed" if high < 0 else "not significant"
        assert row["verdict"] == expected
    assert [chain[p]["verdict"] for p in chain] == ["holds", "not significant", "reversed"]  # the data is built so
    assert rows[("pod_over_softmax", "pod > softmax")]["where"] == "dataset=digits backbone=—"
    assert not any(r["id"].startswith("hl_") for r in rows.values())  # no HL run: HL's claims are not covered
    assert not any(r["id"] == "pod_table5_variance" for r in rows.values())  # no run records the variance
    md = written["markdown"].read_text()
    assert "**reversed**" in md and "POD §4.2.2–4.2.3, Table 4" in md
    assert written["claims"].read_text() in md


def test_claim_verdict_sides_and_lower_is_better(tmp_path):
    assert verdict({"low": 0.1, "high": 2.0}) == "holds" and verdict({"low": -2.0, "high": -0.1}) == "reversed"
    assert verdict({"low": -0.1, "high": 2.0}) == "not significant" and verdict(None) == "too few runs"
    assert verdict({"low": -2.0, "high": -0.1}, "lower") == "holds"  # A − B below 0: A lower, as claimed
    assert pairs({"order": ["a", "b", "c"]}) == [("a", "b"), ("b", "c")]
    assert pairs({"first": "hl", "over": ["x", "y"]}) == [("hl", "x"), ("hl", "y")]
    variance = {"pod": [1.5e-8, 1.6e-8, 1.4e-8], "nac": [1.8e-8, 1.9e-8, 1.85e-8]}
    for loss, values in variance.items():
        for seed, v in enumerate(values):
            fake_run(
                tmp_path / "s",
                f"{loss}{seed}",
                [f"loss={loss}", "dataset=cifar10", f"seed={seed}"],
                test_acc=90.0,
                analysis={"feature_variance": {"energy_variance": v}},
            )
    written = make_tables([tmp_path / "s"], out=tmp_path / "o", hparams=False, curves=False, claims=True)
    rows = {(r["id"], r["pair"]): r for r in csv.DictReader(written["claims_csv"].open())}
    row = rows[("pod_table5_variance", "pod < nac")]
    diff, low, high, _ = paired(variance["pod"], variance["nac"])
    assert float(row["diff"]) == pytest.approx(diff) and high < 0 and row["verdict"] == "holds"


def test_claims_per_dataset_and_backbone_and_the_papers_own_exception(tmp_path):
    """POD > softmax is checked per dataset and backbone present; Table 8's ImageNet(1000) transformer cells,
    where the paper itself reports POD below softmax, are not claimed."""
    for loss, base in (("pod", 90.0), ("softmax", 89.0)):
        for seed in range(2):
            for ds, bb in (("digits", "small_cnn"), ("imagenet1000", "swin_b"), ("mnist", "small_cnn")):
                fake_run(
                    tmp_path / "s",
                    f"{loss}{seed}{ds}",
                    [f"loss={loss}", f"dataset={ds}", f"backbone={bb}", f"seed={seed}"],
                    test_acc=base + seed + (0.5 if ds == "mnist" else 0),
                )
    written = make_tables([tmp_path / "s"], out=tmp_path / "o", hparams=False, curves=False, claims=True)
    wheres = [r["where"] for r in csv.DictReader(written["claims_csv"].open()) if r["id"] == "pod_over_softmax"]
    assert sorted(wheres) == ["dataset=digits backbone=small_cnn", "dataset=mnist backbone=small_cnn"]


def test_a_loss_with_two_settings_is_not_pooled_into_a_claim(tmp_path):
    for seed in range(2):
        fake_run(tmp_path / "s", f"s{seed}", ["loss=softmax", f"seed={seed}"], test_acc=90.0 + seed)
        for lam in ("0.1", "1"):
            fake_run(tmp_path / "s", f"p{lam}{seed}", ["loss=pod", f"loss.lam={lam}", f"seed={seed}"], test_acc=91.0)
    written = make_tables([tmp_path / "s"], out=tmp_path / "o", hparams=False, curves=False, claims=True)
    row = next(r for r in csv.DictReader(written["claims_csv"].open()) if r["pair"] == "pod > softmax")
    assert row["verdict"] == "ambiguous" and row["diff"] == ""


def test_paper_claims_file_names_real_losses_and_cites_the_papers():
    losses = {p.stem for p in (REPO / "podhl" / "conf" / "loss").glob("*.yaml")}
    claims = paper_claims()
    assert len({c["id"] for c in claims}) == len(claims) >= 6
    for c in claims:
        names = {x for pair in pairs(c) for x in pair}
        assert names <= losses, (c["id"], names - losses)
        assert c["source"].startswith(("POD §", "HL §")) and "Table" in c["source"] and c["quote"]
        assert c.get("better", "higher") in ("higher", "lower")
    ids = {c["id"] for c in claims}
    assert {"pod_table4_chain", "pod_over_softmax", "pod_table5_variance", "hl_table6_over_all"} <= ids
    t4 = next(c for c in claims if c["id"] == "pod_table4_chain")
    assert t4["order"] == ["pod", "nac", "cosine", "softmax"]
    # each "HL > every baseline" claim lists the rows of its paper table but HL (HL Table VII's LFW: MagFace first)
    for cid, table in (("hl_table6_over_all", "hl_table6"), ("hl_table8_9_detection", "hl_table8")):
        over = next(c for c in claims if c["id"] == cid)["over"]
        assert set(over) == set(paper_values()[table]["rows"]) - {"hl"}


# ------------------------------------------------------------------ Welch on partial pairing, degenerate pairs


def test_equal_differences_give_a_zero_width_interval_and_say_so():
    from podhl.runs.stats import compare

    vs = compare([(0, 91.0), (1, 92.5), (2, 90.0)], [(0, 90.0), (1, 91.5), (2, 89.0)])
    assert (vs["diff"], vs["low"], vs["high"], vs["p"]) == (1.0, 1.0, 1.0, 0.0)
    assert vs["note"] == "all 3 differences equal" and verdict(vs) == "holds"
    # 0.1 + 0.2 − 0.3 is float rounding, not a difference: equal runs, p = 1, CI [0, 0]
    vs = compare([(0, 0.1 + 0.2), (1, 0.6)], [(0, 0.3), (1, 0.6)])
    assert (vs["diff"], vs["low"], vs["high"], vs["p"]) == (0.0, 0.0, 0.0, 1.0) and verdict(vs) == "not significant"


def test_partial_pairing_uses_welch_on_all_runs_and_says_so(tmp_path):
    from scipy import stats

    soft = {0: 90.0, 1: 91.5, 2: 89.0}
    pod = {1: 93.0, 2: 90.5, 3: 92.0}  # seeds 1 and 2 shared, 0 and 3 not
    for s, a in soft.items():
        fake_run(tmp_path / "s", f"s{s}", ["loss=softmax", f"seed={s}"], test_acc=a)
    for s, a in pod.items():
        fake_run(tmp_path / "s", f"p{s}", ["loss=pod", f"seed={s}"], test_acc=a)
    written = make_tables([tmp_path / "s"], out=tmp_path / "o", reference="softmax", hparams=False, curves=False)
    row = read_csv(written["csv"])["loss=pod"]
    a, b = list(pod.values()), list(soft.values())
    assert row["test_acc:vs_ref_test"] == "welch"
    assert float(row["test_acc:vs_ref_p"]) == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    va, vb = stats.tvar(a) / 3, stats.tvar(b) / 3
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert float(row["test_acc:vs_ref_low"]) == pytest.approx(sum(a) / 3 - sum(b) / 3 - half)
    assert "(Welch, unpaired: 2 of 4 seeds shared)" in written["markdown"].read_text()


# ------------------------------------------------------------------ --table for runs outside experiments

HL_CONFIG = "loss:\n  lam: 0.002\n  beta: 0.1\n"


def test_table_places_runs_not_launched_through_an_experiment(tmp_path):
    sweep = tmp_path / "s"
    for seed in range(2):
        fake_run(sweep, f"pc{seed}", ["loss=pod", "dataset=cifar10", f"seed={seed}"], test_acc=94.0 + seed)
        fake_run(sweep, f"sd{seed}", ["loss=softmax", "dataset=digits", f"seed={seed}"], test_acc=97.0 + seed)
        fake_run(sweep, f"hl{seed}", ["loss=hl", "dataset=mnist", f"seed={seed}"], test_acc=99.0)  # not a row
    fake_run(sweep, "tagged", ["loss=pod", "seed=0"], test_acc=50.0, table="hl_table6", row="pod", col="cifar10")
    written = make_tables([sweep], "pod_table4", tmp_path / "o", hparams=False, curves=False)
    table = read_csv(written["csv"])
    assert float(table["pod"]["cifar10:ours_mean"]) == 94.5 and table["pod"]["cifar10:n"] == "2"
    assert float(table["softmax"]["digits:ours_mean"]) == 97.5  # a paper row, our own column
    md = written["markdown"].read_text()
    assert "belongs to table 'hl_table6', not 'pod_table4'" in md
    assert md.count("row 'hl' and column 'mnist' of this run: none is one of pod_table4's") == 2

    # HL Table II: rows dataset/loss.lam, columns loss.beta, read from the run's config; only loss=hl
    hl2 = tmp_path / "hl2"
    for seed in range(2):
        fake_run(
            hl2,
            f"h{seed}",
            ["loss=hl", "dataset=cifar10", f"seed={seed}"],
            config=HL_CONFIG,
            test_acc=95.0,
            best_test_acc=95.5 + seed,
        )
    fake_run(hl2, "soft", ["loss=softmax", "dataset=cifar10", "seed=0"], config=HL_CONFIG, best_test_acc=90.0)
    written = make_tables([hl2], "hl_table2", tmp_path / "o2", hparams=False, curves=False)
    table = read_csv(written["csv"])
    assert float(table["cifar10/0.002"]["0.1:ours_mean"]) == 96.0  # the best epochs' (the authors' reading)
    assert "hl_table2 is loss=hl; this run has loss=softmax" in written["markdown"].read_text()


def test_paper_table_axes_are_the_experiment_configs_table_keys():
    import yaml

    seen = set()
    for path in (REPO / "podhl" / "conf" / "experiment").glob("*.yaml"):
        node = (yaml.safe_load(path.read_text()) or {}).get("table")
        if node:
            spec = paper_values()[node["name"]]
            axes = spec["axes"]
            if node.get("row") == ["table.label"]:  # a variant placed in one paper row (e.g. hl_table8_official)
                assert str(node["label"]) in spec["rows"] and axes.get("col") == node.get("col"), path.name
            else:
                assert axes.get("row") == node.get("row") and axes.get("col") == node.get("col"), path.name
            seen.add(node["name"])
    assert seen == set(paper_values())


# ------------------------------------------------------------------ protocol in the header

SPLIT = {"val_fraction": 0.1, "split_seed": 0, "stratified": True, "val_indices_sha256": "3f2a" + "0" * 60}


def test_protocol_header_validated_authors_and_mixed(tmp_path):
    validated = tmp_path / "v"
    for seed in range(2):
        fake_run(
            validated,
            f"s{seed}",
            ["loss=softmax", f"seed={seed}"],
            test_acc=80.0,
            best_test_acc=85.0 + seed,
            split=SPLIT,
            selected_by="val_acc",
        )
    md = make_tables([validated], out=tmp_path / "o1", hparams=False, curves=False)["markdown"].read_text()
    assert "protocol: validated (val_fraction=0.1, split 3f2a…, selected by val_acc)" in md
    assert "85.50" in md and "WARNING" not in md  # best_test_acc: test accuracy at the best-validation epoch

    # HL Table VI without a split: the authors' best test accuracy over epochs, with the script and commit
    hl = tmp_path / "h"
    for seed in range(2):
        fake_run(
            hl,
            f"h{seed}",
            ["loss=hl", f"seed={seed}"],
            test_acc=94.0,
            best_test_acc=95.0,
            table="hl_table6",
            row="hl",
            col="cifar10",
        )
    md = make_tables([hl], "hl_table6", tmp_path / "o2", hparams=False, curves=False)["markdown"].read_text()
    spec = paper_values()["hl_table6"]["protocol"]
    assert spec["metric"] == "best_test_acc" and "Cifar10_HL_main.py@87301dfd" in spec["source"]
    assert f"protocol: authors' (best test accuracy over epochs, {spec['source']}); cells: best_test_acc" in md
    assert paper_values()["pod_table4"]["protocol"]["metric"] == "test_acc"  # POD train.py: the last epoch

    # a split, but the epoch chosen on test (trainer.select=test): its best_test_acc is test-selected, so the
    # cell reads the last epoch, and the header says the split was not used to select
    chosen_on_test = tmp_path / "t"
    for seed in range(2):
        fake_run(
            chosen_on_test,
            f"s{seed}",
            ["loss=softmax", f"seed={seed}"],
            test_acc=81.0,
            best_test_acc=99.0,
            split=SPLIT,
            selected_by="test_acc",
        )
    md = make_tables([chosen_on_test], out=tmp_path / "o4", hparams=False, curves=False)["markdown"].read_text()
    assert "split held out but not used to select (val_fraction=0.1, split 3f2a…, selected by test_acc)" in md
    assert "81.00" in md and "99.00" not in md

    # a split run pooled with a run without one: the table says it mixes protocols
    fake_run(validated, "nosplit", ["loss=softmax", "seed=2"], test_acc=70.0)
    md = make_tables([validated], out=tmp_path / "o3", hparams=False, curves=False)["markdown"].read_text()
    assert "WARNING: this table mixes protocols" in md and "protocol (2 runs): validated" in md


# ------------------------------------------------------------------ nothing written into inputs


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    } | {str(p.relative_to(root)) + "/": (0, p.stat().st_mtime_ns, "") for p in root.rglob("*") if p.is_dir()}


def test_nothing_is_written_into_the_input_folders(tmp_path, monkeypatch):
    sweep = claims_sweep(tmp_path / "sweep")
    for run in sweep.iterdir():
        (run / "history.csv").write_text("epoch,test_acc\n1,50\n2,60\n")
    before = snapshot(sweep)
    monkeypatch.chdir(tmp_path)
    written = make_tables([sweep], reference="softmax", claims=True)  # default --out, curves and HParams on
    assert snapshot(sweep) == before  # same files, sizes, mtimes and bytes; no new file or folder
    out = tmp_path / "tables" / "sweep"  # the default: ./tables/<name of the first input>
    assert {p.parent for p in written.values()} == {out}
    assert {"runs.md", "runs.csv", "runs_claims.md", "runs_claims.csv", "runs_curves_all.png", "tb_hparams"} <= {
        p.name for p in out.iterdir()
    }
    assert list((out / "tb_hparams").rglob("events.out.tfevents*"))
    monkeypatch.chdir(sweep)  # the default output would lie inside the input: refused
    with pytest.raises(SystemExit, match="lies inside the input"):
        make_tables(["."], hparams=False)
    assert snapshot(sweep) == before


# ------------------------------------------------------------------ curves: mean line and min–max band


def test_curves_get_the_mean_and_min_max_over_seeds(tmp_path, monkeypatch):
    from podhl.runs import figures

    per_seed = [[50.0, 70.0, 80.0], [54.0, 66.0, 83.0], [52.0, 71.0, 86.0]]
    for seed, accs in enumerate(per_seed):
        fake_run(
            tmp_path / "s",
            f"p{seed}",
            ["loss=pod", f"seed={seed}"],
            test_acc=accs[-1],
            history=[{"epoch": e + 1, "test_acc": a} for e, a in enumerate(accs)],
        )
        fake_run(
            tmp_path / "s",
            f"s{seed}",
            ["loss=softmax", f"seed={seed}"],
            test_acc=60.0,
            history=[{"epoch": 1, "test_acc": 60.0}],
        )
    seen = {}
    draw = figures.draw_curves
    monkeypatch.setattr(figures, "draw_curves", lambda series, *a, **k: seen.update(series) or draw(series, *a, **k))
    written = make_tables([tmp_path / "s"], out=tmp_path / "o", hparams=False)
    band = seen["loss=pod"]
    by_epoch = list(zip(*per_seed, strict=True))
    assert band["epochs"].tolist() == [1, 2, 3] and band["n"].tolist() == [3, 3, 3]
    assert band["low"].tolist() == [min(e) for e in by_epoch] and band["high"].tolist() == [max(e) for e in by_epoch]
    assert band["mean"].tolist() == pytest.approx([sum(e) / 3 for e in by_epoch])
    assert seen["loss=softmax"]["low"].tolist() == [60.0]
    assert written["curves0"].name == "runs_curves_all.png" and written["curves0"].stat().st_size > 0


# ------------------------------------------------------------------ a real sweep, end to end


def test_digits_sweep_table_shows_ci_reference_p_protocol_and_claims(run_cli, tmp_path):
    """2 losses × 3 seeds on digits (2 epochs of 2 batches), then podhl-tables --reference softmax --claims."""
    sweep = tmp_path / "sweep"
    run_cli(
        "loss=softmax,pod",
        "seed=0,1,2",
        "schedule.epochs=2",
        "trainer.limit_train_batches=2",
        "trainer.save_checkpoints=false",
        multirun=True,
        run_dir=sweep,
    )
    assert len(list(sweep.glob("*/metrics.json"))) == 6
    out = tmp_path / "tables"
    args = [sys.executable, "-m", "podhl.runs.tables", str(sweep), "--reference", "softmax", "--claims"]
    proc = subprocess.run([*args, "--out", str(out), "--no-hparams"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (out / "runs.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| row |"))
    metric = header.split(" | ")[1].removesuffix(" ours mean")  # test_acc, or best_test_acc with a split
    assert f"{metric} ours 95 % CI" in header and f"{metric} Δ vs softmax" in header
    assert any(line.startswith("protocol: ") for line in md.splitlines())
    pod = next(line for line in md.splitlines() if line.startswith("| loss=pod "))
    assert "p=" in pod and ("paired" in md)
    table = read_csv(out / "runs.csv")
    assert table["loss=pod"][f"{metric}:n"] == "3" and table["loss=pod"][f"{metric}:vs_ref_test"] == "paired"
    claims = list(csv.DictReader((out / "runs_claims.csv").open()))
    assert [(c["id"], c["pair"], c["where"]) for c in claims] == [
        ("pod_over_softmax", "pod > softmax", "dataset=digits backbone=small_cnn")
    ]
    assert claims[0]["verdict"] in ("holds", "not significant", "reversed") and claims[0]["n"] == "3"
    assert "**Claims of the papers**" in proc.stdout
