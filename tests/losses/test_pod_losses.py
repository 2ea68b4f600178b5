"""POD family: functional values by hand, gradchecks, δ(e, M), frozen PEDCC, runs on digits, analyses."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import load_checkpoint, read_history, split_features
from podhl.losses import CosineLoss, NaCLoss, PEDCCLoss, PODLoss
from podhl.losses.functional import cosine_loss, nac_loss, pedcc_am_loss, pedcc_mse_loss, sc_loss
from podhl.pedcc import generate_pedcc

E2 = torch.eye(2)
pytestmark = pytest.mark.filterwarnings("ignore:PEDCC. feature dimension")


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PODHL_CACHE_DIR", str(tmp_path / "cache"))


# ----------------------------------------------------------------- the whole losses as functions (test helpers)
def pod_loss(features, labels, centroids, delta, lam=1.0, denominator="sum", divide_by_n_minus_1=False):
    """POD Loss (eq. 20): L_NaC + λ·L_SC."""
    return nac_loss(features, labels, centroids, delta, denominator) + lam * sc_loss(
        features, labels, centroids, divide_by_n_minus_1
    )


def pedcc_loss(features, labels, centroids, s=15.0, m=0.5, lam=1.0, n_root=1.0):
    """PEDCC-Loss (eq. 4): L_AM + λ·(L_MSE)^{1/n_root}."""
    return pedcc_am_loss(features, labels, centroids, s, m) + lam * pedcc_mse_loss(features, labels, centroids) ** (
        1.0 / n_root
    )


# ----------------------------------------------------------------- functional values by hand
def test_cosine_loss_by_hand():
    x = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    y = torch.tensor([0, 1])
    # cos θ_y = 3/5 and 0  →  ((1 − 0.6)² + (1 − 0)²) / 2
    assert float(cosine_loss(x, y, E2)) == pytest.approx((0.4**2 + 1.0) / 2, rel=1e-6)


def test_nac_loss_by_hand_both_denominators():
    x = torch.tensor([[3.0, 4.0], [2.0, 0.0]])
    y = torch.tensor([0, 0])
    # eq. 16: 3/(5+1) = 0.5 and 2/(2+1)
    expected = ((1 - 0.5) ** 2 + (1 - 2 / 3) ** 2) / 2
    assert float(nac_loss(x, y, E2, 1.0)) == pytest.approx(expected, rel=1e-6)
    # official: 3/sqrt(25+1), 2/sqrt(4+1)
    expected = ((1 - 3 / math.sqrt(26)) ** 2 + (1 - 2 / math.sqrt(5)) ** 2) / 2
    assert float(nac_loss(x, y, E2, 1.0, denominator="sqrt")) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="denominator"):
        nac_loss(x, y, E2, 1.0, denominator="max")


def test_nac_with_zero_delta_is_cosine_loss():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 8, generator=g) * 3
    y = torch.randint(0, 5, (16,), generator=g)
    c = generate_pedcc(5, 8, cache=False)
    assert torch.allclose(nac_loss(x, y, c, 0.0), cosine_loss(x, y, c), atol=1e-7)
    assert not torch.allclose(nac_loss(x, y, c, 0.5), cosine_loss(x, y, c), atol=1e-3)


def _sc_by_loop(x, y, c):
    """Eq. 18–19 with plain loops: Z_b = x_b/‖x_b‖ − p_{y_b}; R_ij = Σ_b Z_bi Z_bj / (B − 1)."""
    b, n = x.shape
    z = [
        [x[s, d].item() / math.sqrt(sum(v * v for v in x[s].tolist())) - c[y[s], d].item() for d in range(n)]
        for s in range(b)
    ]
    total = 0.0
    for i in range(n):
        for j in range(n):
            if i != j:
                r = sum(z[s][i] * z[s][j] for s in range(b)) / (b - 1)
                total += r * r
    return total


def test_sc_loss_by_hand():
    x = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    y = torch.tensor([1, 0])
    c = torch.eye(3)[:2]
    # Z = [[1, −1, 0], [−1, 1, 0]], R = ZᵀZ = [[2, −2, 0], [−2, 2, 0], [0, 0, 0]]: off-diagonal Σ R² = 8
    assert float(sc_loss(x, y, c)) == pytest.approx(8.0, rel=1e-6)
    assert float(sc_loss(x, y, c, divide_by_n_minus_1=True)) == pytest.approx(4.0, rel=1e-6)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 4, generator=g)
    y = torch.tensor([0, 1, 2, 1, 0])
    c = generate_pedcc(3, 4, cache=False)
    assert float(sc_loss(x, y, c)) == pytest.approx(_sc_by_loop(x, y, c), rel=1e-5)


def _sc_subtracting_the_diagonal(features, labels, centroids):
    """The same sum as ‖ZZᵀ‖² − Σ_i (ZᵀZ)_ii² over (B−1)² (podhl before issue 18): the diagonal subtracted."""
    z = torch.nn.functional.normalize(features, dim=1) - torch.nn.functional.normalize(centroids, dim=1)[labels]
    gram = z @ z.t() if z.shape[0] < z.shape[1] else z.t() @ z
    return (gram.square().sum() - z.square().sum(0).square().sum()) / (z.shape[0] - 1) ** 2


def _median_grad_error(fn, centroids, seed):
    """Median over elements of |∇ in float32 − ∇ in float64| / |∇ in float64| for features near their centroids."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, centroids.shape[0], (64,), generator=g)
    x = centroids[labels] * 3 + 0.3 * torch.randn(64, centroids.shape[1], generator=g)
    x32, x64 = x.clone().requires_grad_(), x.double().requires_grad_()
    fn(x32, labels, centroids).backward()
    fn(x64, labels, centroids.double()).backward()
    return float(((x32.grad.double() - x64.grad).abs() / x64.grad.abs().clamp_min(1e-30)).median())


