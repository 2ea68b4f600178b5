"""The class-sharded classifier (PartialFC, ``podhl.losses.sharded``) with 2 gloo processes on CPU equals the
unsharded head: loss, gradients, the model and W after SGD steps, optimizer state and checkpoints; with
sampling, each rank keeps its positives plus random negatives and only those rows get gradients. Hypersphere
Loss (sharded W, replicated centers): its terms, gradients, W, centers and counters over its warm start and
penalized steps, checkpoints that load sharded and unsharded."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from podhl.errors import ConfigError
from podhl.losses import (
    AMCMSoftmaxLoss,
    AMSoftmaxLoss,
    ArcFaceLoss,
    ASoftmaxLoss,
    CenterLoss,
    CombinedMarginLoss,
    ConstrainedCenterLoss,
    ExclusiveRegularizationLoss,
    HypersphereLoss,
    MagFaceLoss,
    SoftmaxLoss,
)
from podhl.losses.hypersphere.switches import OfficialSwitches
from podhl.losses.sharded import ShardedClassifier

C, D_IN, D = 11, 5, 6  # 11 classes: shards of 6 and 5 rows
SIZES = (9, 7)  # uneven local batches: 16 samples in all
HEADS = {
    "softmax": lambda: SoftmaxLoss(C, D),
    "am": lambda: AMSoftmaxLoss(C, D, scale=8.0),
    "arc": lambda: ArcFaceLoss(C, D, scale=8.0),
    "cm": lambda: CombinedMarginLoss(C, D, scale=8.0),
    "mml": lambda: AMCMSoftmaxLoss(C, D, scale=8.0),
    # magnitudes of these features lie in [0.5, 3]: the margin and g(a) move (not clamped flat)
    "magface": lambda: MagFaceLoss(C, D, scale=8.0, l_a=0.2, u_a=4.0, lambda_g=2.0),
}
STEPS, LR = 3, 0.5
TOL = 1e-5


def _data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(sum(SIZES), D_IN, generator=g)
    y = torch.randint(0, C, (sum(SIZES),), generator=g)
    y[:4] = torch.tensor([0, 5, 6, 10])  # both shards' first and last rows occur
    return x, y


def _slices():
    out, start = [], 0
    for n in SIZES:
        out.append(slice(start, start + n))
        start += n
    return out


def _build(name: str):
    torch.manual_seed(1)
    model = nn.Linear(D_IN, D)
    head = HEADS[name]()
    return model, head


def _optimizer(model, criterion):
    return torch.optim.SGD([*model.parameters(), *criterion.parameters()], lr=LR, momentum=0.9)


def _reference(name: str) -> dict:
    """One process, unsharded head; the loss is the mean of the per-rank losses (what DDP optimizes)."""
    model, head = _build(name)
    opt = _optimizer(model, head)
    x, y = _data()
    out: dict = {}
    for step in range(STEPS):
        features = model(x)
        features.retain_grad()
        losses = [head(features[s], y[s])["loss"] for s in _slices()]
        loss = sum(losses) / len(losses)
        opt.zero_grad()
        loss.backward()
        if step == 0:
            out["losses"] = torch.stack([v.detach() for v in losses])
            out["feature_grad"] = features.grad.clone()
            out["weight_grad"] = {k: p.grad.clone() for k, p in head.named_parameters()}
            out["logits"] = head.logits(features.detach())
        opt.step()
    out["model"] = {k: v.clone() for k, v in model.state_dict().items()}
    out["criterion"] = {k: v.clone() for k, v in head.state_dict().items()}
    out["optimizer"] = opt.state_dict()
    return out


def _sharded(name: str, rank: int, world: int) -> dict:
    """``world`` ranks, each with its slice of the batch, a DDP model and its shard of W."""
    model, head = _build(name)
    crit = ShardedClassifier(head).train()
    ddp = nn.parallel.DistributedDataParallel(model)
    opt = _optimizer(model, crit)
    crit.attach_optimizer(opt)
    x, y = _data()
    mine = _slices()[rank]
    out: dict = {}
    for step in range(STEPS):
        features = ddp(x[mine])
        features.retain_grad()
        terms = crit(features, y[mine])
        opt.zero_grad()
        terms["loss"].backward()
        if step == 0:
            out["loss"] = terms["loss"].detach()
            out["feature_grad"] = features.grad.clone()
            names, params = crit._sharded_names(), crit.sharded_parameters()
            out["weight_grad"] = {n: crit._gather(p.grad) for n, p in zip(names, params, strict=True)}
            out["logits_train"] = crit.logits(features.detach())
            out["logits_eval"] = crit.eval().logits(features.detach())
            crit.train()
        opt.step()
    out["model"] = {k: v.clone() for k, v in model.state_dict().items()}
    out["criterion"] = crit.state_dict()  # gathered: the full W
    out["optimizer"] = opt.state_dict()  # gathered: the full momentum

    # resume: a fresh sharded criterion and optimizer load the full-size state; their shard is this rank's rows
    model2, head2 = _build(name)
    crit2 = ShardedClassifier(head2)
    opt2 = _optimizer(model2, crit2)
    crit2.attach_optimizer(opt2)
    crit2.load_state_dict(out["criterion"])
    opt2.load_state_dict(out["optimizer"])
    rows = slice(crit2.start, crit2.start + crit2.count)
    names, params = crit2._sharded_names(), crit2.sharded_parameters()
    out["resumed_ok"] = all(torch.equal(p, out["criterion"][n][rows]) for n, p in zip(names, params, strict=True))
    flat, flat2 = ([p for g in o.param_groups for p in g["params"]] for o in (opt, opt2))
    out["resumed_momentum_ok"] = all(
        torch.equal(opt2.state[q]["momentum_buffer"], opt.state[p]["momentum_buffer"])
        for p, q in zip(flat, flat2, strict=True)
    )
    return out


def _worker(rank: int, world: int, init_file: str, out_file: str, job: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        if job == "equal":
            result = {name: _sharded(name, rank, world) for name in HEADS}
        elif job == "hl":
            result = {name: _sharded_hl(name, rank, world) for name in HL_HEADS}
        else:
            result = _sampling(rank, world)
        torch.save(result, f"{out_file}.{rank}")
    finally:
        dist.destroy_process_group()


def _spawn(tmp_path, job: str) -> list:
    import torch.multiprocessing as mp

    args = (2, str(tmp_path / "init"), str(tmp_path / "out"), job)
    mp.spawn(_worker, args=args, nprocs=2, join=True)  # fork would hang after OpenMP was used
    return [torch.load(tmp_path / f"out.{rank}", weights_only=False) for rank in (0, 1)]


def _close(a, b, name):
    assert a.shape == b.shape, name
    assert torch.allclose(a, b, rtol=TOL, atol=TOL), (name, (a - b).abs().max())


def test_two_ranks_equal_the_unsharded_head(tmp_path):
    ranks = _spawn(tmp_path, "equal")
    for name in HEADS:
        ref = _reference(name)
        for rank, got in enumerate(ranks):
            got, mine = got[name], _slices()[rank]
            _close(got["loss"], ref["losses"][rank], f"{name} loss rank {rank}")
            # this rank's features get the gradient of its own loss: world × that of the mean over ranks
            _close(got["feature_grad"], 2 * ref["feature_grad"][mine], f"{name} feature grad")
            for key, grad in ref["weight_grad"].items():
                _close(got["weight_grad"][key], grad, f"{name} {key} grad")
            _close(got["logits_train"], ref["logits"][mine], f"{name} logits (train mode)")
            _close(got["logits_eval"], ref["logits"][mine], f"{name} logits (eval mode)")
            for key, value in ref["model"].items():
                _close(got["model"][key], value, f"{name} model {key} after {STEPS} steps")
            assert set(got["criterion"]) == set(ref["criterion"]), name  # the unsharded head's keys
            for key, value in ref["criterion"].items():
                _close(got["criterion"][key], value, f"{name} {key} after {STEPS} steps")
            for i, state in ref["optimizer"]["state"].items():
                _close(
                    got["optimizer"]["state"][i]["momentum_buffer"], state["momentum_buffer"], f"{name} momentum {i}"
                )
            assert got["resumed_ok"] and got["resumed_momentum_ok"], name


def test_single_process_equals_the_head():
    """Without a process group the wrapper holds every row and is the head (values and gradients)."""
    for name in HEADS:
        _, head = _build(name)
        _, other = _build(name)
        crit = ShardedClassifier(other).train()
        x, y = _data()
        f1 = torch.randn(len(y), D, requires_grad=True)
        f2 = f1.detach().clone().requires_grad_()
        a, b = head(f1, y)["loss"], crit(f2, y)["loss"]
        a.backward(), b.backward()
        _close(b.detach(), a.detach(), name)
        _close(f2.grad, f1.grad, name)
        for p, q in zip(crit.sharded_parameters(), head.parameters(), strict=True):
            _close(p.grad, q.grad, name)


def _sampling(rank: int, world: int) -> dict:
    """sample_rate 0.5 over 20 classes (10 rows per rank, 5 kept): two batches, one with few positives per
    shard, one with more positives than the sample size."""
    out = {}
    for case, labels in {"few": [0, 3, 3, 12, 17, 0, 12, 19], "many": list(range(20))}.items():
        torch.manual_seed(3)
        head = ArcFaceLoss(20, D, scale=8.0)
        full = head.weight.detach().clone()
        crit = ShardedClassifier(head, sample_rate=0.5).train()
        y = torch.tensor(labels)
        mine = slice(rank * len(y) // world, (rank + 1) * len(y) // world)
        torch.manual_seed(4)
        f = torch.randn(len(y), D)[mine].requires_grad_()
        terms = crit(f, y[mine])
        terms["loss"].backward()
        out[case] = {
            "rows": crit.last_sampled_rows.clone(),
            "start": crit.start,
            "num_sample": crit.num_sample,
            "grad": crit.sharded_parameters()[0].grad.clone(),
            "loss": terms["loss"].detach(),
            "features": f.detach(),
            "full": full,
            "labels": y,
        }
    return out


def test_sampling_keeps_positives_and_only_sampled_rows_get_gradients(tmp_path):
    ranks = _spawn(tmp_path, "sampling")
    for case in ("few", "many"):
        kept_global = []
        for got in ranks:
            got = got[case]
            rows, start = got["rows"], got["start"]
            positives = {int(v) - start for v in got["labels"] if start <= int(v) < start + 10}
            assert positives <= set(rows.tolist()), case  # every positive class of the shard
            assert len(rows) == max(got["num_sample"], len(positives)) and got["num_sample"] == 5, case
            assert torch.equal(rows, rows.sort().values) and len(set(rows.tolist())) == len(rows)
            touched = set(torch.nonzero(got["grad"].abs().sum(dim=1)).squeeze(1).tolist())
            assert touched == set(rows.tolist()), case  # only sampled rows get gradients, and all of them do
            kept_global += [start + int(r) for r in rows]
        # the loss is the head's on the kept classes only: CE over the union of both ranks' sampled columns
        ref = ranks[0][case]
        head = ArcFaceLoss(20, D, scale=8.0)
        with torch.no_grad():
            head.weight.copy_(ref["full"])
        f = torch.cat([r[case]["features"] for r in ranks])
        y = ref["labels"]
        cols = torch.tensor(sorted(kept_global))
        logits = head.margin_logits(head.cosine(f), y)[:, cols]
        per_sample = F.cross_entropy(logits, torch.searchsorted(cols, y), reduction="none")
        for rank, got in enumerate(ranks):
            half = slice(rank * len(y) // 2, (rank + 1) * len(y) // 2)
            _close(got[case]["loss"], per_sample[half].mean(), f"{case} sampled loss rank {rank}")
    # the ranks drew different negatives (row `rank` of one shared draw)
    assert not torch.equal(ranks[0]["few"]["rows"], ranks[1]["few"]["rows"])


@pytest.mark.parametrize(
    "make",
    [
        lambda: ExclusiveRegularizationLoss(C, D),
        lambda: ASoftmaxLoss(C, D),
        lambda: CenterLoss(C, D),
        lambda: ConstrainedCenterLoss(C, D),
    ],
)
def test_unsupported_heads_are_refused(make):
    with pytest.raises(ConfigError, match="cannot be sharded"):
        ShardedClassifier(make())


# ---------------------------------------------------------------- Hypersphere Loss: sharded W, replicated centers
# radius 3: these features' norms lie around 1-3, so the dead zone, the penalty and the updates all move;
# λ = 0.5 makes the penalty's gradient count. Epoch 1 is the warm start (softmax only), epoch 2 penalized.
HL_KW = dict(radius=3.0, epsilon=0.3, phi=0.8, lam=0.5, beta=0.2, warmup_epochs=1)
HL_HEADS = {
    "hl": lambda: HypersphereLoss(C, D, **HL_KW),
    # the authors' code: unit-norm W rows, no bias, d⁴ penalty, absent centers reset to zero (ramps over 1 epoch)
    "hl_official": lambda: HypersphereLoss(C, D, **HL_KW, official=OfficialSwitches.authors_code(total_epochs=1)),
    "hl10": lambda: HypersphereLoss(C, D, **HL_KW, update_every=2),  # updates on every other penalized step
    # one update per epoch from the epoch's summed features (all-reduced at its end)
    "hl_epoch": lambda: HypersphereLoss(C, D, **HL_KW, center_update="epoch"),
}
HL_STEPS, HL_RECORD = 4, (0, 2)  # step 0: warm start; steps 1-3: penalized; terms and gradients at 0 and 2
HL_TERMS = ("loss", "ce", "center", "separation", "dead_zone_fraction", "center_distance")


def _hl_epoch(crit, step: int, epoch: int) -> int:
    """The trainer's epoch hooks: epoch 1 for step 0, epoch 2 after it, ended after the last step."""
    new = 1 if step == 0 else 2 if step < HL_STEPS else 3
    if new != epoch:
        if epoch:
            crit.on_epoch_end(epoch, {"mean_feature_norm": 1.0, "num_samples": float(sum(SIZES))})
        crit.on_epoch_start(new)
    return new


