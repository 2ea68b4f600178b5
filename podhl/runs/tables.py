"""``podhl-tables``: run folders → the papers' table layouts (Markdown + CSV), ours beside the paper's.

    podhl-tables outputs/multirun/<time> --table pod_table4          # → <sweep>/tables/pod_table4.{md,csv}
    podhl-tables sweepA sweepB --table hl_table6 --out docs/results   # several sweeps pooled
    podhl-tables outputs/multirun/<time>                              # no --table: one row per setting

With ``--table``, a run's cell is the ``row``/``col`` its ``metrics.json`` names (written by the
experiment config's ``table`` node when the run started, so renaming folders never empties a
table); the seeds of a cell are aggregated: mean, best (max), std (sample standard deviation,
ddof = 1; missing for one run) and n. Rows/columns the paper has come first, in its order; extra
ones of ours follow. A cell without runs, or without a paper value, is "—" (empty in the CSV),
never 0. Δ = ours − paper. Every run found lands in a cell or in the list of runs left out, with
the reason (another table, failed, still running). Without ``--table`` runs are grouped by every
override that differs between them (seed pooled); a run lacking such a key shows it as "—".
Also: ``<out>/<table>_curves_<col>.png`` (test accuracy per epoch, mean over seeds: POD Fig. 4 /
HL Fig. 2) and TensorBoard HParams (``<out>/tb_hparams``); nothing is written into an input folder
other than the default ``<first dir>/tables``. Every cell also has a 95 % CI (Student t) and, with
``--reference LOSS``, the difference to that loss's row with its CI and p-value
(:mod:`podhl.runs.stats`). ``--by key1,key2`` chooses the grouping keys; override values are
normalized first (``False`` = ``false``, ``1.0`` = ``1``).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from podhl.runs.figures import plot_curves
from podhl.runs.reader import Run, load_runs, varying_keys
from podhl.runs.stats import compare, mean_ci

PAPER_VALUES = Path(__file__).with_name("paper_values.json")
MISSING = "—"


@lru_cache(maxsize=1)
def paper_values() -> dict[str, Any]:
    data = json.loads(PAPER_VALUES.read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}


def aggregate(values: Sequence[float]) -> dict[str, float | int | None]:
    if not values:
        return {"mean": None, "best": None, "std": None, "n": 0, "ci_low": None, "ci_high": None}
    ci = mean_ci(values)
    return {
        "mean": statistics.fmean(values),
        "best": max(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "n": len(values),
        "ci_low": None if ci is None else ci[0],
        "ci_high": None if ci is None else ci[1],
    }


def auto_spec(runs: Sequence[Run], metric_name: str, by: Sequence[str] | None = None) -> dict[str, Any]:
    """No paper table: one row per setting (the overrides that differ, seed pooled; or the keys ``by``)."""
    keys = list(by) if by else varying_keys(runs)
    return {
        "title": "runs grouped by " + (", ".join(keys) or "(nothing differs)"),
        "cols_are_metrics": True,
        "stats": ["mean", "best", "std"],
        "rows": {},
        "cols": {metric_name: metric_name},
        "values": {},
        "keys": keys,
        "resolve": bool(by),
    }


def place(run: Run, name: str | None, spec: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(row, col, None) for a run that belongs in the table, else (None, None, why it is left out)."""
    if run.status == "failed":
        return None, None, f"failed: {run.metrics.get('error') or 'no reason recorded'}"
    if name is None:
        return run.label(spec["keys"], resolve=spec.get("resolve", False)) or "all runs", None, None
    if run.metrics.get("table") != name:
        return None, None, f"belongs to table {run.metrics.get('table')!r}, not {name!r}"
    return str(run.metrics.get("row")), run.metrics.get("col"), None


