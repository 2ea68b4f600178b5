"""``mub``: unions of (nearly) mutually unbiased bases and their negatives (any k up to a capacity).

* k ≤ 2n: one basis — ⌈k/2⌉ orthonormal vectors and their negatives (one negative dropped if k is
  odd), the cross-polytope. Max nearest-neighbour cosine exactly 0.
* k > 2n: in R^p, p = 2^m the largest power of two ≤ n, the standard basis plus ⌈k/2p⌉ − 1 bases
  {(−1)^{Q(x) + x·y} / √p : y ∈ F_2^m} (the columns of H·diag((−1)^{Q(x)})/√p, H the
  Sylvester–Hadamard matrix), one per binary quadratic form Q of a set in which every difference
  Q − Q' has a symplectic form of rank r, so that vectors of different bases have
  |cos| ∈ {0, 2^{−r/2}} (the Walsh spectrum of a quadratic form; MacWilliams & Sloane ch. 15).
  m odd: the Gold forms Q_a(x) = Tr(a·x³), 2^m forms with r = m−1. m even: the Kerdock set,
  2^{m−1} forms with r = m (bent differences). With the standard basis (|cos| = 1/√p to all
  others) this gives **max |cos| ≤ 2^{−⌊m/2⌋}** between distinct non-antipodal rows (1/16 for
  p = 256 and p = 512, 1/32 for p = 1024), and 1/√p when only two bases are needed; capacity
  2p·(1 + 2^{m−1}) rows for m even, 2p·(1 + 2^m) for m odd ≥ 3, 8 for p = 2. Which forms, which rows
  of the last basis and the order of the rows are drawn from the seed. For n not a power of two the
  algebraic part spans only p of the n dimensions (e.g. 512 of 768).

Signs and the Hadamard transform are exact; the one Haar rotation (a QR in float64) is not
sensitive to rounding, so two machines agree to float32 rounding.
"""

from __future__ import annotations

import math

import torch

from podhl.pedcc.galois import quadratic_form
from podhl.pedcc.simplex import haar_frame


def num_forms(m: int) -> int:
    """How many quadratic forms on F_2^m the construction has (Gold for m odd, Kerdock for m even)."""
    if m <= 0:
        return 0
    if m == 1:
        return 1  # the Gold "forms" Tr(a·x) are linear: one basis (H/√2) besides the standard one
    return 1 << (m - 1) if m % 2 == 0 else 1 << m


def mub_capacity(dim: int) -> int:
    """The largest k that ``method="mub"`` can place in R^dim."""
    n = int(dim)
    m = n.bit_length() - 1
    return max(2 * n, 2 * (1 << m) * (1 + num_forms(m)))


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


def fwht(x: torch.Tensor) -> torch.Tensor:
    """Sylvester–Hadamard transform along dim 0 (length a power of two), unnormalised: H·x."""
    p = x.shape[0]
    h = 1
    while h < p:
        y = x.reshape(p // (2 * h), 2, h, *x.shape[1:])
        x = torch.stack([y[:, 0] + y[:, 1], y[:, 0] - y[:, 1]], dim=1).reshape(x.shape)
        h *= 2
    return x


def mub(k: int, n: int, seed: int) -> torch.Tensor:
    """Union of nearly mutually unbiased bases and their negatives, (k, n): float64 for k ≤ 2n, else float32
    (built in place: the same bits as casting the float64 set)."""
    gen = torch.Generator().manual_seed(int(seed))
    if k <= 2 * n:  # the cross-polytope: ⌈k/2⌉ orthonormal vectors of R^n and their negatives
        half = haar_frame(n, (k + 1) // 2, gen).t()
        rows = torch.cat([half, -half])[:k]
        return rows[torch.randperm(k, generator=gen)]
    m = n.bit_length() - 1
    p = 1 << m
    num_bases = -(-k // (2 * p))
    forms = torch.randperm(num_forms(m), generator=gen)[: num_bases - 1].tolist()
    last = -(-(k - 2 * p * (num_bases - 1)) // 2)  # vectors (with their negatives) of the last basis
    last_rows = torch.randperm(p, generator=gen)[:last]
    frame = haar_frame(n, p, gen).t()  # (p, n): row x is the image of e_x
    place = torch.argsort(torch.randperm(k, generator=gen))  # construction row j goes to row place[j]
    # Each basis is made (float64), cast and written with its negatives straight into its rows of the
    # float32 result: k·n·4 bytes and one basis at a time, not the float64 stack and its permuted copy
    # (the cast and the negation are exact, so the bits are those of building it all, then permuting).
    out = torch.empty(k, n, dtype=torch.float32)
    start = 0
    for i, u in enumerate([None, *forms]):
        if u is None:
            basis = frame  # the standard basis
        else:
            signs = 1.0 - 2.0 * quadratic_form(m, u).to(torch.float64)  # (−1)^{Q_u(x)}
            basis = fwht(signs.unsqueeze(1) * frame) / math.sqrt(p)  # rows y: Σ_x (−1)^{Q(x)+x·y} e_x
        if i == len(forms):
            basis = basis[last_rows]
        basis = basis.float()
        r = basis.shape[0]
        out[place[start : start + r]] = basis
        neg = min(r, k - start - r)  # odd k: the last negative is dropped
        out[place[start + r : start + r + neg]] = -basis[:neg]
        start += 2 * r
    return out
