"""The class-sharded classifier (PartialFC, ``podhl.losses.sharded``) with 2 gloo processes on CPU equals the
unsharded head: loss, gradients, the model and W after SGD steps, optimizer state and checkpoints; with
sampling, each rank keeps its positives plus random negatives and only those rows get gradients."""

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
    CombinedMarginLoss,
    ExclusiveRegularizationLoss,
    HypersphereLoss,
    MagFaceLoss,
    SoftmaxLoss,
)
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
        result = {name: _sharded(name, rank, world) for name in HEADS} if job == "equal" else _sampling(rank, world)
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
    [lambda: ExclusiveRegularizationLoss(C, D), lambda: HypersphereLoss(C, D)],
)
def test_unsupported_heads_are_refused(make):
    with pytest.raises(ConfigError, match="cannot be sharded"):
        ShardedClassifier(make())


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