def build_table(
    runs: Sequence[Run],
    spec: dict[str, Any],
    name: str | None,
    metric_name: str = "test_acc",
    reference: str | None = None,
) -> dict[str, Any]:
    """Cells ``{(row, col): {"ours": aggregate, "paper": number | dict | None, "runs": [dirs],
    "seeded": [(seed, value)], "vs_ref": compare(...) | None}}``, order, runs left out."""
    by_metric = bool(spec.get("cols_are_metrics"))
    rows, cols = list(spec["rows"]), list(spec["cols"])
    values: dict[tuple[str, str], list[tuple[str | None, float]]] = {}
    dirs: dict[tuple[str, str], list[str]] = {}
    left_out: list[tuple[str, str]] = []
    for run in runs:
        row, col, why = place(run, name, spec)
        if why is not None:
            left_out.append((str(run.dir), why))
            continue
        if run.status != "completed":
            epochs = run.metrics.get("epochs") or 0
            done = f"after {epochs} epoch{'s' if epochs > 1 else ''}" if epochs else "before finishing an epoch"
            left_out.append((str(run.dir), f"{run.status} {done}: not final"))
            continue
        if row not in rows:
            rows.append(row)
        targets = [(c, run.metric(c)) for c in spec["cols"]] if by_metric else [(str(col), run.metric(metric_name))]
        for c, value in targets:
            if c not in cols:
                cols.append(c)
            dirs.setdefault((row, c), []).append(str(run.dir))
            if value is not None:
                values.setdefault((row, c), []).append((run.seed, value))
    cells = {
        (r, c): {
            "ours": aggregate([v for _, v in values.get((r, c), [])]),
            "seeded": values.get((r, c), []),
            "paper": spec["values"].get(r, {}).get(c),
            "runs": dirs.get((r, c), []),
        }
        for r in rows
        for c in cols
    }
    for r in rows:
        ref = reference_row(r, reference, rows)
        for c in cols:
            vs = None if ref is None or ref == r else compare(cells[(r, c)]["seeded"], cells[(ref, c)]["seeded"])
            cells[(r, c)]["vs_ref"] = vs
    return {
        "reference": reference,
        "rows": rows,
        "cols": cols,
        "cells": cells,
        "stats": list(spec.get("stats", ["mean"])),
        "left_out": left_out,
        "row_labels": spec["rows"],
        "col_labels": spec["cols"],
        "title": spec.get("title", ""),
    }


def reference_row(row: str, reference: str | None, rows: Sequence[str]) -> str | None:
    """The row ``row`` is compared with: ``reference`` itself when it is a row (a paper table's loss
    row), else ``row`` with its ``loss=`` replaced by ``loss=<reference>`` (other keys kept)."""
    if reference is None:
        return None
    if reference in rows:
        return reference
    parts = row.split(" ")
    if not any(p.startswith("loss=") for p in parts):
        return None
    ref = " ".join(f"loss={reference}" if p.startswith("loss=") else p for p in parts)
    return ref if ref in rows else None


def _ci(low: float | None, high: float | None, digits: int) -> str:
    return MISSING if low is None or high is None else f"[{low:.{digits}f}, {high:.{digits}f}]"


def _vs(vs: dict[str, Any] | None, digits: int) -> str:
    if vs is None:
        return MISSING
    mark = " *" if vs["significant"] else ""
    welch = " (Welch)" if vs["test"] == "welch" else ""
    return f"{vs['diff']:+.{digits}f} {_ci(vs['low'], vs['high'], digits)} p={vs['p']:.3g}{welch}{mark}"


def _paper_stat(paper: Any, stat: str) -> float | None:
    if isinstance(paper, dict):
        return None if paper.get(stat) is None else float(paper[stat])
    return None if paper is None or stat != "mean" else float(paper)


def _num(v: float | None, digits: int) -> str:
    if v is None:
        return MISSING
    return f"{v:.3g}" if v != 0 and abs(v) < 1e-3 else f"{v:.{digits}f}"


