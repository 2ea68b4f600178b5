"""Hypersphere Loss (HL): functionals against the paper's formulas (plain loops), the radius against a
numeric cap-area integral, warm start, the prepare_batch protocol (Algorithm 1 by hand, micro-batches),
center-update strategies, resume, and digits runs of every switch."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from scipy.integrate import quad

from conftest import read_metrics  # (tests/conftest.py's, re-exported by tests/losses/conftest.py)
from podhl.config import compose_config
from podhl.losses import BatchEWMA, CenterUpdate, EpochEWMA, HypersphereLoss, OfficialSwitches, WholeTrainingSet
from podhl.losses.functional import (
    class_center_separation,
    class_sums,
    closed_form_centers,
    ewma_center_update_from_sums,
    feature_sphere_radius,
    generalized_center_penalty,
    pairwise_cosine_stats,
)

FAST = ["loss=hl", "model.fc1=false", "loss.warmup_epochs=1", "schedule.epochs=3", "trainer.eval_every=3"]


# ---------------------------------------------------------------- radius a (§III-A)
def _cap_fraction_numeric(theta: float, d: int) -> float:
    def f(t):  # area element of S^{d-1} at polar angle t
        return math.sin(t) ** (d - 2)

    whole = quad(f, 0, math.pi, points=[math.pi / 2], limit=200)[0]
    return quad(f, 0, theta, limit=200)[0] / whole


@pytest.mark.parametrize("num_classes,dim", [(10, 512), (100, 512), (10575, 512), (7, 16), (10, 3), (3, 64)])
def test_radius_cap_covers_one_over_c_of_the_sphere(num_classes, dim):
    a = feature_sphere_radius(num_classes, dim, 40.0)
    theta = math.asin(a / 40.0)
    assert _cap_fraction_numeric(theta, dim) == pytest.approx(1 / num_classes, rel=1e-6)


def test_radius_known_values():
    assert feature_sphere_radius(10, 512, 40.0) / 40.0 == pytest.approx(0.99839, abs=1e-5)
    assert feature_sphere_radius(10, 3, 1.0) == pytest.approx(0.6)  # (1 − cos θ)/2 = 1/10
    assert feature_sphere_radius(10, 2, 1.0) == pytest.approx(math.sin(math.pi / 10))  # arc of 2π/10
    assert feature_sphere_radius(2, 64, 5.0) == pytest.approx(5.0)  # hemisphere
    with pytest.raises(ValueError, match="dim"):
        feature_sphere_radius(10, 1, 1.0)


# ---------------------------------------------------------------- functionals (eq. 10, 11, 17)
def _tiny(seed=0, b=7, c=4, d=3):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, d, generator=g, dtype=torch.float64),
        torch.tensor([0, 1, 1, 3, 0, 3, 1])[:b],
        torch.randn(c, d, generator=g, dtype=torch.float64),
    )


@pytest.mark.parametrize("power,norm", [(2, "batch"), (4, "batch"), (2, "elements")])
def test_generalized_center_penalty_matches_formula(power, norm):
    f, y, c = _tiny()
    dists = [math.dist(f[i].tolist(), c[y[i]].tolist()) for i in range(len(y))]
    threshold = sorted(dists)[3]  # 3 samples inside the dead zone, the rest outside (≥)
    valid = torch.tensor([True, True, False, True, True, True, True])
    expected = 0.0
    for i, dist in enumerate(dists):
        iota = 1.0 if (dist >= threshold and valid[i]) else 0.0
        expected += (iota * dist) ** power
    expected /= 2 * len(y) * (f.shape[1] if norm == "elements" else 1)
    got = generalized_center_penalty(f, y, c, threshold, power=power, normalization=norm, valid=valid)
    assert float(got) == pytest.approx(expected, rel=1e-12)
    plain = sum(dd**2 for dd in dists) / (2 * len(y))
    assert float(generalized_center_penalty(f, y, c, 0.0)) == pytest.approx(plain, rel=1e-12)


def test_class_center_separation_matches_double_sum():
    _, y, c = _tiny()
    num_classes = c.shape[0]
    expected = sum(float(c[y[i]] @ c[j]) for i in range(len(y)) for j in range(num_classes) if j != y[i])
    expected /= len(y) * (num_classes - 1)
    assert float(class_center_separation(y, c)) == pytest.approx(expected, rel=1e-12)


def test_penalty_gradcheck_float64():
    f, y, c = _tiny(seed=1)
    f.requires_grad_(True)
    c.requires_grad_(True)
    for power in (2, 4):

        def fn(ff, cc, power=power):
            return generalized_center_penalty(ff, y, cc, 1.0, power=power)

        assert torch.autograd.gradcheck(fn, (f, c))


# ---------------------------------------------------------------- center updates (eq. 13, 15, 16)
def ewma_center_update(centers, f, y, phi, beta, r, step, bias_correction=True):
    """Eq. 15–16 on one batch's features (the loss works from per-class sums, reduced over ranks)."""
    sums, counts = class_sums(f.to(centers.dtype), y, centers.shape[0])
    return ewma_center_update_from_sums(centers, sums, counts, phi, beta, r, step, bias_correction)


