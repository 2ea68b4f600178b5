"""One GPU per concurrent sweep job, taken from a pool with file locks.

Hydra's local launchers don't assign GPUs. With ``launch=gpu_pool`` a multirun's jobs run in
parallel processes (the joblib launcher) and each job, before it builds anything, takes the first
free device of ``trainer.gpu_pool.devices`` by locking ``<lock_dir>/gpu-<id>.lock`` (``flock``).
The lock is released when the job ends, and by the OS when its process dies, so a crashed job
never leaks its slot. Jobs beyond the pool's size wait for a slot.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


class NoFreeGpuError(TimeoutError):
    """No device of the pool became free within the timeout."""


def try_acquire(devices: Sequence[int], lock_dir: str | Path) -> tuple[int, int] | None:
    """Lock the first free device: returns (device id, lock file descriptor) or None if all are taken."""
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    for device in devices:
        fd = os.open(lock_dir / f"gpu-{device}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return device, fd
    return None


def release(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


@contextmanager
def gpu_slot(
    devices: Sequence[int], lock_dir: str | Path, poll_s: float = 2.0, timeout_s: float | None = None
) -> Iterator[int]:
    """Hold one device of the pool for the duration of the block (waits while all are taken)."""
    if not devices:
        raise ValueError("trainer.gpu_pool.devices is empty: list the GPU ids jobs may use, e.g. [0,1,2,3]")
    start = time.monotonic()
    while (got := try_acquire(devices, lock_dir)) is None:
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise NoFreeGpuError(f"no free GPU among {list(devices)} after {timeout_s} s (locks in {lock_dir})")
        time.sleep(poll_s)
    device, fd = got
    try:
        yield device
    finally:
        release(fd)
