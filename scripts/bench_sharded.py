"""Step time and memory of the class-sharded classifier (PartialFC, ``podhl.losses.sharded``) on CPU with gloo.

    OMP_NUM_THREADS=1 python scripts/bench_sharded.py                          # arc, C=100,000, d=512, B=128
    OMP_NUM_THREADS=1 python scripts/bench_sharded.py --loss softmax --classes 20000
    OMP_NUM_THREADS=1 python scripts/bench_sharded.py --loss hl   # penalized epoch: CE + penalty + center update

Cases, each in fresh processes: the unsharded head in one process with the global batch; the sharded
classifier in 1 and 2 gloo processes (global batch split), at sample rate 1.0 and ``--rate``. Per case,
rank 0 prints ``ms`` (median wall time of ``--steps`` forward+backward calls of the loss alone, after one
warm-up; a loss with a warm start, HL, runs its first penalized epoch: prepare_batch (the center update),
forward + backward, after_optimizer_step) and, per rank, ``state_mb`` (the loss's buffers: HL's replicated
centers), ``w_mb`` (the rank's rows of W), ``logits_mb`` (one B_global × rows fp32 matrix)
and ``peak_extra_mb`` (peak resident memory during one forward+backward minus the resident memory just
before; Linux ``VmHWM`` after ``/proc/self/clear_refs``). On one shared CPU the two ranks compete for the
same cores: read the memory, not the speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

from procstat import reset_peak, status_kb


def _case(rank: int, world: int, args, sharded: bool, rate: float) -> dict:
    import torch
    from hydra.utils import instantiate

    from podhl.config import compose_config
    from podhl.losses.sharded import ShardedClassifier

    torch.set_num_threads(1)
    torch.manual_seed(0)
    head = instantiate(compose_config([f"loss={args.loss}"]).loss, num_classes=args.classes, feat_dim=args.dim)
    crit = (ShardedClassifier(head, sample_rate=rate) if sharded else head).train()
    local = args.batch // world
    g = torch.Generator().manual_seed(rank)
    x = torch.randn(local, args.dim, generator=g).requires_grad_()
    y = torch.randint(0, args.classes, (local,), generator=g)
    crit.on_epoch_start(crit.warm_start_epochs + 1)  # HL: penalized from the first step
    times, peak = [], 0.0
    for _ in range(args.steps + 1):
        before = status_kb("VmRSS")
        reset_peak()
        t0 = time.perf_counter()
        extra = {"prepared": crit.prepare_batch(x.detach(), y)} if crit.needs_prepared_batch() else {}
        crit(x, y, **extra)["loss"].backward()
        with torch.no_grad():
            crit.after_optimizer_step(x.detach(), y, **extra)
        times.append(time.perf_counter() - t0)
        peak = max(peak, (status_kb("VmHWM") - before) / 1024)
        x.grad = None
        for p in crit.parameters():
            p.grad = None
    rows = crit.num_sample if sharded else args.classes
    w_rows = crit.count if sharded else args.classes
    return {
        "ms": round(1000 * statistics.median(times[1:]), 1),
        "state_mb": round(sum(b.numel() * b.element_size() for b in crit.buffers()) / 2**20, 1),
        "w_mb": round(w_rows * args.dim * 4 / 2**20, 1),
        "logits_mb": round(args.batch * rows * 4 / 2**20, 1),
        "peak_extra_mb": round(peak, 1),
    }


def _worker(rank: int, world: int, init: str, args, sharded: bool, rate: float, out: str) -> None:
    import torch.distributed as dist

    from podhl.distributed import all_gather_objects

    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    try:
        result = all_gather_objects(_case(rank, world, args, sharded, rate))
        if rank == 0:
            with open(out, "w") as f:
                json.dump(result, f)
    finally:
        dist.destroy_process_group()


def run(args, world: int, sharded: bool, rate: float) -> list[dict]:
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.json")
        mp.spawn(_worker, args=(world, os.path.join(tmp, "init"), args, sharded, rate, out), nprocs=world)
        with open(out) as f:
            return json.load(f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loss", default="arc")
    parser.add_argument("--classes", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=128, help="global batch")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rate", type=float, default=0.1, help="the sampled case's class_sample_rate")
    args = parser.parse_args()
    cases = [
        ("unsharded, 1 process", 1, False, 1.0),
        ("sharded, 1 process", 1, True, 1.0),
        ("sharded, 2 processes", 2, True, 1.0),
        (f"sharded, 2 processes, rate {args.rate:g}", 2, True, args.rate),
    ]
    print(f"loss={args.loss} C={args.classes} d={args.dim} B_global={args.batch}")
    print(
        "| case | rank | ms | loss buffers MB | W rows MB | logits MB | peak extra MB |\n|---|---|---|---|---|---|---|"
    )
    for name, world, sharded, rate in cases:
        for rank, r in enumerate(run(args, world, sharded, rate)):
            print(
                f"| {name} | {rank} | {r['ms']} | {r['state_mb']} | {r['w_mb']} | {r['logits_mb']} | "
                f"{r['peak_extra_mb']} |"
            )


if __name__ == "__main__":
    main()