def _loop_ewma(centers, f, y, phi, beta, r, step, bias_correction=True):
    """Eq. 15–16 one sample and one class at a time."""
    num_classes = centers.shape[0]
    new = centers.clone()
    for k in range(num_classes):
        u, n = torch.zeros(centers.shape[1], dtype=centers.dtype), 0
        for i in range(len(y)):
            if int(y[i]) != k:
                continue
            v = phi * centers[k] + (1 - phi) * f[i]
            if bias_correction:
                v = v / (1 - phi**step)
            others = sum(centers[m] for m in range(num_classes) if m != k)
            u = u + v - beta / (num_classes - 1) * others
            n += 1
        if n:
            new[k] = r * u / u.norm()
    return new


def test_ewma_update_matches_per_class_loop_first_and_later_updates():
    f, y, _ = _tiny(seed=2)  # class 2 absent from the batch
    zero = torch.zeros(4, 3, dtype=torch.float64)
    first = ewma_center_update(zero, f, y, 0.99, 0.1, 40.0, step=1)
    for k in (0, 1, 3):  # first update: r·normalize(class sum)
        s = f[y == k].sum(0)
        assert torch.allclose(first[k], 40 * s / s.norm())
    assert torch.equal(first[2], zero[2])
    assert torch.allclose(first, _loop_ewma(zero, f, y, 0.99, 0.1, 40.0, 1))
    centers = first.clone()
    centers[2] = torch.tensor([0.0, 40.0, 0.0], dtype=torch.float64)
    for step, bc in ((2, True), (7, True), (3, False)):
        got = ewma_center_update(centers, f, y, 0.9, 0.5, 40.0, step=step, bias_correction=bc)
        assert torch.allclose(got, _loop_ewma(centers, f, y, 0.9, 0.5, 40.0, step, bc))
        assert torch.equal(got[2], centers[2])  # absent class keeps its center
        assert torch.allclose(got[[0, 1, 3]].norm(dim=1), torch.full((3,), 40.0, dtype=torch.float64))


def test_closed_form_centers_eq13_and_eq9():
    f, y, c = _tiny(seed=3)
    sums = torch.zeros_like(c).index_add_(0, y, f)
    counts = torch.bincount(y, minlength=4).double()
    eq9 = closed_form_centers(c, sums, counts, beta=0.0, radius=2.0)
    for k in (0, 1, 3):
        mean = f[y == k].mean(0)
        assert torch.allclose(eq9[k], 2.0 * mean / mean.norm())
    assert torch.equal(eq9[2], c[2])
    beta = 0.3
    eq13 = closed_form_centers(c, sums, counts, beta=beta, radius=2.0)
    for k in (0, 1, 3):
        u = sum(f[i] - beta / 3 * sum(c[m] for m in range(4) if m != k) for i in range(len(y)) if y[i] == k)
        assert torch.allclose(eq13[k], 2.0 * u / u.norm())


