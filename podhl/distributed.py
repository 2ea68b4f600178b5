"""Distributed (DDP) plumbing that degrades to a single process when no process group exists.

``torchrun --nproc_per_node=N podhl-train ...`` sets RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR in the
environment; :func:`init_from_env` starts the process group from them (never a ``--local_rank``
argument). Under SLURM without torchrun, submitit's environment helper exports the same variables.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def _export_slurm_env() -> None:
    """Under ``srun`` with several tasks (and no torchrun), export torch's variables via submitit."""
    if "RANK" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) <= 1:
        return
    try:
        from submitit.helpers import TorchDistributedEnvironment
    except ImportError:  # pragma: no cover - only on clusters without submitit
        return
    TorchDistributedEnvironment().export()


def init_from_env(backend: str = "auto") -> bool:
    """Initialise the default process group if the environment describes more than one process."""
    _export_slurm_env()
    if env_world_size() <= 1 or is_initialized():
        return is_initialized()
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend)
    return True


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks in place (no-op in a single process); returns the tensor."""
    if is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_mean_(tensors) -> None:
    """Average tensors over ranks in place (gradients of parameters a loss owns)."""
    if not is_initialized():
        return
    n = world_size()
    for t in tensors:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t.div_(n)


def all_gather_objects(obj) -> list:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` in a single process."""
    if not is_initialized():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_(tensors, src: int = 0) -> None:
    """Copy rank ``src``'s values to every rank (initial loss parameters/buffers)."""
    if is_initialized():
        with torch.no_grad():
            for t in tensors:
                dist.broadcast(t.data, src=src)


def barrier() -> None:
    if is_initialized():
        dist.barrier()
