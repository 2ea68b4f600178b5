"""GPU-pool assignment on CPU with fake device ids: no two concurrent jobs share one; a crash frees it."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time

from conftest import read_metrics
from podhl.engine.gpu_pool import gpu_slot, try_acquire


def _job(lock_dir, devices, hold_s, queue):
    with gpu_slot(devices, lock_dir, poll_s=0.02) as device:
        start = time.monotonic()
        time.sleep(hold_s)
        queue.put((device, start, time.monotonic()))


def test_concurrent_jobs_never_share_a_device(tmp_path):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    jobs = [ctx.Process(target=_job, args=(str(tmp_path), [0, 1], 0.3, queue)) for _ in range(5)]
    for j in jobs:
        j.start()
    records = [queue.get(timeout=120) for _ in jobs]
    for j in jobs:
        j.join(timeout=60)
    assert {d for d, _, _ in records} == {0, 1}
    for device in (0, 1):
        spans = sorted((s, e) for d, s, e in records if d == device)
        assert all(prev_end <= start for (_, prev_end), (start, _) in zip(spans, spans[1:], strict=False)), spans
    # at most two jobs ever overlapped in time (the pool's size)
    events = sorted([(s, 1) for _, s, _ in records] + [(e, -1) for _, _, e in records])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak <= 2


def test_a_killed_job_frees_its_slot(tmp_path):
    code = (
        "import sys, time; from podhl.engine.gpu_pool import try_acquire;"
        f"got = try_acquire([7], {str(tmp_path)!r}); print(got[0], flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "7"
    assert try_acquire([7], tmp_path) is None  # taken
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    got = try_acquire([7], tmp_path)
    assert got is not None and got[0] == 7


def test_sweep_with_the_gpu_pool_launcher(run_cli, tmp_path):
    _, sweep = run_cli(
        "launch=gpu_pool",
        "trainer.gpu_pool.devices=[0,1]",
        "trainer.gpu_pool.device_type=cpu",
        f"trainer.gpu_pool.lock_dir={tmp_path / 'locks'}",
        "hydra.launcher.n_jobs=2",
        "seed=0,1,2",
        "schedule.epochs=1",
        multirun=True,
    )
    slots = [read_metrics(sweep / str(j))["gpu_slot"] for j in range(3)]
    assert set(slots) <= {0, 1}
