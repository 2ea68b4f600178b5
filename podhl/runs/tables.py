"""``podhl-tables``: run folders → the papers' table layouts (Markdown + CSV), ours beside the paper's.

    podhl-tables outputs/multirun/<time> --table pod_table4          # → ./tables/<time>/pod_table4.{md,csv}
    podhl-tables sweepA sweepB --table hl_table6 --out docs/results   # several sweeps pooled
    podhl-tables outputs/multirun/<time> --reference softmax --claims # one row per setting, Δ vs softmax, verdicts

With ``--table``, a run's cell is the ``row``/``col`` its ``metrics.json`` names (written by the
experiment config's ``table`` node when the run started, so renaming folders never empties a
table); a run launched without an experiment config (no ``table`` in metrics.json) is placed by the
table's ``axes`` (paper_values.json: e.g. loss × dataset), its values read from its overrides, its
metrics.json names and its config, when at least one of its row/column is the paper's and it has
the setting the table holds fixed (``requires``). The seeds of a cell are aggregated: mean, best
(max), std (sample standard deviation, ddof = 1; missing for one run) and n. Rows/columns the paper
has come first, in its order; extra ones of ours follow. A cell without runs, or without a paper
value, is "—" (empty in the CSV), never 0. Δ = ours − paper. Every run found lands in a cell or in
the list of runs left out, with the reason (another table, failed, still running, does not fit).
Without ``--table`` runs are grouped by every override that differs between them (seed pooled); a
run lacking such a key shows it as "—".

Which number of a run a cell reads, and the protocol line of the header: :mod:`podhl.runs.protocol`.
Every cell also has a 95 % CI (Student t) and, with ``--reference LOSS``, the difference to that loss's
row with its CI and p-value (:mod:`podhl.runs.stats`); ``--claims`` adds a verdict on each ordering
the papers claim that the runs cover (:mod:`podhl.runs.claims`). ``--by key1,key2`` chooses the grouping
keys; override values are normalized first (``False`` = ``false``, ``1.0`` = ``1``).
Also: ``<out>/<table>_curves_<col>.png`` (test accuracy per epoch, mean line and min–max band over
seeds: POD Fig. 4 / HL Fig. 2) and TensorBoard HParams (``<out>/tb_hparams``). Nothing is written
into an input folder: the default ``<out>`` is ``./tables/<name of the first input folder>`` in the
current directory, refused when that lies inside an input.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from podhl.config import canonical
from podhl.runs.claims import check_claims, claims_csv_rows, render_claims
from podhl.runs.figures import plot_curves
from podhl.runs.protocol import cell_metric, protocol_lines
from podhl.runs.reader import ABSENT, Run, load_runs, varying_keys
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


def auto_spec(runs: Sequence[Run], metric_name: str | None = None, by: Sequence[str] | None = None) -> dict[str, Any]:
    """No paper table: one row per setting (the overrides that differ, seed pooled; or the keys ``by``), one
    column: the number each run's cell reads (``metric_name``, else :func:`podhl.runs.protocol.cell_metric`)."""
    keys = list(by) if by else varying_keys(runs)
    names = sorted({cell_metric(r, None, metric_name) for r in runs if r.status == "completed"}) or ["test_acc"]
    column = "/".join(names)
    return {
        "title": "runs grouped by " + (", ".join(keys) or "(nothing differs)"),
        "auto": True,
        "stats": ["mean", "best", "std"],
        "rows": {},
        "cols": {column: column},
        "values": {},
        "keys": keys,
        "resolve": bool(by),
    }


def axis_value(run: Run, keys: Sequence[str] | None) -> tuple[str | None, str | None]:
    """(value, None) of a table axis for a run (its keys' values joined by '/', as the experiment configs'
    ``table`` node writes them), or (None, the key the run has no value for)."""
    if not keys:
        return None, None
    parts = []
    for key in keys:
        value = run.lookup(key)
        if value is None:
            return None, key
        parts.append(canonical(value))
    return "/".join(parts), None