def test_sc_gradient_as_exact_in_float32_as_masking_allows():
    """The 2-D POD Fig. 6 runs move by points with a rounding residue in SC's gradient (issue 18): the
    diagonal must cancel exactly, so float32 stays as close to float64 as the masked form (measured here:
    median 7e-7 masked, 1.7e-6 subtracting the diagonal, 2-D, 5 PEDCC classes)."""
    centroids = generate_pedcc(5, 2, cache=False)
    ours = sorted(_median_grad_error(sc_loss, centroids, s) for s in range(15))[7]
    subtracted = sorted(_median_grad_error(_sc_subtracting_the_diagonal, centroids, s) for s in range(15))[7]
    assert ours < 1e-6 and subtracted > 1.5 * ours, (ours, subtracted)


def test_sc_loss_single_sample_is_zero_with_grad():
    x = torch.randn(1, 4, requires_grad=True)
    loss = sc_loss(x, torch.tensor([0]), torch.eye(4)[:2])
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert x.grad is not None


def test_pod_loss_is_nac_plus_lambda_sc():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 4, generator=g)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    c = generate_pedcc(3, 4, cache=False)
    expected = float(nac_loss(x, y, c, 0.3)) + 2.5 * _sc_by_loop(x, y, c)
    assert float(pod_loss(x, y, c, 0.3, lam=2.5)) == pytest.approx(expected, rel=1e-5)


def test_pedcc_loss_by_hand():
    x = torch.tensor([[3.0, 4.0], [0.0, -2.0]])
    y = torch.tensor([0, 1])
    s, m = 2.0, 0.5
    cos = [[0.6, 0.8], [0.0, -1.0]]  # cos(x_i, e_j)
    am = 0.0
    for i, label in enumerate(y.tolist()):
        z = [s * (cos[i][j] - (m if j == label else 0.0)) for j in range(2)]
        am += -(z[label] - math.log(sum(math.exp(v) for v in z)))
    am /= 2
    # x̃ = (0.6, 0.8) vs e0 and (0, −1) vs e1: squared distances 0.16 + 0.64 and 0 + 4, over 2N = 4
    mse = ((0.6 - 1) ** 2 + 0.8**2 + 0.0 + (-1 - 1) ** 2) / 4
    assert float(pedcc_am_loss(x, y, E2, s, m)) == pytest.approx(am, rel=1e-6)
    assert float(pedcc_mse_loss(x, y, E2)) == pytest.approx(mse, rel=1e-6)
    total = pedcc_loss(x, y, E2, s=s, m=m, lam=3.0, n_root=2.0)
    assert float(total) == pytest.approx(am + 3.0 * math.sqrt(mse), rel=1e-6)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x, y, c: cosine_loss(x, y, c),
        lambda x, y, c: nac_loss(x, y, c, 0.7),
        lambda x, y, c: nac_loss(x, y, c, 0.7, denominator="sqrt"),
        lambda x, y, c: sc_loss(x, y, c),
        lambda x, y, c: pod_loss(x, y, c, 0.2, lam=0.5, divide_by_n_minus_1=True),
        lambda x, y, c: pedcc_loss(x, y, c, s=4.0, m=0.3, lam=1.0, n_root=2.0),
    ],
    ids=["cosine", "nac", "nac_sqrt", "sc", "pod", "pedcc"],
)
def test_gradcheck_float64(fn):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    c = generate_pedcc(4, 5, cache=False).double()
    assert torch.autograd.gradcheck(lambda f: fn(f, y, c), (x,), eps=1e-6, atol=1e-5)