def test_pairwise_cosine_stats_brute_force():
    c = torch.randn(6, 5, generator=torch.Generator().manual_seed(4))
    c[4] = 0  # not set yet: excluded
    mean, mx = pairwise_cosine_stats(c, chunk=2)
    u = torch.nn.functional.normalize(c[[0, 1, 2, 3, 5]], dim=1)
    pairs = [float(u[i] @ u[j]) for i in range(5) for j in range(i + 1, 5)]
    assert mean == pytest.approx(sum(pairs) / len(pairs), abs=1e-6)
    assert mx == pytest.approx(max(pairs), abs=1e-6)


# ---------------------------------------------------------------- the module
def _batch(seed=5, b=12, c=4, d=6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g) * 3, torch.randint(0, c, (b,), generator=g)


def _step(loss, f, y):
    """One training step as the loop runs it: prepare_batch when due, forward, after_optimizer_step."""
    kw = {"prepared": loss.prepare_batch(f, y)} if loss.needs_prepared_batch() else {}
    terms = loss(f, y, **kw)
    loss.after_optimizer_step(f, y, **kw)
    return terms


def test_warm_start_then_penalty_against_centers_updated_from_this_batch():
    loss = HypersphereLoss(4, 6, warmup_epochs=2, lam=0.5)
    f, y = _batch()
    for epoch in (1, 2):
        loss.on_epoch_start(epoch)
        assert not loss.needs_prepared_batch()
        out = loss(f, y)
        assert float(out["center"]) == 0 and torch.equal(out["loss"], out["ce"])
        loss.after_optimizer_step(f, y)
        assert not loss.centers.any() and int(loss.num_updates) == 0
    loss.on_epoch_start(3)
    assert loss.needs_prepared_batch()
    prepared = loss.prepare_batch(f, y)
    out = loss(f, y, prepared=prepared)
    assert not loss.centers.any()  # neither prepare_batch nor forward changes state
    loss.after_optimizer_step(f, y, prepared=prepared)
    assert int(loss.num_updates) == 1
    sums = torch.zeros(4, 6).index_add_(0, y, f)
    for k in y.unique():
        assert torch.allclose(loss.centers[k], 40 * sums[k] / sums[k].norm(), atol=1e-5)
    expected = generalized_center_penalty(f, y, loss.centers, loss.threshold)
    assert float(out["center"]) > 0 and torch.allclose(out["center"], expected)
    assert torch.allclose(out["loss"], out["ce"] + 0.5 * expected)
    loss.eval()  # test batches: stored centers, no update
    out_eval = loss(f, y)
    assert torch.allclose(out_eval["center"], expected)
    assert set(out) == {"loss", "ce", "center", "separation", "dead_zone_fraction", "center_distance"}


def test_update_every_n_iterations():
    loss = HypersphereLoss(4, 6, warmup_epochs=0, update_every=3)
    loss.on_epoch_start(1)
    seen = []
    for i in range(7):
        f, y = _batch(seed=i)
        _step(loss, f, y)
        seen.append(int(loss.num_updates))
    assert seen == [1, 1, 1, 2, 2, 2, 3]  # iterations 0, 3, 6
    assert int(loss.iterations) == 7


def test_per_epoch_ewma_and_whole_set_updates():
    f1, y1 = _batch(seed=1)
    f2, y2 = _batch(seed=2)
    ep = HypersphereLoss(4, 6, warmup_epochs=1, center_update="epoch", beta=0.2)
    ep.on_epoch_start(1)
    for f, y in ((f1, y1), (f2, y2)):
        assert float(ep(f, y)["center"]) == 0
        ep.after_optimizer_step(f, y)
    assert not ep.centers.any()
    ep.on_epoch_end(1, {})
    zero = torch.zeros(4, 6)
    f, y = torch.cat([f1, f2]), torch.cat([y1, y2])
    assert torch.allclose(ep.centers, _loop_ewma(zero, f, y, 0.99, 0.2, 40.0, 1), atol=1e-5)
    assert int(ep.num_updates) == 1

    ds = HypersphereLoss(4, 6, warmup_epochs=1, center_update="dataset", beta=0.0, generalized=False)
    assert ds.needs_feature_pass
    ds.on_epoch_start(1)
    ds.feature_pass(iter([(f1, y1), (f2, y2)]))
    for k in y.unique():
        mean = f[y == k].mean(0)
        assert torch.allclose(ds.centers[k], 40 * mean / mean.norm(), atol=1e-5)
    ds.on_epoch_start(2)
    assert float(ds(f1, y1)["center"]) > 0


