"""PEDCC generator: simplex invariants, seeding, the physical model's quality, cache, CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import podhl.pedcc as pedcc_mod
from podhl.pedcc import generate_pedcc, main, pedcc_quality


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
    monkeypatch.setattr(pedcc_mod, "_DENSE_MAX_K", dense_max_k)
    k, n = 200, 24  # k > n + 1: no simplex exists
    c = generate_pedcc(k, n, seed=0, cache=False)
    assert c.shape == (k, n) and c.dtype == torch.float32
    assert torch.allclose(c.norm(dim=1), torch.ones(k), atol=1e-5)
    q = pedcc_quality(c)
    random_max = _random_max_nn_cos(k, n)
    assert q["max_nn_cos"] < 0.6 * random_max, (q, random_max)
    assert q["max_nn_cos"] >= -1e-6  # Rankin: k > n+1 points always have a pair with cos ≥ 0
    assert q["mean_nn_cos"] <= q["max_nn_cos"] + 1e-7
    assert torch.equal(c, generate_pedcc(k, n, seed=0, cache=False))
    assert not torch.equal(c, generate_pedcc(k, n, seed=1, cache=False))


def test_auto_method_switches_at_n_plus_1():
    with pytest.warns(UserWarning):
        at = generate_pedcc(9, 8, cache=False)  # k = n + 1: simplex
    gram = at.double() @ at.double().t()
    assert torch.allclose(gram[0, 1:], torch.full((8,), -1 / 8, dtype=torch.float64), atol=1e-6)
    with pytest.warns(UserWarning):
        over = generate_pedcc(10, 8, cache=False, iters=20)  # k = n + 2: physical
    assert pedcc_quality(over)["max_nn_cos"] >= -1e-6


def test_quality_of_a_known_set():
    c = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    q = pedcc_quality(c)
    assert q["max_nn_cos"] == pytest.approx(0.8, abs=1e-6)  # (0,1)·(0.6,0.8)
    assert q["mean_nn_cos"] == pytest.approx((0.6 + 0.8 + 0.8) / 3, abs=1e-6)
    assert q["simplex_bound"] == pytest.approx(-0.5)


@pytest.mark.filterwarnings("ignore:PEDCC")
def test_disk_cache_keyed_by_k_n_seed_method(tmp_path, monkeypatch):
    first = generate_pedcc(60, 10, seed=2, iters=10)
    files = sorted(p.name for p in (tmp_path / "cache" / "pedcc").iterdir())
    assert files == ["pedcc_k60_n10_seed2_physical_it10_v1.pt"]

    def boom(*args, **kwargs):
        raise AssertionError("regenerated instead of reading the cache")

    monkeypatch.setattr(pedcc_mod, "_physical", boom)
    assert torch.equal(generate_pedcc(60, 10, seed=2, iters=10), first)
    with pytest.raises(AssertionError, match="regenerated"):
        generate_pedcc(60, 10, seed=3, iters=10)  # another seed: another key
    generate_pedcc(5, 10, seed=2)  # simplex: its own key
    assert (tmp_path / "cache" / "pedcc" / "pedcc_k5_n10_seed2_simplex_v1.pt").is_file()


def test_cli_prints_quality(capsys):
    assert main(["10", "32", "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "method=simplex" in out and "max nearest-neighbour cosine  -0.1111" in out
    with pytest.raises(SystemExit) as exc:
        main(["20", "8", "--method", "simplex"])
    assert exc.value.code == 2
    assert "num_classes ≤ dim + 1" in capsys.readouterr().err


def test_cli_module_entry_point():
    proc = subprocess.run([sys.executable, "-m", "podhl.pedcc", "4", "16", "--no-cache"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "min pairwise angle" in proc.stdout
