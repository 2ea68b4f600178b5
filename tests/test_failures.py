"""Failure behaviour (docs/failures.md): sweeps that survive failed jobs on every launcher, one run
per folder, bad input caught before training with exit 2, Ctrl-C, mid-epoch checkpoints, file modes."""

from __future__ import annotations

import fcntl
import gzip
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import FAST, build_trainer, interrupt_cli, read_metrics
from podhl.engine.records import read_history
from podhl.errors import ConfigError, DatasetNotFoundError

ONE = ["schedule.epochs=1", "trainer.limit_train_batches=8"]  # lr=1e6 diverges to NaN within 8 batches


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


# ------------------------------------------------------------------ sweeps keep going and report every job
@pytest.mark.parametrize("launcher", ["basic", "submitit_local"])  # joblib: the gpu_pool test below
def test_a_failed_job_does_not_end_the_sweep(run_cli, tmp_path, launcher):
    extra = {"basic": [], "submitit_local": ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"]}[
        launcher
    ]
    proc, sweep = run_cli("schedule.optimizer.lr=1e6,0.05", *ONE, *extra, multirun=True, check=False)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]  # the sweep says a job failed
    failed, done = read_metrics(sweep / "0"), read_metrics(sweep / "1")
    assert failed["status"] == "failed" and failed["exit_code"] == 3 and "NaN/Inf" in failed["error"]
    assert "No checkpoint was written yet" in failed["error"]
    assert done["status"] == "completed" and done["completed"]
    summary = (sweep / "summary.md").read_text()
    assert "failed: training stopped: loss became NaN" in summary and "| completed |" in summary


def test_config_errors_and_the_gpu_pool_launcher(run_cli, tmp_path):
    proc, sweep = run_cli(
        "launch=gpu_pool",
        "trainer.gpu_pool.devices=[0]",
        "trainer.gpu_pool.device_type=cpu",
        f"trainer.gpu_pool.lock_dir={tmp_path / 'locks'}",
        "hydra.launcher.n_jobs=1",
        "loss=pod",
        "loss.alpha=-1,0.01",
        *ONE,
        multirun=True,
        check=False,
    )
    assert proc.returncode == 1
    bad = read_metrics(sweep / "0")
    assert bad["status"] == "failed" and bad["exit_code"] == 2 and "alpha" in bad["error"] and "-1" in bad["error"]
    assert read_metrics(sweep / "1")["completed"]
    again, _ = run_cli("seed=1", *ONE, multirun=True, check=False, run_dir=sweep)  # another sweep into that folder
    assert again.returncode == 2 and "already holds another sweep" in again.stdout + again.stderr


def test_single_run_exit_codes(run_cli, tmp_path):
    nan, run = run_cli("schedule.optimizer.lr=1e6", *ONE, check=False)
    assert nan.returncode == 3 and read_metrics(run)["status"] == "failed"
    bad, _ = run_cli("loss=hl", "loss.phi=2", check=False, run_dir=tmp_path / "bad")
    assert bad.returncode == 2 and "phi must be in (0, 1), got 2" in bad.stdout + bad.stderr
    assert "Traceback" not in bad.stdout + bad.stderr


# ------------------------------------------------------------------ one run folder, one run
def test_a_folder_holds_one_run(run_cli, tmp_path):
    _, run = run_cli(*ONE, "trainer.limit_train_batches=2", "schedule.epochs=2", "trainer.stop_after=1")
    before = _snapshot(run)
    second, _ = run_cli(*ONE, "seed=1", check=False, run_dir=run)
    assert second.returncode == 2 and "already holds another run's results" in second.stdout + second.stderr
    changed, _ = run_cli(
        "schedule.epochs=2", "trainer.limit_train_batches=2", "resume=true", "loss=pod", check=False, run_dir=run
    )  # a refused resume
    assert changed.returncode == 2 and "'loss' differs" in changed.stdout + changed.stderr
    assert _snapshot(run) == before  # neither refusal wrote anything, .hydra and train.log included
    resumed, _ = run_cli("schedule.epochs=2", "trainer.limit_train_batches=2", "resume=true", run_dir=run)
    assert read_metrics(run)["epochs"] == 2 and [r["epoch"] for r in read_history(run / "history.csv")] == [1, 2]
    replaced, _ = run_cli(*ONE, "seed=5", "overwrite=true", run_dir=run)
    assert read_metrics(run)["seed"] == 5 and len(read_history(run / "history.csv")) == 1


def test_resume_needs_a_readable_checkpoint(run_cli, tmp_path):
    typo, _ = run_cli(*ONE, "resume=true", check=False, run_dir=tmp_path / "nothing")
    assert (
        typo.returncode == 2
        and "holds no last.pt" in typo.stdout + typo.stderr
        and "nothing" in typo.stdout + typo.stderr
    )
    _, run = run_cli(
        "schedule.epochs=3",
        "trainer.limit_train_batches=2",
        "trainer.stop_after=2",
        "trainer.select=last",  # best.pt is epoch 2's
        run_dir=tmp_path / "r",
    )
    (run / "last.pt").write_bytes((run / "last.pt").read_bytes()[:100])  # truncated
    damaged, _ = run_cli(
        "schedule.epochs=3",
        "trainer.limit_train_batches=2",
        "trainer.select=last",
        "resume=true",
        check=False,
        run_dir=run,
    )
    out = damaged.stdout + damaged.stderr
    assert damaged.returncode == 2 and "last.pt is damaged" in out and "best.pt (epoch 2) is readable" in out