def test_ramps_and_separation_switch():
    loss = HypersphereLoss(
        4, 6, official={"ramp_lambda": True, "ramp_beta": True, "total_epochs": 5}, lam=0.4, beta=0.8
    )
    loss.on_epoch_start(1)
    assert (loss.lam, loss.beta) == (0.0, 0.0)
    loss.on_epoch_start(3)
    assert loss.lam == pytest.approx(0.2) and loss.beta == pytest.approx(0.4)
    loss.on_epoch_start(5)
    assert loss.epoch_metrics()["lambda"] == pytest.approx(0.4)
    assert HypersphereLoss(4, 6, separation=False).beta == 0.0


@pytest.mark.parametrize(
    "kw,name",
    [
        ({"radius": 0}, "radius"),
        ({"epsilon": 1.5}, "epsilon"),
        ({"phi": 1.0}, "phi"),
        ({"lam": -1}, "lam"),
        ({"beta": -0.1}, "beta"),
        ({"warmup_epochs": -1}, "warmup_epochs"),
        ({"center_update": "x"}, "center_update"),
        ({"update_every": 0}, "update_every"),
        ({"official": {"penalty_power": 3}}, "official.penalty_power"),
        ({"official": {"penalty_normalization": "x"}}, "official.penalty_normalization"),
        ({"official": {"ramp_beta": True}}, "official.total_epochs"),
        ({"center_update": "epoch", "warmup_epochs": 0}, "warmup_epochs"),
        ({"center_update": "epoch", "update_every": 10}, "update_every"),
    ],
)
def test_bad_hyperparameters_name_the_parameter(kw, name):
    with pytest.raises(ValueError, match=name):
        HypersphereLoss(10, 8, **kw)


# ---------------------------------------------------------------- the prepare_batch protocol (Algorithm 1)
def _hand_ewma(centers, f, y, phi, beta, r, n_c):
    """Eq. 15–16 with Python floats, one class and one sample at a time."""
    num_classes, d = len(centers), len(centers[0])
    new = [row[:] for row in centers]
    for k in range(num_classes):
        others = [sum(centers[m][j] for m in range(num_classes) if m != k) for j in range(d)]
        u, n = [0.0] * d, 0
        for fi, yi in zip(f, y, strict=True):
            if yi == k:
                v = [(phi * centers[k][j] + (1 - phi) * fi[j]) / (1 - phi**n_c) for j in range(d)]  # eq. 15
                u = [u[j] + v[j] - beta / (num_classes - 1) * others[j] for j in range(d)]  # eq. 16's sum
                n += 1
        if n:
            norm = math.sqrt(sum(x * x for x in u))
            new[k] = [r * x / norm for x in u]
    return new


def _hand_penalty(f, y, centers, threshold):
    """Eq. 17's penalty (1/2m)·Σ_i [ι(d_i)·d_i]² with ι(d) = [d ≥ ε·a] (eq. 11); also the number inside."""
    total, inside = 0.0, 0
    for fi, yi in zip(f, y, strict=True):
        dist = math.dist(fi, centers[yi])
        inside += dist < threshold
        total += (dist if dist >= threshold else 0.0) ** 2
    return total / (2 * len(y)), inside