# ----------------------------------------------------------------- modules
def test_bad_hyperparameters_raise():
    with pytest.raises(ValueError, match="alpha"):
        NaCLoss(10, 32, alpha=-0.1)
    with pytest.raises(ValueError, match="norm_source"):
        NaCLoss(10, 32, norm_source="logits")
    with pytest.raises(ValueError, match="denominator"):
        PODLoss(10, 32, denominator="max")
    with pytest.raises(ValueError, match="delta_schedule"):
        NaCLoss(10, 32, delta_schedule="linear")
    with pytest.raises(ValueError, match="lam"):
        PODLoss(10, 32, lam=-1)
    with pytest.raises(ValueError, match="n_root"):
        PEDCCLoss(10, 32, n_root=0.5)
    with pytest.raises(ValueError, match=r"^s must be in \(0, inf\), got 0$"):
        PEDCCLoss(10, 32, s=0)
    with pytest.raises(ValueError, match="pedcc_method"):
        CosineLoss(10, 32, pedcc_method="lattice")
    with pytest.raises(ValueError, match="simplex"):
        CosineLoss(10, 4, pedcc_method="simplex")


def test_pedcc_is_a_frozen_buffer_and_logits_are_cosines():
    crit = PODLoss(10, 32)
    assert list(crit.parameters()) == [] and crit.param_groups() == []
    assert torch.equal(crit.pedcc, generate_pedcc(10, 32, seed=0))
    assert {"pedcc", "delta", "mean_norm"} <= set(crit.state_dict())
    x = torch.randn(4, 32) * 5
    expected = torch.nn.functional.cosine_similarity(x[:, None, :], crit.pedcc[None], dim=2)
    assert torch.allclose(crit.logits(x), expected, atol=1e-6)


def test_delta_schedule_paper_and_official():
    crit = NaCLoss(10, 32, alpha=0.01)
    crit.on_epoch_start(1)
    assert float(crit.delta) == pytest.approx(0.01 * 1 * 0.05)
    crit.on_epoch_end(1, {"mean_feature_norm": 3.0, "num_samples": 100})
    assert crit.epoch_metrics() == pytest.approx({"delta": 0.0005, "M": 3.0})
    crit.on_epoch_start(2)
    assert float(crit.delta) == pytest.approx(0.01 * 2 * 3.0)
    crit.on_epoch_end(2, {"mean_feature_norm": 5.0, "num_samples": 100})
    fresh = NaCLoss(10, 32, alpha=0.01)  # resume: M comes back with the state dict
    fresh.load_state_dict(crit.state_dict())
    fresh.on_epoch_start(3)
    assert float(fresh.delta) == pytest.approx(0.01 * 3 * 5.0)

    off = NaCLoss(10, 32, alpha=0.01, delta_schedule="official")
    deltas = []
    for epoch, m in [(1, 3.0), (2, 5.0), (3, 7.0)]:
        off.on_epoch_start(epoch)
        deltas.append(float(off.delta))
        off.on_epoch_end(epoch, {"mean_feature_norm": m, "num_samples": 1})
    assert deltas == pytest.approx([0.05, 0.01 * 1 * 3.0, 0.01 * 2 * 5.0])


def test_official_m_from_pedcc_layer_output():
    crit = NaCLoss(10, 32, norm_source="pedcc_output")
    crit.on_epoch_start(1)
    g = torch.Generator().manual_seed(4)
    batches = [torch.randn(8, 32, generator=g) * 4 for _ in range(3)]
    for x in batches:
        crit.after_optimizer_step(x, torch.zeros(8, dtype=torch.long))
    crit.on_epoch_end(1, {"mean_feature_norm": 123.0, "num_samples": 24})  # ignored in this mode
    w = generate_pedcc(10, 32)
    expected = torch.cat([(x @ w.t()).norm(dim=1) for x in batches]).mean()
    assert float(crit.mean_norm) == pytest.approx(float(expected), rel=1e-5)


def test_module_terms():
    x, y = torch.randn(8, 32), torch.randint(0, 10, (8,))
    assert set(CosineLoss(10, 32)(x, y)) == {"loss", "cosine"}
    assert set(NaCLoss(10, 32)(x, y)) == {"loss", "nac"}
    terms = PODLoss(10, 32, lam=2.0)(x, y)
    assert set(terms) == {"loss", "nac", "sc"}
    assert torch.allclose(terms["loss"], terms["nac"] + 2.0 * terms["sc"])
    terms = PEDCCLoss(10, 32, n_root=2.0)(x, y)
    assert set(terms) == {"loss", "am", "mse"}
    assert torch.allclose(terms["loss"], terms["am"] + terms["mse"].sqrt())