def test_a_live_run_locks_its_folder_and_a_dead_one_does_not(run_cli, tmp_path):
    run = tmp_path / "locked"
    run.mkdir()
    fd = os.open(run / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, b"4242\n")
    try:
        busy, _ = run_cli(*ONE, check=False, run_dir=run)
        assert busy.returncode == 2 and "in use by a live run (pid 4242)" in busy.stdout + busy.stderr
    finally:
        os.close(fd)  # the holder is gone: the lock file stays, the lock does not
    run_cli(*ONE, run_dir=run)
    assert read_metrics(run)["completed"]


def test_default_run_folders_never_collide(tmp_path):
    code = "from podhl.resolvers import run_stamp; print(run_stamp())"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    stamps = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert len(set(stamps)) == 4, stamps  # same second, different processes


# ------------------------------------------------------------------ bad input stops the run before training
@pytest.mark.parametrize(
    "overrides,words",
    [
        (["schedule.optimizer.lr=-0.1"], "schedule.optimizer.lr"),
        (["trainer.device=gpu"], "is not a device"),
        (["trainer.device=mps"], "MPS is not available"),
        (["trainer.num_workers=-1"], "trainer.num_workers"),
        (["dataset.num_classes=11"], "training split holds 10 classes"),
        (["dataset=imagenet", "dataset.num_classes=3"], "model.feat_dim=<n>"),
    ],
)
def test_bad_input_is_a_config_error(tmp_path, overrides, words):
    with pytest.raises(Exception) as info:
        build_trainer(*overrides, run_dir=tmp_path)
    chain, err = [], info.value
    while err is not None:
        chain.append(str(err))
        err = err.__cause__ or err.__context__
    assert any(words in text for text in chain), chain


def test_config_errors_from_the_cli_exit_2(run_cli, tmp_path):
    proc, _ = run_cli("dataset=imagenet", "dataset.num_classes=3", check=False)
    assert proc.returncode == 2 and "model.feat_dim=<n>" in proc.stdout + proc.stderr


def test_pretrained_weights_without_network_fail_fast(tmp_path, monkeypatch):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(socket, "create_connection", offline)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="backbone.weights=<file>"):
        build_trainer(
            "backbone=resnet18",
            "++backbone.pretrained=true",
            "dataset=synthetic",
            "dataset.train_size=200",
            "dataset.test_size=16",
            run_dir=tmp_path,
        )
    assert time.perf_counter() - start < 30


def _image_tree(root: Path) -> None:
    from PIL import Image

    for split in ("train", "test"):
        for person in ("a", "b"):
            (root / "facescrub" / split / person).mkdir(parents=True)
            Image.new("RGB", (8, 8), (10, 20, 30)).save(root / "facescrub" / split / person / "1.jpg")
    (root / "facescrub" / "train" / "a" / "broken.jpg").write_text("<html>not an image</html>")


def test_a_non_image_file_stops_the_run_or_is_skipped(tmp_path, monkeypatch, caplog):
    from podhl.config import compose_config
    from podhl.data import build_data

    monkeypatch.setenv("PODHL_CACHE_DIR", str(tmp_path / "cache"))
    _image_tree(tmp_path)
    cfg = compose_config(
        ["dataset.val_fraction=0", "dataset=facescrub", "dataset.num_classes=2", f"dataset.root={tmp_path}"]
    )
    with pytest.raises(DatasetNotFoundError, match="broken.jpg") as info:
        build_data(cfg.dataset)
    assert "dataset.skip_bad_images=true" in str(info.value)
    cfg = compose_config(
        [
            "dataset.val_fraction=0",
            "dataset=facescrub",
            "dataset.num_classes=2",
            f"dataset.root={tmp_path}",
            "dataset.skip_bad_images=true",
        ]
    )
    bundle = build_data(cfg.dataset)
    assert len(bundle.train) == 2 and "skipped 1 unreadable files" in caplog.text