def render_markdown(table: dict[str, Any], digits: int = 2) -> str:
    stats = table["stats"]
    with_paper = any(cell["paper"] is not None for cell in table["cells"].values())
    header = ["row"]
    for c in table["cols"]:
        label = table["col_labels"].get(c, c)
        for s in stats:
            header.append(f"{label} ours {s}" if len(stats) > 1 else f"{label} ours")
            if with_paper:
                header.append(f"{label} paper {s}" if len(stats) > 1 else f"{label} paper")
        header += [f"{label} n"] + ([f"{label} Δ mean"] if with_paper else [])
        header += ([] if "std" in stats else [f"{label} ours std"]) + [f"{label} ours 95 % CI"]
        header += [f"{label} Δ vs {table['reference']}"] if table.get("reference") else []
    lines = [f"**{table['title']}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in table["rows"]:
        cells = [table["row_labels"].get(r, r)]
        for c in table["cols"]:
            cell = table["cells"][(r, c)]
            ours = cell["ours"]
            for s in stats:
                cells.append(_num(ours[s], 4 if s == "std" else digits))
                if with_paper:
                    cells.append(_num(_paper_stat(cell["paper"], s), 4 if s == "std" else digits))
            cells.append(str(ours["n"]) if ours["n"] else MISSING)
            if with_paper:
                pm = _paper_stat(cell["paper"], "mean")
                cells.append(MISSING if ours["mean"] is None or pm is None else f"{ours['mean'] - pm:+.{digits}f}")
            cells += [] if "std" in stats else [_num(ours["std"], 4)]
            cells.append(_ci(ours["ci_low"], ours["ci_high"], digits))
            if table.get("reference"):
                cells.append(_vs(cell.get("vs_ref"), digits))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "95 % CI: Student t over seeds, mean ± t(0.975, n − 1)·std/√n (none for n = 1)."]
    if table.get("reference"):
        lines += [
            f"Δ vs {table['reference']}: this row minus the {table['reference']} row, same column, paired by seed "
            '(paired t-test) when both hold the same seeds, else Welch\'s t-test (marked "(Welch)"); '
            "[95 % CI], p-value; * = the CI excludes 0."
        ]
    if table["left_out"]:
        lines += ["", f"Runs left out ({len(table['left_out'])}):", ""]
        lines += [f"- `{d}`: {why}" for d, why in table["left_out"]]
    return "\n".join(lines) + "\n"


def csv_rows(table: dict[str, Any]) -> list[dict[str, Any]]:
    """Wide layout: one row per table row;
    per column ``<col>:ours_mean|ours_best|ours_std|n|paper_<stat>|diff_mean``."""
    out = []
    for r in table["rows"]:
        row: dict[str, Any] = {"row": r, "label": table["row_labels"].get(r, r)}
        for c in table["cols"]:
            cell = table["cells"][(r, c)]
            for s in ("mean", "best", "std"):
                row[f"{c}:ours_{s}"] = "" if cell["ours"][s] is None else cell["ours"][s]
            row[f"{c}:n"] = cell["ours"]["n"]
            for s in ("ci_low", "ci_high"):
                row[f"{c}:ours_{s}"] = "" if cell["ours"][s] is None else cell["ours"][s]
            if table.get("reference"):
                vs = cell.get("vs_ref") or {}
                for s in ("diff", "low", "high", "p", "test", "significant"):
                    row[f"{c}:vs_ref_{s}"] = vs.get(s, "")
            for s in table["stats"]:
                p = _paper_stat(cell["paper"], s)
                row[f"{c}:paper_{s}"] = "" if p is None else p
            pm = _paper_stat(cell["paper"], "mean")
            row[f"{c}:diff_mean"] = "" if cell["ours"]["mean"] is None or pm is None else cell["ours"]["mean"] - pm
        out.append(row)
    return out


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)


def log_hparams(runs: Sequence[Run], log_dir: Path) -> Path:
    """One HParams entry per job (its varying overrides + seed) with its metrics."""
    from torch.utils.tensorboard import SummaryWriter

    keys = varying_keys(runs, exclude=()) or (list(runs[0].overrides) if runs else [])
    writer = SummaryWriter(log_dir=str(log_dir))
    for run in runs:
        hparams = {k: _hparam(run.overrides.get(k)) for k in keys}
        primary = str(run.metrics.get("primary_metric") or "test_acc")
        names = (primary, f"best_{primary}", "train_time_s")
        metrics = {f"hparam/{m}": v for m in names if (v := run.metric(m)) is not None}
        writer.add_hparams(hparams, metrics, run_name=run.dir.name)
    writer.close()
    return Path(log_dir)


def _hparam(v: str | None) -> Any:
    try:
        return MISSING if v is None else float(v)
    except ValueError:
        return v


