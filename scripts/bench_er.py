"""Time and memory of one loss alone, forward + backward (default: RegularFace ``er`` at CASIA-WebFace's C).

    OMP_NUM_THREADS=1 python scripts/bench_er.py                      # er, B=256, d=512, C=10,575, 1 thread
    OMP_NUM_THREADS=1 python scripts/bench_er.py --loss pod           # any loss config name
    OMP_NUM_THREADS=1 python scripts/bench_er.py --dense              # er with the exclusive term's dense C×C form
    OMP_NUM_THREADS=1 python scripts/bench_er.py --loss hl --protocol # + prepare_batch and after_optimizer_step

Each case runs in a fresh child process, so that its memory figures are its own:

* ``ms``: median wall time of ``--steps`` forward+backward calls after ``--warmup`` (the loss only,
  on random features with ``requires_grad``; ``on_epoch_start(100)`` puts stateful losses past
  their warm starts first);
* ``saved_mb``: bytes of the tensors autograd saves for backward in one forward
  (``torch.autograd.graph.saved_tensors_hooks``);
* ``peak_extra_mb``: the process's peak resident memory during one forward+backward minus its
  resident memory just before (Linux: the peak is reset through ``/proc/self/clear_refs`` and read
  as ``VmHWM``), i.e. everything the call allocates at once, transient blocks included.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from procstat import reset_peak, status_kb


def child(args) -> dict:
    import torch
    from hydra.utils import instantiate

    from podhl.config import compose_config

    torch.manual_seed(0)
    cfg = compose_config([f"loss={args.loss}", *args.overrides])
    criterion = instantiate(cfg.loss, num_classes=args.classes, feat_dim=args.dim)
    criterion.on_epoch_start(100)
    if args.dense:  # the exclusive term as it was: the C×C cosine matrix in autograd
        import podhl.losses.margin.er as er_module

        er_module.exclusive_regularizer = _dense_exclusive
    feats = torch.randn(args.batch, args.dim, requires_grad=True)
    labels = torch.randint(0, args.classes, (args.batch,))

    def run():
        feats.grad = None
        criterion.zero_grad(set_to_none=True)
        for k in range(criterion.steps_per_batch):
            if not args.protocol:
                criterion(feats, labels, step=k)["loss"].backward()
                continue
            # the training loop's protocol: prepare_batch → forward → backward → after_optimizer_step
            extra = {}
            if criterion.needs_prepared_batch():
                extra = {"prepared": criterion.prepare_batch(feats.detach(), labels, k)}
            criterion(feats, labels, step=k, **extra)["loss"].backward()
            with torch.no_grad():
                criterion.after_optimizer_step(feats.detach(), labels, k, **extra)

    run()  # first call: allocator and kernel set-up
    feats.grad = None
    criterion.zero_grad(set_to_none=True)
    before = status_kb("VmRSS")
    exact = reset_peak()
    run()
    peak = status_kb("VmHWM")  # without the reset: the process peak so far (an upper bound)
    for _ in range(args.warmup):
        run()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    saved = [0]

    def pack(t):
        saved[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        sum(criterion(feats, labels, step=k)["loss"] for k in range(criterion.steps_per_batch))
    return {
        "loss": args.loss + (" (dense exclusive term)" if args.dense else ""),
        "overrides": list(args.overrides),
        "protocol": args.protocol,
        "classes": args.classes,
        "batch": args.batch,
        "dim": args.dim,
        "threads": torch.get_num_threads(),
        "ms": 1e3 * statistics.median(times),
        "ms_min": 1e3 * min(times),
        "saved_mb": saved[0] / 2**20,
        "peak_extra_mb": (peak - before) / 1024,
        "peak_reset": exact,
    }


def _dense_exclusive(weight):
    """The exclusive term's dense form (podhl before the row-block search): C×C cosines in autograd."""
    import torch

    w = weight / weight.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos = w @ w.t()
    eye = torch.eye(len(w), dtype=torch.bool, device=w.device)
    return cos.masked_fill(eye, float("-inf")).amax(dim=1).mean()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--loss", default="er")
    p.add_argument("--classes", type=int, default=10575)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--dense", action="store_true", help="er: the exclusive term's dense C×C form")
    p.add_argument(
        "--protocol",
        action="store_true",
        help="run the training loop's protocol: prepare_batch → forward → backward → after_optimizer_step",
    )
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. loss.lam=1")
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return
    cmd = (
        [sys.executable, __file__, "--child", *sys.argv[1:]]
        if argv is None
        else [sys.executable, __file__, "--child", *argv]
    )
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ.copy())
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
