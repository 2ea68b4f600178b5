"""What a run writes in its folder: TensorBoard scalars, ``history.csv`` (one row per epoch),
``last.pt``/``best.pt`` and ``metrics.json``. Files are written atomically (a temporary file, then
a rename), so a crash never leaves half a checkpoint; only the main rank writes.
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

# history.csv column prefix -> TensorBoard tag prefix (train_acc -> train/acc, loss_delta -> loss/delta)
_TAG_PREFIXES = ("train_", "test_", "loss_")


def atomic_write(path: Path, write) -> None:
    """``write(tmp_path)`` then rename onto ``path``; the file gets the user's umask like any other."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(obj: Any, path: Path) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")

    atomic_write(Path(path), write)


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    atomic_write(Path(path), lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path, map_location="cpu") -> dict[str, Any]:
    return torch.load(path, map_location=map_location, weights_only=False)


def finite_or_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()}


def _tag(key: str) -> str:
    for prefix in _TAG_PREFIXES:
        if key.startswith(prefix):
            return f"{prefix[:-1]}/{key[len(prefix):]}"
    return key


class RunRecords:
    def __init__(self, run_dir: str | Path, enabled: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.writer = None

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

    def epoch(self, row: dict[str, Any]) -> None:
        """Log one epoch's row to TensorBoard and write it into ``history.csv`` (rows of later epochs are dropped)."""
        if not self.enabled:
            return
        if self.writer is not None:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self.writer.add_scalar(_tag(key), value, row["epoch"])
            self.writer.flush()
        path = self.run_dir / "history.csv"
        rows = [r for r in read_history(path) if int(r["epoch"]) < int(row["epoch"])] + [row]
        fields = list(dict.fromkeys(k for r in rows for k in r))

        def write(tmp):
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=fields)
                writer.writeheader()
                writer.writerows(rows)

        atomic_write(path, write)

    def checkpoint(self, state: dict[str, Any], best: bool) -> None:
        if self.enabled:
            save_checkpoint(state, self.run_dir / "last.pt")
            if best:
                save_checkpoint(state, self.run_dir / "best.pt")

    def write(self, name: str, obj: dict[str, Any]) -> None:
        """``<run dir>/<name>`` as JSON (``metrics.json``, ``analysis.json``)."""
        if self.enabled:
            write_json(obj, self.run_dir / name)


def read_history(path: Path) -> list[dict[str, Any]]:
    """``history.csv`` rows with numbers parsed (empty cells are None); [] if there is no file."""
    if not Path(path).is_file():
        return []
    with open(path, newline="") as f:
        return [{k: _number(v) for k, v in r.items()} for r in csv.DictReader(f)]


def _number(text: str):
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
