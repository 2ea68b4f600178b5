#!/usr/bin/env python
"""Cost of one training step of the center-type losses through the whole criterion protocol (issue 23).

``podhl-bench --sections loss_alone`` times forward + backward only; the center updates run in the hooks.
Here one step is what the training loop runs: ``prepare_batch`` (when due) → ``forward`` → ``backward`` →
``after_optimizer_step``, on random fp32 features (B × d, labels uniform over C) for ``hl``,
``hl_official``, ``center`` and ``ccl`` (past their warm starts), next to linear + cross-entropy. Per
loss and C: median ms per step, bytes autograd saves for backward (``saved_tensors_hooks``), bytes the
forward and the update hooks allocate (every new op output, counted with a ``TorchDispatchMode``;
views and in-place results count 0: the temporaries, not the peak), and for ``ccl`` one
``feature_pass`` over 4 batches. Runs against any checkout (``PYTHONPATH``), so before/after compare:

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python scripts/bench_center_updates.py --classes 10575 100000 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch.utils._python_dispatch import TorchDispatchMode

from podhl.config import compose_config

LOSSES = ("hl", "hl_official", "center", "ccl")
MB = 2**20


class Allocations(TorchDispatchMode):
    """Bytes of the new tensors the ops inside the block return: every output of an op whose schema
    returns no alias (views and in-place ops return aliases of their inputs and count 0), so the sum
    of the temporaries allocated, not the peak."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if any(r.alias_info is not None for r in func._schema.returns):
            return out
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                n = t.numel() * t.element_size()
                self.bytes += n
                self.largest = max(self.largest, n)
        return out


class Saved:
    """Bytes autograd saves for backward inside the block."""

    def __enter__(self):
        self.bytes = 0

        def pack(t):
            self.bytes += t.numel() * t.element_size()
            return t

        self._hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)


def build(name: str, num_classes: int, dim: int):
    overrides = [f"loss={name}", "loss.warmup_epochs=0"] if name.startswith("hl") else [f"loss={name}"]
    if name == "hl_official":
        overrides.append("schedule.epochs=10")
    loss = instantiate(compose_config(overrides).loss, num_classes=num_classes, feat_dim=dim)
    loss.on_epoch_start(2)  # past every warm start
    if name == "ccl":
        loss.centers.copy_(F.normalize(torch.randn(num_classes, dim), dim=1) * 40.0)
        loss.initialized.fill_(True)
    return loss


def protocol_step(loss, feats: torch.Tensor, y: torch.Tensor, measure: bool = False) -> dict:
    """One step as the loop runs it; with ``measure``, the bytes of each phase."""
    out = {}
    for p in loss.parameters():
        p.grad = None
    feats = feats.detach().requires_grad_(True)
    with Allocations() if measure else _null() as prep:
        kw = {"prepared": loss.prepare_batch(feats.detach(), y)} if loss.needs_prepared_batch() else {}
    with Saved() if measure else _null() as saved, Allocations() if measure else _null() as fwd:
        terms = loss(feats, y, **kw)
    terms["loss"].backward()
    with torch.no_grad(), Allocations() if measure else _null() as after:
        loss.after_optimizer_step(feats.detach(), y, **kw)
    if measure:
        out = {
            "saved_mb": saved.bytes / MB,
            "forward_alloc_mb": fwd.bytes / MB,
            "update_alloc_mb": (prep.bytes + after.bytes) / MB,
            "update_largest_mb": max(prep.largest, after.largest) / MB,
        }
    return out


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def linear_ce_step(weight, bias, feats, y) -> None:
    weight.grad = bias.grad = None
    feats = feats.detach().requires_grad_(True)
    F.cross_entropy(F.linear(feats, weight, bias), y).backward()


def bench(num_classes: int, args) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(args.batch, args.dim, generator=g) * 3
    y = torch.randint(0, num_classes, (args.batch,), generator=g)
    weight = torch.randn(num_classes, args.dim, requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    steps = {"linear+ce": lambda: linear_ce_step(weight, bias, feats, y)}
    rows = {"linear+ce": {}}
    with Saved() as saved:
        F.cross_entropy(F.linear(feats.requires_grad_(True), weight, bias), y)
    rows["linear+ce"] = {"saved_mb": saved.bytes / MB}
    feats = feats.detach()
    for name in args.losses:
        loss = build(name, num_classes, args.dim)
        protocol_step(loss, feats, y)  # first update (N_c = 1) outside the measurement
        rows[name] = protocol_step(loss, feats, y, measure=True)
        steps[name] = lambda loss=loss: protocol_step(loss, feats, y)
        if name == "ccl":
            batches = [(feats, y)] * 4
            t0 = time.perf_counter()
            with Allocations() as fp:
                loss.feature_pass(iter(batches))
            rows[name]["feature_pass_4_batches_ms"] = 1e3 * (time.perf_counter() - t0)
            rows[name]["feature_pass_alloc_mb"] = fp.bytes / MB
    times = {n: [] for n in steps}
    for r in range(args.warmup + args.steps):  # interleaved rounds: a slow spell moves a round, not a loss
        for n, fn in steps.items():
            t0 = time.perf_counter()
            fn()
            if r >= args.warmup:
                times[n].append(time.perf_counter() - t0)
    ref = statistics.median(times["linear+ce"])
    out = []
    for n in steps:
        ms = statistics.median(times[n])
        out.append({"classes": num_classes, "loss": n, "ms": 1e3 * ms, "vs_linear_ce": ms / ref, **rows[n]})
    return out


def drift(args) -> list[dict]:
    """HL's running total T (float64, moved by each update's rows) against a fresh float64 sum of the
    centers, and the fp32 sum the dense update used, over ``args.drift`` per-batch updates."""
    from podhl.losses import HypersphereLoss

    rows = []
    c = args.classes[0]
    loss = HypersphereLoss(c, args.dim, warmup_epochs=0)
    loss.on_epoch_start(1)
    g = torch.Generator().manual_seed(1)
    for step in range(1, args.drift + 1):
        f = torch.randn(args.batch, args.dim, generator=g) * 3
        y = torch.randint(0, c, (args.batch,), generator=g)
        loss.after_optimizer_step(f, y, prepared=loss.prepare_batch(f, y))
        if step % max(args.drift // 10, 1) == 0:
            exact = loss.centers.double().sum(0)
            rows.append(
                {
                    "updates": step,
                    "norm_T": float(exact.norm()),
                    "running_T_err": float((loss.center_sum - exact).abs().max()),
                    "fp32_sum_err": float((loss.centers.sum(0).double() - exact).abs().max()),
                }
            )
            print(rows[-1], flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--classes", type=int, nargs="+", default=[10575, 100000])
    p.add_argument("--losses", nargs="+", default=list(LOSSES), choices=LOSSES)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--steps", type=int, default=5, help="timed rounds")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--drift", type=int, default=0, help="instead: HL's running T over this many updates (C[0])")
    p.add_argument("--out", type=Path, default=Path("outputs/bench_center_updates.json"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.drift:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"drift": drift(args)}, indent=2))
        return 0
    load = [round(x, 2) for x in os.getloadavg()]
    results = [row for c in args.classes for row in bench(c, args)]
    keys = list(dict.fromkeys(k for row in results for k in row))
    print(" | ".join(keys))
    for row in results:
        print(" | ".join(f"{row[k]:.3g}" if isinstance(row.get(k), float) else str(row.get(k, "")) for k in keys))
    info = {"threads": torch.get_num_threads(), "load_before": load, "load_after": os.getloadavg()}
    print(info)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": info, "rows": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
