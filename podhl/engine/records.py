"""What a run writes in its folder: ``history.csv`` (one row per epoch), ``last.pt``/``best.pt``,
``metrics.json``, and the scalars its loggers receive (:mod:`podhl.engine.loggers`: TensorBoard by
default). Files are written atomically (a temporary file, then a rename), so a crash never leaves half
a checkpoint; only the main rank writes. A full disk raises :class:`~podhl.errors.DiskFullError`
naming the file and the device (the earlier files stay intact).
"""

from __future__ import annotations

import csv
import errno
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from podhl.errors import DiskFullError

# history.csv column prefix -> TensorBoard tag prefix (train_acc -> train/acc, val_acc -> val/acc)
_TAG_PREFIXES = ("train_", "val_", "test_", "loss_")


def _chain(err: BaseException):
    while err is not None:
        yield err
        err = err.__cause__ or err.__context__


def _disk_full(err: BaseException, folder: Path) -> bool:
    """ENOSPC/EDQUOT anywhere in the cause chain (torch's zip writer wraps it in a RuntimeError), or a file
    system with no space left (a writer that drops the OS error)."""
    for seen in _chain(err):
        if getattr(seen, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(seen):
            return True
    try:
        return os.statvfs(folder).f_bavail == 0
    except OSError:
        return False


def device_of(path: Path) -> str:
    """``/dev/sda1 (mounted at /data)`` for the file system holding ``path`` (the mount point alone if unknown)."""
    mount = Path(path).absolute()
    while not os.path.ismount(mount):
        mount = mount.parent
    try:
        with open("/proc/self/mounts") as f:
            devices = {fields[1]: fields[0] for fields in (line.split() for line in f) if len(fields) > 1}
    except OSError:
        devices = {}
    device = devices.get(str(mount))
    return f"{device} (mounted at {mount})" if device else str(mount)


def atomic_write(path: Path, write) -> None:
    """``write(tmp_path)`` then rename onto ``path``; the file gets the user's umask like any other. A full
    disk raises DiskFullError; ``path`` keeps its previous content."""
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
    except Exception as err:
        if any(isinstance(seen, KeyboardInterrupt) for seen in _chain(err)):
            raise KeyboardInterrupt from err  # Ctrl-C inside torch.save's file writes comes back as a RuntimeError
        if _disk_full(err, path.parent):
            raise DiskFullError(f"no space left on {device_of(path.parent)} while writing {path}") from err
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(obj: Any, path: Path) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")

    atomic_write(Path(path), write)


def save_checkpoint(state: Any, path: Path) -> None:
    def write(tmp):
        with open(tmp, "wb") as f:  # a Python file, so that the OS error (e.g. ENOSPC) reaches the cause chain
            torch.save(state, f)

    atomic_write(Path(path), write)


def finite_or_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()}


def _tag(key: str) -> str:
    for prefix in _TAG_PREFIXES:
        if key.startswith(prefix):
            return f"{prefix[:-1]}/{key[len(prefix) :]}"
    return key


