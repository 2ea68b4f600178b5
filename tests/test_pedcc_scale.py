"""PEDCC at 100k–1M classes (issue 23): the ``bch`` construction (bound by brute force, every form's Walsh
spectrum, the same bits under other instruction sets), ``auto`` beyond ``mub``'s capacity, the sampled
quality report and ``podhl-pedcc --quality``, and the POD family's single normalized buffer (old checkpoints)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import podhl.losses.pod.head as head_mod
import podhl.pedcc.generate as generate_mod
from podhl.errors import ConfigError
from podhl.losses import pod as pod_losses
from podhl.losses.pod import math as pod_math
from podhl.pedcc import generate_pedcc, main, mub_capacity, pedcc_quality
from podhl.pedcc.bch import bch, bch_bound, bch_capacity, bch_forms
from podhl.pedcc.mub import fwht

pytestmark = pytest.mark.filterwarnings("ignore:PEDCC")


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PODHL_CACHE_DIR", str(tmp_path / "cache"))


def _sha(c: torch.Tensor) -> str:
    return hashlib.sha256(c.contiguous().numpy().tobytes()).hexdigest()[:16]


# sha256 (first 16 hex digits) of the float32 bytes of bch(k, n, seed): integer arithmetic and numpy's
# frozen legacy RandomState stream make these the same on every machine (podhl/pedcc/bch.py).
_BCH_SHA = {(3000, 32, 0): "21039856cb5ffb60", (5001, 48, 3): "9a0761b956dda972", (40000, 128, 1): "97c4456c32147e7e"}


# ------------------------------------------------------------------------------------------------ bch
@pytest.mark.parametrize("m", [5, 6, 7])
def test_every_bch_form_has_the_guaranteed_walsh_spectrum(m):
    """All 4^m forms Tr(a x³ + b x⁵): |Walsh| / 2^m ∈ {0, 2^(−r/2)} with 2^(−r/2) ≤ the bound (and Q = 0 → 1)."""
    p = 1 << m
    v = torch.arange(1 << (2 * m), dtype=torch.int64)
    q = bch_forms(m, v & (p - 1), v >> m)  # (4^m, p)
    walsh = fwht((1.0 - 2.0 * q.double()).t()).abs() / p  # (y, form)
    peak = walsh.max(dim=0).values
    assert peak[0] == 1.0  # Q_{0,0} = 0: the Hadamard basis itself
    assert peak[1:].max() <= bch_bound(p) + 1e-12  # every other form: rank ≥ m − 3 (m odd) or m − 4
    assert peak[1:].max() >= bch_bound(p) - 1e-12  # … attained
    nonzero = walsh[:, 1:][walsh[:, 1:] > 1e-12]
    level = torch.log2(nonzero)  # −r/2: a half-integer or integer, r even
    assert torch.allclose(level, level.round(), atol=1e-9)
    # closed under differences: Q_{a,b} + Q_{a',b'} = Q_{a⊕a', b⊕b'} (the trace and products are linear)
    i, j = 37 % (1 << (2 * m)), 1000 % (1 << (2 * m))
    assert torch.equal(q[i] ^ q[j], q[i ^ j])


def _pairwise_cos(c: torch.Tensor) -> torch.Tensor:
    x = c.double()
    gram = x @ x.t()
    return gram[~torch.eye(len(x), dtype=torch.bool)]


@pytest.mark.parametrize(
    "k,n,bound",
    [
        (3000, 32, 0.5),  # beyond mub's 2112 in R^32
        (2501, 48, 0.5),  # n not a power of two: R^32 placed on 32 of the 48 coordinates; odd k
        (4500, 64, 0.5),
        (301, 32, 0.5),  # few bases
        (40, 32, 0.0),  # one basis: the cross-polytope of 20 of its vectors
    ],
)
def test_bch_bound_by_brute_force(k, n, bound):
    c = generate_pedcc(k, n, seed=1, method="bch", cache=False)
    assert c.dtype == torch.float32 and c.shape == (k, n)
    assert torch.allclose(c.double().norm(dim=1), torch.ones(k, dtype=torch.float64), atol=1e-6)
    cos = _pairwise_cos(c)
    antipodal = cos < -1 + 1e-5
    assert int(antipodal.sum()) == 2 * (k // 2)
    others = cos[~antipodal]
    assert others.max() <= bound + 1e-6
    if bound > 0:
        assert others.max() >= bound - 1e-6
        assert bound <= bch_bound(n)
    p = 1 << (n.bit_length() - 1)
    levels = torch.tensor([0.0, p**-0.5, 0.5, 0.25, 0.125], dtype=torch.float64)
    assert (others.abs().unsqueeze(1) - levels).abs().min(dim=1).values.max() < 1e-6
    assert int((c != 0).sum(1).max()) <= p  # the algebraic part spans p of the n coordinates
    assert pedcc_quality(c)["max_nn_cos"] == pytest.approx(float(others.max()), abs=1e-6)


def test_bch_bound_in_r128_sampled_rows_against_all():
    k, n = 40000, 128  # beyond mub's 33,024 in R^128: bound 1/4
    assert k > mub_capacity(n)
    c = bch(k, n, 1)
    q = pedcc_quality(c, rows=400, seed=2)
    assert q["rows_measured"] == 400
    assert q["max_nn_cos"] == pytest.approx(0.25, abs=1e-6)  # every row meets a row of another basis at 1/4


def test_bch_same_bits_every_run_and_pinned():
    for (k, n, seed), sha in _BCH_SHA.items():
        a = bch(k, n, seed)
        assert torch.equal(a, bch(k, n, seed)) and _sha(a) == sha, (k, n, seed)
    assert (bch(3000, 32, 0) - bch(3000, 32, 1)).abs().max() > 0.1  # seeds differ


_SUBPROCESS_SHAS = """
import hashlib, torch
from podhl.pedcc.bch import bch
sha = lambda c: hashlib.sha256(c.contiguous().numpy().tobytes()).hexdigest()[:16]
print(" ".join(sha(bch(k, n, s)) for k, n, s in [(3000, 32, 0), (5001, 48, 3), (40000, 128, 1)]))
"""


@pytest.mark.parametrize("capability,threads", [("default", 1), ("avx2", 2), ("avx512", 1)])
def test_bch_identical_under_other_instruction_sets_and_threads(capability, threads):
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-c", _SUBPROCESS_SHAS]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == list(_BCH_SHA.values())


def test_bch_limits():
    assert bch_capacity(16) == 0 and bch_capacity(512) == 2 * 512 * (1 + 4**9)
    assert bch_bound(512) == 1 / 8 and bch_bound(1024) == 1 / 8 and bch_bound(256) == 1 / 4
    with pytest.raises(ValueError, match=r"method='bch' places at most 0 centroids in dim=16"):
        generate_pedcc(100, 16, method="bch", cache=False)


# ------------------------------------------------------------------------------------------------ auto
def test_auto_beyond_mub_capacity_picks_bch_and_never_the_physical_model(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("ran the physical model")

    monkeypatch.setattr(generate_mod, "physical", boom)
    k, n = mub_capacity(32) + 1, 32
    c, chosen = generate_mod.generate_with_method(k, n, 0, "auto", cache=True, iters=None, device="cpu")
    assert chosen == "bch" and torch.equal(c, bch(k, n, 0))
    assert pedcc_quality(c)["max_nn_cos"] <= bch_bound(n) + 1e-6
    assert generate_mod.resolve_method(mub_capacity(32), 32, "auto") == "mub"  # up to its capacity: mub
    assert generate_mod.resolve_method(1_000_000, 512, "auto") == "bch"
    assert generate_mod.resolve_method(525_312, 512, "auto") == "mub"


def test_auto_errors_clearly_when_nothing_is_quick():
    assert generate_mod.resolve_method(10, 2, "auto") == "physical"  # cheap: the physical model
    with pytest.raises(ConfigError, match=r"num_classes=1000000 .* dim=16 .*'mub' holds at most 288.*feat_dim"):
        generate_mod.resolve_method(1_000_000, 16, "auto")
    with pytest.raises(ConfigError, match="no construction places"):
        pod_losses.PODLoss(1_000_000, 16)  # before anything is built
    assert generate_mod.resolve_method(1_000_000, 16, "physical") == "physical"  # asked for explicitly: allowed
    assert generate_mod.physical_cost(1_000_000, 512) > 7e15


# --------------------------------------------------------------------------------------------- quality
def test_sampled_quality_is_exact_for_its_rows():
    c = generate_pedcc(500, 64, seed=0, method="mub", cache=False)
    full = pedcc_quality(c)
    assert full["rows_measured"] == 500 and pedcc_quality(c, rows=500) == full
    sampled = pedcc_quality(c, rows=50, seed=3)
    assert sampled["rows_measured"] == 50 and sampled["max_nn_cos"] <= full["max_nn_cos"] + 1e-12
    x = F.normalize(c.double(), dim=1)
    idx = torch.randperm(500, generator=torch.Generator().manual_seed(3))[:50].sort().values
    g = x[idx] @ x.t()
    g[torch.arange(50), idx] = -3.0
    assert sampled["mean_nn_cos"] == pytest.approx(float(g.max(dim=1).values.mean()), abs=1e-12)
    with pytest.raises(ValueError, match="rows must be ≥ 1"):
        pedcc_quality(c, rows=0)


def test_cli_quality_option(capsys):
    assert main(["3000", "32", "--quality", "none"]) == 0
    out = capsys.readouterr().out
    assert "method=bch" in out and "cosine" not in out.replace("max cosine", "") and "bch guarantee" in out
    assert main(["3000", "32", "--quality-rows", "100"]) == 0  # the default: sample
    out = capsys.readouterr().out
    assert "sampled: the nearest neighbour of 100 of 3000 rows" in out
    assert "max nearest-neighbour cosine  +0.5000" in out
    assert main(["300", "32", "--quality", "full"]) == 0
    out = capsys.readouterr().out
    assert "exact, every pair: the nearest neighbour of 300 of 300 rows" in out
    assert main(["300", "32"]) == 0  # k ≤ the default 256 rows? no: 300 > 256, sampled
    assert "sampled" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["300", "32", "--quality", "some"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["300", "32", "--quality-rows", "0"])
    assert exc.value.code == 2


# ------------------------------------------------------------------------------- POD: one unit buffer
def test_unit_rows_in_place_matches_f_normalize(monkeypatch):
    monkeypatch.setattr(head_mod, "_ROW_BLOCK", 7)  # several blocks
    x = torch.randn(50, 33, generator=torch.Generator().manual_seed(0)) * 3
    expect = F.normalize(x, dim=1)
    out = head_mod.unit_rows_(x)
    assert out is x and torch.equal(x, expect)
    unit = generate_pedcc(50, 64)
    before = unit.clone()
    assert head_mod.unit_rows_(unit) is unit and torch.equal(unit, before)  # already unit: untouched
    unit[49] *= 1.001  # one row off in the last block: all rows normalized
    off = unit.clone()
    assert torch.equal(head_mod.unit_rows_(unit), F.normalize(off, dim=1))


@pytest.mark.parametrize("cls", [pod_losses.PODLoss, pod_losses.NaCLoss, pod_losses.CosineLoss, pod_losses.PEDCCLoss])
def test_one_buffer_holds_the_unit_pedcc(cls):
    crit = cls(3000, 32)  # auto: bch
    big = [name for name, b in crit.named_buffers() if b.numel() >= 3000 * 32]
    assert big == ["pedcc"]  # one (k, n) tensor, no second normalized copy
    assert crit.unit_pedcc is crit.pedcc and torch.equal(crit.pedcc, generate_pedcc(3000, 32))
    x = torch.randn(6, 32)
    # the losses agree with normalizing the centroids in every forward (the earlier path) to float32 rounding
    assert torch.allclose(crit.logits(x), pod_math.cosine_logits(x, crit.pedcc), atol=1e-6, rtol=0)


def test_checkpoints_load_unchanged_and_other_centroids_are_normalized():
    crit = pod_losses.PODLoss(7, 12)
    state = crit.state_dict()
    assert [k for k in state if state[k].dim() == 2] == ["pedcc"]  # the same keys as before: pedcc alone
    marker = crit.pedcc.clone()
    marker[0, 0] = torch.nextafter(marker[0, 0], torch.tensor(2.0))  # a 1-ulp change: still unit to 1e-5
    fresh = pod_losses.PODLoss(7, 12)
    fresh.load_state_dict({**state, "pedcc": marker})
    assert torch.equal(fresh.pedcc, marker)  # unit rows load as they are: a resumed run keeps its bits
    fresh.load_state_dict({**state, "pedcc": marker * 2.0})  # other, non-unit centroids: normalized
    assert torch.equal(fresh.pedcc, F.normalize(marker * 2.0, dim=1)) and fresh.unit_pedcc is fresh.pedcc
    fresh.pedcc = torch.eye(7, 12) * 3.0  # assigned: normalized
    assert torch.equal(fresh.unit_pedcc, torch.eye(7, 12))
    unit = torch.eye(7, 12)
    fresh.pedcc = unit  # assigned unit rows: kept as they are
    assert fresh.pedcc is unit


def _mub_reference(k: int, n: int, seed: int) -> torch.Tensor:
    """``mub`` for k > 2n as it was built before (every basis in float64, stacked, then permuted)."""
    import math

    from podhl.pedcc.galois import quadratic_form
    from podhl.pedcc.mub import num_forms
    from podhl.pedcc.simplex import haar_frame

    gen = torch.Generator().manual_seed(seed)
    m = n.bit_length() - 1
    p = 1 << m
    num_bases = -(-k // (2 * p))
    forms = torch.randperm(num_forms(m), generator=gen)[: num_bases - 1].tolist()
    last = -(-(k - 2 * p * (num_bases - 1)) // 2)
    last_rows = torch.randperm(p, generator=gen)[:last]
    frame = haar_frame(n, p, gen).t()
    parts = [frame]
    for u in forms:
        signs = 1.0 - 2.0 * quadratic_form(m, u).to(torch.float64)
        parts.append(fwht(signs.unsqueeze(1) * frame) / math.sqrt(p))
    parts[-1] = parts[-1][last_rows]
    rows = torch.cat([torch.cat([b, -b]) for b in parts])[:k]
    return rows[torch.randperm(k, generator=gen)].float()


_MUB_CASES = [(25, 8, 0), (144, 8, 1), (287, 16, 2), (2111, 32, 0), (2000, 768, 1), (2561, 512, 3)]


@pytest.mark.parametrize("k,n,seed", _MUB_CASES)
def test_mub_built_in_place_gives_the_same_bits(k, n, seed):
    assert torch.equal(generate_pedcc(k, n, seed=seed, method="mub", cache=False), _mub_reference(k, n, seed))


def test_a_run_that_no_construction_fits_fails_before_any_data_is_read(tmp_path):
    from conftest import build_trainer

    overrides = ["dataset=mnist", "dataset.root=/nonexistent/podhl-data", "loss=pod", "model.feat_dim=16"]
    with pytest.raises(ConfigError, match="no construction places num_classes=1000000 centroids in dim=16"):
        build_trainer(*overrides, "dataset.num_classes=1000000", run_dir=tmp_path)
