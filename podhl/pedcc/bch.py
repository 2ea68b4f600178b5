"""``bch``: nearly mutually unbiased bases beyond ``mub``'s capacity (millions of rows), in exact arithmetic.

In R^p, p = 2^m the largest power of two ≤ n (m ≥ 5), the standard basis plus bases
{(−1)^{Q(x) + x·y} / √p : y ∈ F_2^m}, one per binary quadratic form Q_{a,b}(x) = Tr(a·x³ + b·x⁵),
(a, b) ∈ GF(2^m)², and their negatives. These forms are the cosets of the first-order Reed–Muller
code in the dual of the triple-error-correcting BCH code (MacWilliams & Sloane, *The Theory of
Error-Correcting Codes*, ch. 15; Kasami 1971). They are closed under differences, and the
symplectic form of Q_{a,b} is B(x, y) = Tr(x·L(y)) with L(y)^4 = b·y + a²·y² + a⁴·y⁸ + b⁴·y¹⁶, a
linearized polynomial with at most 16 roots: its radical has dimension ≤ 4 (≤ 3 for m odd, the
radical dimension having m's parity), so every difference has rank r ≥ m − 3 (m odd) or m − 4
(m even), and vectors of different bases meet at |cos| ∈ {0, 2^{−r/2}} (the Walsh spectrum of a
quadratic form), the standard basis at 1/√p. **Max |cos| ≤ 2^{−⌊(m−3)/2⌋}** between distinct
non-antipodal rows: 1/8 for p = 512 and p = 1024, 1/4 for p = 128 and 256; capacity
2p·(1 + 4^m) rows (268 million for p = 512). The Gold forms (b = 0) of ``mub`` are a subset,
so ``mub`` stays the better choice up to its capacity (1/16 for p = 512); ``auto`` uses ``bch`` only
beyond it.

**The same bits on every machine.** Forms, signs and the coordinate map are integer arithmetic; the
seeded draws come from numpy's legacy ``RandomState`` (its stream is frozen, NEP 19), taken as
integers; every entry of the result is 0 or ±1 or ±fl32(1/√p) (one correctly rounded division of
correctly rounded square root). No reduction, no BLAS, no QR. The rotation of R^n that the other
constructions draw from a Haar QR is here a seeded signed permutation of coordinates (the p
algebraic coordinates go to p of the n coordinates): exact, and an isometry like the rotation.
The result is built in float32 directly, block by block, into its seeded row order: k·n·4 bytes
and a few MB more (2 GB at k = 1,000,000, n = 512), about a second per million rows.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from podhl.pedcc.galois import gf_mul, trace

MIN_M = 5  # below 2^5 coordinates a difference of rank 0 (|cos| = 1) is possible


def bch_capacity(dim: int) -> int:
    """The largest k that ``method="bch"`` can place in R^dim (0 when dim < 32)."""
    m = int(dim).bit_length() - 1
    return 0 if m < MIN_M else 2 * (1 << m) * (1 + (1 << (2 * m)))


def bch_bound(dim: int) -> float:
    """The max cosine between distinct non-antipodal rows that ``method="bch"`` guarantees in R^dim."""
    m = int(dim).bit_length() - 1
    return 2.0 ** (-((m - 3) // 2))


def bch_forms(m: int, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(len(a), 2^m) int64 in {0, 1}: Q_{a,b}(x) = Tr(a·x³ + b·x⁵) for x = 0 … 2^m − 1, one row per (a, b)."""
    x = torch.arange(1 << m, dtype=torch.int64)
    x2 = gf_mul(x, x, m)
    x3, x5 = gf_mul(x2, x, m), gf_mul(gf_mul(x2, x2, m), x, m)
    a, b = a.reshape(-1, 1), b.reshape(-1, 1)
    return trace(gf_mul(x3.expand(a.shape[0], -1), a, m) ^ gf_mul(x5.expand(b.shape[0], -1), b, m), m)


def _distinct(rs: np.random.RandomState, high: int, count: int) -> list[int]:
    """``count`` distinct integers in [0, high), in draw order (integer draws of a frozen stream)."""
    if high <= 1 << 22:
        return rs.permutation(high)[:count].tolist()
    seen: dict[int, None] = {}
    while len(seen) < count:
        for v in rs.randint(0, high, size=2 * (count - len(seen)), dtype=np.int64).tolist():
            if len(seen) < count:
                seen.setdefault(v)
    return list(seen)


def bch(k: int, n: int, seed: int, *, block: int = 64) -> torch.Tensor:
    """k unit rows in R^n (k ≤ :func:`bch_capacity`), float32, the same bits on every machine."""
    m = n.bit_length() - 1
    p = 1 << m
    if k > bch_capacity(n):
        raise ValueError(f"method='bch' places at most {bch_capacity(n)} centroids in dim={n}, got num_classes={k}")
    rs = np.random.RandomState(int(seed))
    num_bases = -(-k // (2 * p))  # the standard basis and num_bases − 1 quadratic-form bases
    forms = _distinct(rs, 1 << (2 * m), num_bases - 1)
    coords = torch.from_numpy(rs.permutation(n)[:p].astype(np.int64))  # algebraic coordinate x → coords[x]
    flips = torch.from_numpy(rs.randint(0, 2, size=p).astype(np.int8))  # and its sign (−1)^flips[x]
    last = -(-(k - 2 * p * (num_bases - 1)) // 2)  # vectors (with their negatives) of the last basis
    last_rows = torch.from_numpy(rs.permutation(p)[:last].astype(np.int64))
    order = torch.from_numpy(rs.permutation(k).astype(np.int64))  # row j of the construction → order[j]

    scale = torch.tensor(1.0 / math.sqrt(p), dtype=torch.float32)
    out = torch.zeros(k, n, dtype=torch.float32)
    x = torch.arange(p, dtype=torch.int64)
    dot = torch.zeros(p, p, dtype=torch.int64)  # x·y mod 2 = parity of the bits of x & y
    anded = x.unsqueeze(1) & x.unsqueeze(0)
    for bit in range(m):
        dot ^= (anded >> bit) & 1
    walsh = (dot ^ flips.to(torch.int64).unsqueeze(0)).to(torch.int8)  # (y, x): x·y + flip(x)

    def put(start: int, values: torch.Tensor) -> None:
        """Construction rows ``start`` …: ``values`` (r, p) on the algebraic coordinates, then their negatives."""
        r = values.shape[0]
        for sign, offset in ((1.0, 0), (-1.0, r)):
            lo, hi = start + offset, min(start + offset + r, k)  # odd k: the last negative is dropped
            if lo < hi:
                dense = torch.zeros(hi - lo, n, dtype=torch.float32)
                dense[:, coords] = values[: hi - lo] * sign
                out[order[lo:hi]] = dense

    standard = torch.diag(1.0 - 2.0 * flips.to(torch.float32))  # e_x, signed like every other basis
    put(0, standard[last_rows] if num_bases == 1 else standard)
    start = 2 * p
    for s in range(0, len(forms), block):
        chunk = torch.tensor(forms[s : s + block], dtype=torch.int64)
        q = bch_forms(m, chunk & (p - 1), chunk >> m).to(torch.int8)  # (forms, x)
        for i in range(q.shape[0]):
            bits = walsh ^ q[i].unsqueeze(0)  # (y, x): Q(x) + x·y + flip(x) mod 2
            if s + i == len(forms) - 1:
                bits = bits[last_rows]  # the last basis: the seeded subset of its vectors
            put(start, (1.0 - 2.0 * bits.to(torch.float32)) * scale)
            start += 2 * bits.shape[0]
    return out