def _hl_reference(name: str) -> dict:
    """One process, unsharded HL; the update prepared from the whole batch (what DDP's gathered sums give)."""
    torch.manual_seed(1)
    model, head = nn.Linear(D_IN, D), HL_HEADS[name]()
    opt = _optimizer(model, head)
    x, y = _data()
    out: dict = {"terms": {}, "feature_grad": {}, "weight_grad": {}}
    epoch = 0
    for step in range(HL_STEPS):
        epoch = _hl_epoch(head, step, epoch)
        features = model(x)
        features.retain_grad()
        prepared = head.prepare_batch(features.detach(), y) if head.needs_prepared_batch() else None
        terms = [head(features[s], y[s], prepared=prepared) for s in _slices()]
        loss = sum(t["loss"] for t in terms) / len(terms)
        opt.zero_grad()
        loss.backward()
        if step in HL_RECORD:
            out["terms"][step] = {k: torch.stack([t[k].detach() for t in terms]) for k in HL_TERMS}
            out["feature_grad"][step] = features.grad.clone()
            out["weight_grad"][step] = {k: p.grad.clone() for k, p in head.named_parameters()}
        opt.step()
        with torch.no_grad():
            head.after_optimizer_step(features.detach(), y, prepared=prepared)
    _hl_epoch(head, HL_STEPS, epoch)  # epoch 2 ends (EpochEWMA's update)
    head.eval()
    with torch.no_grad():
        features = model(x)
        out["eval"] = [head(features[s], y[s]) for s in _slices()]  # test batches: the stored centers
        out["logits"] = head.logits(features)
    out["model"] = {k: v.clone() for k, v in model.state_dict().items()}
    out["criterion"] = {k: v.clone() for k, v in head.state_dict().items()}
    out["optimizer"] = opt.state_dict()
    out["metrics"] = head.epoch_metrics()
    return out


