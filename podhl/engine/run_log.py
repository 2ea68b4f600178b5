"""Per-run records: TensorBoard scalars and ``history.csv`` (one row per epoch, rewritten whole)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

# Column prefix → TensorBoard tag prefix (train_acc → train/acc, loss_delta → loss/delta).
_TAG_PREFIXES = ("train_", "test_", "loss_")


def _tag(key: str) -> str:
    for prefix in _TAG_PREFIXES:
        if key.startswith(prefix):
            return f"{prefix[:-1]}/{key[len(prefix):]}"
    return key


class RunLog:
    def __init__(self, run_dir: Path, enabled: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.writer = None
        self.rows: list[dict[str, Any]] = []

    def open(self) -> None:
        if self.enabled and self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.writer = SummaryWriter(log_dir=str(self.run_dir / "tb"))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(f"{prefix}/{name}", value, step)

    def epoch(self, row: dict[str, Any], epoch: int) -> None:
        """Log one epoch's row to TensorBoard and append it to ``history.csv``."""
        if not self.enabled:
            return
        if self.writer is not None:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self.writer.add_scalar(_tag(key), value, epoch)
            self.writer.flush()
        self._append_history(row)

    def _append_history(self, row: dict[str, Any]) -> None:
        path = self.run_dir / "history.csv"
        rows = read_history(path) if path.is_file() else []
        rows = [r for r in rows if int(r["epoch"]) < int(row["epoch"])] + [row]
        fields = list(dict.fromkeys(k for r in rows for k in r))
        tmp = path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(path)


def read_history(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="") as f:
        return [{k: _number(v) for k, v in r.items()} for r in csv.DictReader(f)]


def _number(text: str):
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text