def write_curves(
    runs: Sequence[Run], table: dict[str, Any], name: str, spec: dict[str, Any], out_dir: Path
) -> list[Path]:
    """Test accuracy per epoch, one line per table row (mean over seeds), one PNG per column
    (POD Fig. 4 / HL Fig. 2)."""
    groups_by_col: dict[str, dict[str, list[Path]]] = {}
    for run in runs:
        row, col, why = place(run, None if name == "runs" else name, spec)
        if why is None:
            col = "all" if spec.get("cols_are_metrics") else str(col)
            groups_by_col.setdefault(col, {}).setdefault(table["row_labels"].get(row, row), []).append(run.dir)
    written = []
    for col, groups in groups_by_col.items():
        label = table["col_labels"].get(col, col)
        written.append(
            plot_curves(groups, out_dir / f"{name}_curves_{col.replace('/', '_')}.png", title=f"{name}: {label}")
        )
    return written


def make_tables(
    dirs: Sequence[str | Path],
    table: str | None = None,
    out: str | Path | None = None,
    metric_name: str = "test_acc",
    hparams: bool = True,
    curves: bool = True,
    reference: str | None = None,
    by: Sequence[str] | None = None,
) -> dict[str, Path]:
    runs = load_runs(dirs)
    if not runs:
        raise SystemExit(f"podhl-tables: no metrics.json under {', '.join(map(str, dirs))}")
    if table:
        if table not in paper_values():
            raise SystemExit(f"podhl-tables: unknown table '{table}'; known: {', '.join(paper_values())}")
        spec, name = paper_values()[table], table
    else:
        spec, name = auto_spec(runs, metric_name, by), "runs"
    out_dir = Path(out) if out else Path(dirs[0]) / "tables"
    out_dir.mkdir(parents=True, exist_ok=True)
    built = build_table(runs, spec, table, metric_name, reference)
    md = render_markdown(built)
    written = {"markdown": out_dir / f"{name}.md", "csv": out_dir / f"{name}.csv"}
    written["markdown"].write_text(md)
    write_csv(csv_rows(built), written["csv"])
    if hparams:
        written["hparams"] = log_hparams(runs, out_dir / "tb_hparams")  # never into an input folder
    if curves:
        for i, p in enumerate(write_curves(runs, built, name, spec, out_dir)):
            written[f"curves{i}"] = p
    print(md)
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="podhl-tables",
        description="Run folders → the papers' table layouts (Markdown + CSV), beside the papers' numbers.",
        epilog="Examples: podhl-tables outputs/multirun/<stamp> (group by what differs between jobs); "
        "podhl-tables sweeps/pod_table4 --table pod_table4; podhl-tables --list",
    )
    parser.add_argument("dirs", nargs="*", help="multirun (sweep) dirs or run dirs; several are pooled")
    parser.add_argument(
        "--table",
        default=None,
        help=f"paper table layout: {', '.join(paper_values())} (default: group by what differs)",
    )
    parser.add_argument("--out", default=None, help="output dir (default: <first dir>/tables)")
    parser.add_argument(
        "--metric",
        default="test_acc",
        help="metrics.json value for the cells of a run-keyed table (default test_acc: the last "
        "epoch's; best_test_acc: the best epoch's)",
    )
    parser.add_argument(
        "--no-hparams",
        action="store_true",
        help="skip TensorBoard add_hparams (<out>/tb_hparams, the HParams tab)",
    )
    parser.add_argument(
        "--reference",
        default=None,
        metavar="LOSS",
        help="add per row the difference to the LOSS row (same column; paired by seed, else Welch) with its "
        "95%% CI and t-test p-value; * marks a CI that excludes 0",
    )
    parser.add_argument(
        "--by",
        default=None,
        metavar="KEY1,KEY2",
        help="group runs by these keys (overrides, then metrics.json names, then config) instead of by every "
        "override that differs; no --table only",
    )
    parser.add_argument(
        "--no-curves", action="store_true", help="skip the accuracy-per-epoch PNGs (<name>_curves_<column>.png)"
    )
    parser.add_argument("--list", action="store_true", help="list the known tables and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        for k, v in paper_values().items():
            print(f"{k}: {v.get('title', '')}")
        return
    if not args.dirs:
        parser.error("give at least one multirun or run directory")
    by = [k.strip() for k in args.by.split(",") if k.strip()] if args.by else None
    written = make_tables(
        args.dirs, args.table, args.out, args.metric, not args.no_hparams, not args.no_curves, args.reference, by
    )
    for kind, path in written.items():
        print(f"[podhl-tables] {kind}: {path}")


if __name__ == "__main__":
    main()
