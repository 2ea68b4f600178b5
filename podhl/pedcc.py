"""Predefined Evenly-Distributed Class Centroids (PEDCC; POD §2.1, §3.2).

``generate_pedcc(num_classes, dim, seed=0)`` returns a float32 (k, n) tensor of unit rows:

* ``k ≤ n+1`` (``method="simplex"``): the exact regular simplex, all pairwise inner products
  −1/(k−1) and rows summing to zero (the optimum of [19]), turned by a seeded uniform (Haar)
  rotation of R^n. Deterministic for a seed.
* ``k > n+1`` (``method="physical"``, e.g. ViT-B/16's n=768 with ImageNet's 1000 classes, POD
  Table 8): the physical model of [17] — k unit charges on the sphere pushed apart, moved along the
  sphere's tangent, renormalised each step. The charges repel through a short-range Gaussian
  potential exp(t·cos θ) whose range shrinks over the iterations (t grows geometrically), so the
  force concentrates on each charge's nearest neighbours; that minimises the largest
  nearest-neighbour cosine faster than the official code's 1/d² Coulomb force with velocities.
  Vectorized: a dense Gram matrix for k ≤ 4096, otherwise k-nearest-neighbour lists refreshed
  every few steps (computed in row chunks). Its quality (max / mean nearest-neighbour cosine) is
  logged and returned by :func:`pedcc_quality`. For k > n+1 no configuration has all inner
  products negative (Rankin), so a max cosine ≥ 0 is expected; a random set's is far higher.

Results are cached on disk, keyed by (k, n, seed, method), in ``$PODHL_CACHE_DIR`` or
``~/.cache/podhl/pedcc``. ``podhl-pedcc k n`` prints the quality figures.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

__all__ = ["generate_pedcc", "pedcc_quality", "pedcc_cache_dir", "main"]

log = logging.getLogger("podhl")

METHODS = ("auto", "simplex", "physical")
_CACHE_VERSION = 1  # bump when an algorithm changes so stale files are not reused
_DENSE_MAX_K = 4096


def pedcc_cache_dir() -> Path:
    return Path(os.environ.get("PODHL_CACHE_DIR") or Path.home() / ".cache" / "podhl") / "pedcc"


def _resolve_method(k: int, n: int, method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "auto":
        return "simplex" if k <= n + 1 else "physical"
    if method == "simplex" and k > n + 1:
        raise ValueError(
            f"method='simplex' needs num_classes ≤ dim + 1 (a regular simplex of k points spans k−1 "
            f"dimensions), got num_classes={k}, dim={n}; use method='physical' or 'auto', or dim ≥ {k - 1}"
        )
    if method == "physical" and n < 2:
        raise ValueError(f"method='physical' needs dim ≥ 2, got dim={n}")
    return method


def generate_pedcc(
    num_classes: int,
    dim: int,
    seed: int = 0,
    method: str = "auto",
    *,
    cache: bool = True,
    iters: int | None = None,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """(num_classes, dim) float32 unit rows, evenly distributed on the sphere (see module docstring).

    ``method``: ``auto`` (simplex if k ≤ n+1, else physical), ``simplex`` (ValueError if k > n+1),
    ``physical``. ``iters`` overrides the physical model's step count; ``device`` where it runs.
    """
    k, n = int(num_classes), int(dim)
    if k < 2:
        raise ValueError(f"num_classes must be ≥ 2, got {num_classes}")
    if n < 1:
        raise ValueError(f"dim must be ≥ 1, got {dim}")
    if iters is not None and iters < 1:
        raise ValueError(f"iters must be ≥ 1, got {iters}")
    resolved = _resolve_method(k, n, method)
    if not 2 * k <= n <= 40 * k:
        warnings.warn(
            f"PEDCC: feature dimension n={n} is outside the POD paper's recommended range "
            f"[2k, 40k] = [{2 * k}, {40 * k}] for k={k} classes (POD §3.2)",
            stacklevel=2,
        )
    path = None
    if cache:
        tag = "" if iters is None else f"_it{iters}"
        path = pedcc_cache_dir() / f"pedcc_k{k}_n{n}_seed{seed}_{resolved}{tag}_v{_CACHE_VERSION}.pt"
        if path.is_file():
            try:
                stored = torch.load(path, map_location="cpu", weights_only=True)
                if tuple(stored.shape) == (k, n):
                    return stored.float()
            except Exception as err:  # corrupt/partial file: regenerate
                log.warning("PEDCC cache %s unreadable (%s): regenerating", path, err)
    if resolved == "simplex":
        centroids = _simplex(k, n, seed)
    else:
        t0 = time.perf_counter()
        centroids = _physical(k, n, seed, iters, torch.device(device)).cpu()
        q = pedcc_quality(centroids)
        log.info(
            "PEDCC physical model k=%d n=%d seed=%d: %.1fs, max NN cos %.4f, mean NN cos %.4f",
            k, n, seed, time.perf_counter() - t0, q["max_nn_cos"], q["mean_nn_cos"],
        )
    centroids = centroids.float().contiguous()
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            torch.save(centroids, tmp)
            tmp.replace(path)
        except OSError as err:
            log.warning("PEDCC cache %s not writable (%s)", path, err)
    return centroids


def _simplex(k: int, n: int, seed: int) -> torch.Tensor:
    """Regular simplex: rows of an orthonormal basis of 1^⊥ ⊂ R^k, scaled, then a Haar frame of R^n."""
    gen = torch.Generator().manual_seed(int(seed))
    centered = torch.eye(k, dtype=torch.float64) - 1.0 / k  # rows e_i − 1/k: inner products −1/k
    basis, _ = torch.linalg.qr(centered[:, : k - 1])  # (k, k−1) orthonormal basis of 1^⊥
    simplex = basis * math.sqrt(k / (k - 1))  # row i = coordinates of e_i − 1/k, made unit
    # First k−1 columns of a Haar-random rotation of R^n: QR of a Gaussian with the sign fix.
    q, r = torch.linalg.qr(torch.randn(n, k - 1, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    if k - 1 == n and torch.linalg.det(q) < 0:  # a rotation, not a reflection
        q[:, -1] = -q[:, -1]
    return (simplex @ q.t()).float()


def _schedule(it: int, iters: int, start: float, end: float) -> float:
    return start * (end / start) ** (it / max(iters - 1, 1))


def _repel_step(u: torch.Tensor, neighbours: torch.Tensor, t: float, lr: float) -> torch.Tensor:
    """Move each charge u_i away from its neighbours (B, K, n), weighted by softmax_j(t·cos_ij)."""
    cos = torch.bmm(neighbours, u.unsqueeze(2)).squeeze(2)
    weights = torch.softmax(t * cos, dim=1)
    force = -torch.bmm(weights.unsqueeze(1), neighbours).squeeze(1)
    force = force - (force * u).sum(1, keepdim=True) * u  # tangent to the sphere
    return F.normalize(u + lr * force, dim=1)


def _knn(u: torch.Tensor, num: int, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices and cosines of each row's ``num`` nearest other rows (largest cosine), in row chunks."""
    idx, val = [], []
    for s in range(0, u.shape[0], chunk):
        g = u[s : s + chunk] @ u.t()
        rows = torch.arange(g.shape[0], device=u.device)
        g[rows, rows + s] = -3.0  # exclude self
        v, i = g.topk(num, dim=1)
        idx.append(i)
        val.append(v)
    return torch.cat(idx), torch.cat(val)


