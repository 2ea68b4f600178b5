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


# ---------------------------------------------------------------- class sharding (podhl.losses.sharded)
def shard_range(total: int, rank: int, world: int) -> tuple[int, int]:
    """``(start, count)`` of rank ``rank``'s contiguous block of ``total`` rows split over ``world`` ranks:
    the first ``total % world`` ranks hold one row more. The split of insightface's ``PartialFC_V2``
    (``num_local``, ``class_start``; deepinsight/insightface ``recognition/arcface_torch/partial_fc_v2.py``
    @4f227ba)."""
    base, extra = divmod(int(total), int(world))
    return base * rank + min(rank, extra), base + int(rank < extra)


def _gather_padded(tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Every rank's ``tensor`` (first dims ``sizes``, same trailing shape) concatenated in rank order."""
    top = max(sizes)
    padded = tensor.new_zeros((top, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    out = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(out, padded.contiguous())
    return torch.cat([o[:n] for o, n in zip(out, sizes, strict=True)])


def gathered_sizes(n: int, device: torch.device) -> list[int]:
    """Every rank's ``n`` in rank order (one small all-gather and a host sync); ``[n]`` in a single process."""
    if not is_initialized():
        return [int(n)]
    local = torch.tensor([int(n)], device=device, dtype=torch.long)
    out = [torch.empty_like(local) for _ in range(world_size())]
    dist.all_gather(out, local)
    return [int(o) for o in torch.cat(out).tolist()]


def all_gather_rows(tensor: torch.Tensor, sizes: list[int] | None = None) -> torch.Tensor:
    """Every rank's rows concatenated in rank order, without gradient (ranks may hold different numbers
    of rows); ``tensor`` itself in a single process."""
    if not is_initialized():
        return tensor
    sizes = sizes if sizes is not None else gathered_sizes(tensor.shape[0], tensor.device)
    return _gather_padded(tensor.detach(), sizes)


class _AllGatherRows(torch.autograd.Function):
    """All-gather along dim 0 whose backward sums every rank's gradient of the gathered tensor and keeps
    this rank's rows, times ``scale``: with ``scale`` = 1 the exact gradient, with respect to this rank's
    input, of the sum of every rank's objective. insightface's ``AllGatherFunc`` (``partial_fc_v2.py``
    @4f227ba) does the same with one ``reduce`` per rank and multiplies by the world size (``scale`` =
    world: the features' gradient of a loss averaged over ranks, fed to DDP, which averages again)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, sizes: list[int], scale: float):
        ctx.sizes, ctx.rank, ctx.scale = sizes, rank(), scale
        return _gather_padded(tensor, sizes)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        mine = grad[start : start + ctx.sizes[ctx.rank]]
        return (mine.mul_(ctx.scale) if ctx.scale != 1 else mine), None, None


def all_gather_rows_with_grad(tensor: torch.Tensor, sizes: list[int] | None = None, scale: float = 1.0) -> torch.Tensor:
    """``all_gather_rows`` with a gradient (``_AllGatherRows``: summed over ranks, times ``scale``);
    ``tensor`` itself in a single process."""
    if not is_initialized():
        return tensor
    sizes = sizes if sizes is not None else gathered_sizes(tensor.shape[0], tensor.device)
    return _AllGatherRows.apply(tensor, sizes, float(scale))


def all_reduce_max(tensor: torch.Tensor) -> torch.Tensor:
    """Element-wise max over ranks in place (no gradient; no-op in a single process); returns the tensor
    (the sum: ``all_reduce_sum``)."""
    if is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def own_rows_all_columns(local: torch.Tensor, sizes: list[int], counts: list[int]) -> torch.Tensor:
    """From each rank's ``(sum(sizes), counts[rank])`` block of a row- and column-split matrix (rows: every
    rank's samples in rank order; columns: this rank's classes), this rank's rows over every column,
    ``(sizes[rank], sum(counts))``, without gradient: one ``gather`` per rank, so no rank ever holds
    more than its own rows of the whole matrix. ``local`` itself in a single process."""
    if not is_initialized():
        return local
    me, top, out = rank(), max(counts), None
    start = 0
    for dst, n in enumerate(sizes):
        block = local.new_zeros((n, top))
        block[:, : local.shape[1]] = local[start : start + n]
        start += n
        parts = [torch.empty_like(block) for _ in sizes] if dst == me else None
        dist.gather(block, parts, dst=dst)
        if dst == me:
            out = torch.cat([p[:, :c] for p, c in zip(parts, counts, strict=True)], dim=1)
    return out
