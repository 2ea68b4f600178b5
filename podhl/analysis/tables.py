"""``podhl-tables``: multirun directories → the papers' table layouts (Markdown + CSV), ours beside the paper's.

    podhl-tables outputs/multirun/<time> --table pod_table4          # → <sweep>/tables/pod_table4.{md,csv}
    podhl-tables sweepA sweepB --table hl_table6 --out docs/results   # several sweeps pooled
    podhl-tables outputs/multirun/<time>                              # no --table: one row per setting (all that differs but seed)

Runs are grouped into cells by the table's row/column keys (``paper_values.json``: a key is looked
up in the job's ``.hydra/overrides.yaml``, then the names in ``metrics.json``, then
``.hydra/config.yaml``); every run of a cell (the seeds) is aggregated: mean, best (max), std
(sample standard deviation, ddof = 1; missing for one run) and n. Rows/columns the paper has come
first, in the paper's order; extra ones of ours follow. A cell without runs, or without a paper
value, is shown as "—" in Markdown and left empty in the CSV — never 0. Δ = ours − paper.
Also: ``<out>/<table>_curves_<col>.png`` (test accuracy per epoch, mean over seeds: POD Fig. 4 /
HL Fig. 2) and TensorBoard HParams (``<sweep>/tb_hparams``; ``tensorboard --logdir <sweep>/tb_hparams``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

PAPER_VALUES = Path(__file__).with_name("paper_values.json")
MISSING = "—"


@lru_cache(maxsize=1)
def paper_values() -> dict[str, Any]:
    data = json.loads(PAPER_VALUES.read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}


# ------------------------------------------------------------------ reading runs


def _norm_key(key: str) -> str:
    return key.lstrip("+~")


def _read_overrides(run: Path) -> dict[str, str]:
    path = run / ".hydra" / "overrides.yaml"
    out: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.startswith("- ") and "=" in line:
                key, value = line[2:].strip().split("=", 1)
                out[_norm_key(key)] = value.strip("'\"")
    return out


def _dotted(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(obj, dict) and part in obj:
            obj = obj[part]
        else:
            return None
    return obj


def _run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if (p / "metrics.json").is_file():
            out.append(p)
            continue
        found = sorted({m.parent for m in p.rglob("metrics.json")}, key=lambda q: (len(str(q)), str(q)))
        if not found:
            raise SystemExit(f"podhl-tables: no metrics.json under {p}")
        out.extend(found)
    return out


def load_runs(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """One dict per job: ``dir``, ``overrides`` (key → value, leading '+' stripped), ``metrics``, ``config`` (lazy)."""
    runs = []
    for run in _run_dirs(paths):
        runs.append({"dir": run, "overrides": _read_overrides(run), "metrics": json.loads((run / "metrics.json").read_text()), "_config": None})
    return runs


def _config(run: dict[str, Any]) -> dict[str, Any]:
    if run["_config"] is None:
        path = run["dir"] / ".hydra" / "config.yaml"
        cfg: dict[str, Any] = {}
        if path.is_file():
            from omegaconf import OmegaConf

            cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=False)  # type: ignore[assignment]
        run["_config"] = cfg
    return run["_config"]


def _fmt_value(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def lookup(run: dict[str, Any], key: str) -> str | None:
    """A run's value for ``key``: its overrides, then metrics.json (names such as dataset/loss), then its config."""
    key = _norm_key(key)
    if key in run["overrides"]:
        return run["overrides"][key]
    if key in run["metrics"] and run["metrics"][key] is not None and not isinstance(run["metrics"][key], dict):
        return _fmt_value(run["metrics"][key])
    v = _dotted(_config(run), key)
    return None if v is None or isinstance(v, (dict, list)) else _fmt_value(v)


def axis_value(run: dict[str, Any], axis: Sequence[Sequence[str]]) -> str | None:
    """The run's label on an axis: parts joined by '/', each part the first alternative key it has."""
    parts = []
    for alternatives in axis:
        value = next((v for v in (lookup(run, k) for k in alternatives) if v is not None), None)
        if value is None:
            return None
        parts.append(_canon(value))
    return "/".join(parts)


def _canon(value: str) -> str:
    """'0.10' and '1e-1' and '0.1' name the same λ: numbers are written in their shortest float form."""
    try:
        f = float(value)
    except ValueError:
        return value
    if math.isfinite(f) and value.strip().lower() not in ("true", "false"):
        return str(int(f)) if f.is_integer() else repr(f)
    return value