def _sharded_hl(name: str, rank: int, world: int) -> dict:
    """``world`` ranks: a DDP model, the shard of W, the centers replicated and updated by the HL hooks."""
    torch.manual_seed(1)
    model, head = nn.Linear(D_IN, D), HL_HEADS[name]()
    crit = ShardedClassifier(head).train()
    ddp = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(
        [*model.parameters(), *[p for g in crit.param_groups() for p in g["params"]]], lr=LR, momentum=0.9
    )
    crit.attach_optimizer(opt)
    x, y = _data()
    mine = _slices()[rank]
    out: dict = {"terms": {}, "feature_grad": {}, "weight_grad": {}, "warm": crit.warm_start_epochs}
    epoch = 0
    for step in range(HL_STEPS):
        epoch = _hl_epoch(crit, step, epoch)
        features = ddp(x[mine])
        features.retain_grad()
        prepared = crit.prepare_batch(features.detach(), y[mine]) if crit.needs_prepared_batch() else None
        terms = crit(features, y[mine], prepared=prepared)
        opt.zero_grad()
        terms["loss"].backward()
        if step in HL_RECORD:
            out["terms"][step] = {k: terms[k].detach() for k in HL_TERMS}
            out["feature_grad"][step] = features.grad.clone()
            names, params = crit._sharded_names(), crit.sharded_parameters()
            out["weight_grad"][step] = {n: crit._gather(p.grad) for n, p in zip(names, params, strict=True)}
        opt.step()
        with torch.no_grad():
            crit.after_optimizer_step(features.detach(), y[mine], prepared=prepared)
    _hl_epoch(crit, HL_STEPS, epoch)
    crit.eval()
    with torch.no_grad():
        features = model(x[mine])
        out["eval"] = crit(features, y[mine])
        out["logits"] = crit.logits(features)
        out["eval_shares_centers"] = crit._unsharded().centers.data_ptr() == crit.head.centers.data_ptr()
    crit.train()
    out["model"] = {k: v.clone() for k, v in model.state_dict().items()}
    out["criterion"] = crit.state_dict()  # the full W, the centers as they are
    out["optimizer"] = opt.state_dict()
    out["metrics"] = crit.epoch_metrics()

    # resume: a fresh sharded HL takes the checkpoint; its shard is this rank's rows, the centers whole
    torch.manual_seed(1)
    crit2 = ShardedClassifier(HL_HEADS[name]())
    crit2.load_state_dict(out["criterion"])
    rows = slice(crit2.start, crit2.start + crit2.count)
    names, params = crit2._sharded_names(), crit2.sharded_parameters()
    out["resumed_ok"] = all(torch.equal(p, out["criterion"][n][rows]) for n, p in zip(names, params, strict=True))
    out["resumed_centers_ok"] = torch.equal(crit2.head.centers, crit.head.centers) and crit2.head.n_c == crit.head.n_c
    return out


