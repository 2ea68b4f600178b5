"""Where a run's scalars go besides ``history.csv`` (the ``logger`` config group): TensorBoard (the
default), a CSV file, Weights & Biases or MLflow, one or several (``logger=[tensorboard,csv]``).

Every logger receives the same values: ``train_step/<term>`` every ``trainer.log_every_n_steps``
optimizer steps, and per epoch every number of the ``history.csv`` row (``train/<term>``,
``test/<metric>``, ``loss/<state>``, ``lr``, ``epoch_time_s``), each with the epoch and the global
step; W&B and MLflow also get the run's resolved config (TensorBoard and CSV runs keep it in
``.hydra/config.yaml``). A logger is built before any data is read, so a missing package or a bad
tracking URI fails at once (exit 2).
Every rank builds its loggers (so every rank checks the packages); only the main rank logs.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from podhl.errors import ConfigError


class Logger:
    """Receives scalars; ``open`` is told where the run stands (epoch, global step: 0 for a new run)."""

    def open(self, run_dir: Path, config: dict[str, Any], epoch: int, step: int) -> None:
        pass

    def log(self, values: dict[str, float], epoch: int, step: int, per_epoch: bool) -> None:
        """``per_epoch``: the epoch's summary (TensorBoard plots it against the epoch, the rest against ``step``)."""

    def close(self) -> None:
        pass


def _require(module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"logger={extra} needs the {module} package: pip install 'podhl[{extra}]'")


def _remembered_id(run_dir: Path, name: str, step: int) -> str | None:
    """The id of the tracking run a resumed podhl run continues (None for a new run)."""
    path = run_dir / f".{name}_run_id"
    return path.read_text().strip() or None if step > 0 and path.is_file() else None


@contextlib.contextmanager
def ctrl_c_after() -> Iterator[None]:
    """A Ctrl-C that arrives inside the block takes effect when it ends. TensorBoard's writer hands events
    to its thread through a queue; a KeyboardInterrupt inside the queue's ``Condition.notify`` can lose
    the wake-up, and then ``close()`` waits for that thread until its next flush (up to 120 s): an
    interrupted run seemed to hang (1 Ctrl-C in 12 here). Main thread only (signals go there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[int, Any]] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append((signum, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            if callable(previous):
                previous(*caught[0])  # Python's handler: raises KeyboardInterrupt here
            elif previous == signal.SIG_DFL:
                os.kill(os.getpid(), signal.SIGINT)


class TensorBoardLogger(Logger):
    """Event files in ``<run dir>/tb``, scalars against the epoch (per epoch) or the global step.
    Writes and the close run under :func:`ctrl_c_after`."""

    def __init__(self) -> None:
        self.writer = None

    def open(self, run_dir, config, epoch, step):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / "tb"))

    def log(self, values, epoch, step, per_epoch):
        with ctrl_c_after():
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, epoch if per_epoch else step)
            if per_epoch:
                self.writer.flush()

    def close(self):
        if self.writer is not None:
            with ctrl_c_after():
                self.writer.close()
            self.writer = None


class CSVLogger(Logger):
    """``<run dir>/scalars.csv``, one row per scalar: epoch, step, tag, value. A resumed run first drops the
    rows logged after its checkpoint's step (a new run: all of them), so no step appears twice."""

    FIELDS = ("epoch", "step", "tag", "value")

    def __init__(self) -> None:
        self.file = self.writer = None

    def open(self, run_dir, config, epoch, step):
        from podhl.engine.records import atomic_write

        path = run_dir / "scalars.csv"
        rows = []
        if path.is_file():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if r.get("step", "").isdigit() and int(r["step"]) <= step]

        def write(tmp):
            with open(tmp, "w", newline="") as f:
                out = csv.DictWriter(f, fieldnames=self.FIELDS)
                out.writeheader()
                out.writerows(rows)

        atomic_write(path, write)
        self.file = open(path, "a", newline="")
        self.writer = csv.writer(self.file)

    def log(self, values, epoch, step, per_epoch):
        self.writer.writerows([epoch, step, tag, repr(float(value))] for tag, value in values.items())
        self.file.flush()

    def close(self):
        if self.file is not None:
            self.file.close()
            self.file = self.writer = None


class WandbLogger(Logger):
    """A Weights & Biases run named after the run folder, its files in ``<run dir>/wandb``; every value is
    logged at the global step (W&B's steps only grow) with ``epoch`` beside it."""

    def __init__(
        self, project: str = "podhl", entity: str | None = None, mode: str | None = None, tags: list[str] | tuple = ()
    ) -> None:
        _require("wandb", "wandb")
        self.settings = {"project": project, "entity": entity, "mode": mode, "tags": list(tags) or None}
        self.run = None

    def open(self, run_dir, config, epoch, step):
        import wandb

        run_id = _remembered_id(run_dir, "wandb", step)
        self.run = wandb.init(
            name=run_dir.name,
            dir=str(run_dir),
            config=config,
            id=run_id,
            resume="allow" if run_id else None,
            **self.settings,
        )
        (run_dir / ".wandb_run_id").write_text(self.run.id)

    def log(self, values, epoch, step, per_epoch):
        self.run.log({**values, "epoch": epoch}, step=step)

    def close(self):
        if self.run is not None:
            self.run.finish()
            self.run = None


class MLflowLogger(Logger):
    """An MLflow run named after the run folder in ``experiment``; the config as params (``a.b.c``)."""

    def __init__(self, tracking_uri: str | None = None, experiment: str = "podhl") -> None:
        _require("mlflow", "mlflow")
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        self.client, self.experiment_id, self.run_id = None, None, None
        if os.environ.get("RANK", "0") != "0":
            return  # the process group is not up yet; only rank 0 (RANK under torchrun) logs
        try:  # reach the store now: a bad URI or a refused store fails before any data is read
            self.client = MlflowClient(tracking_uri=tracking_uri)
            found = self.client.get_experiment_by_name(experiment)
            self.experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
        except MlflowException as err:
            raise ConfigError(f"logger=mlflow (tracking_uri={tracking_uri}): {' '.join(err.message.split())}") from None

    def open(self, run_dir, config, epoch, step):
        from mlflow.entities import Param

        self.run_id = _remembered_id(run_dir, "mlflow", step)
        if self.run_id is None:
            self.run_id = self.client.create_run(self.experiment_id, run_name=run_dir.name).info.run_id
            params = [Param(k, str(v)[:6000]) for k, v in _flatten(config).items()]  # 6000: MLflow's value limit
            for i in range(0, len(params), 100):  # 100: MLflow's params per batch
                self.client.log_batch(self.run_id, params=params[i : i + 100])
        (run_dir / ".mlflow_run_id").write_text(self.run_id)

    def log(self, values, epoch, step, per_epoch):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        at = epoch if per_epoch else step
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, at) for k, v in values.items()])

    def close(self):
        if self.run_id is not None:
            self.client.set_terminated(self.run_id)
            self.run_id = None


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _flatten(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: node}


def build_loggers(specs) -> list[Logger]:
    """The ``logger`` node (name -> spec, from the config group) as loggers; none for ``~logger``."""
    from hydra.utils import instantiate

    return [instantiate(spec) for spec in (specs or {}).values() if spec is not None]