def metric(run: dict[str, Any], name: str) -> float | None:
    if name == "train_time_h":
        v = run["metrics"].get("train_time_s")
        return None if v is None else float(v) / 3600.0
    v = _dotted(run["metrics"], name)
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def aggregate(values: Sequence[float]) -> dict[str, float | int | None]:
    if not values:
        return {"mean": None, "best": None, "std": None, "n": 0}
    return {
        "mean": statistics.fmean(values),
        "best": max(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "n": len(values),
    }


def varying_keys(runs: Sequence[dict[str, Any]], exclude: Iterable[str] = ("seed",)) -> list[str]:
    keys: list[str] = []
    for r in runs:
        for k in r["overrides"]:
            if k not in keys and k not in exclude and not k.startswith("hydra."):
                keys.append(k)
    return [k for k in keys if len({r["overrides"].get(k) for r in runs}) > 1]


def run_label(run: dict[str, Any], keys: Sequence[str] | None = None) -> str:
    keys = keys if keys is not None else [k for k in run["overrides"] if k != "seed" and not k.startswith("hydra.")]
    return " ".join(f"{k}={run['overrides'][k]}" for k in keys if k in run["overrides"])


# ------------------------------------------------------------------ building a table


def build_table(runs: Sequence[dict[str, Any]], spec: dict[str, Any], metric_name: str = "test_acc") -> dict[str, Any]:
    """Cells ``{(row, col): {"ours": aggregate, "paper": number | dict | None, "runs": [dirs]}}`` plus row/col order."""
    cols_are_metrics = bool(spec.get("cols_are_metrics"))
    paper_rows, paper_cols = list(spec["rows"]), list(spec["cols"])
    grouped: dict[tuple[str, str], list[float]] = {}
    dirs: dict[tuple[str, str], list[str]] = {}
    rows, cols = list(paper_rows), list(paper_cols)
    for run in runs:
        row = axis_value(run, spec["row_axis"])
        if row is None:
            continue
        targets = [(c, metric(run, c)) for c in paper_cols] if cols_are_metrics else []
        if not cols_are_metrics:
            col = axis_value(run, spec["col_axis"])
            if col is None:
                continue
            targets = [(col, metric(run, metric_name))]
        if row not in rows:
            rows.append(row)
        for col, value in targets:
            if col not in cols:
                cols.append(col)
            dirs.setdefault((row, col), []).append(str(run["dir"]))
            if value is not None:
                grouped.setdefault((row, col), []).append(value)
    cells = {}
    for r in rows:
        for c in cols:
            cells[(r, c)] = {
                "ours": aggregate(grouped.get((r, c), [])),
                "paper": spec["values"].get(r, {}).get(c),
                "runs": dirs.get((r, c), []),
            }
    return {"rows": rows, "cols": cols, "cells": cells, "stats": list(spec.get("stats", ["mean"])),
            "row_labels": spec["rows"], "col_labels": spec["cols"], "title": spec.get("title", "")}


def _paper_stat(paper: Any, stat: str) -> float | None:
    if paper is None:
        return None
    if isinstance(paper, dict):
        v = paper.get(stat)
        return None if v is None else float(v)
    return float(paper) if stat == "mean" else None


def _num(v: float | None, digits: int) -> str:
    if v is None:
        return MISSING
    if v != 0 and abs(v) < 1e-3:
        return f"{v:.3g}"
    return f"{v:.{digits}f}"


def render_markdown(table: dict[str, Any], digits: int = 2) -> str:
    stats = table["stats"]
    with_paper = any(cell["paper"] is not None for cell in table["cells"].values())
    header = ["row"]
    for c in table["cols"]:
        name = table["col_labels"].get(c, c)
        for s in stats:
            header.append(f"{name} ours {s}" if len(stats) > 1 else f"{name} ours")
            if with_paper:
                header.append(f"{name} paper {s}" if len(stats) > 1 else f"{name} paper")
        header += [f"{name} n"] + ([f"{name} Δ mean"] if with_paper else [])
    lines = [f"**{table['title']}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in table["rows"]:
        cells = [table["row_labels"].get(r, r)]
        for c in table["cols"]:
            cell = table["cells"][(r, c)]
            ours = cell["ours"]
            for s in stats:
                sd = 4 if s == "std" else digits
                cells.append(_num(ours[s], sd))
                if with_paper:
                    cells.append(_num(_paper_stat(cell["paper"], s), sd))
            cells.append(str(ours["n"]) if ours["n"] else MISSING)
            if with_paper:
                pm = _paper_stat(cell["paper"], "mean")
                cells.append(MISSING if ours["mean"] is None or pm is None else f"{ours['mean'] - pm:+.{digits}f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def csv_rows(table: dict[str, Any]) -> list[dict[str, Any]]:
    """Wide layout: one row per table row; per column ``<col>:ours_mean|ours_best|ours_std|n|paper_<stat>|diff_mean``."""
    out = []
    for r in table["rows"]:
        row: dict[str, Any] = {"row": r, "label": table["row_labels"].get(r, r)}
        for c in table["cols"]:
            cell = table["cells"][(r, c)]
            ours = cell["ours"]
            for s in ("mean", "best", "std"):
                row[f"{c}:ours_{s}"] = "" if ours[s] is None else ours[s]
            row[f"{c}:n"] = ours["n"]
            for s in table["stats"]:
                p = _paper_stat(cell["paper"], s)
                row[f"{c}:paper_{s}"] = "" if p is None else p
            pm = _paper_stat(cell["paper"], "mean")
            row[f"{c}:diff_mean"] = "" if ours["mean"] is None or pm is None else ours["mean"] - pm
        out.append(row)
    return out


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def auto_spec(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """No paper table: one row per setting (the overrides that differ, seed pooled), test accuracy."""
    keys = varying_keys(runs) or ["loss"]
    return {"title": "runs grouped by " + ", ".join(keys), "row_axis": [[k] for k in keys], "cols_are_metrics": True,
            "stats": ["mean", "best", "std"], "rows": {}, "cols": {"test_acc": "test_acc"}, "values": {}}


# ------------------------------------------------------------------ TensorBoard HParams and curves


def log_hparams(runs: Sequence[dict[str, Any]], log_dir: Path) -> Path:
    """One HParams entry per job (its varying overrides + seed) with test/best accuracy."""
    from torch.utils.tensorboard import SummaryWriter

    keys = varying_keys(runs, exclude=()) or list(runs[0]["overrides"]) if runs else []
    log_dir = Path(log_dir)
    writer = SummaryWriter(log_dir=str(log_dir))
    for run in runs:
        hparams = {k: _hparam(run["overrides"].get(k)) for k in keys}
        metrics = {f"hparam/{m}": v for m in ("test_acc", "best_test_acc", "train_time_s") if (v := metric(run, m)) is not None}
        writer.add_hparams(hparams, metrics, run_name=str(run["dir"].name))
    writer.close()
    return log_dir


def _hparam(v: str | None) -> Any:
    if v is None:
        return "—"
    try:
        return float(v)
    except ValueError:
        return v


def write_curves(runs: Sequence[dict[str, Any]], spec: dict[str, Any], out_dir: Path, name: str) -> list[Path]:
    """Test accuracy per epoch, one line per table row (mean over seeds), one PNG per column (POD Fig. 4 / HL Fig. 2)."""
    from podhl.analysis.figures import plot_curves

    if spec.get("cols_are_metrics"):
        groups_by_col = {"all": {}}
        for run in runs:
            row = axis_value(run, spec["row_axis"])
            if row is not None:
                groups_by_col["all"].setdefault(spec["rows"].get(row, row), []).append(run["dir"])
    else:
        groups_by_col: dict[str, dict[str, list[Path]]] = {}
        for run in runs:
            row, col = axis_value(run, spec["row_axis"]), axis_value(run, spec["col_axis"])
            if row is not None and col is not None:
                groups_by_col.setdefault(col, {}).setdefault(spec["rows"].get(row, row), []).append(run["dir"])
    written = []
    for col, groups in groups_by_col.items():
        if groups:
            label = spec["cols"].get(col, col)
            safe = col.replace("/", "_")
            written.append(plot_curves(groups, out_dir / f"{name}_curves_{safe}.png", title=f"{name}: {label}"))
    return written


# ------------------------------------------------------------------ CLI


def make_tables(dirs: Sequence[str | Path], table: str | None = None, out: str | Path | None = None,
                metric_name: str = "test_acc", hparams: bool = True, curves: bool = True) -> dict[str, Path]:
    runs = load_runs(dirs)
    if table:
        specs = paper_values()
        if table not in specs:
            raise SystemExit(f"podhl-tables: unknown table '{table}'; known: {', '.join(specs)}")
        spec, name = specs[table], table
    else:
        spec, name = auto_spec(runs), "runs"
    out_dir = Path(out) if out else Path(dirs[0]) / "tables"
    out_dir.mkdir(parents=True, exist_ok=True)
    built = build_table(runs, spec, metric_name)
    md = render_markdown(built)
    md_path, csv_path = out_dir / f"{name}.md", out_dir / f"{name}.csv"
    md_path.write_text(md)
    write_csv(csv_rows(built), csv_path)
    written = {"markdown": md_path, "csv": csv_path}
    if hparams:
        written["hparams"] = log_hparams(runs, Path(dirs[0]) / "tb_hparams")
    if curves:
        for i, p in enumerate(write_curves(runs, spec, out_dir, name)):
            written[f"curves{i}"] = p
    print(md)
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="podhl-tables", description="Multirun dirs → the papers' table layouts (Markdown + CSV).")
    parser.add_argument("dirs", nargs="*", help="multirun (sweep) dirs or run dirs; several are pooled")
    parser.add_argument("--table", default=None, help=f"paper table layout: {', '.join(paper_values())} (default: group by what differs)")
    parser.add_argument("--out", default=None, help="output dir (default: <first dir>/tables)")
    parser.add_argument("--metric", default="test_acc", help="metrics.json value for accuracy cells (test_acc = final; best_test_acc)")
    parser.add_argument("--no-hparams", action="store_true", help="skip TensorBoard add_hparams")
    parser.add_argument("--no-curves", action="store_true", help="skip accuracy-per-epoch PNGs")
    parser.add_argument("--list", action="store_true", help="list the known tables and exit")
    args = parser.parse_args(argv)
    if args.list:
        for k, v in paper_values().items():
            print(f"{k}: {v.get('title', '')}")
        return
    if not args.dirs:
        parser.error("give at least one multirun or run directory")
    written = make_tables(args.dirs, args.table, args.out, args.metric, not args.no_hparams, not args.no_curves)
    for kind, path in written.items():
        print(f"[podhl-tables] {kind}: {path}")


if __name__ == "__main__":
    main()