def test_two_ranks_hypersphere_loss_equals_the_unsharded_one(tmp_path):
    ranks = _spawn(tmp_path, "hl")
    for name in HL_HEADS:
        ref = _hl_reference(name)
        assert ref["criterion"]["num_updates"] > 0 and ref["terms"][2]["center"].abs().sum() > 0, name  # penalized
        for rank, got in enumerate(ranks):
            got, mine = got[name], _slices()[rank]
            assert got["warm"] == 1, name
            for step in HL_RECORD:
                for key in HL_TERMS:
                    _close(got["terms"][step][key], ref["terms"][step][key][rank], f"{name} {key} step {step}")
                _close(got["feature_grad"][step], 2 * ref["feature_grad"][step][mine], f"{name} feature grad {step}")
                for key, grad in ref["weight_grad"][step].items():
                    _close(got["weight_grad"][step][key], grad, f"{name} {key} grad step {step}")
            for key in HL_TERMS:
                _close(got["eval"][key], ref["eval"][rank][key], f"{name} eval {key}")
            _close(got["logits"], ref["logits"][mine], f"{name} logits (eval)")
            assert got["eval_shares_centers"], name  # evaluation copies W, not the centers
            for key, value in ref["model"].items():
                _close(got["model"][key], value, f"{name} model {key} after {HL_STEPS} steps")
            assert set(got["criterion"]) == set(ref["criterion"]), name  # the unsharded HL's keys
            for key, value in ref["criterion"].items():
                _close(got["criterion"][key].double(), value.double(), f"{name} {key} after {HL_STEPS} steps")
            for i, state in ref["optimizer"]["state"].items():
                _close(
                    got["optimizer"]["state"][i]["momentum_buffer"], state["momentum_buffer"], f"{name} momentum {i}"
                )
            for key, value in ref["metrics"].items():
                assert abs(got["metrics"][key] - value) <= TOL, (name, key)
            assert got["resumed_ok"] and got["resumed_centers_ok"], name
            # podhl-eval's way: the unsharded HL loads the sharded run's checkpoint as is
            unsharded = HL_HEADS[name]()
            unsharded.load_state_dict(got["criterion"])
            _close(unsharded.centers, ref["criterion"]["centers"], f"{name} centers, unsharded load")


