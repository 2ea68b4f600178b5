"""The ``logger`` group: every logger receives what TensorBoard receives (each loss term, metric and lr,
per step and per epoch), a resumed run logs no step twice, and the run records stay what they are.
W&B runs in its offline mode, MLflow on a local ``file:`` store; both skip when their package is absent."""

from __future__ import annotations

import csv
import shutil

import pytest

from conftest import build_trainer, read_metrics
from podhl.engine.records import read_history
from podhl.errors import ConfigError

# deterministic CPU kernels: a resumed run repeats the uninterrupted one bit for bit (tests/test_trainer.py)
SHORT = [
    "trainer.deterministic=true",
    "schedule.epochs=2",
    "trainer.limit_train_batches=6",
    "trainer.log_every_n_steps=2",
]


def _scalars(run_dir):
    """scalars.csv as {(tag, epoch, step): value}, without the wall-clock epoch_time_s."""
    with open(run_dir / "scalars.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    table = {(r["tag"], int(r["epoch"]), int(r["step"])): float(r["value"]) for r in rows if r["tag"] != "epoch_time_s"}
    assert len(table) == sum(r["tag"] != "epoch_time_s" for r in rows)  # no scalar logged twice
    return table


def _tensorboard(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb")).Reload()
    return {(tag, e.step): e.value for tag in events.Tags()["scalars"] for e in events.Scalars(tag)}


def test_csv_logger_gets_what_tensorboard_gets_and_a_resume_logs_no_step_twice(train, tmp_path):
    full, _ = train(*SHORT, "logger=[tensorboard,csv]", run_dir=tmp_path / "full")
    csv_rows, tb = _scalars(full.run_dir), _tensorboard(full.run_dir)
    tb.pop(("epoch_time_s", 1)), tb.pop(("epoch_time_s", 2))
    # TensorBoard plots epoch rows against the epoch, step rows against the global step: the same numbers
    as_tb = {(tag, step if tag.startswith("train_step/") else epoch): v for (tag, epoch, step), v in csv_rows.items()}
    assert as_tb.keys() == tb.keys() and all(abs(as_tb[k] - tb[k]) <= 1e-6 * max(1.0, abs(tb[k])) for k in tb)
    assert {"train_step/loss", "train_step/ce", "train/loss", "train/acc", "test/acc", "lr"} <= {k[0] for k in csv_rows}
    assert {step for (tag, _, step) in csv_rows if tag == "train_step/loss"} == {2, 4, 6, 8, 10, 12}
    history = read_history(full.run_dir / "history.csv")
    assert [csv_rows[("test/acc", e, 6 * e)] for e in (1, 2)] == [row["test_acc"] for row in history]

    run = tmp_path / "resumed"  # stopped after epoch 1; later killed after logging epoch 2, before its checkpoint
    train(*SHORT, "logger=csv", "trainer.stop_after=1", run_dir=run)
    shutil.copy(run / "last.pt", tmp_path / "epoch1.pt")
    train(*SHORT, "logger=csv", "resume=true", run_dir=run)
    shutil.copy(tmp_path / "epoch1.pt", run / "last.pt")
    train(*SHORT, "logger=csv", "resume=true", run_dir=run)
    assert _scalars(run) == csv_rows

    bare, _ = train(*SHORT, "~logger", run_dir=tmp_path / "bare")  # no logger: the run records are unchanged
    assert not (bare.run_dir / "tb").exists() and not (bare.run_dir / "scalars.csv").exists()
    untimed = [
        [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in read_history(d / "history.csv")]
        for d in (full.run_dir, run, bare.run_dir)
    ]
    assert untimed[0] == untimed[1] == untimed[2]
    assert read_metrics(bare.run_dir)["test_acc"] == read_metrics(full.run_dir)["test_acc"]


def test_a_missing_logger_package_names_the_pip_command(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(Exception) as err:
        build_trainer("logger=wandb", run_dir=tmp_path / "run")
    found = err.value
    while found is not None and not isinstance(found, ConfigError):
        found = found.__cause__
    assert found is not None and "pip install 'podhl[wandb]'" in str(found)
    assert not (tmp_path / "run").exists()  # refused before the data and the run folder


def test_wandb_offline_gets_the_scalars_and_config_and_a_resume_continues_its_run(run_cli, monkeypatch, tmp_path):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    _, run = run_cli(*SHORT, "logger=wandb", "trainer.stop_after=1")
    first = (run / ".wandb_run_id").read_text()
    run_cli(*SHORT, "logger=wandb", "resume=true", run_dir=run)
    assert (run / ".wandb_run_id").read_text() == first  # the same W&B run, continued
    logs = sorted(run.glob(f"wandb/offline-run-*-{first}/run-{first}.wandb"))
    assert len(logs) == 2
    data = b"".join(p.read_bytes() for p in logs)  # W&B's record log: protobuf, the keys as plain bytes
    for key in (b"train_step/loss", b"train/acc", b"test/acc", b"lr", b"epoch", b"feat_dim", b"limit_train_batches"):
        assert key in data, key
    assert read_metrics(run)["completed"] and len(read_history(run / "history.csv")) == 2


def test_mlflow_file_store_gets_the_scalars_and_params_and_a_resume_continues_its_run(run_cli, monkeypatch, tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses file stores unless told
    uri = (tmp_path / "mlruns").as_uri()
    _, run = run_cli(*SHORT, "logger=mlflow", f"logger.mlflow.tracking_uri={uri}", "trainer.stop_after=1")
    run_cli(*SHORT, "logger=mlflow", f"logger.mlflow.tracking_uri={uri}", "resume=true", run_dir=run)
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("podhl").experiment_id])
    assert len(runs) == 1 and runs[0].info.run_name == run.name and runs[0].info.status == "FINISHED"
    run_id = runs[0].info.run_id
    history = read_history(run / "history.csv")
    acc = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "test/acc"))
    assert acc == [(row["epoch"], pytest.approx(row["test_acc"])) for row in history]
    assert [m.step for m in client.get_metric_history(run_id, "train_step/loss")] == [2, 4, 6, 8, 10, 12]
    params = runs[0].data.params
    assert params["schedule.epochs"] == "2" and params["loss._target_"].endswith("SoftmaxLoss")


def test_a_bad_mlflow_uri_fails_before_training(run_cli):
    pytest.importorskip("mlflow")
    proc, run = run_cli("logger=mlflow", "logger.mlflow.tracking_uri=nosuchscheme://x", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "logger=mlflow (tracking_uri=nosuchscheme://x)" in out, out
    assert not (run / "last.pt").exists() and "Traceback" not in out


def test_ctrl_c_inside_a_tensorboard_write_takes_effect_after_it():
    """A Ctrl-C inside TensorBoard's queue could lose its thread's wake-up and hang the exit (issue 18):
    the writes run with SIGINT deferred, then the KeyboardInterrupt comes, and Python's handler is back."""
    import os
    import signal

    from podhl.engine.loggers import ctrl_c_after

    runner_handler = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, whatever the runner set
    try:
        done = []
        with pytest.raises(KeyboardInterrupt):
            with ctrl_c_after():
                os.kill(os.getpid(), signal.SIGINT)
                done.append("the block ran to its end")
        assert done == ["the block ran to its end"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with ctrl_c_after():  # no Ctrl-C: nothing raised
            pass
    finally:
        signal.signal(signal.SIGINT, runner_handler)
