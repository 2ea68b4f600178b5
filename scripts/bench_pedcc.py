"""Benchmark PEDCC generation on CPU (not a test): time and quality per method.

    python scripts/bench_pedcc.py --threads 1                     # auto: k=1000,n=768 and k=10575,n=512
    python scripts/bench_pedcc.py --threads 1 --method physical   # the previous default, for comparison
    python scripts/bench_pedcc.py --cases 1000x768 --method physical --iters 300

Targets (issue: cost at face-recognition scale): k=1000, n=768 in ≤ 1 s with max nearest-neighbour
cosine ≤ 0.012; k=10,575, n=512 in ≤ 5 s with max NN cosine ≤ 0.08. Only generation is timed (no
disk cache is read or written); quality is measured afterwards: max / mean nearest-neighbour cosine
of the centroids, next to the same figures for random unit vectors. The load average is printed
before and after each case: the machine is shared, so timings carry noise.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import torch
from procstat import load_text

from podhl.pedcc import METHODS, pedcc_quality
from podhl.pedcc.generate import generate_with_method

TARGETS = {(1000, 768): (1.0, 0.012), (10575, 512): (5.0, 0.08)}  # (seconds, max NN cosine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["1000x768", "10575x512"], help="k x n pairs")
    parser.add_argument("--method", choices=METHODS, default="auto")
    parser.add_argument("--iters", type=int, default=None, help="physical-model steps (default: the library's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads(N) before any work")
    args = parser.parse_args()
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be ≥ 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}, method={args.method}, {load_text()}"
    )
    for case in args.cases:
        k, n = (int(v) for v in case.lower().split("x"))
        load_before = load_text()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # n outside [2k, 40k] is the point of these cases
            t0 = time.perf_counter()
            c, used = generate_with_method(k, n, args.seed, args.method, cache=False, iters=args.iters, device="cpu")
            seconds = time.perf_counter() - t0
        load_after = load_text()
        q = pedcc_quality(c)
        r = pedcc_quality(torch.randn(k, n, generator=torch.Generator().manual_seed(args.seed)))
        verdict = ""
        if (k, n) in TARGETS:
            t_max, cos_max = TARGETS[(k, n)]
            ok = seconds <= t_max and q["max_nn_cos"] <= cos_max
            verdict = f" (target ≤ {t_max:g} s and max NN cos ≤ {cos_max:g}: {'met' if ok else 'MISSED'})"
        print(
            f"k={k} n={n} method={used}: {seconds:.2f} s; max NN cos {q['max_nn_cos']:.4f}, mean NN cos "
            f"{q['mean_nn_cos']:.4f}{verdict} (random unit vectors: {r['max_nn_cos']:.4f}, "
            f"{r['mean_nn_cos']:.4f}); {load_before} → {load_after}",
            flush=True,
        )


if __name__ == "__main__":
    main()