def test_prepare_forward_commit_reproduce_algorithm_1_by_hand():
    """prepare_batch → forward(prepared) → after_optimizer_step(prepared) is Algorithm 1, lines 9–13."""
    num_classes, r, phi, beta, lam = 3, 5.0, 0.9, 0.3, 0.1
    loss = HypersphereLoss(num_classes, 2, radius=r, epsilon=0.8, phi=phi, lam=lam, beta=beta, warmup_epochs=1)
    loss.on_epoch_start(1)
    assert not loss.needs_prepared_batch()  # t1 = 1: epoch 1 is plain softmax
    loss.on_epoch_start(2)
    centers = [[0.0, 0.0] for _ in range(num_classes)]
    g = torch.Generator().manual_seed(7)
    labels = ([0, 1, 2, 0, 1, 0], [2, 1, 2, 0, 1, 0], [0, 0, 1, 1, 0, 1])  # class 2 absent from the third batch
    inside = outside = 0
    for n_c, y_list in enumerate(labels, start=1):
        f, y = torch.randn(6, 2, generator=g) * 3, torch.tensor(y_list)
        assert loss.needs_prepared_batch()
        prepared = loss.prepare_batch(f, y)
        dense = prepared.to_dense()  # the batch's rows in the stored centers
        expected = _hand_ewma(centers, f.tolist(), y_list, phi, beta, r, n_c)  # lines 10–12: v_i, c_k
        assert torch.allclose(dense, torch.tensor(expected), atol=1e-5)
        if 2 not in y_list:
            assert torch.equal(dense[2], loss.centers[2])  # a class absent from the batch keeps its center
        assert int(loss.num_updates) == n_c - 1  # prepared, not stored:
        assert torch.allclose(loss.centers, torch.tensor(centers), atol=1e-5)
        out = {k: v.detach() for k, v in loss(f, y, prepared=prepared).items()}  # line 13: eq. 17 against them
        penalty, n_in = _hand_penalty(f.tolist(), y_list, expected, loss.threshold)
        inside, outside = inside + n_in, outside + len(y_list) - n_in
        ce = F.cross_entropy(loss.logits(f), y).detach()
        separation = sum(
            sum(a * b for a, b in zip(expected[yi], expected[m], strict=True))
            for yi in y_list
            for m in range(num_classes)
            if m != yi
        ) / (len(y_list) * (num_classes - 1))  # eq. 10
        assert float(out["center"]) == pytest.approx(penalty, rel=1e-5)
        assert float(out["loss"]) == pytest.approx(float(ce) + lam * penalty, rel=1e-5)
        assert float(out["separation"]) == pytest.approx(separation, rel=1e-4, abs=1e-4)
        assert float(out["dead_zone_fraction"]) == pytest.approx(n_in / len(y_list))
        loss.after_optimizer_step(f, y, prepared=prepared)  # commit, N_c += 1
        assert torch.equal(loss.centers, dense) and int(loss.num_updates) == n_c
        centers = expected
    assert inside > 0 and outside > 0  # both sides of the dead zone were exercised


def test_micro_batches_with_one_prepared_match_the_whole_batch():
    """Gradient accumulation: every micro-batch is penalized against the centers prepared from the whole
    batch, so size-weighted micro-batch gradients and the committed centers equal the whole batch's."""
    torch.manual_seed(0)
    whole = HypersphereLoss(4, 6, warmup_epochs=0, lam=0.5, epsilon=0.3)
    micro = copy.deepcopy(whole)
    g = torch.Generator().manual_seed(3)
    for crit in (whole, micro):
        crit.on_epoch_start(1)
    for step in range(2):  # N_c = 1 (from zero centers), then 2
        f, y = torch.randn(12, 6, generator=g) * 3, torch.randint(0, 4, (12,), generator=g)
        prepared, prepared_micro = whole.prepare_batch(f, y), micro.prepare_batch(f, y)
        assert torch.equal(prepared.to_dense(), prepared_micro.to_dense())
        f_whole = f.clone().requires_grad_(True)
        whole(f_whole, y, prepared=prepared)["loss"].backward()
        f_micro = f.clone().requires_grad_(True)
        for part in (slice(0, 5), slice(5, 12)):  # 5 + 7 samples, each weighted by its share
            share = (part.stop - part.start) / 12
            (micro(f_micro[part], y[part], prepared=prepared_micro)["loss"] * share).backward()
        assert torch.allclose(f_micro.grad, f_whole.grad, atol=1e-6)
        for p_whole, p_micro in zip(whole.parameters(), micro.parameters(), strict=True):
            assert torch.allclose(p_micro.grad, p_whole.grad, atol=1e-6)
            p_whole.grad = p_micro.grad = None
        whole.after_optimizer_step(f, y, prepared=prepared)
        micro.after_optimizer_step(f, y, prepared=prepared_micro)
        assert (
            torch.equal(micro.centers, whole.centers) and int(micro.num_updates) == int(whole.num_updates) == step + 1
        )
        own = micro.prepare_batch(f[:5], y[:5]).to_dense()
        assert not torch.allclose(own, prepared.to_dense())  # a micro-batch's own update differs


