"""Failure behaviour, part 2 (README "Failure behaviour"): config mistakes found up front with the key named,
folders that cannot hold a run, a full disk, stale temporaries, best.pt before last.pt, Ctrl-C before a
checkpoint exists and interrupted sweeps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_failures import ONE

from conftest import FAST, build_trainer, interrupt_cli, read_metrics
from podhl.engine import records
from podhl.engine.records import save_checkpoint
from podhl.engine.run_folder import RunFolder
from podhl.errors import ConfigError, DiskFullError

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}


def _cli(args: list[str]) -> list[str]:
    """``python -m podhl.train`` with FAST settings (a multirun's ``-m`` first)."""
    flags = [a for a in args if a == "-m"]
    return [sys.executable, "-m", "podhl.train", *flags, *FAST, *[a for a in args if a != "-m"]]


# ------------------------------------------------------------------ config mistakes: one line naming the key
NO_DATA = "dataset.root=/nonexistent/podhl-data"  # a check made after reading the data would fail on this instead


@pytest.mark.parametrize(
    "overrides,words",
    [
        (["seed=abc"], "seed must be an integer"),
        (["backbone=frcnn_tiny"], "backbone=frcnn_tiny is a detector backbone"),
        (["loss=pod", "model.feat_dim=1"], "model.feat_dim must be at least 2 for 10 PEDCC class centroids"),
    ],
)
def test_config_mistakes_are_named_before_any_data_is_read(tmp_path, overrides, words):
    with pytest.raises(ConfigError, match=words):
        build_trainer("dataset=mnist", NO_DATA, *overrides, run_dir=tmp_path)


def test_a_detector_needs_a_detector_backbone(tmp_path):
    with pytest.raises(ConfigError, match="needs a detector backbone: use backbone=frcnn"):
        build_trainer("task=detection", "dataset=voc0712", NO_DATA, "backbone=small_cnn", run_dir=tmp_path)


def test_a_bad_seed_exits_2_in_one_line(run_cli):
    proc, _ = run_cli("seed=abc", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "seed must be an integer" in out and "Traceback" not in out, out[-2000:]


def test_a_refused_resume_names_the_changed_key(tmp_path):
    saved = {"schedule": {"epochs": 2, "batch_size": 32}, "seed": 0}
    save_checkpoint({"model": {}, "epoch": 1, "config": saved}, tmp_path / "last.pt")
    now = {"schedule": {"epochs": 3, "batch_size": 32}, "seed": 0}
    with pytest.raises(ConfigError) as info:
        RunFolder(tmp_path).claim(True, False, now)
    assert "schedule.epochs saved 2, now 3" in str(info.value) and "batch_size" not in str(info.value)


# ------------------------------------------------------------------ folders that cannot hold a run
@pytest.mark.parametrize(
    "args,key",
    [
        (lambda f: [f"hydra.run.dir={f}"], "hydra.run.dir"),
        (lambda f: [f"hydra.run.dir={f / 'run'}"], "hydra.run.dir"),
        (lambda f: [f"paths.output_dir={f}"], "paths.output_dir"),
        (lambda f: ["-m", f"paths.output_dir={f}", "seed=1,2"], "paths.output_dir"),
    ],
)
def test_a_run_folder_that_is_a_file_exits_2_in_one_line(tmp_path, args, key):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = subprocess.run(_cli(args(blocker)), cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and f"{key}=" in out and "is a file" in out, out[-2000:]
    assert "Traceback" not in out and blocker.read_text() == "not a folder"


def test_a_read_only_run_folder_is_refused(tmp_path):
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
    elif Path("/proc/self").is_dir():
        folder = Path("/proc")  # permission bits do not stop root; /proc takes no new files, even from root
    else:
        pytest.skip("running as root without /proc: no folder here is read-only to this process")
    try:
        with pytest.raises(ConfigError, match=f"hydra.run.dir={folder / 'run'}: cannot write in {folder}"):
            RunFolder(folder / "run").claim(False, False, {})
    finally:
        if folder != Path("/proc"):
            folder.chmod(0o755)


# ------------------------------------------------------------------ a full disk
def test_a_full_disk_names_the_device_file_and_last_good_checkpoint(tmp_path):
    """The third torch.save (epoch 2's first checkpoint) writes to a file whose every write fails with ENOSPC,
    as on a full disk."""
    run = tmp_path / "run"
    code = f"""
import errno, sys, torch
real, calls = torch.save, [0]
class Full:
    def write(self, data): raise OSError(errno.ENOSPC, "No space left on device")
    def flush(self): pass
def save(obj, f, *args, **kwargs):
    calls[0] += 1
    return real(obj, Full() if calls[0] >= 3 else f, *args, **kwargs)
torch.save = save
sys.argv = ["podhl-train", *{[*FAST, "schedule.epochs=3", "trainer.limit_train_batches=2", f"hydra.run.dir={run}"]!r}]
from podhl.train import main
main()
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out, out[-3000:]
    assert "no space left on " in out and f"while writing {run}/" in out, out[-3000:]
    assert f"the last good checkpoint is {run / 'last.pt'} (epoch 1)" in out, out[-3000:]
    metrics = read_metrics(run)
    assert metrics["status"] == "failed" and "no space left" in metrics["error"]
    assert torch.load(run / "last.pt", weights_only=False)["epoch"] == 1  # the earlier checkpoint is intact
    assert not list(run.glob(".*.tmp"))


def test_a_really_full_disk(run_cli, tmp_path):
    """The same on a real 1.1 MB file system (a tmpfs: where this test may mount one): epoch 1's best.pt fits,
    its last.pt does not (a small_cnn checkpoint is 0.56 MB)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1120k", "tmpfs", str(disk)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("cannot mount a small tmpfs here (needs root with CAP_SYS_ADMIN)")
    try:
        proc, run = run_cli("schedule.epochs=3", "trainer.limit_train_batches=2", check=False, run_dir=disk / "run")
        out = proc.stdout + proc.stderr
        assert proc.returncode == 1 and "Traceback" not in out, out[-3000:]
        assert f"while writing {run / 'last.pt'}; the last good checkpoint is {run / 'best.pt'} (epoch 1)" in out, out
        assert read_metrics(run)["status"] == "failed" and not list(run.glob(".*.tmp"))
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_writer_that_drops_the_os_error_on_a_full_disk(tmp_path, monkeypatch):
    """torch.save to a path reports a full disk only as 'unexpected pos': the file system's free space decides."""

    class Full:
        f_bavail = 0

    def write(tmp):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(records.os, "statvfs", lambda path: Full())
    with pytest.raises(DiskFullError, match=f"no space left on .* while writing {tmp_path / 'x.pt'}"):
        records.atomic_write(tmp_path / "x.pt", write)
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="unexpected pos"):  # with space left, the error stays what it was
        records.atomic_write(tmp_path / "x.pt", write)


def test_ctrl_c_inside_a_checkpoint_write_stays_a_ctrl_c(tmp_path):
    """torch.save turns an exception raised by the file's write into a RuntimeError: Ctrl-C must stay Ctrl-C."""

    class Interrupted:
        def write(self, data):
            raise KeyboardInterrupt

        def flush(self):
            pass

    with pytest.raises(KeyboardInterrupt):
        records.atomic_write(tmp_path / "last.pt", lambda tmp: torch.save({"a": torch.zeros(10)}, Interrupted()))
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ what a killed run leaves
def test_a_run_claiming_its_folder_removes_stale_temporaries(tmp_path):
    config = {"seed": 0}
    save_checkpoint({"model": {}, "epoch": 1, "config": config}, tmp_path / "last.pt")
    live = RunFolder(tmp_path)
    assert live.claim(True, False, config) is True
    stale = [tmp_path / ".last.pt.k3j_x9a2.tmp", tmp_path / ".best.pt.0a1b2c3d.tmp"]
    for path in stale:
        path.write_bytes(b"\0" * 1000)
    with pytest.raises(ConfigError, match="in use by a live run"):
        RunFolder(tmp_path).claim("auto", False, config)
    assert all(p.exists() for p in stale)  # a live holder may be writing them
    live.release()
    for resume, overwrite in (("auto", False), (False, True)):
        for path in stale:
            path.write_bytes(b"\0" * 1000)
        folder = RunFolder(tmp_path)
        folder.claim(resume, overwrite, config)
        folder.release()
        assert not any(p.exists() for p in stale), (resume, overwrite)
    assert (tmp_path / ".lock").exists()


def test_best_epoch_is_recorded_only_with_its_best_pt_on_disk(tmp_path, monkeypatch):
    """A kill while best.pt is written leaves no checkpoint naming a best epoch whose best.pt is missing."""
    run = tmp_path / "run"
    common = ["schedule.epochs=2", "trainer.limit_train_batches=2"]
    real = records.save_checkpoint

    def killed_writing_best(state, path):
        if Path(path).name == "best.pt":
            raise KeyboardInterrupt  # the process dies here
        real(state, path)

    monkeypatch.setattr(records, "save_checkpoint", killed_writing_best)
    with pytest.raises(KeyboardInterrupt):
        build_trainer(*common, run_dir=run).fit()
    monkeypatch.undo()
    for name in ("last.pt", "best.pt"):
        if (run / name).is_file():
            best = torch.load(run / name, weights_only=False)["best_epoch"]
            assert best is None or torch.load(run / "best.pt", weights_only=False)["epoch"] == best, name
    metrics = build_trainer(*common, "resume=auto", run_dir=run).fit()
    assert torch.load(run / "best.pt", weights_only=False)["epoch"] == metrics["best_epoch"]


# ------------------------------------------------------------------ Ctrl-C before a checkpoint, interrupted sweeps
def test_ctrl_c_before_the_first_checkpoint_says_so(tmp_path):
    from podhl.runs.reader import load_runs
    from podhl.runs.tables import auto_spec, build_table

    run = tmp_path / "run"
    # batch 2: a first epoch of ~700 steps, still running when the signal arrives right after start-up
    args = ["schedule.batch_size=2", "schedule.epochs=3", f"hydra.run.dir={run}"]
    code, out = interrupt_cli(args, tmp_path, "run dir ")
    assert code == 130 and "Traceback" not in out, out[-2000:]
    assert "kept" not in out and "no last.pt was written, so there is nothing to resume" in out
    assert not (run / "last.pt").exists()
    assert f"podhl-train {' '.join(FAST)} schedule.batch_size=2 schedule.epochs=3 hydra.run.dir={run}\n" in out
    assert read_metrics(run)["status"] == "interrupted"
    assert RunFolder(run).results() == []  # the hinted command may start again in this folder
    runs = load_runs([run])
    table = build_table(runs, auto_spec(runs, "test_acc"), None)
    assert [why for _, why in table["left_out"]] == ["interrupted before finishing an epoch: not final"]


def test_an_interrupted_sweep_writes_the_summary_of_the_jobs_that_ran(tmp_path):
    sweep = tmp_path / "sweep"
    code, out = interrupt_cli(
        ["-m", "schedule.epochs=1,500", *ONE[1:], "trainer.limit_train_batches=2", f"hydra.sweep.dir={sweep}"],
        tmp_path,
        "epoch 2/500",
    )
    assert code == 130, out[-3000:]
    summary = (sweep / "summary.md").read_text()
    assert "| 0 |" in summary and "| completed |" in summary and "| 1 |" in summary and "| interrupted" in summary, (
        summary
    )
    assert "schedule.epochs=500" in out and f"hydra.run.dir={sweep / '1'} resume=true" in out, out[-3000:]
