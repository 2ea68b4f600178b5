"""``podhl-pedcc k n``: generate (or load cached) PEDCC and print its quality."""

from __future__ import annotations

import argparse
import logging
import time

import torch

from podhl.pedcc.generate import METHODS, generate_with_method, pedcc_cache_dir
from podhl.pedcc.mub import mub_bound
from podhl.pedcc.quality import pedcc_quality


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
        help="construction (loss.pedcc_method): auto picks simplex, simplices, mub or physical by (k, n); default auto",
    )
    parser.add_argument("--iters", type=int, default=None, help="physical-model steps (default 200, 150 for k > 4096)")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the disk cache")
    parser.add_argument("--device", default="cpu", help="where the physical model runs (cpu, cuda, ...; same result)")
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="torch.set_num_threads(N) before any work (on a shared CPU, 1 is often fastest)",
    )
    parser.add_argument("--out", default=None, help="also save the centroids to this .pt file (for loss.pedcc_file)")
    return parser


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
    q = pedcc_quality(c)
    gen = torch.Generator().manual_seed(args.seed)
    rnd = pedcc_quality(torch.randn(args.num_classes, args.dim, generator=gen))
    print(
        f"PEDCC k={args.num_classes} n={args.dim} seed={args.seed} method={method}: {seconds:.2f}s, "
        f"{torch.get_num_threads()} threads (cache: {'off' if args.no_cache else pedcc_cache_dir()})"
    )
    print(f"  max nearest-neighbour cosine  {q['max_nn_cos']:+.4f}   (random unit vectors: {rnd['max_nn_cos']:+.4f})")
    print(f"  mean nearest-neighbour cosine {q['mean_nn_cos']:+.4f}   (random unit vectors: {rnd['mean_nn_cos']:+.4f})")
    print(
        f"  min pairwise angle            {q['min_angle_deg']:.2f}°   "
        f"(simplex optimum −1/(k−1) = {q['simplex_bound']:+.4f})"
    )
    if method == "mub":
        print(f"  mub guarantee: max cosine ≤ {mub_bound(args.num_classes, args.dim):+.4f}")
    if args.out:
        print(f"  saved to {args.out}")
    return 0
