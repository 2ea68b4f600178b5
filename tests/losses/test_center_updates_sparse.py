"""Center updates in O(B·d) (issue 23): HL (batch and epoch EWMA), center loss and CCL update only the
rows of the classes in the batch, HL's Σ_{l≠k} c_l through a running total T, and give the centers of
the dense formulas (written out here from the papers' equations, as the code computed them before) over
many steps, with absent classes, resumed from checkpoints and under DDP (2 gloo processes)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from podhl.losses import CenterLoss, ConstrainedCenterLoss, HypersphereLoss
from podhl.losses.center.rows import batch_classes, lookup_rows, write_rows

C, D, B, STEPS = 12, 8, 10, 50


# ---------------------------------------------------------------- dense references (the papers' equations)
def dense_sums(f, y, c):
    sums = torch.zeros(c, f.shape[1], dtype=f.dtype).index_add_(0, y, f)
    return sums, torch.zeros(c, dtype=f.dtype).index_add_(0, y, torch.ones_like(f[:, 0]))


def dense_hl(centers, sums, counts, phi, beta, r, n_c, bias_correction, keep):
    """HL eq. 15–16 over all C classes, Σ_{l≠k} c_l = Σ_l c_l − c_k summed afresh."""
    scale = 1 / (1 - phi**n_c) if bias_correction else 1.0
    n = counts[:, None]
    u = (phi * n * centers + (1 - phi) * sums) * scale - n * beta / (len(centers) - 1) * (centers.sum(0) - centers)
    norm = u.norm(dim=1, keepdim=True)
    new = r * u / norm.clamp_min(torch.finfo(u.dtype).tiny)
    return torch.where((counts[:, None] > 0) & (norm > 0), new, centers if keep else torch.zeros_like(centers))


def dense_center(centers, sums, counts, alpha):
    """Wen et al. eq. 4: c_j − α (n_j c_j − S_j) / (1 + n_j)."""
    return centers - alpha * (counts[:, None] * centers - sums) / (1 + counts[:, None])


def _batches(seed, steps=STEPS, b=B, c=C, d=D, present=None):
    """Random features, labels from ``present`` classes (some classes absent from every batch)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        pool = torch.randperm(c, generator=g)[: present or c // 2]  # about half the classes each step
        y = pool[torch.randint(0, len(pool), (b,), generator=g)]
        out.append((torch.randn(b, d, generator=g) * 3 + 1, y))
    return out


def _hl(**kw):
    return HypersphereLoss(C, D, warmup_epochs=0, beta=0.3, lam=0.1, epsilon=0.2, **kw)


def _protocol_step(loss, f, y):
    """prepare_batch → forward → backward → after_optimizer_step, as the training loop runs them."""
    kw = {"prepared": loss.prepare_batch(f, y)} if loss.needs_prepared_batch() else {}
    feats = f.clone().requires_grad_(True)
    terms = loss(feats, y, **kw)
    terms["loss"].backward()
    loss.after_optimizer_step(f, y, **kw)
    return {k: v.detach() for k, v in terms.items()}


# ---------------------------------------------------------------- slots
def test_slots_are_the_dense_class_sums_of_the_classes_present():
    f, y = _batches(0, steps=1)[0]
    slots = batch_classes(f, y, C)
    sums, counts = dense_sums(f, y, C)
    present = y.unique()
    assert int(slots.valid.sum()) == len(present) and torch.equal(slots.labels[: len(present)], present)
    assert (slots.labels[len(present) :] == C).all() and not slots.counts[len(present) :].any()
    assert torch.equal(slots.sums[: len(present)], sums[present])  # same additions in the same order
    assert torch.equal(slots.counts[: len(present)], counts[present])
    target = torch.randn(C, D)
    expected = target.clone()
    expected[present] = slots.sums[: len(present)]
    write_rows(target, slots, slots.sums)
    assert torch.equal(target, expected)  # unused slots write nothing
    fallback = torch.full((4, D), -1.0)
    absent = int(torch.tensor([k for k in range(C) if k not in present.tolist()])[0])
    got = lookup_rows(slots, slots.sums, torch.tensor([absent, int(present[0]), int(present[-1]), absent]), fallback)
    assert torch.equal(got[1], sums[present[0]]) and torch.equal(got[2], sums[present[-1]])
    assert torch.equal(got[0], fallback[0]) and torch.equal(got[3], fallback[3])


# ---------------------------------------------------------------- HL, per-batch EWMA
@pytest.mark.parametrize(
    "official, every",
    [
        ({}, 1),
        ({"absent_class_center": "zero", "bias_correction": False}, 1),  # the authors' code
        ({"absent_class_center": "zero"}, 3),
        ({}, 3),
    ],
)
def test_hl_batch_ewma_equals_the_dense_update_over_50_steps(official, every):
    """Within 1e-6·r of the equations in float64 at every step (fp32 dense, the code before: ≤ 1.8e-6·r),
    and within 4e-6·r of the fp32 dense update: T in float64 is no further from the exact sum."""
    loss = _hl(official=official, update_every=every)
    loss.on_epoch_start(1)
    keep = loss.official.absent_class_center == "keep"
    bias_correction = official.get("bias_correction", True)
    exact, dense, n_c = torch.zeros(C, D, dtype=torch.float64), torch.zeros(C, D), 0
    for i, (f, y) in enumerate(_batches(1)):
        terms = _protocol_step(loss, f, y)
        if i % every == 0:
            n_c += 1
            exact = dense_hl(exact, *dense_sums(f.double(), y, C), 0.99, 0.3, 40.0, n_c, bias_correction, keep)
            dense = dense_hl(dense, *dense_sums(f, y, C), 0.99, 0.3, 40.0, n_c, bias_correction, keep)
        torch.testing.assert_close(loss.centers.double() / 40.0, exact / 40.0, rtol=0, atol=1e-6)
        torch.testing.assert_close(loss.centers / 40.0, dense / 40.0, rtol=0, atol=4e-6)
        # forward's terms against the centers of this step (eq. 17 and eq. 10)
        rows = exact[y]
        valid = rows.pow(2).sum(1) > 0
        d2 = (f.double() - rows).pow(2).sum(1)
        penalty = torch.where((d2 >= loss.threshold**2) & valid, d2, torch.zeros_like(d2)).sum() / (2 * B)
        separation = (rows * (exact.sum(0) - rows)).sum() / (B * (C - 1))
        assert float(terms["center"]) == pytest.approx(float(penalty), rel=1e-5)
        assert float(terms["separation"]) == pytest.approx(float(separation), rel=1e-5, abs=1e-3)
    assert int(loss.num_updates) == n_c and loss.centers.any()
    if not keep:
        assert (loss.centers.norm(dim=1) == 0).sum() >= C // 2  # the classes absent from the last update
    torch.testing.assert_close(loss.center_sum, loss.centers.double().sum(0), rtol=0, atol=1e-9)


# ---------------------------------------------------------------- HL, per-epoch EWMA
@pytest.mark.parametrize("absent", ["keep", "zero"])
def test_hl_epoch_ewma_equals_the_dense_update(absent):
    loss = HypersphereLoss(
        C, D, warmup_epochs=1, beta=0.3, center_update="epoch", official={"absent_class_center": absent}
    )
    centers, n_c = torch.zeros(C, D, dtype=torch.float64), 0  # the equations in float64
    batches = _batches(2, steps=30)
    for epoch in (1, 2, 3, 4):
        loss.on_epoch_start(epoch)
        part = batches[(epoch - 1) * 7 : epoch * 7]
        for f, y in part:
            _protocol_step(loss, f, y)
        loss.on_epoch_end(epoch, {})
        n_c += 1  # t1 = 1: every epoch ends with an update
        f, y = torch.cat([p[0] for p in part]), torch.cat([p[1] for p in part])
        centers = dense_hl(centers, *dense_sums(f.double(), y, C), 0.99, 0.3, 40.0, n_c, True, absent == "keep")
        torch.testing.assert_close(loss.centers.double() / 40.0, centers / 40.0, rtol=0, atol=1e-6)
    torch.testing.assert_close(loss.center_sum, loss.centers.double().sum(0), rtol=0, atol=1e-9)


# ---------------------------------------------------------------- center loss, CCL
def test_center_loss_equals_the_dense_update_over_50_steps():
    torch.manual_seed(0)
    loss = CenterLoss(C, D, lam=0.01, alpha=0.5)
    centers = loss.centers.clone()
    for f, y in _batches(3):
        _protocol_step(loss, f, y)
        centers = dense_center(centers, *dense_sums(f, y, C), 0.5)
        torch.testing.assert_close(loss.centers, centers, rtol=0, atol=1e-6)
    absent = torch.tensor([k for k in range(C) if k not in torch.cat([y for _, y in _batches(3)]).tolist()])
    assert len(absent) == 0 or torch.equal(loss.centers[absent], centers[absent])


def test_ccl_feature_pass_equals_the_dense_sums():
    loss = ConstrainedCenterLoss(C, D, lam=0.01)
    batches = _batches(4, steps=6, present=C - 3)
    for epoch in (1, 2):
        loss.on_epoch_start(epoch)
        for f, y in batches[:3]:
            _protocol_step(loss, f, y)
        loss.feature_pass(iter(batches))
        f, y = torch.cat([p[0] for p in batches]).double(), torch.cat([p[1] for p in batches])
        sums, counts = dense_sums(f, y, C)
        norm = sums.norm(dim=1, keepdim=True)
        expected = torch.where(counts[:, None] > 0, 40.0 * sums / norm.clamp_min(1e-300), torch.zeros_like(sums))
        torch.testing.assert_close(loss.centers, expected.float(), rtol=0, atol=1e-5)


# ---------------------------------------------------------------- no (C, d) temporary in the updates
class _Allocations(TorchDispatchMode):
    """Largest tensor an op returns that is not (a view of) one of ``keep``'s storages."""

    def __init__(self, keep):
        super().__init__()
        self.keep = {t.untyped_storage().data_ptr() for t in keep}
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in self.keep:
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("name", ["hl", "hl_zero", "center"])
def test_updates_allocate_nothing_of_size_c(name):
    """At C = 4,000 ≫ B = 16, the hooks' temporaries are O(B·d); the dense updates made (C, d) ones."""
    c, b, d = 4000, 16, 4
    if name == "center":
        loss = CenterLoss(c, d)
    else:
        official = {"absent_class_center": "zero"} if name == "hl_zero" else {}
        loss = HypersphereLoss(c, d, warmup_epochs=0, official=official)
        loss.on_epoch_start(1)
    g = torch.Generator().manual_seed(5)
    for _ in range(3):
        f, y = torch.randn(b, d, generator=g), torch.randint(0, c, (b,), generator=g)
        with _Allocations(list(loss.buffers())) as hooks:
            kw = {"prepared": loss.prepare_batch(f, y)} if loss.needs_prepared_batch() else {}
            loss.after_optimizer_step(f, y, **kw)
        assert hooks.largest <= 4 * b * d, hooks.largest


# ---------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("official", [{}, {"absent_class_center": "zero"}])
def test_resume_continues_the_exact_sequence_and_old_checkpoints_load(official):
    full, part = _hl(official=official), _hl(official=official)
    for loss in (full, part):
        loss.on_epoch_start(1)
    batches = _batches(6, steps=20)
    for f, y in batches:
        _protocol_step(full, f, y)
    for f, y in batches[:10]:
        _protocol_step(part, f, y)
    state = copy.deepcopy(part.state_dict())
    assert "center_sum" in state and state["center_sum"].dtype == torch.float64
    resumed, old = _hl(official=official), _hl(official=official)
    resumed.load_state_dict(state)
    del state["center_sum"]  # a checkpoint from before T: recomputed from the centers
    old.load_state_dict(state)
    torch.testing.assert_close(old.center_sum, resumed.center_sum, rtol=0, atol=1e-9)
    for loss in (resumed, old):
        loss.on_epoch_start(1)
        for f, y in batches[10:]:
            _protocol_step(loss, f, y)
    assert torch.equal(resumed.centers, full.centers) and torch.equal(resumed.center_sum, full.center_sum)
    torch.testing.assert_close(old.centers, full.centers, rtol=0, atol=1e-5)


@pytest.mark.parametrize("num_classes", [C, C + 1])
def test_init_from_a_criterion_state_recomputes_t(tmp_path, num_classes):
    """``model.init_criterion`` copies matching tensors one by one: T follows the centers it got (or kept)."""
    from podhl.engine.init_from import init_from

    source = _hl()
    source.on_epoch_start(1)
    for f, y in _batches(8, steps=3):
        _protocol_step(source, f, y)
    model = torch.nn.Linear(2, 2)
    state = source.state_dict()
    if num_classes == C:  # an older run's checkpoint, without T; else T fits and the centers do not
        del state["center_sum"]
    torch.save({"model": model.state_dict(), "criterion": state}, tmp_path / "last.pt")
    target = HypersphereLoss(num_classes, D)
    init_from({"init_from": str(tmp_path / "last.pt"), "init_criterion": True}, model, target)
    assert torch.equal(target.centers.any(), torch.tensor(num_classes == C))
    torch.testing.assert_close(target.center_sum, target.centers.double().sum(0), rtol=0, atol=1e-9)


# ---------------------------------------------------------------- DDP
def _run_ddp_losses(rank: int, world: int) -> dict[str, torch.Tensor]:
    """Ten protocol steps on a fixed global batch of 13, ranks holding unequal parts (7 + 6)."""
    out = {}
    losses = {
        "hl": _hl(),
        "hl_zero": _hl(official={"absent_class_center": "zero"}),
        "hl_epoch": HypersphereLoss(C, D, warmup_epochs=1, beta=0.3, center_update="epoch"),
        "center": CenterLoss(C, D),
    }
    torch.manual_seed(0)
    losses["center"].centers.copy_(torch.randn(C, D))
    for name, loss in losses.items():
        loss.on_epoch_start(1)
        for f, y in _batches(7, steps=10, b=13):
            part = slice(0, 7) if rank == 0 else slice(7, 13)
            part = slice(0, 13) if world == 1 else part
            _protocol_step(loss, f[part], y[part])
        loss.on_epoch_end(1, {})
        out[name] = loss.centers.clone()
    return out


def _ddp_worker(rank: int, world: int, init_file: str, out_file: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.save(_run_ddp_losses(rank, world), f"{out_file}.{rank}")
    finally:
        dist.destroy_process_group()


def test_ddp_two_ranks_with_unequal_batches_equal_one_process(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "out")), nprocs=2, join=True)
    single = _run_ddp_losses(0, 1)
    got = [torch.load(tmp_path / f"out.{rank}") for rank in (0, 1)]
    for name, value in single.items():
        assert value.any(), name
        assert torch.equal(got[0][name], got[1][name]), name  # every rank holds the same centers
        torch.testing.assert_close(got[0][name], value, rtol=0, atol=4e-5, msg=name)


# ---------------------------------------------------------------- the benchmark script runs
def test_bench_center_updates_script_runs_tiny(tmp_path):
    import json
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "bench_center_updates.py"
    main = runpy.run_path(str(script))["main"]
    out = tmp_path / "b.json"
    tiny = ["--classes", "50", "--batch", "8", "--dim", "8", "--out", str(out)]
    assert main([*tiny, "--steps", "1", "--warmup", "0"]) == 0
    rows = {r["loss"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"linear+ce", "hl", "hl_official", "center", "ccl"}
    assert all(rows[n]["ms"] > 0 and rows[n]["update_alloc_mb"] > 0 for n in ("hl", "hl_official", "center"))
    assert main([*tiny, "--drift", "20"]) == 0
    drift = json.loads(out.read_text())["drift"]
    assert len(drift) == 10 and all(r["running_T_err"] < 1e-9 for r in drift)