def _physical(k: int, n: int, seed: int, iters: int | None, device: torch.device) -> torch.Tensor:
    if device.type == "cpu" and k * k * n < 2**24:  # small: thread start-up costs more than it saves
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return _physical_impl(k, n, seed, iters, device)
        finally:
            torch.set_num_threads(threads)
    return _physical_impl(k, n, seed, iters, device)


def _physical_impl(k: int, n: int, seed: int, iters: int | None, device: torch.device) -> torch.Tensor:
    gen = torch.Generator().manual_seed(int(seed))
    u = F.normalize(torch.randn(k, n, generator=gen), dim=1).to(device)
    t0, t1, lr0, lr1 = 20.0, 1000.0, 1.0, 0.01  # potential sharpness t and step size, geometric schedules
    if k <= _DENSE_MAX_K:
        iters = iters or 200
        for it in range(iters):
            gram = u @ u.t()
            gram.fill_diagonal_(-float("inf"))
            weights = torch.softmax(_schedule(it, iters, t0, t1) * gram, dim=1)
            force = -(weights @ u)
            force = force - (force * u).sum(1, keepdim=True) * u
            u = F.normalize(u + _schedule(it, iters, lr0, lr1) * force, dim=1)
        return u
    iters = iters or 150
    num, refresh, chunk = min(16, k - 1), 10, 1024
    neighbours = None
    for it in range(iters):
        if it % refresh == 0:
            neighbours, _ = _knn(u, num)
        t, lr = _schedule(it, iters, t0, t1), _schedule(it, iters, lr0, lr1)
        u = torch.cat([_repel_step(u[s : s + chunk], u[neighbours[s : s + chunk]], t, lr) for s in range(0, k, chunk)])
    return u


