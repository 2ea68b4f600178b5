"""Predefined Evenly-Distributed Class Centroids (PEDCC; POD §2.1, §3.2).

``generate_pedcc(num_classes, dim, seed=0, method="auto")`` returns a float32 (k, n) tensor of unit
rows. Every method is deterministic for a seed (on one machine and thread count).

* ``simplex`` (k ≤ n+1): the exact regular simplex, all pairwise inner products −1/(k−1) and rows
  summing to zero (the optimum of [19]), turned by a seeded uniform (Haar) rotation of R^n.
* ``simplices`` (n+1 < k ≤ 2n, milliseconds): g = k − n regular simplices of ⌊k/g⌋ or ⌈k/g⌉ points
  in mutually orthogonal subspaces (a simplex of s points spans s − 1 dimensions, so together they
  span exactly R^n), turned by a seeded Haar rotation. Inner products −1/(s−1) within a simplex and
  0 across, so the max nearest-neighbour cosine is exactly 0 — the optimum for k > n+1: any k > n+1
  vectors have a pair with inner product ≥ 0, and at most 2n have pairwise inner products ≤ 0
  (Rankin 1955). Rows sum to zero; with equal simplex sizes they form a unit-norm tight frame
  (the minimum of the frame potential Σ cos², Benedetto & Fickus 2003). g = 1 is the simplex,
  k = 2n (s = 2) the cross-polytope ±e_i. Unlike the cross-polytope of ``mub`` (whose ⌈k/2⌉
  antipodal pairs span only ⌈k/2⌉ dimensions) it uses every dimension; on digits with k = 10,
  n = 8 POD reached 99.5 % test accuracy against 98.7 % (cross-polytope) and 99.0 % (physical),
  means of 5 seeds.
* ``mub`` (any k up to a capacity, milliseconds): unions of (nearly) mutually unbiased orthonormal
  bases and their negatives, turned by a seeded Haar rotation into R^n.

  - k ≤ 2n: one basis — ⌈k/2⌉ orthonormal vectors and their negatives (one negative dropped if k is
    odd), the cross-polytope. Max nearest-neighbour cosine exactly 0.
  - k > 2n: in R^p, p = 2^m the largest power of two ≤ n, the standard basis plus ⌈k/2p⌉ − 1
    bases {(−1)^{Q(x) + x·y} / √p : y ∈ F_2^m} (the columns of H·diag((−1)^{Q(x)})/√p, H the
    Sylvester–Hadamard matrix), one per binary quadratic form Q of a set in which every difference
    Q − Q' has a symplectic form of rank r, so that vectors of different bases have
    |cos| ∈ {0, 2^{−r/2}} (the Walsh spectrum of a quadratic form; MacWilliams & Sloane, *The Theory
    of Error-Correcting Codes*, ch. 15). m odd: the Gold forms Q_a(x) = Tr(a·x³), a ∈ GF(2^m),
    2^m forms with r = m−1 (x³ = 1/a has one root, so the radical is 1-dimensional). m even: the
    Kerdock set Q_u(x, x∞) = Σ_{j=1}^{(m−2)/2} Tr((u·x)^{2^j+1}) + x∞·Tr(u·x), x, u ∈ GF(2^{m−1}),
    2^{m−1} forms with r = m (bent differences; MacWilliams & Sloane ch. 15 §5; Calderbank,
    Cameron, Kantor & Seidel, Proc. LMS 1997). With the standard basis (|cos| = 1/√p to all others)
    this gives **max |cos| ≤ 2^{−⌊m/2⌋}** between distinct non-antipodal rows (1/16 for
    p = 256 and p = 512, 1/32 for p = 1024), and 1/√p when only two bases are needed; capacity
    2p·(1 + 2^{m−1}) rows for m even, 2p·(1 + 2^m) for m odd ≥ 3, 8 for p = 2. Which forms, which
    rows of the last basis and the order of the rows are drawn from the seed. For n not a power of
    two the algebraic part spans only p of the n dimensions (e.g. 512 of 768).
* ``physical`` (k > n+1; the previous default, results unchanged): the physical model of [17] —
  k unit charges on the sphere pushed apart, moved along the sphere's tangent, renormalised each
  step. The charges repel through a short-range Gaussian potential exp(t·cos θ) whose range shrinks
  over the iterations (t grows geometrically), so the force concentrates on each charge's nearest
  neighbours; that minimises the largest nearest-neighbour cosine faster than the official code's
  1/d² Coulomb force with velocities. Vectorized: a dense Gram matrix for k ≤ 4096, otherwise
  k-nearest-neighbour lists refreshed every few steps (computed in row chunks). Its cost grows as
  k²·n (k = 10,575, n = 512: 43 s on one thread, 3–5 min on two shared ones, max NN cosine 0.106
  where ``mub`` gives 1/16 in 0.1 s), but
  for a few bases' worth of points it beats ``mub`` (k = 10, n = 4: 0.18 against 0.5;
  k = 1000, n = 128: 0.087 against 0.125).
* ``auto``: ``simplex`` if k ≤ n+1; ``simplices`` if k ≤ 2n (optimal); for k > 2n, when the physical
  model is cheap (k²·(n+256) ≤ 2^29, about 3 s on one CPU thread) both are computed and the one
  with the lower max nearest-neighbour cosine is returned (ties go to ``mub``), otherwise ``mub``,
  or ``physical`` beyond ``mub``'s capacity (e.g. n = 2 with k > 8).

Quality (max / mean nearest-neighbour cosine) is logged and returned by :func:`pedcc_quality`. For
k > n+1 no configuration has all inner products negative (Rankin), so a max cosine ≥ 0 is
expected; a random set's is far higher.

Results are cached on disk, keyed by (k, n, seed, method), in ``$PODHL_CACHE_DIR`` or
``~/.cache/podhl/pedcc``. ``podhl-pedcc k n [--threads N]`` prints the quality figures.
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import os
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

__all__ = ["generate_pedcc", "pedcc_quality", "pedcc_cache_dir", "mub_capacity", "mub_bound", "main"]

log = logging.getLogger("podhl")

METHODS = ("auto", "simplex", "simplices", "mub", "physical")
_CACHE_VERSION = 1  # bump when an algorithm changes so stale files are not reused
_DENSE_MAX_K = 4096
_AUTO_PHYSICAL_MAX_COST = 2**29  # auto also runs the physical model when k²·(n+256) ≤ this (≈ 3 s, 1 thread)


def pedcc_cache_dir() -> Path:
    return Path(os.environ.get("PODHL_CACHE_DIR") or Path.home() / ".cache" / "podhl") / "pedcc"


def mub_capacity(dim: int) -> int:
    """The largest k that ``method="mub"`` can place in R^dim (see the module docstring)."""
    n = int(dim)
    m = n.bit_length() - 1
    return max(2 * n, 2 * (1 << m) * (1 + _num_forms(m)))


def mub_bound(num_classes: int, dim: int) -> float:
    """The max cosine between distinct rows that ``method="mub"`` guarantees for (k, n) (−1 for k = 2)."""
    k, n = int(num_classes), int(dim)
    if k <= 2:
        return -1.0
    if k <= 2 * n:
        return 0.0
    m = n.bit_length() - 1
    if k <= 4 * (1 << m):  # two bases: the standard one and H/√p
        return 2.0 ** (-m / 2)
    return 2.0 ** (-(m // 2))


def _resolve_method(k: int, n: int, method: str) -> str:
    """The method to run: simplex, simplices, mub, physical, or ``auto`` for "the better of physical and mub"."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "auto":
        if k <= n + 1:
            return "simplex"
        if k <= 2 * n:
            return "simplices"  # max cosine 0, the optimum, and a (near-)tight frame of R^n
        mub_ok = k <= mub_capacity(n)
        if mub_ok and k * k * (n + 256) <= _AUTO_PHYSICAL_MAX_COST:
            return "auto"  # the physical model is cheap here: run both, keep the better
        method = "mub" if mub_ok else "physical"
    if method == "simplex" and k > n + 1:
        raise ValueError(
            f"method='simplex' needs num_classes ≤ dim + 1 (a regular simplex of k points spans k−1 "
            f"dimensions), got num_classes={k}, dim={n}; use method='physical' or 'auto', or dim ≥ {k - 1}"
        )
    if method == "simplices" and k > 2 * n:
        raise ValueError(
            f"method='simplices' needs num_classes ≤ 2·dim (at most 2n vectors have pairwise inner products "
            f"≤ 0), got num_classes={k}, dim={n}; use method='mub', 'physical' or 'auto'"
        )
    if method == "simplices" and k <= n + 1:
        return "simplex"  # a single simplex
    if method == "mub" and k > mub_capacity(n):
        raise ValueError(
            f"method='mub' places at most {mub_capacity(n)} centroids in dim={n}, got num_classes={k}; "
            f"use method='physical' or 'auto'"
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

    ``method``: ``auto`` (simplex if k ≤ n+1, simplices if k ≤ 2n, else the better of mub and
    physical when the physical model is cheap, otherwise mub), ``simplex`` (ValueError if k > n+1),
    ``simplices`` (ValueError if k > 2n; the simplex if k ≤ n+1), ``mub`` (ValueError above
    :func:`mub_capacity`), ``physical``. ``iters`` overrides the physical model's step count;
    ``device`` where it runs.
    """
    return _generate(num_classes, dim, seed, method, cache=cache, iters=iters, device=device)[0]


def _generate(
    num_classes: int,
    dim: int,
    seed: int,
    method: str,
    *,
    cache: bool,
    iters: int | None,
    device: str | torch.device,
) -> tuple[torch.Tensor, str]:
    """:func:`generate_pedcc`, also returning the method that produced the centroids."""
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
            stacklevel=3,
        )
    if resolved != "auto":
        return _generate_one(k, n, seed, resolved, cache, iters, device), resolved
    # Few classes per basis: the physical model is cheap here and usually beats the algebraic set.
    candidates = {name: _generate_one(k, n, seed, name, cache, iters, device) for name in ("mub", "physical")}
    scores = {name: pedcc_quality(c)["max_nn_cos"] for name, c in candidates.items()}
    chosen = "physical" if scores["physical"] < scores["mub"] else "mub"
    log.info("PEDCC auto k=%d n=%d: max NN cos mub %.4f, physical %.4f: using %s",
             k, n, scores["mub"], scores["physical"], chosen)
    return candidates[chosen], chosen


def _generate_one(k: int, n: int, seed: int, method: str, cache: bool, iters: int | None,
                  device: str | torch.device) -> torch.Tensor:
    """One concrete method (simplex, simplices, mub or physical), through the disk cache."""
    path = None
    if cache:
        tag = "" if iters is None or method == "mub" else f"_it{iters}"
        path = pedcc_cache_dir() / f"pedcc_k{k}_n{n}_seed{seed}_{method}{tag}_v{_CACHE_VERSION}.pt"
        if path.is_file():
            try:
                stored = torch.load(path, map_location="cpu", weights_only=True)
                if tuple(stored.shape) == (k, n):
                    return stored.float()
            except Exception as err:  # corrupt/partial file: regenerate
                log.warning("PEDCC cache %s unreadable (%s): regenerating", path, err)
    if method == "simplex":
        centroids = _simplex(k, n, seed)
    elif method == "simplices":
        t0 = time.perf_counter()
        centroids = _simplices(k, n, seed)
        log.info("PEDCC simplices k=%d n=%d seed=%d: %d orthogonal simplices, %.2fs, max NN cos 0 (exact)",
                 k, n, seed, k - n, time.perf_counter() - t0)
    else:
        t0 = time.perf_counter()
        if method == "mub":  # the bound is guaranteed: no O(k²·n) quality pass
            centroids = _mub(k, n, seed)
            log.info("PEDCC mub k=%d n=%d seed=%d: %.2fs, max NN cos ≤ %.4f (guaranteed)",
                     k, n, seed, time.perf_counter() - t0, mub_bound(k, n))
        else:
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


def _simplex_coords(s: int) -> torch.Tensor:
    """(s, s−1) float64: a regular simplex of s unit vectors in R^{s−1} (inner products −1/(s−1))."""
    centered = torch.eye(s, dtype=torch.float64) - 1.0 / s
    basis, _ = torch.linalg.qr(centered[:, : s - 1])
    return basis * math.sqrt(s / (s - 1))


def _simplices(k: int, n: int, seed: int) -> torch.Tensor:
    """k − n regular simplices in mutually orthogonal subspaces of R^n (n+1 < k ≤ 2n), float64 (k, n)."""
    gen = torch.Generator().manual_seed(int(seed))
    groups = k - n  # a simplex of s points spans s − 1 dimensions: Σ (s_i − 1) = k − groups = n
    sizes = [k // groups + (1 if i < k % groups else 0) for i in range(groups)]
    frame = _haar_frame(n, n, gen).t()  # (n, n): row j is the image of e_j
    coords = {s: _simplex_coords(s) for s in set(sizes)}
    rows, col = [], 0
    for s in sizes:
        rows.append(coords[s] @ frame[col : col + s - 1])
        col += s - 1
    rows = torch.cat(rows)
    return rows[torch.randperm(k, generator=gen)]


def _haar_frame(n: int, cols: int, gen: torch.Generator) -> torch.Tensor:
    """(n, cols) float64 with orthonormal columns: the first ``cols`` columns of a Haar rotation."""
    q, r = torch.linalg.qr(torch.randn(n, cols, generator=gen, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r)).unsqueeze(0)


def _num_forms(m: int) -> int:
    """How many quadratic forms on F_2^m the mub construction has (Gold for m odd, Kerdock for m even)."""
    if m <= 0:
        return 0
    if m == 1:
        return 1  # the Gold "forms" Tr(a·x) are linear: one basis (H/√2) besides the standard one
    return 1 << (m - 1) if m % 2 == 0 else 1 << m


def _mub(k: int, n: int, seed: int) -> torch.Tensor:
    """Union of nearly mutually unbiased bases and their negatives (module docstring), float64 (k, n)."""
    gen = torch.Generator().manual_seed(int(seed))
    if k <= 2 * n:  # the cross-polytope: ⌈k/2⌉ orthonormal vectors of R^n and their negatives
        half = _haar_frame(n, (k + 1) // 2, gen).t()
        rows = torch.cat([half, -half])[:k]
        return rows[torch.randperm(k, generator=gen)]
    m = n.bit_length() - 1
    p = 1 << m
    num_bases = -(-k // (2 * p))
    forms = torch.randperm(_num_forms(m), generator=gen)[: num_bases - 1].tolist()
    last = -(-(k - 2 * p * (num_bases - 1)) // 2)  # vectors (with their negatives) of the last basis
    last_rows = torch.randperm(p, generator=gen)[:last]
    frame = _haar_frame(n, p, gen).t()  # (p, n): row x is the image of e_x
    parts = [frame]  # the standard basis
    for u in forms:
        signs = 1.0 - 2.0 * _quadratic_form(m, u).to(torch.float64)  # (−1)^{Q_u(x)}
        parts.append(_fwht(signs.unsqueeze(1) * frame) / math.sqrt(p))  # rows y: Σ_x (−1)^{Q(x)+x·y} e_x
    parts[-1] = parts[-1][last_rows]
    rows = torch.cat([torch.cat([b, -b]) for b in parts])[:k]  # odd k: the last negative is dropped
    return rows[torch.randperm(k, generator=gen)]


def _fwht(x: torch.Tensor) -> torch.Tensor:
    """Sylvester–Hadamard transform along dim 0 (length a power of two), unnormalised: H·x."""
    p = x.shape[0]
    h = 1
    while h < p:
        y = x.reshape(p // (2 * h), 2, h, *x.shape[1:])
        x = torch.stack([y[:, 0] + y[:, 1], y[:, 0] - y[:, 1]], dim=1).reshape(x.shape)
        h *= 2
    return x


# --- GF(2^m) arithmetic for the quadratic forms (elements as int64 bit masks, polynomial basis) ---


@functools.lru_cache(maxsize=None)
def _irreducible(m: int) -> int:
    """The smallest irreducible binary polynomial of degree m (bit i = coefficient of X^i)."""

    def rem(a: int, b: int) -> int:
        while a.bit_length() >= b.bit_length():
            a ^= b << (a.bit_length() - b.bit_length())
        return a

    for f in range((1 << m) | 1, 1 << (m + 1), 2):  # constant term 1, else X divides f
        if all(rem(f, g) for g in range(2, 1 << (m // 2 + 1))):
            return f
    raise AssertionError(f"no irreducible polynomial of degree {m}")  # unreachable: one exists for every m


def _gf_mul(a: torch.Tensor, b: torch.Tensor | int, m: int) -> torch.Tensor:
    """Products in GF(2^m) = GF(2)[X]/(f): carry-less multiplication, then reduction mod f."""
    f = _irreducible(m)
    r = torch.zeros_like(a)
    for i in range(m):
        bit = (b >> i) & 1
        r ^= (a << i) * bit
    for d in range(2 * m - 2, m - 1, -1):
        r ^= ((r >> d) & 1) * (f << (d - m))
    return r


def _parity(x: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(x)
    while bool(x.any()):
        out ^= x & 1
        x = x >> 1
    return out


@functools.lru_cache(maxsize=None)
def _trace_mask(m: int) -> int:
    """Tr: GF(2^m) → GF(2) is linear: Tr(z) = parity(z & mask), mask bit i = Tr(X^i)."""
    mask = 0
    for i in range(m):
        z = torch.tensor([1 << i])
        acc = torch.zeros_like(z)
        for _ in range(m):  # z + z² + z⁴ + … + z^{2^{m−1}}
            acc ^= z
            z = _gf_mul(z, z, m)
        value = int(acc)
        if value not in (0, 1):
            raise AssertionError(f"trace of X^{i} in GF(2^{m}) is {value}, not in GF(2)")
        mask |= value << i
    return mask


def _trace(z: torch.Tensor, m: int) -> torch.Tensor:
    return _parity(z & _trace_mask(m))


def _quadratic_form(m: int, u: int) -> torch.Tensor:
    """Q_u(x) ∈ {0, 1} for x = 0 … 2^m − 1: Gold Tr(u·x³) for m odd, Kerdock for m even."""
    if m % 2 == 1:
        x = torch.arange(1 << m, dtype=torch.int64)
        cube = _gf_mul(_gf_mul(x, x, m), x, m)
        return _trace(_gf_mul(cube, u, m), m)
    mp = m - 1  # odd; x = (x', x∞) with index x' + 2^{m−1}·x∞
    ux = _gf_mul(torch.arange(1 << mp, dtype=torch.int64), u, mp)
    q = torch.zeros_like(ux)
    power = ux
    for _ in range(1, (mp - 1) // 2 + 1):  # Σ_j Tr((u·x')^{2^j + 1})
        power = _gf_mul(power, power, mp)
        q ^= _trace(_gf_mul(power, ux, mp), mp)
    return torch.cat([q, q ^ _trace(ux, mp)])


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


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    """``podhl-pedcc k n [--seed S] [--method M] [--threads N]``: generate (or load cached) PEDCC and
    print quality."""
    parser = argparse.ArgumentParser(prog="podhl-pedcc", description=main.__doc__)
    parser.add_argument("num_classes", type=int, help="k, the number of classes")
    parser.add_argument("dim", type=int, help="n, the feature dimension")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--method", choices=METHODS, default="auto")
    parser.add_argument("--iters", type=int, default=None, help="physical-model steps (default by size)")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the disk cache")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=_positive_int, default=None,
                        help="torch.set_num_threads(N) before any work (on a shared CPU, 1 is often fastest)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t0 = time.perf_counter()
    try:
        c, method = _generate(args.num_classes, args.dim, args.seed, args.method, cache=not args.no_cache,
                              iters=args.iters, device=args.device)
    except ValueError as err:
        parser.exit(2, f"podhl-pedcc: error: {err}\n")
    seconds = time.perf_counter() - t0
    q = pedcc_quality(c)
    gen = torch.Generator().manual_seed(args.seed)
    rnd = pedcc_quality(torch.randn(args.num_classes, args.dim, generator=gen))
    print(f"PEDCC k={args.num_classes} n={args.dim} seed={args.seed} method={method}: {seconds:.2f}s, "
          f"{torch.get_num_threads()} threads (cache: {'off' if args.no_cache else pedcc_cache_dir()})")
    print(f"  max nearest-neighbour cosine  {q['max_nn_cos']:+.4f}   (random unit vectors: {rnd['max_nn_cos']:+.4f})")
    print(f"  mean nearest-neighbour cosine {q['mean_nn_cos']:+.4f}   (random unit vectors: {rnd['mean_nn_cos']:+.4f})")
    print(f"  min pairwise angle            {q['min_angle_deg']:.2f}°   (simplex optimum −1/(k−1) = {q['simplex_bound']:+.4f})")
    if method == "mub":
        print(f"  mub guarantee: max cosine ≤ {mub_bound(args.num_classes, args.dim):+.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
