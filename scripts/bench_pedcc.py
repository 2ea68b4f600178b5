"""Benchmark PEDCC generation on CPU (not a test): time and quality of the physical model.

    python scripts/bench_pedcc.py                  # k=1000,n=768 (target ≤ 10 s) and k=10575,n=512 (≤ 5 min)
    python scripts/bench_pedcc.py --cases 1000x768 --iters 300

No disk cache is read or written. Quality: max / mean nearest-neighbour cosine of the centroids,
next to the same figures for random unit vectors (what the physical model improves on).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import torch

from podhl.pedcc import generate_pedcc, pedcc_quality

TARGETS_S = {(1000, 768): 10.0, (10575, 512): 300.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["1000x768", "10575x512"], help="k x n pairs")
    parser.add_argument("--iters", type=int, default=None, help="physical-model steps (default: the library's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"{platform.processor() or platform.machine()}")
    for case in args.cases:
        k, n = (int(v) for v in case.lower().split("x"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # n outside [2k, 40k] is the point of these cases
            t0 = time.perf_counter()
            c = generate_pedcc(k, n, seed=args.seed, cache=False, iters=args.iters)
            seconds = time.perf_counter() - t0
        q = pedcc_quality(c)
        r = pedcc_quality(torch.randn(k, n, generator=torch.Generator().manual_seed(args.seed)))
        target = TARGETS_S.get((k, n))
        verdict = "" if target is None else f" (target ≤ {target:.0f} s: {'met' if seconds <= target else 'MISSED'})"
        print(f"k={k} n={n}: {seconds:.1f} s{verdict}; max NN cos {q['max_nn_cos']:.4f}, mean NN cos "
              f"{q['mean_nn_cos']:.4f} (random unit vectors: {r['max_nn_cos']:.4f}, {r['mean_nn_cos']:.4f})",
              flush=True)


if __name__ == "__main__":
    main()
