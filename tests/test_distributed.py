"""DDP on CPU (gloo): 2 processes × batch B train like 1 process × batch 2B; only rank 0 writes."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from conftest import read_metrics

# GroupNorm makes the model batch-size independent; 6 full global batches of 64 per epoch (digits has 1,437
# training images) so both runs see exactly the same samples at every step.
COMMON = [
    "trainer.progress=false",
    "trainer.device=cpu",
    "trainer.deterministic=true",
    "backbone.norm=group",
    "schedule.epochs=2",
    "schedule.batch_size=64",
    "trainer.limit_train_batches=6",
    "loss=center",
    "seed=1",
]


def _run(prefix: list[str], run_dir, cwd):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [*prefix, *COMMON, f"hydra.run.dir={run_dir}"], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_two_processes_match_one_process_with_the_doubled_batch(tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    _run([sys.executable, "-m", "podhl.train"], single, tmp_path)
    _run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "podhl.train"],
        ddp,
        tmp_path,
    )

    # Tolerance: the runs differ only by float summation order (two half-batch gradients averaged
    # vs one full-batch mean), ~1e-7 per step; 12 SGD steps keep it below 1e-4.
    a, b = read_metrics(single), read_metrics(ddp)
    assert abs(a["test_acc"] - b["test_acc"]) <= 100 / 360 + 1e-9  # at most one of 360 test images flips
    assert abs(a["train_loss"] - b["train_loss"]) <= 1e-4 * abs(a["train_loss"])
    sa = torch.load(single / "last.pt", weights_only=False)
    sb = torch.load(ddp / "last.pt", weights_only=False)
    for name, value in sa["model"].items():
        assert torch.allclose(value, sb["model"][name], rtol=1e-4, atol=1e-4), name
    # the center update (a loss' own state) used the global batch on every rank
    assert torch.allclose(sa["criterion"]["centers"], sb["criterion"]["centers"], rtol=1e-4, atol=1e-4)
    assert torch.allclose(
        sa["criterion"]["classifier.weight"], sb["criterion"]["classifier.weight"], rtol=1e-4, atol=1e-4
    )

    def files(d):
        return sorted(str(p.relative_to(d)).split("/")[0] for p in d.iterdir())

    # rank 0 alone wrote: the same files as the single run, one TensorBoard file, one set of log lines
    assert files(single) == files(ddp)
    assert len(list((ddp / "tb").iterdir())) == 1
    log = (ddp / "train.log").read_text()
    assert log.count("epoch 2/2") == 1
