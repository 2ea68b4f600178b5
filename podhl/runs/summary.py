"""Hydra callback: after a multirun, one line per job from its ``metrics.json`` (``<sweep>/summary.md``),
also when the sweep stops early (Ctrl-C): then with the jobs that ran."""

from __future__ import annotations

import atexit
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from podhl.runs.reader import Run, load_runs, varying_keys

log = logging.getLogger("podhl")


def _fmt(v: Any) -> str:
    return "—" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))


def format_summary(runs: Sequence[Run]) -> str:
    """Markdown: job, what differs between jobs, status, the primary metric (last epoch, and at the epoch chosen by
    ``selected_by``: the validation metric when the run has a validation split), epochs, time."""
    keys = varying_keys(runs, exclude=()) if len(runs) > 1 else []
    primary = str(runs[0].metrics.get("primary_metric") or "test_acc") if runs else "test_acc"
    lines = [
        f"| job | overrides | status | {primary} | best_{primary} | selected_by | epochs | train_time_s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        status = r.status if r.status != "failed" else f"failed: {r.metrics.get('error') or '?'}"
        lines.append(
            f"| {r.dir.name} | {r.label(keys)} | {status} "
            f"| {_fmt(r.metric(primary))} | {_fmt(r.metric('best_' + primary))} | {_fmt(r.metrics.get('selected_by'))} "
            f"| {_fmt(r.metrics.get('epochs'))} | {_fmt(r.metrics.get('train_time_s'))} |"
        )
    return "\n".join(lines)


def write_summary(sweep_dir: Path) -> str | None:
    runs = load_runs([sweep_dir])
    if not runs:
        return None
    table = format_summary(runs)
    (Path(sweep_dir) / "summary.md").write_text(table + "\n")
    return table


FAILED = ("failed", "running", "interrupted")  # "running" after the sweep ended: the job died (e.g. killed)


class SweepSummary(Callback):
    """Before a multirun: refuse a sweep folder that holds another sweep's runs (exit 2). After it:
    ``summary.md`` with every job, failed ones with their reason, and exit 1 if any job failed. A sweep that
    ends early (Ctrl-C, exit 130) still gets its ``summary.md``, of the jobs that ran (written at exit)."""

    ended = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not (config.get("resume") or config.get("overwrite")) and sweep_dir.is_dir() and load_runs([sweep_dir]):
            log.error(
                "%s already holds another sweep's runs: pass a new hydra.sweep.dir, or resume=true / "
                "resume=auto to continue those jobs, or overwrite=true",
                sweep_dir,
            )
            sys.exit(2)  # (with resume/overwrite each job checks its own folder: podhl/engine/run_folder.py)
        atexit.register(self._summary_if_stopped, sweep_dir)

    def _summary_if_stopped(self, sweep_dir: Path) -> None:
        if not self.ended and write_summary(sweep_dir) is not None:
            log.error("the sweep stopped early; %s/summary.md lists the jobs that ran", sweep_dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self.ended = True
        sweep_dir = Path(config.hydra.sweep.dir)
        table = write_summary(sweep_dir)
        if table is None:
            return
        log.info("sweep summary (%s/summary.md):\n%s", sweep_dir, table)
        failed = [r for r in load_runs([sweep_dir]) if r.status in FAILED]
        if failed:
            log.error("%d of the sweep's jobs failed: %s", len(failed), ", ".join(r.dir.name for r in failed))
            sys.exit(1)
