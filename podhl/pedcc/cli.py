"""``podhl-pedcc k n``: generate (or load cached) PEDCC and print its quality.

``--quality`` chooses the report: ``sample`` (default) finds the nearest neighbour of
``--quality-rows`` seeded rows (default 256) among all k, O(rows·k·n), exact when k ≤ rows; ``full``
compares every pair, O(k²·n) (k = 100,000, n = 512: about 7 minutes on one core); ``none`` prints
no quality. The random-unit-vector comparison is measured the same way.
"""

from __future__ import annotations

import argparse
import logging
import time

import torch
import torch.nn.functional as F

from podhl.pedcc.bch import bch_bound
from podhl.pedcc.generate import CACHED_METHODS, METHODS, generate_with_method, pedcc_cache_dir
from podhl.pedcc.mub import mub_bound
from podhl.pedcc.quality import pedcc_quality

QUALITY = ("sample", "full", "none")
DEFAULT_QUALITY_ROWS = 256  # our choice: 256·k·n multiply-adds, ~15 s at k = 1,000,000, n = 512 on one core
_RANDOM_BLOCK = 16384


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``podhl-pedcc`` command line."""
    parser = argparse.ArgumentParser(
        prog="podhl-pedcc",
        description="Generate (or load cached) PEDCC — predefined evenly-distributed class centroids (POD §2.1) — "
        "and print their quality: nearest-neighbour cosines against random unit vectors.",
    )
    parser.add_argument("num_classes", type=int, help="k, the number of classes (≥ 2)")
    parser.add_argument("dim", type=int, help="n, the feature dimension (model.feat_dim)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the construction (loss.pedcc_seed; default 0)")
    parser.add_argument(
        "--method",
        choices=METHODS,
        default="auto",
        help="construction (loss.pedcc_method): auto picks simplex, simplices, mub, bch or physical by (k, n); "
        "default auto",
    )
    parser.add_argument("--iters", type=int, default=None, help="physical-model steps (default 200, 150 for k > 4096)")
    parser.add_argument(
        "--no-cache", action="store_true", help="neither read nor write the disk cache (only physical is cached)"
    )
    parser.add_argument("--device", default="cpu", help="where the physical model runs (cpu, cuda, ...; same result)")
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="torch.set_num_threads(N) before any work (on a shared CPU, 1 is often fastest)",
    )
    parser.add_argument("--out", default=None, help="also save the centroids to this .pt file (for loss.pedcc_file)")
    parser.add_argument(
        "--quality",
        choices=QUALITY,
        default="sample",
        help="quality report: sample (default; the nearest neighbours of --quality-rows seeded rows among all k, "
        "O(rows·k·n), exact when k ≤ rows), full (every pair, O(k²·n)) or none",
    )
    parser.add_argument(
        "--quality-rows",
        type=_positive_int,
        default=DEFAULT_QUALITY_ROWS,
        help=f"rows sampled by --quality sample (default {DEFAULT_QUALITY_ROWS})",
    )
    return parser


@torch.no_grad()
def random_quality(k: int, n: int, seed: int, rows: int | None) -> dict[str, float]:
    """The quality of k random unit vectors (torch.randn with ``seed``): exact when ``rows`` is None or ≥ k,
    else the nearest neighbours of its first ``rows`` vectors among all k, the k vectors drawn in blocks."""
    gen = torch.Generator().manual_seed(seed)
    if rows is None or rows >= k:
        return pedcc_quality(torch.randn(k, n, generator=gen))
    best, q = None, None
    for s in range(0, k, _RANDOM_BLOCK):
        block = F.normalize(torch.randn(min(_RANDOM_BLOCK, k - s), n, generator=gen).double(), dim=1)
        if q is None:
            q = block[:rows]
            best = torch.full((rows,), -3.0, dtype=torch.float64)
        g = q @ block.t()
        if s == 0:
            g.fill_diagonal_(-3.0)  # the sampled rows are this block's first rows: exclude self
        best = torch.maximum(best, g.max(dim=1).values)
    return {"max_nn_cos": float(best.max()), "mean_nn_cos": float(best.mean())}


def main(argv: list[str] | None = None) -> int:
    """``podhl-pedcc k n [options]``: generate PEDCC and print their quality."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t0 = time.perf_counter()
    try:
        c, method = generate_with_method(
            args.num_classes,
            args.dim,
            args.seed,
            args.method,
            cache=not args.no_cache,
            iters=args.iters,
            device=args.device,
        )
    except ValueError as err:
        parser.exit(2, f"podhl-pedcc: error: {err}\n")
    seconds = time.perf_counter() - t0
    if args.out:
        torch.save(c, args.out)
    print(
        f"PEDCC k={args.num_classes} n={args.dim} seed={args.seed} method={method}: {seconds:.2f}s, "
        f"{torch.get_num_threads()} threads (cache: "
        f"{pedcc_cache_dir() if method in CACHED_METHODS and not args.no_cache else 'off'})"
    )
    if args.quality != "none":
        t1 = time.perf_counter()
        rows = args.quality_rows if args.quality == "sample" else None
        q = pedcc_quality(c, rows=rows, seed=args.seed)
        rnd = random_quality(args.num_classes, args.dim, args.seed, rows)
        exact = q["rows_measured"] == args.num_classes
        print(
            f"  quality: {'exact, every pair' if exact else 'sampled'}: the nearest neighbour of "
            f"{q['rows_measured']} of {args.num_classes} rows among all{'' if exact else ' (the max is a lower bound)'}"
            f", {time.perf_counter() - t1:.2f}s"
        )
        print(
            f"  max nearest-neighbour cosine  {q['max_nn_cos']:+.4f}   (random unit vectors: {rnd['max_nn_cos']:+.4f})"
        )
        print(
            f"  mean nearest-neighbour cosine {q['mean_nn_cos']:+.4f}   "
            f"(random unit vectors: {rnd['mean_nn_cos']:+.4f})"
        )
        print(
            f"  min pairwise angle            {q['min_angle_deg']:.2f}°   "
            f"(simplex optimum −1/(k−1) = {q['simplex_bound']:+.4f})"
        )
    if method == "mub":
        print(f"  mub guarantee: max cosine ≤ {mub_bound(args.num_classes, args.dim):+.4f}")
    if method == "bch":
        print(f"  bch guarantee: max cosine ≤ {bch_bound(args.dim):+.4f}")
    if args.out:
        print(f"  saved to {args.out}")
    return 0