def _idx_gz(path: Path, array: np.ndarray) -> None:
    magic = 2051 if array.ndim == 3 else 2049
    header = np.array([magic, *array.shape], dtype=">i4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_mnist_as_the_four_gz_downloads(tmp_path):
    """Real MNIST file format (idx, gzip) written from scikit-learn's digits; read by the MNIST loader."""
    from sklearn.datasets import load_digits

    from podhl.config import compose_config
    from podhl.data import build_data

    digits = load_digits()
    images = np.kron(digits.images[:200] * 15, np.ones((4, 4)))[:, :, :]  # 32 px
    images = np.pad(images, ((0, 0), (0, 0), (0, 0)))[:, 2:30, 2:30]
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, sl in (("train", slice(0, 150)), ("t10k", slice(150, 200))):
        _idx_gz(raw / f"{prefix}-images-idx3-ubyte.gz", images[sl])
        _idx_gz(raw / f"{prefix}-labels-idx1-ubyte.gz", digits.target[sl])
    bundle = build_data(compose_config(["dataset.val_fraction=0", "dataset=mnist", f"dataset.root={tmp_path}"]).dataset)
    assert (len(bundle.train), len(bundle.test)) == (150, 50) and bundle.num_classes == 10


# ------------------------------------------------------------------ Ctrl-C, history lr, file modes
def test_ctrl_c_exits_130_with_one_line_on_how_to_resume(tmp_path):
    run = tmp_path / "run"
    code, out = interrupt_cli(["schedule.epochs=500", f"hydra.run.dir={run}"], tmp_path, "epoch 2/500", timeout=120)
    assert code == 130, out[-2000:]
    assert "Traceback" not in out and "<same overrides>" not in out
    # the run's own overrides, and the checkpoint that is really there
    assert f"podhl-train {' '.join(FAST)} schedule.epochs=500 hydra.run.dir={run} resume=true" in out
    assert f"{run / 'last.pt'} (epoch " in out
    assert read_metrics(run)["status"] == "interrupted" and (run / "last.pt").is_file()


def test_history_lr_is_the_rate_the_epoch_trained_with_and_files_follow_the_umask(train, tmp_path):
    old = os.umask(0o022)
    try:
        train("schedule.epochs=2", "trainer.limit_train_batches=2", run_dir=tmp_path / "run")
    finally:
        os.umask(old)
    rows = read_history(tmp_path / "run" / "history.csv")
    assert rows[0]["lr"] == pytest.approx(0.05) and rows[1]["lr"] < 0.05  # quick schedule: 0.05, then cosine
    for name in ("metrics.json", "history.csv", "last.pt", "best.pt"):
        assert stat.S_IMODE((tmp_path / "run" / name).stat().st_mode) == 0o644, name


# ------------------------------------------------------------------ mid-epoch checkpoints
@pytest.mark.parametrize(
    "data",
    [
        ["trainer.gpu_resident=false", "loss=nac", "loss.norm_source=pedcc_output"],
        [
            "dataset=synthetic",
            "dataset.train_size=320",
            "dataset.test_size=64",
            "trainer.gpu_resident=true",
            "dataset.feat_dim=16",
            "loss=nac",
        ],
        ["loss=hl_ablation/epoch", "loss.warmup_epochs=1"],
    ],
)
def test_mid_epoch_checkpoint_resumes_exactly(tmp_path, data):
    """A run killed inside epoch 2 resumes from its step checkpoint and ends exactly like an uninterrupted run
    (same batches, augmentations, loss state and the loss's per-epoch sums)."""
    common = [*data, "schedule.epochs=2", "trainer.deterministic=true", "seed=4", "schedule.batch_size=32"]
    full = build_trainer(*common, run_dir=tmp_path / "full")
    expected = full.fit()
    crashed = build_trainer(*common, "trainer.checkpoint_every_n_steps=4", run_dir=tmp_path / "crash")
    steps_per_epoch = len(crashed.task.train_batches())
    original, calls = crashed.task.forward, [0]

    def dies_later(model, batch):
        calls[0] += model.training  # training steps only (evaluation goes through forward too)
        if calls[0] > steps_per_epoch + 6:  # inside epoch 2, after its checkpoint at step steps_per_epoch + 4 or so
            raise RuntimeError("killed")
        return original(model, batch)

    crashed.task.forward = dies_later
    with pytest.raises(RuntimeError, match="killed"):
        crashed.fit()
    state = torch.load(tmp_path / "crash" / "last.pt", weights_only=False)
    assert state["in_epoch"] is not None and state["epoch"] == 1 and state["in_epoch"]["batches"] > 0
    resumed = build_trainer(*common, "trainer.checkpoint_every_n_steps=4", "resume=true", run_dir=tmp_path / "crash")
    got = resumed.fit()
    for key in ("test_acc", "train_loss", "train_acc", "mean_feature_norm"):
        assert got[key] == expected[key], key
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    for name, value in full.criterion.state_dict().items():
        assert torch.equal(value, resumed.criterion.state_dict()[name]), name


def test_slurm_launch_requeues_and_resumes(tmp_path):
    from podhl.config import compose_config
    from podhl.engine.run_folder import RunFolder

    cfg = compose_config(["launch=slurm"], return_hydra_config=True)
    assert cfg.resume == "auto" and cfg.trainer.checkpoint_every_n_steps and cfg.hydra.launcher.max_num_timeout >= 1
    folder = RunFolder(tmp_path / "job")
    assert folder.claim("auto", False, {}) is False  # first start: fresh
    folder.release()


def test_a_folder_whose_run_failed_before_an_epoch_can_be_reused(run_cli, tmp_path):
    first, run = run_cli("schedule.optimizer.lr=-1", check=False)
    assert first.returncode == 2 and read_metrics(run)["status"] == "failed"
    run_cli(*ONE, run_dir=run)  # the corrected command, same folder
    assert read_metrics(run)["status"] == "completed"