def test_single_process_hypersphere_loss_equals_the_head():
    """No process group: the wrapper is HL (warm start, then penalized against a prepared update)."""
    for name, make in HL_HEADS.items():
        torch.manual_seed(1)
        head = make()
        torch.manual_seed(1)
        crit = ShardedClassifier(make()).train()
        x, y = _data()
        f1 = torch.randn(len(y), D, requires_grad=True)
        f2 = f1.detach().clone().requires_grad_()
        for epoch in (1, 2):
            head.on_epoch_start(epoch), crit.on_epoch_start(epoch)
            due = head.needs_prepared_batch()
            assert crit.needs_prepared_batch() == due and due == (epoch == 2 and name != "hl_epoch"), name
            p1 = head.prepare_batch(f1.detach(), y) if due else None
            p2 = crit.prepare_batch(f2.detach(), y) if due else None
            a, b = head(f1, y, prepared=p1), crit(f2, y, prepared=p2)
            for key in HL_TERMS:
                _close(b[key].detach(), a[key].detach(), f"{name} {key} epoch {epoch}")
            f1.grad = f2.grad = None
            a["loss"].backward(), b["loss"].backward()
            _close(f2.grad, f1.grad, name)
            (
                head.after_optimizer_step(f1.detach(), y, prepared=p1),
                crit.after_optimizer_step(f2.detach(), y, prepared=p2),
            )
            stats = {"mean_feature_norm": 1.0, "num_samples": float(len(y))}
            head.on_epoch_end(epoch, stats), crit.on_epoch_end(epoch, stats)
            _close(crit.head.centers, head.centers, f"{name} centers epoch {epoch}")
        assert crit.param_groups()[0].get("weight_decay") == head.param_groups()[0].get("weight_decay"), name