class RunRecords:
    def __init__(self, run_dir: str | Path, enabled: bool = True, loggers: list | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.loggers = list(loggers or []) if enabled else []  # podhl.engine.loggers.Logger instances
        self.opened = False

    def open(self, config: dict[str, Any] | None = None, epoch: int = 0, step: int = 0) -> None:
        """Start the loggers where the run stands (``epoch``, global ``step``: 0 for a new run)."""
        if self.enabled and not self.opened:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for logger in self.loggers:
                logger.open(self.run_dir, config or {}, epoch, step)
            self.opened = True

    def close(self) -> None:
        if self.opened:
            for logger in self.loggers:
                logger.close()
            self.opened = False

    def scalars(self, prefix: str, values: dict[str, float], step: int, epoch: int = 0) -> None:
        if self.opened:
            tagged = {f"{prefix}/{name}": value for name, value in values.items()}
            for logger in self.loggers:
                logger.log(tagged, epoch, step, per_epoch=False)

    def epoch(self, row: dict[str, Any], step: int = 0) -> None:
        """Log one epoch's row (at global ``step``) and write it into ``history.csv`` (rows of later epochs
        are dropped)."""
        if not self.enabled:
            return
        if self.opened:
            values = {_tag(k): v for k, v in row.items() if k != "epoch" and isinstance(v, (int, float))}
            for logger in self.loggers:
                logger.log(values, int(row["epoch"]), step, per_epoch=True)
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
        """``best.pt`` first, then ``last.pt``: the ``best_epoch`` that ``last.pt`` (and so a resumed run's
        ``metrics.json``) records always has its ``best.pt`` on disk, whenever the process is killed."""
        if self.enabled:
            if best:
                save_checkpoint(state, self.run_dir / "best.pt")
            save_checkpoint(state, self.run_dir / "last.pt")

    def tensors(self, files: dict[str, torch.Tensor]) -> None:
        """Save each tensor as ``<run dir>/<name>`` (e.g. the criterion's ``pedcc.pt``)."""
        if self.enabled:
            for name, tensor in files.items():
                save_checkpoint(tensor, self.run_dir / name)

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


# ---------------------------------------------------------------------- the loop's state in a checkpoint
def capture_rng(task) -> dict[str, Any]:
    """Every random stream an epoch's remaining batches depend on (mid-epoch checkpoints)."""
    import random

    import numpy as np

    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "task": task.rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(task, state: dict[str, Any]) -> None:
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    task.set_rng_state(state["task"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def training_state(trainer, in_epoch: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``last.pt`` holds: weights, loss state, optimizers, schedulers, progress and the config
    (``in_epoch``: the position and statistics of an unfinished epoch, for mid-epoch checkpoints)."""
    from omegaconf import OmegaConf

    return {
        "epoch": trainer.epoch,
        "global_step": trainer.global_step,
        "model": trainer.model.state_dict(),
        "criterion": trainer.criterion.state_dict(),
        "optimizers": [o.state_dict() for o in trainer.optimizers],
        "schedulers": [s.state_dict() if s is not None else None for s in trainer.schedulers],
        "scaler": trainer.scaler.state_dict(),
        "history": trainer.history,
        "last_eval": trainer.last_eval,
        "best_value": trainer.best_value,
        "best_epoch": trainer.best_epoch,
        "best_eval": trainer.best_eval,
        "train_time": trainer.train_time,
        "in_epoch": in_epoch,
        "config": OmegaConf.to_container(trainer.cfg, resolve=True),
    }


def restore_training_state(trainer, state: dict[str, Any]) -> None:
    from omegaconf import OmegaConf

    from podhl.engine.run_folder import identity_mismatch
    from podhl.errors import ConfigError

    why = identity_mismatch(state.get("config", {}), OmegaConf.to_container(trainer.cfg, resolve=True))
    if why:
        raise ConfigError(f"resume: {why} from the run in {trainer.run_dir}; resume with the same settings")
    trainer.model.load_state_dict(state["model"])
    trainer.criterion.load_state_dict(state["criterion"])
    for optimizer, saved in zip(trainer.optimizers, state["optimizers"], strict=True):
        optimizer.load_state_dict(saved)
    for scheduler, saved in zip(trainer.schedulers, state["schedulers"], strict=True):
        if scheduler is not None and saved is not None:
            scheduler.load_state_dict(saved)
    trainer.scaler.load_state_dict(state["scaler"])
    trainer.epoch, trainer.global_step = int(state["epoch"]), int(state["global_step"])
    trainer.history, trainer.last_eval = list(state["history"]), dict(state["last_eval"])
    trainer.best_value, trainer.best_epoch = state["best_value"], state["best_epoch"]
    rows = [r for r in trainer.history if r.get("epoch") == trainer.best_epoch]  # checkpoints before best_eval
    trainer.best_eval = dict(state.get("best_eval") or (_evaluation(rows[0]) if rows else {}))
    trainer.train_time = float(state["train_time"])
    # an unfinished epoch: the loop reloads the loss state after the epoch's on_epoch_start hook
    trainer.in_epoch = None if state.get("in_epoch") is None else {**state["in_epoch"], "criterion": state["criterion"]}


def _evaluation(row: dict[str, Any]) -> dict[str, Any]:
    """The evaluation metrics of a history row (what ``task.evaluate`` returned that epoch)."""
    skip = ("epoch", "lr", "epoch_time_s")
    return {k: v for k, v in row.items() if k not in skip and not k.startswith(("train_", "loss_")) and v is not None}


def selection_record(trainer) -> dict[str, Any]:
    """How the reported epoch was chosen: ``selected_by``, ``best_<m>`` of that epoch's every metric, the split,
    the protocol in words, and ``objective`` (what Hydra sweepers such as Optuna receive: the validation metric at
    the selected epoch when there is a split, else the last epoch's primary metric, as before splits existed)."""
    primary, split = trainer.task.primary_metric, getattr(trainer.task.data, "split", None)
    selected_by = trainer.selection
    best = {f"best_{k}": v for k, v in trainer.best_eval.items()}
    best.setdefault(f"best_{primary}", None)
    if split:
        objective_metric = f"best_{trainer.task.validation_metric}"
        short = split["val_indices_sha256"][:8]
        protocol = f"validated (val_fraction={split['val_fraction']}, split {short}, selected by {selected_by})"
        objective = best.get(objective_metric)
    else:
        objective_metric = primary
        protocol = f"test-selected (no validation split; best.pt by {selected_by})"
        objective = trainer.last_eval.get(primary)
    return {
        **best,
        "selected_by": selected_by,
        "split": split or {"val_fraction": 0},
        "protocol": protocol,
        "objective": objective,
        "objective_metric": objective_metric,
    }


def run_metrics(trainer) -> dict[str, Any]:
    """``metrics.json``: the last evaluation, the selected epoch's evaluation (``best_*``), progress, the names."""
    last = trainer.history[-1] if trainer.history else {}
    primary = trainer.task.primary_metric
    completed = trainer.epoch >= trainer.epochs
    return finite_or_none(
        {
            **trainer.last_eval,
            "primary_metric": primary,
            **selection_record(trainer),
            "best_epoch": trainer.best_epoch,
            "epochs": trainer.epoch,
            "epochs_planned": trainer.epochs,
            "completed": completed,
            "status": "completed" if completed else "running" if trainer.running else "stopped",
            "train_acc": last.get("train_acc"),
            "train_loss": last.get("train_loss"),
            "mean_feature_norm": last.get("train_feature_norm"),
            "train_time_s": round(trainer.train_time, 2),
            "num_params": sum(p.numel() for p in trainer.model.parameters()),
            "num_classes": trainer.task.num_classes,
            "feat_dim": int(trainer.model.feat_dim),
            "seed": trainer.seed,
            "device": str(trainer.runtime.device),
            "analysis": trainer.analysis or None,
            **({"notes": list(trainer.notes)} if getattr(trainer, "notes", None) else {}),
            **trainer.names,
        }
    )


def mark_run(run_dir: Path, **fields: Any) -> None:
    """Update ``metrics.json`` with ``fields`` (e.g. a failure's status, error and exit code), keeping what is there."""
    path = Path(run_dir) / "metrics.json"
    try:
        metrics = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        metrics = {}
    metrics.update(fields, completed=False)
    write_json(metrics, path)
