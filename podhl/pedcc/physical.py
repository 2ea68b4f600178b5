"""``physical``: the physical model of POD [17] — k unit charges on the sphere pushed apart.

Each step moves every charge along the sphere's tangent, away from its neighbours, and puts it back
on the sphere. The charges repel through a short-range potential whose range shrinks over the steps
(the weight of neighbour j is ((1 + cos θ_ij) / (1 + cos θ_i,nearest))^p, p growing geometrically
from 20 to 1000, which behaves like exp(p·(cos θ − 1)/2) near the nearest neighbour), so the force
concentrates on each charge's nearest neighbours; that minimises the largest nearest-neighbour cosine
faster than the official code's 1/d² Coulomb force with velocities. Dense weights for k ≤ 4096,
otherwise the 16 nearest neighbours, refreshed every 10 steps.

**The same on every machine.** The iteration is chaotic: a rounding difference of 1e-16 in one step
(another CPU's vector width, thread count, BLAS or a GPU) grows into entirely different centroids.
So it runs in exact arithmetic: positions live on an integer grid (unit vectors scaled by 2^b and
rounded, b ≤ 20), every sum is a sum of integers below 2^53 (exact in float64 in any order, on any
BLAS or GPU), and every other operation is one IEEE-754 correctly rounded +, −, ×, ÷, √ or round.
The starting points are drawn as integers (sum of four uniform integers per coordinate). Identical
bits on any IEEE-754 machine, thread count and device; the test runs it under several CPU
instruction sets and thread counts and compares bit for bit.
"""

from __future__ import annotations

import torch

DENSE_MAX_K = 4096  # dense weights up to this k, nearest-neighbour lists above
_NEIGHBOURS, _REFRESH, _CHUNK = 16, 10, 1024
_P_START, _P_END, _LR_START, _LR_END = 20.0, 1000.0, 1.0, 0.01  # geometric schedules over the steps


def grid_bits(terms: int) -> int:
    """Bits b of the grid: a sum of ``terms`` products of two grid integers (|v| ≤ 2^(b+1)) stays below 2^53."""
    return min(20, (50 - max(1, terms - 1).bit_length()) // 2)


def _on_sphere(u: torch.Tensor, scale: float) -> torch.Tensor:
    """Integer rows of norm ≈ scale: the sum of squares of integers is exact, then one rounding each."""
    return torch.round(u * (scale / torch.sqrt((u * u).sum(-1, keepdim=True))))


def _weights(cos: torch.Tensor, p: int, scale: float) -> torch.Tensor:
    """Integer weights round(scale·((1 + cos) / (1 + max cos))^p) along the last dim (self has cos = −1)."""
    top = cos.max(-1, keepdim=True).values
    ratio = (1.0 + cos) / (1.0 + top).clamp_min(1.0 / scale)
    power, out = ratio, torch.ones_like(ratio)
    while p:  # exponentiation by squaring: correctly rounded products only
        if p & 1:
            out = out * power
        power = power * power
        p >>= 1
    return torch.round(out * scale)


def _move(u: torch.Tensor, pull: torch.Tensor, total: torch.Tensor, lr: float, scale: float) -> torch.Tensor:
    """One step of the charges u (integers) away from ``pull`` = Σ_j w_ij u_j (exact), ``total`` = Σ_j w_ij."""
    force = torch.round(-pull / total)
    radial = (force * u).sum(-1, keepdim=True) / (scale * scale)
    tangent = force - torch.round(radial * u)
    return _on_sphere(u + torch.round(lr * tangent), scale)


def _schedule(it: int, iters: int) -> tuple[int, float]:
    """(p, step size) at step ``it``; the step size on a 2^-16 grid, so libm's last bit cannot matter."""
    frac = it / max(iters - 1, 1)
    p = int(round(_P_START * (_P_END / _P_START) ** frac))
    lr = round(2**16 * _LR_START * (_LR_END / _LR_START) ** frac) / 2**16
    return p, lr


def _neighbours(u: torch.Tensor, num: int) -> torch.Tensor:
    """Indices of each row's ``num`` largest-cosine other rows; ties broken by index (exact int64 keys)."""
    k = u.shape[0]
    order = torch.arange(k - 1, -1, -1, device=u.device)  # prefer the lower index on a tie
    out = []
    for s in range(0, k, _CHUNK):
        keys = (u[s : s + _CHUNK] @ u.t()).to(torch.int64) * k + order
        rows = torch.arange(keys.shape[0], device=u.device)
        keys[rows, rows + s] = torch.iinfo(torch.int64).min  # exclude self
        out.append(keys.topk(num, dim=1).indices)
    return torch.cat(out)


def physical(k: int, n: int, seed: int, iters: int | None = None, device: str | torch.device = "cpu") -> torch.Tensor:
    """k unit rows in R^n (n ≥ 2), float64 (k, n) on the CPU; bit-identical on every machine (module docstring)."""
    device = torch.device(device)
    dense = k <= DENSE_MAX_K
    scale = float(2 ** grid_bits(max(n, k if dense else _NEIGHBOURS)))
    gen = torch.Generator().manual_seed(int(seed))
    draws = torch.randint(-(2**16), 2**16, (4, k, n), generator=gen, dtype=torch.int64).sum(0)
    u = _on_sphere(draws.to(device, torch.float64), scale)
    iters = iters or (200 if dense else 150)
    if dense:
        eye = torch.eye(k, dtype=torch.bool, device=device)
        for it in range(iters):
            p, lr = _schedule(it, iters)
            w = _weights((u @ u.t() / (scale * scale)).masked_fill(eye, -1.0), p, scale)
            u = _move(u, w @ u, w.sum(1, keepdim=True), lr, scale)
    else:
        num = min(_NEIGHBOURS, k - 1)
        for it in range(iters):
            if it % _REFRESH == 0:
                index = _neighbours(u, num)
            p, lr = _schedule(it, iters)
            parts = []
            for s in range(0, k, _CHUNK):
                rows, near = u[s : s + _CHUNK], u[index[s : s + _CHUNK]]  # (B, n), (B, K, n)
                w = _weights(torch.bmm(near, rows.unsqueeze(2)).squeeze(2) / (scale * scale), p, scale)
                parts.append(_move(rows, torch.bmm(w.unsqueeze(1), near).squeeze(1), w.sum(1, keepdim=True), lr, scale))
            u = torch.cat(parts)
    return (u / torch.sqrt((u * u).sum(1, keepdim=True))).cpu()