@torch.no_grad()
def pedcc_quality(centroids: torch.Tensor) -> dict[str, float]:
    """Nearest-neighbour cosines of a centroid set: ``max_nn_cos`` (the closest pair), ``mean_nn_cos``
    (mean over rows of the cosine to their nearest other row), ``min_angle_deg`` and, for reference,
    the simplex optimum −1/(k−1) (attainable only for k ≤ n+1)."""
    u = F.normalize(centroids.float(), dim=1)
    _, cos = _knn(u, 1)
    cos = cos[:, 0]
    max_cos = float(cos.max())
    return {
        "max_nn_cos": max_cos,
        "mean_nn_cos": float(cos.mean()),
        "min_angle_deg": math.degrees(math.acos(max(-1.0, min(1.0, max_cos)))),
        "simplex_bound": -1.0 / (u.shape[0] - 1),
    }


def main(argv: list[str] | None = None) -> int:
    """``podhl-pedcc k n [--seed S] [--method M]``: generate (or load cached) PEDCC and print quality."""
    parser = argparse.ArgumentParser(prog="podhl-pedcc", description=main.__doc__)
    parser.add_argument("num_classes", type=int, help="k, the number of classes")
    parser.add_argument("dim", type=int, help="n, the feature dimension")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--method", choices=METHODS, default="auto")
    parser.add_argument("--iters", type=int, default=None, help="physical-model steps (default by size)")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the disk cache")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t0 = time.perf_counter()
    try:
        c = generate_pedcc(args.num_classes, args.dim, args.seed, args.method, cache=not args.no_cache,
                           iters=args.iters, device=args.device)
    except ValueError as err:
        parser.exit(2, f"podhl-pedcc: error: {err}\n")
    seconds = time.perf_counter() - t0
    q = pedcc_quality(c)
    gen = torch.Generator().manual_seed(args.seed)
    rnd = pedcc_quality(torch.randn(args.num_classes, args.dim, generator=gen))
    method = _resolve_method(args.num_classes, args.dim, args.method)
    print(f"PEDCC k={args.num_classes} n={args.dim} seed={args.seed} method={method}: {seconds:.2f}s "
          f"(cache: {'off' if args.no_cache else pedcc_cache_dir()})")
    print(f"  max nearest-neighbour cosine  {q['max_nn_cos']:+.4f}   (random unit vectors: {rnd['max_nn_cos']:+.4f})")
    print(f"  mean nearest-neighbour cosine {q['mean_nn_cos']:+.4f}   (random unit vectors: {rnd['mean_nn_cos']:+.4f})")
    print(f"  min pairwise angle            {q['min_angle_deg']:.2f}°   (simplex optimum −1/(k−1) = {q['simplex_bound']:+.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