def place(run: Run, name: str | None, spec: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(row, col, None) for a run that belongs in the table, else (None, None, why it is left out)."""
    if run.status == "failed":
        return None, None, f"failed: {run.metrics.get('error') or 'no reason recorded'}"
    if name is None:
        return run.label(spec["keys"], resolve=spec.get("resolve", False)) or "all runs", next(iter(spec["cols"])), None
    tagged = run.metrics.get("table")
    if tagged == name:
        return str(run.metrics.get("row")), run.metrics.get("col"), None
    if tagged is not None:
        return None, None, f"belongs to table {tagged!r}, not {name!r}"
    return place_untagged(run, name, spec)


def place_untagged(run: Run, name: str, spec: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """A run not launched through an experiment config: placed by the table's axes (paper_values.json
    ``axes``) when it has the setting the table fixes (``requires``) and its row or column is the paper's."""
    axes = spec.get("axes") or {}
    if not axes:
        return None, None, f"not launched through an experiment config, and {name} has no axes to place it by"
    for key, wanted in (spec.get("requires") or {}).items():
        have = run.lookup(key)
        if have is None or canonical(have) != canonical(wanted):
            return None, None, f"{name} is {key}={wanted}; this run has {key}={have or ABSENT}"
    row, missing = axis_value(run, axes.get("row"))
    col, missing_col = axis_value(run, axes.get("col"))
    missing = missing or missing_col
    if missing:
        return (
            None,
            None,
            f"not launched through an experiment config, and has no value for {missing!r} ({name}'s axes)",
        )
    paper_row, paper_col = row in spec["rows"], axes.get("col") is not None and col in spec["cols"]
    if not (paper_row or paper_col):
        where = f"row {row!r}" + (f" and column {col!r}" if axes.get("col") else "")
        return None, None, f"{where} of this run: none is one of {name}'s"
    return row, col, None


CONTEXT = ("loss", "dataset", "backbone")  # a cell pooling runs that differ in one of these gets a warning