def test_a_loop_without_prepare_batch_warns_and_updates_after_the_step():
    loss = HypersphereLoss(4, 6, warmup_epochs=0)
    loss.on_epoch_start(1)
    f, y = _batch()
    assert float(loss(f, y)["center"]) == 0  # no prepared centers: the stored ones, none set yet
    with pytest.warns(UserWarning, match="prepare_batch"):
        loss.after_optimizer_step(f, y)
    assert torch.allclose(loss.centers, ewma_center_update(torch.zeros(4, 6), f, y, 0.99, 0.1, 40.0, 1))
    assert int(loss.num_updates) == 1


def test_strategy_objects_match_the_yaml_names():
    by_name = HypersphereLoss(4, 6, warmup_epochs=0, center_update="batch", update_every=3)
    by_object = HypersphereLoss(4, 6, warmup_epochs=0, center_update=BatchEWMA(every=3))
    for crit in (by_name, by_object):
        crit.on_epoch_start(1)
        for i in range(7):
            _step(crit, *_batch(seed=i))
    assert torch.equal(by_name.centers, by_object.centers) and int(by_object.num_updates) == 3
    assert isinstance(HypersphereLoss(4, 6, warmup_epochs=1, center_update="epoch").center_update, EpochEWMA)
    dataset = HypersphereLoss(4, 6, warmup_epochs=1, center_update="dataset")
    assert isinstance(dataset.center_update, WholeTrainingSet) and dataset.needs_feature_pass
    with pytest.raises(ValueError, match="^update_every must be 1 when center_update is an object"):
        HypersphereLoss(4, 6, center_update=BatchEWMA(2), update_every=3)
    with pytest.raises(ValueError, match="^warmup_epochs must be ≥ 1 with center_update=epoch"):
        HypersphereLoss(4, 6, warmup_epochs=0, center_update=EpochEWMA())


def test_a_custom_strategy():
    """Centers set from the first penalized batch, then frozen: a CenterUpdate subclass, no loss change."""

    class FirstBatchOnly(CenterUpdate):
        def needs_prepared_batch(self, loss):
            return loss.penalized and loss.n_c == 0

        def prepare_batch(self, loss, features, labels):
            return BatchEWMA().prepare_batch(loss, features, labels)

        def after_optimizer_step(self, loss, features, labels, prepared):
            if prepared is not None:
                loss.commit(prepared)

    loss = HypersphereLoss(4, 6, warmup_epochs=0, center_update=FirstBatchOnly())
    loss.on_epoch_start(1)
    _step(loss, *_batch(seed=0))
    first = loss.centers.clone()
    for i in range(1, 4):
        assert not loss.needs_prepared_batch()
        _step(loss, *_batch(seed=i))
    assert torch.equal(loss.centers, first) and int(loss.num_updates) == 1


def test_hl_official_yaml_is_the_authors_code_column():
    cfg = compose_config(["loss=hl_official", "schedule.epochs=7"])
    from hydra.utils import instantiate

    loss = instantiate(cfg.loss, num_classes=10, feat_dim=16)
    assert loss.official == OfficialSwitches.authors_code(total_epochs=7) and loss.epsilon == 0.05
    assert loss.threshold == pytest.approx(0.998 * 40 * 0.05)  # Cifar10_HL_main.py @ba67071: alpha*rho
    assert loss.classifier.bias is None and loss.param_groups()[0]["weight_decay"] == 0.0
    with pytest.raises(ValueError, match="^official.bogus must be one of the switches"):
        HypersphereLoss(10, 16, official={"bogus": 1})