# ----------------------------------------------------------------- real runs on digits
def test_pod_three_epochs_delta_schedule_frozen_pedcc_and_analyses(train, tmp_path):
    run_dir = tmp_path / "pod"
    trainer, metrics = train(
        "loss=pod", "schedule.epochs=3", "+analysis=[norm_split,feature_variance,gda]", run_dir=run_dir
    )
    crit = trainer.criterion
    hist = read_history(run_dir)
    assert [r["epoch"] for r in hist] == [1, 2, 3]
    m_prev = 0.05
    for row in hist:  # δ_e = α·e·M_{e−1}, M_0 = 0.05, M_e = the epoch's mean training feature norm
        assert row["loss_delta"] == pytest.approx(0.01 * row["epoch"] * m_prev, rel=1e-5)
        assert row["loss_M"] == pytest.approx(row["train_feature_norm"], rel=1e-5)
        assert math.isfinite(row["train_nac"]) and math.isfinite(row["train_sc"])
        m_prev = row["loss_M"]
    assert float(crit.delta) == pytest.approx(hist[-1]["loss_delta"], rel=1e-6)

    # the PEDCC: untouched, never in the optimizer, saved in the checkpoint
    expected = generate_pedcc(10, trainer.model.feat_dim, seed=0)
    assert torch.equal(crit.pedcc.cpu(), expected)
    in_optimizer = {id(p) for o in trainer.optimizers for g in o.param_groups for p in g["params"]}
    assert id(crit.pedcc) not in in_optimizer and not crit.pedcc.requires_grad
    saved = load_checkpoint(run_dir / "last.pt")["criterion"]
    assert torch.equal(saved["pedcc"], expected)
    assert float(saved["mean_norm"]) == pytest.approx(hist[-1]["loss_M"], rel=1e-6)
    assert metrics["test_acc"] > 50.0

    # analyses (POD Tables 1, 5, 9), saved in the run dir
    analysis = json.loads((run_dir / "analysis.json").read_text())
    ns = analysis["norm_split"]
    feats, labels = split_features(trainer.model, "test")
    norms = feats.norm(dim=1)
    assert ns["low_count"] == int((norms < norms.mean()).sum()) and ns["low_count"] + ns["high_count"] == len(labels)
    combined = (ns["low_acc"] * ns["low_count"] + ns["high_acc"] * ns["high_count"]) / len(labels)
    assert combined == pytest.approx(ns["acc"], rel=1e-6)
    assert ns["acc"] == pytest.approx(metrics["test_acc"], rel=1e-6)
    fv = analysis["feature_variance"]
    assert fv["dim"] == trainer.model.backbone.num_features and fv["num_samples"] == len(labels)
    assert fv["mean_energy"] == pytest.approx(1 / fv["dim"], rel=1e-6)
    g = analysis["gda"]
    assert g["cosine_acc"] == pytest.approx(metrics["test_acc"], rel=1e-6) and 0 <= g["gda_acc"] <= 100


def test_run_keeps_its_pedcc_and_a_new_run_repeats_it_from_the_file(train, tmp_path):
    """<run dir>/pedcc.pt holds the run's centroids; loss.pedcc_file=<it> wins over pedcc_seed
    and gives the same run."""
    first, m1 = train("loss=pod", "schedule.epochs=1", "loss.pedcc_seed=7", run_dir=tmp_path / "a")
    saved = torch.load(tmp_path / "a" / "pedcc.pt", weights_only=True)
    assert torch.equal(saved, generate_pedcc(10, first.model.feat_dim, seed=7))
    again, m2 = train(
        "loss=pod", "schedule.epochs=1", f"loss.pedcc_file={tmp_path / 'a' / 'pedcc.pt'}", run_dir=tmp_path / "b"
    )
    assert torch.equal(again.criterion.pedcc, saved) and not torch.equal(
        saved, generate_pedcc(10, saved.shape[1], seed=0)
    )
    assert m2["test_acc"] == m1["test_acc"] and m2["train_loss"] == m1["train_loss"]


@pytest.mark.parametrize("loss", ["cosine", "nac", "pedcc"])
def test_two_epoch_runs_on_digits(train, loss, tmp_path):
    trainer, metrics = train(f"loss={loss}", "schedule.epochs=2", run_dir=tmp_path / loss)
    assert metrics["completed"] and math.isfinite(metrics["train_loss"])
    assert metrics["test_acc"] > 50.0  # chance is 10 %
    assert not list(trainer.criterion.parameters())