def build_table(
    runs: Sequence[Run],
    spec: dict[str, Any],
    name: str | None,
    metric_name: str | None = None,
    reference: str | None = None,
) -> dict[str, Any]:
    """Cells ``{(row, col): {"ours": aggregate, "paper": number | dict | None, "runs": [dirs],
    "seeded": [(seed, value)], "vs_ref": compare(...) | None}}``, order, runs left out, the runs placed,
    the header's protocol lines and warnings. ``metric_name``: the number a run-keyed cell reads (None:
    :func:`podhl.runs.protocol.cell_metric`)."""
    by_metric = bool(spec.get("cols_are_metrics"))
    table_spec = None if spec.get("auto") else spec
    rows, cols = list(spec["rows"]), list(spec["cols"])
    values: dict[tuple[str, str], list[tuple[str | None, float]]] = {}
    dirs: dict[tuple[str, str], list[str]] = {}
    left_out: list[tuple[str, str]] = []
    placed: list[Run] = []
    context: dict[tuple[str, str], dict[str, set[str]]] = {}
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
        placed.append(run)
        if by_metric:
            targets = [(c, run.metric(c)) for c in spec["cols"]]
        else:
            targets = [(str(col), run.metric(cell_metric(run, table_spec, metric_name)))]
        for c, value in targets:
            if c not in cols:
                cols.append(c)
            dirs.setdefault((row, c), []).append(str(run.dir))
            for key in CONTEXT:
                context.setdefault((row, c), {}).setdefault(key, set()).add(run.lookup(key) or ABSENT)
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
    warnings = [
        f"cell ({spec['rows'].get(r, r)}, {spec['cols'].get(c, c)}) pools runs with different {key}: "
        + ", ".join(sorted(seen))
        for (r, c), by_key in context.items()
        for key, seen in by_key.items()
        if len(seen) > 1
    ]
    return {
        "placed": placed,
        "protocol": metric_columns_protocol(placed) if by_metric else protocol_lines(placed, table_spec, metric_name),
        "warnings": warnings,
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


def metric_columns_protocol(runs: Sequence[Run]) -> list[str]:
    """Header lines of a table whose columns are metrics (read as named, from each run's metrics.json)."""
    lines = protocol_lines(runs, None, "the columns' metrics.json values")
    return [line.replace(" (chosen by --metric; ", " (") for line in lines]


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
    welch = f" (Welch, {vs['note']})" if vs["test"] == "welch" else f" ({vs['note']})" if vs.get("note") else ""
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
    notes = table.get("protocol", []) + [f"WARNING: {w}" for w in table.get("warnings", [])]
    lines = [f"**{table['title']}**", ""] + ([*(n + "  " for n in notes[:-1]), notes[-1], ""] if notes else [])
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
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
            "(paired t-test) when both hold the same seeds, each once; otherwise Welch's t-test on all runs of both "
            'rows, also when some seeds are shared (marked "(Welch, ...)" with how many); '
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
    """Test accuracy per epoch, one line per table row (mean over seeds, shaded min–max band over seeds),
    one PNG per column (POD Fig. 4 / HL Fig. 2)."""
    groups_by_col: dict[str, dict[str, list[Path]]] = {}
    for run in runs:
        row, col, why = place(run, None if name == "runs" else name, spec)
        if why is None:
            col = "all" if spec.get("cols_are_metrics") or spec.get("auto") else str(col)
            groups_by_col.setdefault(col, {}).setdefault(table["row_labels"].get(row, row), []).append(run.dir)
    written = []
    for col, groups in groups_by_col.items():
        label = table["col_labels"].get(col, col)
        written.append(
            plot_curves(groups, out_dir / f"{name}_curves_{col.replace('/', '_')}.png", title=f"{name}: {label}")
        )
    return written


def default_out(dirs: Sequence[str | Path]) -> Path:
    """``./tables/<name of the first input folder>`` in the current directory (our choice: beside where the
    command runs, never inside a sweep; a second sweep of the same name overwrites, as ``--out`` would)."""
    first = Path(dirs[0]).resolve()
    return Path.cwd() / "tables" / (first.name or "runs")


def inside_input(out_dir: Path, dirs: Sequence[str | Path]) -> Path | None:
    """The input folder ``out_dir`` lies in (or is), if any."""
    out_abs = out_dir.resolve()
    for d in dirs:
        d_abs = Path(d).resolve()
        if out_abs == d_abs or out_abs.is_relative_to(d_abs):
            return Path(d)
    return None


def make_tables(
    dirs: Sequence[str | Path],
    table: str | None = None,
    out: str | Path | None = None,
    metric_name: str | None = None,
    hparams: bool = True,
    curves: bool = True,
    reference: str | None = None,
    by: Sequence[str] | None = None,
    claims: bool = False,
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
    out_dir = Path(out) if out else default_out(dirs)
    holder = inside_input(out_dir, dirs)
    if holder is not None and out is None:
        raise SystemExit(
            f"podhl-tables: the default output folder {out_dir} lies inside the input {holder}; "
            "give --out a folder outside the inputs (nothing is written into an input folder)"
        )
    if holder is not None:
        print(f"[podhl-tables] warning: --out {out_dir} lies inside the input {holder}", file=sys.stderr)
    out_dir.mkdir(parents=True, exist_ok=True)
    built = build_table(runs, spec, table, metric_name, reference)
    md = render_markdown(built)
    written = {"markdown": out_dir / f"{name}.md", "csv": out_dir / f"{name}.csv"}
    if claims:
        md += "\n" + write_claims(built, spec, metric_name, out_dir, name, written)
    written["markdown"].write_text(md)
    write_csv(csv_rows(built), written["csv"])
    if hparams:
        written["hparams"] = log_hparams(runs, out_dir / "tb_hparams")  # never into an input folder
    if curves:
        for i, p in enumerate(write_curves(runs, built, name, spec, out_dir)):
            written[f"curves{i}"] = p
    print(md)
    return written


def write_claims(
    built: dict[str, Any], spec: dict[str, Any], metric_name: str | None, out_dir: Path, name: str, written: dict
) -> str:
    """Verdicts on the papers' claims over the runs the table placed: ``<out>/<name>_claims.{md,csv}``."""
    table_spec = None if spec.get("auto") else spec

    def value(run: Run, metric: str | None) -> float | None:
        return run.metric(metric or cell_metric(run, table_spec, metric_name))

    label = "/".join(sorted({cell_metric(r, table_spec, metric_name) for r in built["placed"]})) or "test_acc"
    results = check_claims(built["placed"], value)
    text = render_claims(results, label)
    written["claims"] = out_dir / f"{name}_claims.md"
    written["claims"].write_text(text)
    written["claims_csv"] = out_dir / f"{name}_claims.csv"
    write_csv(claims_csv_rows(results, label), written["claims_csv"])
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="podhl-tables",
        description="Run folders → the papers' table layouts (Markdown + CSV), beside the papers' numbers.",
        epilog="Examples: podhl-tables outputs/multirun/<stamp> (group by what differs between jobs); "
        "podhl-tables outputs/multirun/<stamp> --reference softmax --claims; "
        "podhl-tables sweeps/pod_table4 --table pod_table4; podhl-tables --list",
    )
    parser.add_argument("dirs", nargs="*", help="multirun (sweep) dirs or run dirs; several are pooled")
    parser.add_argument(
        "--table",
        default=None,
        help=f"paper table layout: {', '.join(paper_values())} (default: group by what differs)",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="output dir (default: ./tables/<name of the first dir>, in the current directory; never an input)",
    )
    parser.add_argument(
        "--metric",
        default=None,
        help="metrics.json value for the cells of a run-keyed table (default: best_test_acc, the test accuracy "
        "at the best-validation epoch, for runs with a validation split; for runs without one the paper "
        "authors' reading with --table (paper_values.json 'protocol'), else test_acc, the last epoch's)",
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
        "--claims",
        action="store_true",
        help="add a verdict (holds / not significant / reversed, with Δ, 95%% CI, p, n) on each ordering the "
        "papers claim that the runs cover (podhl/runs/paper_claims.yaml); also <out>/<name>_claims.{md,csv}",
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
        args.dirs,
        args.table,
        args.out,
        args.metric,
        not args.no_hparams,
        not args.no_curves,
        args.reference,
        by,
        args.claims,
    )
    for kind, path in written.items():
        print(f"[podhl-tables] {kind}: {path}")


if __name__ == "__main__":
    main()
