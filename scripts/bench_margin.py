"""Margin heads at many classes: step time and memory of the loss alone (forward + backward).

For B = 256 random features of d = 512 and each C given: every margin head (arc, am, cm, mml, asl,
magface; ``--chunk`` adds arc with class chunks), linear + CE as the reference, and
pytorch-metric-learning's ArcFaceLoss/CosFaceLoss when installed. Per variant:

* ``ms``: median step time over interleaved rounds (``podhl.bench.interleaved``) and the ratio to
  linear + CE in the same round;
* ``saved_mb``: bytes autograd saves for backward, as ``podhl-bench`` counts them (every save counted,
  parameters included), and ``kept_mb``: the distinct storages saved, parameters and the input
  features excluded (the memory the loss keeps alive until backward);
* ``peak_mb``: the rise of the process' peak resident memory over one step from a state without
  gradients (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``; run with
  ``MALLOC_MMAP_THRESHOLD_=65536`` so freed buffers leave the heap): the gradients of W (C × d) and of
  the features included.

Measure before/after a change by running it under two checkouts (``PYTHONPATH``); ``--reference``
sets ``lean = False`` on podhl's heads (the plain autograd formula). Example::

    MALLOC_MMAP_THRESHOLD_=65536 OMP_NUM_THREADS=1 PYTHONPATH=$PWD python scripts/bench_margin.py \\
        --classes 10575 100000 --threads 1 --steps 5 --warmup 2 --out /tmp/margin.json
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from procstat import reset_peak, status_kb

from podhl.bench import interleaved, machine
from podhl.losses.margin import (
    AMCMSoftmaxLoss,
    AMSoftmaxLoss,
    ArcFaceLoss,
    ASoftmaxLoss,
    CombinedMarginLoss,
    MagFaceLoss,
)

HEADS = {
    "arc": ArcFaceLoss,
    "am": AMSoftmaxLoss,
    "cm": CombinedMarginLoss,
    "mml": AMCMSoftmaxLoss,
    "asl": ASoftmaxLoss,
    "magface": MagFaceLoss,
}


def peak_rise_mb(fn) -> float:
    """Rise of the peak RSS over ``fn()`` in MiB (Linux only; -1 elsewhere)."""
    gc.collect()
    if not reset_peak():  # VmHWM back to the current RSS
        return -1.0
    base = status_kb("VmRSS")
    fn()
    return (status_kb("VmHWM") - base) / 1024


def saved(fn, params: list[torch.Tensor], inputs: list[torch.Tensor]) -> tuple[float, float]:
    """(every save counted, distinct non-parameter non-input storages) in MiB, over ``fn()``'s forward."""
    total, kept = [0], {}
    skip = {p.untyped_storage().data_ptr() for p in params + inputs}

    def pack(t):
        total[0] += t.numel() * t.element_size()
        ptr = t.untyped_storage().data_ptr()
        if ptr not in skip:
            kept[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return total[0] / 2**20, sum(kept.values()) / 2**20


def build(c: int, d: int, reference: bool, chunk: int | None, both: bool = False) -> dict:
    """name -> (loss function of features, parameters)."""
    y = torch.randint(0, c, (BATCH[0],))
    linear = torch.nn.Linear(d, c)
    out = {"linear+ce": (lambda f: F.cross_entropy(linear(f), y), list(linear.parameters()))}
    for name, cls in HEADS.items():
        crit = cls(c, d)
        if reference:
            crit.lean = False  # no-op on a checkout without the lean path
        out[name] = (lambda f, crit=crit: crit(f, y)["loss"], [crit.weight])
        if both:  # the same head by the plain autograd formula, timed in the same rounds
            ref = cls(c, d)
            ref.lean = False
            out[f"{name} (reference)"] = (lambda f, crit=ref: crit(f, y)["loss"], [ref.weight])
    if chunk:
        crit = ArcFaceLoss(c, d)
        crit.chunk_size = chunk
        out[f"arc chunk={chunk}"] = (lambda f, crit=crit: crit(f, y)["loss"], [crit.weight])
    try:
        from pytorch_metric_learning import losses as pml
    except ImportError:
        return out
    for name, loss in (
        ("pml arc", pml.ArcFaceLoss(c, d, margin=math.degrees(0.5), scale=30.0)),
        ("pml cosface", pml.CosFaceLoss(c, d, margin=0.35, scale=30.0)),
    ):
        out[name] = (lambda f, loss=loss: loss(f, y), list(loss.parameters()))
    return out


BATCH = [256]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--classes", type=int, nargs="+", default=[10575, 100000])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=5, help="timed rounds (each runs every variant once)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--chunk", type=int, default=None, help="also time arc with this class chunk size")
    p.add_argument("--reference", action="store_true", help="lean = False on podhl's heads")
    p.add_argument("--both", action="store_true", help="also each head with lean = False, in the same rounds")
    p.add_argument("--only", nargs="+", default=None, help="variants to run (default: all)")
    p.add_argument("--out", type=Path, default=Path("outputs/bench_margin.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    BATCH[0] = args.batch
    torch.manual_seed(0)
    rows, before = [], machine()
    for c in args.classes:
        variants = build(c, args.dim, args.reference, args.chunk, args.both)
        if args.only:
            variants = {n: v for n, v in variants.items() if n in args.only or n == "linear+ce"}
        feats = torch.randn(args.batch, args.dim, requires_grad=True)

        def step(fn, params, feats=feats):
            def go():
                feats.grad = None
                for q in params:
                    q.grad = None
                fn(feats).backward()

            return go

        fns = {n: step(fn, params) for n, (fn, params) in variants.items()}
        timed = interleaved(fns, "linear+ce", torch.device("cpu"), args.steps, args.warmup)
        for n, (fn, params) in variants.items():
            feats.grad = None
            for q in params:
                q.grad = None  # the last round's gradients, freed before the baseline
            all_mb, kept_mb = saved(lambda fn=fn, feats=feats: fn(feats), params, [feats])
            peak = peak_rise_mb(fns[n])
            rows.append(
                {
                    "classes": c,
                    "loss": n,
                    "ms": 1e3 * timed[n]["seconds"],
                    "vs_linear_ce": timed[n]["ratio"],
                    "iqr": timed[n]["iqr"],
                    "saved_mb": all_mb,
                    "kept_mb": kept_mb,
                    "peak_mb": peak,
                }
            )
            r = rows[-1]
            print(
                f"C={c:>7} {n:<14} {r['ms']:9.1f} ms  ×{r['vs_linear_ce']:.2f} (iqr {r['iqr']:.2f})  "
                f"saved {all_mb:7.1f} MiB  kept {kept_mb:7.1f} MiB  peak +{peak:7.1f} MiB",
                flush=True,
            )
        del variants, fns
    result = {"machine": before, "machine_after": machine(), "args": vars(args) | {"out": str(args.out)}, "rows": rows}
    result["pid_env"] = {k: os.environ.get(k) for k in ("MALLOC_MMAP_THRESHOLD_", "OMP_NUM_THREADS", "PYTHONPATH")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"{before} → load after {result['machine_after']['load_avg']}; saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