def test_sharded_hypersphere_loss_samples_only_w_rows():
    """class_sample_rate < 1 samples W's rows only; the penalty still uses each sample's own center."""
    torch.manual_seed(1)
    crit = ShardedClassifier(HL_HEADS["hl"](), sample_rate=0.5).train()
    x, y = _data()
    f = torch.randn(len(y), D, requires_grad=True)
    crit.on_epoch_start(2)
    prepared = crit.prepare_batch(f.detach(), y)
    terms = crit(f, y, prepared=prepared)
    terms["loss"].backward()
    rows = set(crit.last_sampled_rows.tolist())
    assert set(y.tolist()) <= rows and len(rows) == len(set(y.tolist()))  # 5 sampled < 11 positives: all kept
    touched = set(torch.nonzero(crit.sharded_parameters()[0].grad.abs().sum(dim=1)).squeeze(1).tolist())
    assert touched == rows
    ref = HL_HEADS["hl"]()
    ref.load_state_dict(crit.state_dict())
    ref.on_epoch_start(2)
    _close(terms["center"].detach(), ref(f, y, prepared=ref.prepare_batch(f.detach(), y))["center"].detach(), "center")


# ---------------------------------------------------------------- the trainer, end to end (torchrun, 2 processes)
COMMON = [
    "trainer.progress=false",
    "trainer.device=cpu",
    "trainer.deterministic=true",
    "backbone.norm=group",  # batch-size independent model: 2 × 32 trains like 1 × 64
    "schedule.epochs=2",
    "schedule.batch_size=64",
    "trainer.limit_train_batches=6",
    "loss=arc",
    "seed=1",
]


