"""The one reader of run folders, shared by ``podhl-tables``, the figures and the sweep summary.

A run folder holds ``metrics.json`` (status, numbers, the run's names and, for a paper table's runs,
``table``/``row``/``col``), ``history.csv`` (one row per epoch) and Hydra's ``.hydra/overrides.yaml``
and ``.hydra/config.yaml``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from podhl.config import canonical
from podhl.engine.records import read_history

ABSENT = "—"  # shown for a key a run does not set


@dataclass
class Run:
    dir: Path
    metrics: dict[str, Any]
    overrides: dict[str, str] = field(default_factory=dict)  # command-line/sweep overrides, leading '+'/'~' stripped
    _config: dict[str, Any] | None = None

    @property
    def status(self) -> str:
        return str(self.metrics.get("status") or ("completed" if self.metrics.get("completed") else "stopped"))

    @property
    def config(self) -> dict[str, Any]:
        if self._config is None:
            path = self.dir / ".hydra" / "config.yaml"
            self._config = {}
            if path.is_file():
                from omegaconf import OmegaConf

                self._config = OmegaConf.to_container(OmegaConf.load(path), resolve=False)  # type: ignore[assignment]
        return self._config

    def history(self) -> list[dict[str, Any]]:
        return read_history(self.dir / "history.csv")

    def lookup(self, key: str) -> str | None:
        """The run's value for ``key``: its overrides, then its names in metrics.json, then its config."""
        key = key.lstrip("+~")
        if key in self.overrides:
            return self.overrides[key]
        value = self.metrics.get(key)
        if value is not None and not isinstance(value, (dict, list)):
            return canonical(value)
        value = dotted(self.config, key)
        return None if value is None or isinstance(value, (dict, list)) else canonical(value)

    def metric(self, name: str) -> float | None:
        """A finite number from metrics.json (dotted paths reach into ``analysis``); ``train_time_h`` from seconds."""
        if name == "train_time_h":
            seconds = self.metrics.get("train_time_s")
            return None if seconds is None else float(seconds) / 3600.0
        value = dotted(self.metrics, name)
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        return number if math.isfinite(number) else None

    def label(self, keys: Sequence[str], resolve: bool = False) -> str:
        """``k=v`` for each key; a key the run does not set shows as ``k=—`` (never dropped). ``resolve``:
        a key missing from the overrides is looked up in metrics.json and the config (``--by``)."""
        if resolve:
            return " ".join(f"{k}={self.lookup(k) or ABSENT}" for k in keys)
        return " ".join(f"{k}={self.overrides.get(k, ABSENT)}" for k in keys)

    @property
    def seed(self) -> str | None:
        return self.lookup("seed")


def dotted(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def read_overrides(run_dir: Path) -> dict[str, str]:
    path = Path(run_dir) / ".hydra" / "overrides.yaml"
    out: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.startswith("- ") and "=" in line:
                key, value = line[2:].strip().split("=", 1)
                out[key.lstrip("+~")] = canonical(value.strip("'\""))  # False = false, 1.0 = 1
    return out


def run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Folders holding ``metrics.json``: each path itself, or every such folder below it (job order)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if (p / "metrics.json").is_file():
            found.append(p)
        else:
            below = sorted(
                {m.parent for m in p.rglob("metrics.json")}, key=lambda q: (len(q.parts), len(str(q)), str(q))
            )
            found.extend(below)
    return found


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    runs = []
    for d in run_dirs(paths):
        try:
            metrics = json.loads((d / "metrics.json").read_text())
        except (OSError, json.JSONDecodeError) as err:
            metrics = {"status": "failed", "error": f"unreadable metrics.json: {err}"}
        runs.append(Run(d, metrics, read_overrides(d)))
    return runs


def varying_keys(runs: Sequence[Run], exclude: Iterable[str] = ("seed",)) -> list[str]:
    """Override keys whose value differs between runs (a key some runs lack counts as differing)."""
    exclude = set(exclude)
    keys: list[str] = []
    for r in runs:
        keys += [k for k in r.overrides if k not in keys and k not in exclude and not k.startswith("hydra.")]
    return [k for k in keys if len({r.overrides.get(k, ABSENT) for r in runs}) > 1]
