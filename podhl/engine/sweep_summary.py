"""Hydra callback: after a multirun, print (and save) one line per job from its ``metrics.json``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("podhl")


def collect_runs(sweep_dir: Path) -> list[dict[str, Any]]:
    """``metrics.json`` of every job below ``sweep_dir`` with the job's overrides, in job order."""
    rows = []
    for metrics_file in sorted(Path(sweep_dir).glob("*/metrics.json"), key=lambda p: (len(p.parent.name), p.parent.name)):
        run = metrics_file.parent
        overrides_file = run / ".hydra" / "overrides.yaml"
        overrides = []
        if overrides_file.is_file():
            overrides = [line[2:].strip() for line in overrides_file.read_text().splitlines() if line.startswith("- ")]
        rows.append({"run": run.name, "overrides": overrides, **json.loads(metrics_file.read_text())})
    if len(rows) > 1:  # show only what differs between jobs
        common = set.intersection(*(set(r["overrides"]) for r in rows))
        for r in rows:
            r["overrides"] = [o for o in r["overrides"] if o not in common]
    for r in rows:
        r["overrides"] = " ".join(r["overrides"])
    return rows


def format_summary(rows: list[dict[str, Any]]) -> str:
    def fmt(v):
        return "—" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))

    lines = ["| job | overrides | test_acc | best_test_acc | epochs | train_time_s |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['overrides']} | {fmt(r.get('test_acc'))} | {fmt(r.get('best_test_acc'))} "
            f"| {fmt(r.get('epochs'))} | {fmt(r.get('train_time_s'))} |"
        )
    return "\n".join(lines)


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = collect_runs(sweep_dir)
        if not rows:
            return
        table = format_summary(rows)
        (sweep_dir / "summary.md").write_text(table + "\n")
        log.info("sweep summary (%s/summary.md):\n%s", sweep_dir, table)
