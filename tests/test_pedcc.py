"""PEDCC generator: simplex/simplices/mub invariants (brute force), seeding, the physical model's quality
and pinned output, auto routing, cache, CLI."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest
import torch

import podhl.pedcc.generate as generate_mod
import podhl.pedcc.physical as physical_mod
from podhl.errors import ConfigError
from podhl.pedcc import generate_pedcc, load_pedcc_file, main, mub_bound, mub_capacity, pedcc_quality


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PODHL_CACHE_DIR", str(tmp_path / "cache"))


def _random_max_nn_cos(k: int, n: int, seed: int = 123) -> float:
    """Largest cosine between two of k random unit vectors (plain loop over pairs' rows)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.normalize(torch.randn(k, n, generator=g, dtype=torch.float64), dim=1)
    best = -1.0
    for i in range(k):
        c = x[i] @ x.t()
        c[i] = -2.0
        best = max(best, float(c.max()))
    return best


@pytest.mark.filterwarnings("ignore:PEDCC")
@pytest.mark.parametrize("k,n", [(2, 1), (3, 2), (5, 4), (10, 32), (10, 256), (100, 512)])
def test_simplex_invariants(k, n):
    c = generate_pedcc(k, n, seed=0, cache=False)
    assert c.dtype == torch.float32 and c.shape == (k, n)
    c64 = c.double()
    gram = c64 @ c64.t()
    off = gram[~torch.eye(k, dtype=torch.bool)]
    assert torch.allclose(off, torch.full_like(off, -1.0 / (k - 1)), atol=1e-6)
    assert torch.allclose(c64.norm(dim=1), torch.ones(k, dtype=torch.float64), atol=1e-6)
    assert c64.sum(0).abs().max() < 1e-5  # rows sum to zero


def test_simplex_deterministic_per_seed_and_seeds_differ():
    a = generate_pedcc(10, 32, seed=3, cache=False)
    b = generate_pedcc(10, 32, seed=3, cache=False)
    c = generate_pedcc(10, 32, seed=4, cache=False)
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 0.1
    # the random rotation really moves the simplex off the coordinate axes
    assert (a.abs() > 1e-3).float().mean() > 0.9


def test_simplex_demanded_for_too_many_classes_fails_clearly():
    with pytest.raises(ValueError, match=r"simplex.*num_classes ≤ dim \+ 1"):
        generate_pedcc(20, 8, method="simplex")
    with pytest.raises(ValueError, match="method must be one of"):
        generate_pedcc(5, 8, method="magic")
    with pytest.raises(ValueError, match="num_classes must be ≥ 2"):
        generate_pedcc(1, 8)


def test_warns_outside_recommended_dimension_range():
    with pytest.warns(UserWarning, match=r"recommended range \[2k, 40k\]"):
        generate_pedcc(10, 8, cache=False)
    with pytest.warns(UserWarning, match="recommended range"):
        generate_pedcc(2, 100, cache=False)


@pytest.mark.filterwarnings("ignore:PEDCC")
@pytest.mark.parametrize("dense_max_k", [4096, 50])  # dense Gram path, and the k-NN-list path
def test_physical_model_quality(monkeypatch, dense_max_k):
    monkeypatch.setattr(physical_mod, "DENSE_MAX_K", dense_max_k)
    k, n = 200, 24  # k > n + 1: no simplex exists
    c = generate_pedcc(k, n, seed=0, method="physical", cache=False)
    assert c.shape == (k, n) and c.dtype == torch.float32
    assert torch.allclose(c.norm(dim=1), torch.ones(k), atol=1e-5)
    q = pedcc_quality(c)
    random_max = _random_max_nn_cos(k, n)
    assert q["max_nn_cos"] < 0.6 * random_max, (q, random_max)
    assert q["max_nn_cos"] >= -1e-6  # Rankin: k > n+1 points always have a pair with cos ≥ 0
    assert q["mean_nn_cos"] <= q["max_nn_cos"] + 1e-7
    assert torch.equal(c, generate_pedcc(k, n, seed=0, method="physical", cache=False))
    assert not torch.equal(c, generate_pedcc(k, n, seed=1, method="physical", cache=False))


def test_auto_method_switches_at_n_plus_1():
    with pytest.warns(UserWarning):
        at = generate_pedcc(9, 8, cache=False)  # k = n + 1: simplex
    gram = at.double() @ at.double().t()
    assert torch.allclose(gram[0, 1:], torch.full((8,), -1 / 8, dtype=torch.float64), atol=1e-6)
    with pytest.warns(UserWarning):
        over = generate_pedcc(10, 8, cache=False, iters=20)  # k = n + 2: two orthogonal simplices
    assert abs(pedcc_quality(over)["max_nn_cos"]) < 1e-6  # Rankin: ≥ 0 for k > n+1, so 0 is optimal


def test_quality_of_a_known_set():
    c = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    q = pedcc_quality(c)
    assert q["max_nn_cos"] == pytest.approx(0.8, abs=1e-6)  # (0,1)·(0.6,0.8)
    assert q["mean_nn_cos"] == pytest.approx((0.6 + 0.8 + 0.8) / 3, abs=1e-6)
    assert q["simplex_bound"] == pytest.approx(-0.5)


@pytest.mark.filterwarnings("ignore:PEDCC")
def test_disk_cache_keyed_by_k_n_seed_method(tmp_path, monkeypatch):
    first = generate_pedcc(60, 10, seed=2, method="physical", iters=10)
    files = sorted(p.name for p in (tmp_path / "cache" / "pedcc").iterdir())
    assert files == ["pedcc_k60_n10_seed2_physical_it10_v2.pt"]

    def boom(*args, **kwargs):
        raise AssertionError("regenerated instead of reading the cache")

    monkeypatch.setattr(generate_mod, "physical", boom)
    assert torch.equal(generate_pedcc(60, 10, seed=2, method="physical", iters=10), first)
    with pytest.raises(AssertionError, match="regenerated"):
        generate_pedcc(60, 10, seed=3, method="physical", iters=10)  # another seed: another key
    generate_pedcc(5, 10, seed=2)  # simplex: closed form, not cached
    assert not (tmp_path / "cache" / "pedcc" / "pedcc_k5_n10_seed2_simplex_v2.pt").exists()


def test_cli_prints_quality(capsys):
    assert main(["10", "32", "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "method=simplex" in out and "max nearest-neighbour cosine  -0.1111" in out
    with pytest.raises(SystemExit) as exc:
        main(["20", "8", "--method", "simplex"])
    assert exc.value.code == 2
    assert "num_classes ≤ dim + 1" in capsys.readouterr().err


def test_cli_module_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "podhl.pedcc", "4", "16", "--no-cache"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "min pairwise angle" in proc.stdout


# --- simplices, mub (unions of nearly mutually unbiased bases), auto routing, physical pinned, --threads ---

# sha256 (first 16 hex digits) of the float32 bytes of generate_pedcc(k, n, seed=0, method="physical"):
# exact arithmetic makes these the same on every IEEE-754 machine (podhl/pedcc/physical.py).
_PHYSICAL_SHA = {(12, 4): "d40d5bf04a9b4852", (5, 2): "d8858ced31a7e08b", (10, 2): "0ab9212cee3dbbd9"}
_KNN_SHA = "0a696a92afe3f42d"  # k = 200, n = 24, 30 steps through the nearest-neighbour path (DENSE_MAX_K = 50)


def _sha(c: torch.Tensor) -> str:
    return hashlib.sha256(c.contiguous().numpy().tobytes()).hexdigest()[:16]


def _pairwise_cos(c: torch.Tensor) -> torch.Tensor:
    """All off-diagonal cosines, float64, by brute force (the full Gram matrix)."""
    x = c.double()
    x = x / x.norm(dim=1, keepdim=True)
    gram = x @ x.t()
    return gram[~torch.eye(len(x), dtype=torch.bool)]


@pytest.mark.filterwarnings("ignore:PEDCC")
@pytest.mark.parametrize("k,n", [(10, 8), (15, 8), (16, 8), (3, 2), (100, 60), (1000, 768)])
def test_mub_cross_polytope_has_max_cos_zero(k, n):
    c = generate_pedcc(k, n, seed=0, method="mub", cache=False)
    assert c.dtype == torch.float32 and c.shape == (k, n)
    assert torch.allclose(c.double().norm(dim=1), torch.ones(k, dtype=torch.float64), atol=1e-6)
    cos = _pairwise_cos(c)
    non_antipodal = cos[cos > -0.5]
    assert non_antipodal.abs().max() < 1e-6  # pairwise orthogonal apart from ±pairs: max cos 0, optimal
    assert int((cos < -0.5).sum()) == 2 * (k // 2)  # k // 2 antipodal pairs (one row alone when k is odd)
    if k <= 16:
        assert (c.abs() > 1e-3).float().mean() > 0.8  # rotated off the coordinate axes


@pytest.mark.filterwarnings("ignore:PEDCC")
@pytest.mark.parametrize("k,n", [(10, 8), (10, 6), (10, 5), (11, 8), (7, 4), (16, 8), (1000, 768)])
def test_simplices_orthogonal_union_of_simplices(k, n):
    c = generate_pedcc(k, n, seed=0, method="simplices", cache=False)
    assert c.dtype == torch.float32 and c.shape == (k, n)
    x = c.double()
    assert torch.allclose(x.norm(dim=1), torch.ones(k, dtype=torch.float64), atol=1e-6)
    gram = x @ x.t()
    off = gram[~torch.eye(k, dtype=torch.bool)]
    assert off.max() < 1e-6  # max cosine 0: the optimum for k > n + 1 (Rankin)
    assert off.max() > -1e-6  # … and attained (k > n + 1)
    # Groups = connected components of "cos < 0": k − n regular simplices of ⌊k/g⌋ or ⌈k/g⌉ points.
    negative = (gram < -1e-6).double() + torch.eye(k, dtype=torch.float64)
    reach = negative
    for _ in range(k.bit_length()):
        reach = ((reach @ reach) > 0).double()
    sizes = sorted({tuple(torch.nonzero(row).flatten().tolist()) for row in reach}, key=len)
    g = k - n
    assert len(sizes) == g and sum(len(s) for s in sizes) == k
    assert {len(s) for s in sizes} <= {k // g, -(-k // g)}
    for group in sizes:
        sub = gram[list(group)][:, list(group)]
        expect = torch.full_like(sub, -1.0 / (len(group) - 1)).fill_diagonal_(1.0)
        assert torch.allclose(sub, expect, atol=1e-6)
    assert int(torch.linalg.matrix_rank(x)) == n  # spans R^n (the cross-polytope would span ⌈k/2⌉)
    assert x.sum(0).abs().max() < 1e-5  # rows sum to zero
    if k % g == 0:  # equal simplices: a unit-norm tight frame, X^T X = (k/n) I
        assert torch.allclose(x.t() @ x, torch.eye(n, dtype=torch.float64) * k / n, atol=1e-5)
    assert torch.equal(c, generate_pedcc(k, n, seed=0, method="simplices", cache=False))
    assert (c - generate_pedcc(k, n, seed=1, method="simplices", cache=False)).abs().max() > 0.1


@pytest.mark.filterwarnings("ignore:PEDCC")
def test_simplices_limits():
    assert torch.equal(
        generate_pedcc(9, 8, seed=2, method="simplices", cache=False),
        generate_pedcc(9, 8, seed=2, method="simplex", cache=False),
    )  # k ≤ n + 1: one simplex
    with pytest.raises(ValueError, match=r"method='simplices' needs num_classes ≤ 2·dim"):
        generate_pedcc(17, 8, method="simplices", cache=False)


@pytest.mark.filterwarnings("ignore:PEDCC")
@pytest.mark.parametrize(
    "k,n,bound",
    [
        (8, 2, 2**-0.5),  # the regular octagon: the standard basis and H/√2, the whole capacity
        (24, 4, 1 / 2),  # the 24-cell: 3 mutually unbiased bases of R^4, the whole capacity
        (144, 8, 1 / 2),  # m = 3 (Gold, rank 2): all 9 bases
        (288, 16, 1 / 4),  # m = 4 (Kerdock, bent differences): all 9 = 16/2 + 1 bases
        (2112, 32, 1 / 4),  # m = 5: all 33 bases
        (1800, 64, 1 / 8),  # m = 6: 15 bases
        (1500, 128, 1 / 8),  # m = 7: 6 bases, the last one partial
        (501, 48, 1 / 4),  # n not a power of two: 8 bases of R^32 turned into R^48
        (2000, 768, 512**-0.5),  # two bases of R^512 (standard and H/√512) in R^768
        (2561, 512, 1 / 16),  # m = 9: the standard basis and 2 Gold bases, odd k
    ],
)
def test_mub_bound_by_brute_force(k, n, bound):
    c = generate_pedcc(k, n, seed=1, method="mub", cache=False)
    assert c.dtype == torch.float32 and c.shape == (k, n)
    assert torch.allclose(c.double().norm(dim=1), torch.ones(k, dtype=torch.float64), atol=1e-6)
    cos = _pairwise_cos(c)
    antipodal = cos < -1 + 1e-5
    assert int(antipodal.sum()) == 2 * (k // 2)  # each basis vector comes with its negative
    others = cos[~antipodal]
    assert others.max() <= bound + 1e-5  # the guaranteed max cosine …
    assert others.max() >= bound - 1e-5  # … is attained
    assert mub_bound(k, n) == pytest.approx(bound)
    # Different bases meet at |cos| ∈ {0, 2^(−r/2), 1/√p}; nothing else.
    p = 1 << (n.bit_length() - 1)
    levels = torch.tensor([0.0, bound, p**-0.5], dtype=torch.float64)
    gap = (others.abs().unsqueeze(1) - levels).abs().min(dim=1).values
    assert gap.max() < 1e-5
    assert pedcc_quality(c)["max_nn_cos"] == pytest.approx(bound, abs=1e-5)


@pytest.mark.filterwarnings("ignore:PEDCC")
def test_mub_deterministic_per_seed_and_seeds_differ():
    for k, n in [(12, 8), (250, 16), (3000, 512)]:
        a = generate_pedcc(k, n, seed=5, method="mub", cache=False)
        assert torch.equal(a, generate_pedcc(k, n, seed=5, method="mub", cache=False))
        assert (a - generate_pedcc(k, n, seed=6, method="mub", cache=False)).abs().max() > 0.1


@pytest.mark.filterwarnings("ignore:PEDCC")
def test_mub_capacity_and_errors():
    assert [mub_capacity(n) for n in (1, 2, 3, 4, 8, 16, 32, 512)] == [2, 8, 8, 24, 144, 288, 2112, 2 * 512 * 513]
    assert mub_capacity(768) == 2 * 512 * 513  # 512 of the 768 dimensions
    generate_pedcc(24, 4, method="mub", cache=False)
    with pytest.raises(ValueError, match=r"method='mub' places at most 24 centroids in dim=4"):
        generate_pedcc(25, 4, method="mub", cache=False)


@pytest.mark.filterwarnings("ignore:PEDCC")
@pytest.mark.filterwarnings("ignore:PEDCC")
def test_physical_is_the_same_on_every_machine(monkeypatch):
    """The pinned checksums hold here; float32 rounding of a chaotic float iteration would not survive
    another CPU (the test below shows the old model moving under another instruction set)."""
    for (k, n), sha in _PHYSICAL_SHA.items():
        assert _sha(generate_pedcc(k, n, seed=0, method="physical", cache=False)) == sha, (k, n)
    monkeypatch.setattr(physical_mod, "DENSE_MAX_K", 50)
    assert _sha(generate_pedcc(200, 24, seed=0, method="physical", cache=False, iters=30)) == _KNN_SHA


_SUBPROCESS_SHAS = """
import hashlib, sys, warnings, torch
warnings.simplefilter("ignore")
import podhl.pedcc.physical as ph
from podhl.pedcc import generate_pedcc
sha = lambda c: hashlib.sha256(c.contiguous().numpy().tobytes()).hexdigest()[:16]
out = [sha(generate_pedcc(12, 4, seed=0, method="physical", cache=False)),
       sha(generate_pedcc(40, 8, seed=3, method="physical", cache=False))]
ph.DENSE_MAX_K = 50
out.append(sha(generate_pedcc(200, 24, seed=0, method="physical", cache=False, iters=30)))
out.append(torch.backends.cpu.get_cpu_capability())
print(" ".join(out))
"""


@pytest.mark.parametrize("capability,threads", [("default", 1), ("avx2", 2), ("avx512", 1)])
def test_physical_identical_under_other_instruction_sets_and_threads(capability, threads):
    """ATEN_CPU_CAPABILITY switches torch's CPU kernels (vector width, reduction order) as another machine would."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS_SHAS], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    *shas, _ = proc.stdout.split()
    assert shas[0] == _PHYSICAL_SHA[(12, 4)] and shas[2] == _KNN_SHA
    with pytest.warns(UserWarning):
        here = generate_pedcc(40, 8, seed=3, method="physical", cache=False)
    assert shas[1] == _sha(here)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_physical_identical_on_gpu():
    with pytest.warns(UserWarning):
        assert (
            _sha(generate_pedcc(12, 4, seed=0, method="physical", cache=False, device="cuda")) == _PHYSICAL_SHA[(12, 4)]
        )


def test_physical_keeps_rows_on_the_sphere_and_beats_random():
    with pytest.warns(UserWarning):
        c = generate_pedcc(5, 2, seed=0, method="physical", cache=False)
    assert torch.allclose(c.double().norm(dim=1), torch.ones(5, dtype=torch.float64), atol=1e-6)
    # five points on the circle: the optimum spaces them 72° apart (max cosine cos 72° = 0.309)
    assert pedcc_quality(c)["max_nn_cos"] < 0.35


def test_pedcc_file_round_trip_and_errors(tmp_path):
    c = generate_pedcc(10, 16, seed=4, cache=False)
    torch.save(c, tmp_path / "pedcc.pt")
    assert torch.equal(
        load_pedcc_file(tmp_path / "pedcc.pt", 10, 16), torch.nn.functional.normalize(c.double(), dim=1).float()
    )
    import numpy as np

    np.save(tmp_path / "p.npy", (3.0 * c).numpy())  # any positive scale: rows are normalized
    assert torch.allclose(load_pedcc_file(tmp_path / "p.npy", 10, 16), c, atol=1e-6)
    with pytest.raises(ConfigError, match=r"of \(10, 8\) finite non-zero rows .*: it holds \(10, 16\), got"):
        load_pedcc_file(tmp_path / "pedcc.pt", 10, 8)
    with pytest.raises(ConfigError, match="no such file"):
        load_pedcc_file(tmp_path / "missing.pt", 10, 16)
    (tmp_path / "junk.pt").write_text("not a tensor")
    with pytest.raises(ConfigError, match="cannot read it .*junk.pt'$"):
        load_pedcc_file(tmp_path / "junk.pt", 10, 16)
    torch.save(torch.zeros(10, 16), tmp_path / "zero.pt")
    with pytest.raises(ConfigError, match="zero row"):
        load_pedcc_file(tmp_path / "zero.pt", 10, 16)


@pytest.mark.filterwarnings("ignore:PEDCC")
def test_auto_routing(monkeypatch):
    def route(k, n):
        c, chosen = generate_mod.generate_with_method(k, n, 0, "auto", cache=False, iters=None, device="cpu")
        return c, chosen

    assert route(9, 8)[1] == "simplex"  # k ≤ n + 1
    for k in (10, 16):  # n + 1 < k ≤ 2n: orthogonal simplices
        c, chosen = route(k, 8)
        assert chosen == "simplices" and torch.equal(c, generate_pedcc(k, 8, method="simplices", cache=False))
    # k > 2n and the physical model cheap: the better of the two
    c, chosen = route(12, 4)  # physical 0.26 against mub's 0.5
    assert chosen == "physical" and _sha(c) == _PHYSICAL_SHA[(12, 4)]
    c, chosen = route(24, 4)  # the 24-cell (0.5) beats the physical model's ≈ 0.54
    assert chosen == "mub" and torch.equal(c, generate_pedcc(24, 4, method="mub", cache=False))
    c, chosen = route(10, 2)  # beyond mub's capacity of 8 in R^2: physical
    assert chosen == "physical" and torch.equal(c, generate_pedcc(10, 2, method="physical", cache=False))
    assert generate_pedcc(10, 2, cache=False).shape == (10, 2)

    def boom(*args, **kwargs):
        raise AssertionError("ran the physical model")

    monkeypatch.setattr(generate_mod, "physical", boom)
    monkeypatch.setattr(generate_mod, "AUTO_PHYSICAL_MAX_COST", 0)  # as if k were large
    c, chosen = route(12, 4)
    assert chosen == "mub" and pedcc_quality(c)["max_nn_cos"] == pytest.approx(0.5, abs=1e-6)
    with pytest.raises(AssertionError, match="ran the physical model"):
        route(25, 4)  # beyond the capacity the physical model is the only option
    assert generate_mod.resolve_method(10575, 512, "auto") == "mub"
    assert generate_mod.resolve_method(1000, 768, "auto") == "simplices"


@pytest.mark.filterwarnings("ignore:PEDCC")
def test_disk_cache_only_for_the_physical_model(tmp_path, monkeypatch):
    """The closed forms regenerate faster than a cache file reads back: only the physical model is cached."""
    cache = tmp_path / "cache" / "pedcc"
    a = generate_pedcc(20, 8, seed=1, method="mub", iters=7)  # iters does not apply to mub
    generate_pedcc(10, 8, seed=1, method="simplices")
    generate_pedcc(3000, 32, seed=1, method="bch")
    assert not cache.exists()  # nothing written for simplex, simplices, mub, bch
    assert torch.equal(generate_pedcc(20, 8, seed=1, method="mub"), a)
    generate_pedcc(12, 4, seed=1)  # auto with k > 2n: the physical candidate is cached, mub is not
    assert sorted(p.name for p in cache.iterdir()) == ["pedcc_k12_n4_seed1_physical_v2.pt"]
    (cache / "pedcc_k20_n8_seed1_mub_v2.pt").write_bytes(b"a stale file of an older version")
    assert torch.equal(generate_pedcc(20, 8, seed=1, method="mub"), a)  # never read


@pytest.mark.filterwarnings("ignore:PEDCC")
def test_cli_threads(capsys):
    before = torch.get_num_threads()
    try:
        assert main(["12", "8", "--no-cache", "--threads", "2", "--method", "mub"]) == 0
        assert torch.get_num_threads() == 2
        out = capsys.readouterr().out
        assert "method=mub" in out and "2 threads" in out and "mub guarantee: max cosine ≤ +0.0000" in out
        assert main(["12", "8", "--no-cache", "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1 and "1 threads" in capsys.readouterr().out
    finally:
        torch.set_num_threads(before)
    with pytest.raises(SystemExit) as exc:
        main(["12", "8", "--threads", "0"])
    assert exc.value.code == 2


def test_cli_module_entry_point_threads():
    proc = subprocess.run(
        [sys.executable, "-m", "podhl.pedcc", "40", "8", "--no-cache", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "1 threads" in proc.stdout and "method=" in proc.stdout
