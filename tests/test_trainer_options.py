"""``trainer.compile``, ``trainer.precision=bf16|fp16`` and ``trainer.channels_last`` through the real CLI
on CPU (digits): each run trains well above chance, stops after epoch 1 and resumes to the end, and writes
the same records as a plain fp32 run (files, history columns, metrics keys, checkpoint contents).

Measured on the shared 2-core machine: ~25 s per option; ``compile`` ~2 min the first time on a machine
(inductor builds its C++ kernels; later runs reuse torch's on-disk cache), so it carries the ``slow``
mark: ``pytest -m "not slow"`` leaves it out."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import torch

from conftest import FAST, read_metrics

# 20 full batches of 64 per epoch (digits' last, smaller batch would make torch.compile compile twice)
RUN = ["schedule.epochs=2", "trainer.limit_train_batches=20"]
FILES = {"metrics.json", "history.csv", "last.pt", "best.pt", "tb", ".hydra", "train.log"}


def _cli(run_dir, *overrides):
    args = [sys.executable, "-m", "podhl.train", *FAST, *RUN, *overrides, f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(args, cwd=run_dir.parent, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _history(run_dir):
    with open(run_dir / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """A plain fp32 run of the same length: the records every option must also write."""
    run = tmp_path_factory.mktemp("plain") / "run"
    _cli(run)
    return run


@pytest.mark.parametrize(
    "option",
    [
        "trainer.precision=bf16",
        "trainer.precision=fp16",  # CPU autocast runs fp16 (slowly); the GradScaler's state goes into last.pt
        "trainer.channels_last=true",
        pytest.param("trainer.compile=true", marks=pytest.mark.slow),
    ],
)
def test_option_trains_resumes_and_records_as_fp32(option, plain, tmp_path):
    run = tmp_path / "run"
    _cli(run, option, "trainer.stop_after=1")
    first = _history(run)
    assert len(first) == 1 and not read_metrics(run)["completed"]
    proc = _cli(run, option, "resume=true")
    assert "resumed" in proc.stdout + proc.stderr
    metrics, history = read_metrics(run), _history(run)
    assert metrics["completed"] and metrics["epochs"] == 2 and [int(r["epoch"]) for r in history] == [1, 2]
    assert history[0] == first[0]  # the resumed invocation kept epoch 1 as written
    assert metrics["test_acc"] > 80.0, metrics  # 10 classes: chance is 10 % (fp32: 92.8 %)

    assert {p.name for p in run.iterdir() if not p.name.startswith(".lock")} == FILES
    assert list(history[0]) == list(_history(plain)[0])  # the same columns, in the same order
    assert set(metrics) == set(read_metrics(plain))
    state, reference = (torch.load(r / "last.pt", weights_only=False) for r in (run, plain))
    assert set(state) == set(reference) and state["epoch"] == 2
    assert set(state["model"]) == set(reference["model"])  # plain parameter names, also when compiled
    assert all(v.dtype == reference["model"][k].dtype for k, v in state["model"].items())  # fp32 weights kept
    if option.endswith("fp16"):
        assert state["scaler"]["scale"] > 0  # the loss scale is checkpointed and restored on resume
