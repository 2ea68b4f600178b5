"""Shared fixtures: run the real CLI in a subprocess, or train in-process from composed overrides."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent

# Tiny CPU workloads (8×8 digits) gain nothing from intra-op threads and lose a lot when several
# processes share the machine's cores: one thread here and in every subprocess the tests start.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)
# Fast settings for CLI runs in tests: no progress bar, CPU.
FAST = ["trainer.progress=false", "trainer.device=cpu"]


def interruptible() -> None:
    """(preexec_fn) A terminal's Ctrl-C reaches the child even where the tests run with SIGINT ignored or blocked."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def interrupt_cli(args: list[str], cwd: Path, when: str, timeout: float = 300) -> tuple[int, str]:
    """Run ``podhl-train <FAST> <args>`` (a multirun's ``-m`` first), send Ctrl-C once a line contains
    ``when``; return the exit code and everything it printed."""
    flags = [a for a in args if a == "-m"]
    cmd = [sys.executable, "-m", "podhl.train", *flags, *FAST, *[a for a in args if a != "-m"]]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=interruptible
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if when in line:
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.communicate(timeout=timeout)[0]
    return proc.returncode, "".join(lines) + rest


@pytest.fixture
def run_cli(tmp_path):
    """run_cli(*overrides, check=True) -> (CompletedProcess, run_dir). Runs ``podhl-train`` for real."""

    def _run(*overrides: str, check: bool = True, run_dir: Path | None = None, multirun: bool = False):
        run_dir = run_dir or tmp_path / "run"
        args = [sys.executable, "-m", "podhl.train", *(["-m"] if multirun else []), *FAST, *overrides]
        if multirun:
            args += [f"hydra.sweep.dir={run_dir}"]
        else:
            args += [f"hydra.run.dir={run_dir}"]
        env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONUNBUFFERED": "1"}
        proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=900)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"podhl-train failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            )
        return proc, run_dir

    return _run


@pytest.fixture
def train(tmp_path):
    """train(*overrides) -> (trainer, metrics): compose the config and fit in-process (no subprocess start-up)."""

    def _train(*overrides: str, run_dir: Path | None = None):
        trainer = build_trainer(*overrides, run_dir=run_dir or tmp_path / "run")
        return trainer, trainer.fit()

    return _train


def build_trainer(*overrides: str, run_dir: Path):
    """The trainer ``podhl-train <overrides>`` would run (with FAST settings), built in-process."""
    from podhl.config import compose_run, run_names
    from podhl.engine.trainer import Trainer

    cfg, choices = compose_run([*FAST, *overrides])
    return Trainer.from_config(cfg, run_dir, run_names(cfg, choices))


def read_metrics(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "metrics.json").read_text())
