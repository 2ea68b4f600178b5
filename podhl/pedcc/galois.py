"""GF(2^m) arithmetic and the binary quadratic forms of the ``mub`` construction.

Elements are int64 bit masks in the polynomial basis. Q_u are the Gold forms Tr(u·x³) for m odd and
the Kerdock set for m even (MacWilliams & Sloane, *The Theory of Error-Correcting Codes*, ch. 15;
Calderbank, Cameron, Kantor & Seidel, Proc. LMS 1997). Integer arithmetic: exact on any machine.
"""

from __future__ import annotations

import functools

import torch


@functools.cache
def irreducible(m: int) -> int:
    """The smallest irreducible binary polynomial of degree m (bit i = coefficient of X^i)."""

    def rem(a: int, b: int) -> int:
        while a.bit_length() >= b.bit_length():
            a ^= b << (a.bit_length() - b.bit_length())
        return a

    for f in range((1 << m) | 1, 1 << (m + 1), 2):  # constant term 1, else X divides f
        if all(rem(f, g) for g in range(2, 1 << (m // 2 + 1))):
            return f
    raise AssertionError(f"no irreducible polynomial of degree {m}")  # unreachable: one exists for every m


def gf_mul(a: torch.Tensor, b: torch.Tensor | int, m: int) -> torch.Tensor:
    """Products in GF(2^m) = GF(2)[X]/(f): carry-less multiplication, then reduction mod f."""
    f = irreducible(m)
    r = torch.zeros_like(a)
    for i in range(m):
        bit = (b >> i) & 1
        r ^= (a << i) * bit
    for d in range(2 * m - 2, m - 1, -1):
        r ^= ((r >> d) & 1) * (f << (d - m))
    return r


def parity(x: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(x)
    while bool(x.any()):
        out ^= x & 1
        x = x >> 1
    return out


@functools.cache
def trace_mask(m: int) -> int:
    """Tr: GF(2^m) → GF(2) is linear: Tr(z) = parity(z & mask), mask bit i = Tr(X^i)."""
    mask = 0
    for i in range(m):
        z = torch.tensor([1 << i])
        acc = torch.zeros_like(z)
        for _ in range(m):  # z + z² + z⁴ + … + z^{2^{m−1}}
            acc ^= z
            z = gf_mul(z, z, m)
        value = int(acc)
        if value not in (0, 1):
            raise AssertionError(f"trace of X^{i} in GF(2^{m}) is {value}, not in GF(2)")
        mask |= value << i
    return mask


def trace(z: torch.Tensor, m: int) -> torch.Tensor:
    return parity(z & trace_mask(m))


def quadratic_form(m: int, u: int) -> torch.Tensor:
    """Q_u(x) ∈ {0, 1} for x = 0 … 2^m − 1: Gold Tr(u·x³) for m odd, Kerdock for m even."""
    if m % 2 == 1:
        x = torch.arange(1 << m, dtype=torch.int64)
        cube = gf_mul(gf_mul(x, x, m), x, m)
        return trace(gf_mul(cube, u, m), m)
    mp = m - 1  # odd; x = (x', x∞) with index x' + 2^{m−1}·x∞
    ux = gf_mul(torch.arange(1 << mp, dtype=torch.int64), u, mp)
    q = torch.zeros_like(ux)
    power = ux
    for _ in range(1, (mp - 1) // 2 + 1):  # Σ_j Tr((u·x')^{2^j + 1})
        power = gf_mul(power, power, mp)
        q ^= trace(gf_mul(power, ux, mp), mp)
    return torch.cat([q, q ^ trace(ux, mp)])