# ---------------------------------------------------------------- training
def test_resume_restores_centers_and_nc(train, tmp_path):
    args = [*FAST, "trainer.deterministic=true", "trainer.limit_train_batches=6", "trainer.limit_test_batches=2"]
    full, _ = train(*args, run_dir=tmp_path / "full")
    train(*args, "trainer.stop_after=2", run_dir=tmp_path / "part")
    saved = torch.load(tmp_path / "part" / "last.pt", weights_only=False)["criterion"]
    assert int(saved["num_updates"]) == 6 and saved["centers"].any()
    resumed, metrics = train(*args, "resume=true", run_dir=tmp_path / "part")
    assert metrics["completed"]
    assert int(resumed.criterion.num_updates) == int(full.criterion.num_updates) == 12
    assert torch.equal(resumed.criterion.centers, full.criterion.centers)


@pytest.mark.parametrize(
    "switches",
    [
        [],  # Table V row 8 (HL)
        ["loss.center_update=epoch", "loss.generalized=false"],  # row 3
        ["loss.center_update=dataset", "loss.generalized=false", "loss.separation=false"],  # row 1
        ["loss.update_every=10", "loss.official.bias_correction=false"],  # Table IV HL(10)
    ],
)
def test_digits_every_switch_trains(train, tmp_path, switches):
    # imported here: the DDP test's spawned workers re-import this module, and there `conftest` may be
    # tests/conftest.py, which has no read_history
    from conftest import read_history

    trainer, metrics = train(*FAST, "trainer.limit_train_batches=12", *switches, run_dir=tmp_path / "run")
    last = read_history(tmp_path / "run")[-1]
    assert metrics["test_acc"] > 80 and math.isfinite(last["train_loss"])
    assert last["train_center"] > 0 and last["loss_n_c"] >= 1
    for key in ("train_dead_zone_fraction", "train_center_distance", "train_separation", "loss_center_cos_max"):
        assert math.isfinite(last[key]), key


def test_cli_official_switches(run_cli):
    proc, run_dir = run_cli("loss=hl_official", "model.fc1=false", "loss.warmup_epochs=1", "schedule.epochs=3")
    metrics = read_metrics(run_dir)
    assert metrics["completed"] and metrics["test_acc"] > 80
    assert (run_dir / "tb").is_dir()


def _ddp_worker(rank: int, world: int, init_file: str, out_file: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.save(_run_modes(rank, world), f"{out_file}.{rank}")
    finally:
        dist.destroy_process_group()


def _run_modes(rank: int, world: int) -> dict[str, torch.Tensor]:
    """Two center updates per mode on a fixed global batch of 16, this rank holding its slice."""
    out = {}
    for mode in ("batch", "epoch", "dataset"):
        loss = HypersphereLoss(4, 6, warmup_epochs=1, center_update=mode, beta=0.3)
        for epoch in (1, 2, 3):
            loss.on_epoch_start(epoch)
            f, y = _batch(seed=epoch, b=16)
            f, y = f.chunk(world)[rank], y.chunk(world)[rank]
            terms = _step(loss, f, y)
            if loss.needs_feature_pass:
                loss.feature_pass(iter([(f, y)]))
            loss.on_epoch_end(epoch, {})
        out[mode] = loss.centers.clone()
        out[f"{mode}_center"] = terms["center"].detach()
    return out


def test_ddp_two_ranks_equal_one_process_with_the_global_batch(tmp_path):
    """Center statistics are all-reduced: 2 ranks × batch 8 give the centers of 1 process × batch 16."""
    import torch.multiprocessing as mp

    args = (2, str(tmp_path / "init"), str(tmp_path / "out"))
    mp.spawn(_ddp_worker, args=args, nprocs=2, join=True)  # fork would hang after OpenMP was used
    single = _run_modes(0, 1)
    for rank in (0, 1):
        got = torch.load(tmp_path / f"out.{rank}")
        for mode in ("batch", "epoch", "dataset"):
            assert single[mode].any() and torch.allclose(got[mode], single[mode], atol=1e-5), (mode, rank)