def _train(tmp_path, run_dir, *overrides, processes: int = 1):
    import os
    import subprocess
    import sys

    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    prefix = launcher if processes > 1 else [sys.executable]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [*prefix, "-m", "podhl.train", *COMMON, *overrides, f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return torch.load(run_dir / "last.pt", weights_only=False)


def test_trainer_sharded_two_processes_match_one_unsharded_and_resume(tmp_path):
    single = _train(tmp_path, tmp_path / "single")
    sharded = _train(tmp_path, tmp_path / "sharded", "trainer.shard_classes=true", processes=2)
    # 12 SGD steps; the runs differ by float summation order only (as tests/test_distributed.py)
    assert set(sharded["criterion"]) == {"weight"} and sharded["criterion"]["weight"].shape == single["criterion"][
        "weight"
    ].shape == (10, 32)
    assert torch.allclose(sharded["criterion"]["weight"], single["criterion"]["weight"], rtol=1e-4, atol=1e-4)
    for name, value in single["model"].items():
        assert torch.allclose(sharded["model"][name], value, rtol=1e-4, atol=1e-4), name
    assert abs(sharded["history"][-1]["train_loss"] - single["history"][-1]["train_loss"]) <= 1e-4
    # stop after epoch 1, resume from last.pt (full W and momentum, re-sliced): the same as the straight run
    half = tmp_path / "resumed"
    _train(tmp_path, half, "trainer.shard_classes=true", "trainer.stop_after=1", processes=2)
    resumed = _train(tmp_path, half, "trainer.shard_classes=true", "resume=true", processes=2)
    assert torch.allclose(resumed["criterion"]["weight"], sharded["criterion"]["weight"], atol=1e-6)
    for name, value in sharded["model"].items():
        assert torch.allclose(resumed["model"][name], value, atol=1e-6), name


def test_trainer_sharded_softmax_with_sampling_trains(tmp_path):
    state = _train(
        tmp_path,
        tmp_path / "run",
        "loss=softmax",
        "trainer.shard_classes=true",
        "trainer.class_sample_rate=0.5",
        "schedule.epochs=1",
        processes=2,
    )
    assert set(state["criterion"]) == {"classifier.weight", "classifier.bias"}
    assert state["criterion"]["classifier.bias"].shape == (10,)
    row = state["history"][-1]
    assert torch.isfinite(torch.tensor(row["train_loss"])) and row["test_acc"] > 10


def test_trainer_sharded_hypersphere_loss_matches_unsharded_and_resumes(tmp_path):
    """loss=hl through the trainer: epoch 1 the warm start, epoch 2 penalized with per-step center updates; the
    2-process sharded run (W sharded, centers replicated) ends as the 1-process unsharded one, and a run stopped
    after the warm start and resumed ends as the straight one."""
    hl = ["loss=hl", "loss.warmup_epochs=1", "loss.radius=3.0", "loss.lam=0.05"]
    single = _train(tmp_path, tmp_path / "single", *hl)
    sharded = _train(tmp_path, tmp_path / "sharded", *hl, "trainer.shard_classes=true", processes=2)
    assert single["criterion"]["num_updates"] == 6  # one update per penalized step of epoch 2
    assert single["history"][-1]["train_center"] > 0
    assert set(sharded["criterion"]) == set(single["criterion"])  # the unsharded HL's keys: W, b, centers, T, N_c
    for key, value in single["criterion"].items():
        assert torch.allclose(sharded["criterion"][key].double(), value.double(), rtol=1e-4, atol=1e-4), key
    for name, value in single["model"].items():
        assert torch.allclose(sharded["model"][name], value, rtol=1e-4, atol=1e-4), name
    for key in ("train_loss", "train_center", "loss_n_c"):
        assert abs(sharded["history"][-1][key] - single["history"][-1][key]) <= 1e-4, key
    half = tmp_path / "resumed"
    _train(tmp_path, half, *hl, "trainer.shard_classes=true", "trainer.stop_after=1", processes=2)
    resumed = _train(tmp_path, half, *hl, "trainer.shard_classes=true", "resume=true", processes=2)
    for key, value in sharded["criterion"].items():
        assert torch.allclose(resumed["criterion"][key].double(), value.double(), atol=1e-6), key
