r"""Class-sharded classifier with optional negative-class sampling: PartialFC (An et al., "Killing Two Birds
with One Stone: Efficient and Robust Training of Face Recognition CNNs by Partial FC", CVPR 2022), after
deepinsight/insightface ``recognition/arcface_torch/partial_fc_v2.py`` @4f227ba (``PartialFC_V2``,
``DistCrossEntropyFunc``, ``AllGatherFunc``), for softmax, the normalized margin heads and Hypersphere Loss.

Under DDP with ``world`` ranks, ``ShardedClassifier`` wraps a built head (``SoftmaxLoss``, a ``MarginHead``:
am, arc, cm, mml, magface, or ``HypersphereLoss``: hl, hl_official and their presets) and keeps only rank
$r$'s contiguous block of $C/\mathrm{world}$ rows of $W$ (and of $b$). A training step:

1. features and labels are all-gathered (``podhl.distributed.all_gather_rows_with_grad``): every rank sees the
   global batch $B_g$;
2. each rank scores the global batch against its rows only: a $(B_g, C/\mathrm{world})$ block of logits; the
   margin $\psi$ goes on the target column on the rank that owns the class (the head's own ``target``);
3. ``_DistCrossEntropy`` gives every sample's cross-entropy from the all-reduced row maximum, sum of exponentials
   and target logit (insightface's ``DistCrossEntropyFunc``, in log-sum-exp form);
4. each rank's ``loss`` is the mean over **its own** samples, the value the unsharded head gives on that rank.

Gradients follow DDP's convention (each rank's model gradient is averaged, each loss parameter's gradient is the
mean over ranks). ``_DistCrossEntropy``'s backward all-reduces the upstream gradients and divides by the world
size: the gradient of the **mean over ranks** of every rank's loss, so the shard's rows get what the unsharded
$W$ gets after the trainer's ``all_reduce_mean_`` (the trainer must not all-reduce them again:
``sharded_parameters``); the features' all-gather multiplies its gradient by the world size (as insightface's
``AllGatherFunc``), so each rank's features get exactly the unsharded head's gradient of that rank's loss, which
DDP then averages as usual.

Hypersphere Loss (our choice, the smallest change that keeps it exact): only its softmax part's $W$ (and $b$)
is sharded and goes through steps 1–4; its centers stay **replicated** buffers of the head, $C \times d$ fp32 on
every rank, updated identically on every rank by HL's own O(B·d) path (per-class sums gathered over the ranks,
``podhl.losses.hypersphere.updates``). The penalty (eq. 17) needs only each local sample's own center, so it is
computed on this rank's features (``HypersphereLoss.add_center_terms``) and added to the distributed
cross-entropy; the loop's hooks (warm start, ``prepare_batch``, ``after_optimizer_step``, ...) go to the head.

Sampling (``sample_rate`` < 1, PartialFC's ``sample``): at each training step a rank keeps the classes of its
block that occur in the global batch plus random others, $\lfloor \mathrm{rate}\cdot C/\mathrm{world}\rfloor$
rows in all (every positive if there are more), sorted; only those rows enter the softmax and get gradients
(HL: rows of $W$ only; its penalty uses every sample's own center).

Checkpoints hold the **full** $W$ under the unsharded head's keys (gathered in ``state_dict``, sliced in
``load_state_dict``; the optimizer's per-row state likewise, ``attach_optimizer``), so a run resumes with any
world size and its checkpoints load into the unsharded head. Evaluation (``eval()``) gathers $W$ once and scores
with the full classifier, so evaluation batches need no collective; ``train()`` drops that copy (which shares
the head's buffers: HL's centers are not copied).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from podhl import distributed as dist
from podhl.checks import in_range, require
from podhl.errors import ConfigError
from podhl.losses.base import Criterion
from podhl.losses.hypersphere.loss import HypersphereLoss
from podhl.losses.linear.softmax import SoftmaxLoss
from podhl.losses.margin.er import ExclusiveRegularizationLoss
from podhl.losses.margin.head import MarginHead
from podhl.losses.margin.magface import MagFaceLoss
from podhl.losses.margin.math import fp32, magface_g, magface_margin, scatter_target

SUPPORTED = "softmax, am, arc, cm, mml, magface, hl (hl_official and the other HypersphereLoss presets)"


class _DistCrossEntropy(torch.autograd.Function):
    r"""Per-sample cross-entropy of logits split over ranks by class (insightface's ``DistCrossEntropyFunc``,
    ``partial_fc_v2.py`` @4f227ba): $\ell_i = m_i + \log\sum_j e^{z_{ij} - m_i} - z_{i,y_i}$ with the row maximum
    $m_i$ (MAX) and the sums (SUM) all-reduced, the target logit from the rank that owns it.

    Input: this rank's $(B_g, C_s)$ logits and $(B_g,)$ local target columns (−1 where another rank owns the
    class). Output: the $(B_g,)$ losses, the same on every rank. Backward: $g$ = the upstream gradients
    averaged over ranks (the gradient of the mean over ranks of every rank's objective), then
    $(p - \mathrm{onehot})\cdot g$, computed in place in the saved softmax (one $B_g \times C_s$ matrix kept,
    as insightface).
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            top = dist.all_reduce_max(logits.amax(dim=1))
            prob = (logits - top.unsqueeze(1)).exp_()
            total = dist.all_reduce_sum(prob.sum(dim=1))
            owned = target >= 0
            picked = logits.gather(1, target.clamp_min(0).unsqueeze(1)).squeeze(1)
            target_logit = dist.all_reduce_sum(torch.where(owned, picked, torch.zeros_like(picked)))
            loss = top + total.log() - target_logit
            prob.div_(total.unsqueeze(1))
        ctx.save_for_backward(prob, target)
        ctx.used = False
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        if ctx.used:  # the saved softmax became the gradient in place
            raise RuntimeError("_DistCrossEntropy: backward ran twice (retain_graph is not supported)")
        ctx.used = True
        prob, target = ctx.saved_tensors
        g = dist.all_reduce_sum(grad.detach().contiguous().clone())
        if dist.world_size() > 1:
            g.div_(dist.world_size())
        out = prob.mul_(g.unsqueeze(1))
        rows = torch.nonzero(target >= 0).squeeze(1)
        out[rows, target[rows]] -= g[rows]
        return out, None


def sample_rows(
    positive: torch.Tensor, count: int, num_sample: int, rank: int, world: int, width: int | None = None
) -> torch.Tensor:
    """PartialFC's ``sample`` (``partial_fc_v2.py`` @4f227ba): the sorted local rows kept this step, every
    positive (``positive``, unique local rows) plus random others up to ``num_sample`` rows (every positive
    alone if there are more). Draws ``world`` × ``width`` (⌈C/world⌉, the largest shard) uniforms from torch's
    global generator and uses row ``rank``: every rank consumes the same amount (the random streams stay in
    step, a resumed run replays them) and ranks draw different negatives."""
    if num_sample <= positive.numel():
        return positive.sort().values
    perm = torch.rand(world, width or count, device=positive.device)[rank, :count]
    perm[positive] = 2.0
    return torch.topk(perm, k=num_sample).indices.sort().values


def _kind(head: Criterion) -> str:
    if type(head) is SoftmaxLoss:
        return "linear"
    if type(head) is HypersphereLoss:
        return "hl"
    if isinstance(head, MarginHead) and not isinstance(head, ExclusiveRegularizationLoss):
        return "margin"
    raise ConfigError(
        f"trainer.shard_classes: {type(head).__name__} cannot be sharded over classes; supported: {SUPPORTED} "
        "(er needs every row's nearest other row; asl, center, ccl and the other center-type losses are not "
        "sharded yet)"
    )


class ShardedClassifier(Criterion):
    r"""A ``SoftmaxLoss``, margin head or ``HypersphereLoss`` whose classifier rows are split over the DDP ranks
    (PartialFC; module docstring; HL's centers stay whole on every rank). In a single process it holds every
    row and equals the head (with ``sample_rate`` < 1 it samples negatives there too). Config:
    ``trainer.shard_classes=true`` (``trainer.class_sample_rate``).

    Args:
        head: the built loss, with its full $C \times d$ classifier (the same initial $W$ as an unsharded run:
            every rank builds it from the same seed and keeps its rows).
        sample_rate: fraction of each rank's classes in each training step's softmax, in (0, 1]. Default 1.0
            (every class, the exact loss): insightface ``PartialFC_V2``'s default and ``configs/base.py`` @ab27f4d.

    Returns:
        forward (dict[str, torch.Tensor]): the head's terms (``loss``, ``ce``; magface also ``g``, ``margin``;
            HL also ``center``, ``separation``, ``dead_zone_fraction``, ``center_distance``), this rank's
            samples' means.
        logits (torch.Tensor): $(B, C)$ scores of this rank's features over every class, without margin.
    """

    def __init__(self, head: Criterion, sample_rate: float = 1.0) -> None:
        super().__init__(head.num_classes, head.feat_dim)
        self.kind = _kind(head)
        self.sample_rate = in_range("class_sample_rate", sample_rate, 0.0, 1.0, low_open=True)
        self.rank, self.world = dist.rank(), dist.world_size()
        require(
            head.num_classes >= self.world, "num_classes", f"≥ the world size {self.world} to shard", head.num_classes
        )
        self.start, self.count = dist.shard_range(head.num_classes, self.rank, self.world)
        self.num_sample = max(1, int(self.sample_rate * self.count))  # PartialFC: int(sample_rate * num_local)
        rows = slice(self.start, self.start + self.count)
        with torch.no_grad():
            owner = head if self.kind == "margin" else head.classifier
            for name in ("weight", "bias"):
                full = getattr(owner, name, None)
                if full is not None:
                    setattr(owner, name, nn.Parameter(full[rows].clone(), requires_grad=full.requires_grad))
        self.head = head
        self.needs_feature_pass = head.needs_feature_pass
        self.last_sampled_rows: torch.Tensor | None = None  # the local rows the last sampled step kept
        self._eval_head: list[Criterion] = []  # the gathered, unsharded head while in eval mode
        self.register_state_dict_post_hook(_full_state)
        self.register_load_state_dict_pre_hook(_shard_state)

    # ------------------------------------------------------------------ the shard
    def _owner(self) -> nn.Module:
        return self.head if self.kind == "margin" else self.head.classifier

    def sharded_parameters(self) -> list[nn.Parameter]:
        """The shard's rows (``weight``, ``bias``): each rank owns different ones, never all-reduced or broadcast."""
        owner = self._owner()
        return [p for p in (owner.weight, getattr(owner, "bias", None)) if p is not None]

    def _sharded_names(self) -> list[str]:
        """State-dict keys (after the ``head.`` prefix is dropped) of the sharded tensors."""
        base = "" if self.kind == "margin" else "classifier."
        return [base + n for n in ("weight", "bias") if getattr(self._owner(), n, None) is not None]

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Make ``optimizer``'s state dict hold full-size per-row state (momentum, Adam's moments) of the shard's
        parameters, gathered on ``state_dict`` (a collective: every rank calls it) and sliced on load."""
        mine = {id(p) for p in self.sharded_parameters()}
        flat = [p for g in optimizer.param_groups for p in g["params"]]
        indices = [i for i, p in enumerate(flat) if id(p) in mine]

        def gather(opt, state_dict):
            state_dict["state"] = dict(state_dict["state"])
            for i in indices:  # new dicts: the packed state shares its per-parameter dicts with the optimizer's
                entry = dict(state_dict["state"].get(i, {}))
                for key, value in entry.items():
                    if torch.is_tensor(value) and value.dim() >= 1 and value.shape[0] == self.count:
                        entry[key] = self._gather(value)
                if entry:
                    state_dict["state"][i] = entry
            return state_dict

        def shard(opt, state_dict):
            state_dict = {**state_dict, "state": dict(state_dict["state"])}
            for i in indices:
                entry = dict(state_dict["state"].get(i, {}))
                for key, value in entry.items():
                    if torch.is_tensor(value) and value.dim() >= 1 and value.shape[0] == self.num_classes:
                        entry[key] = value[self.start : self.start + self.count].clone()
                if entry:
                    state_dict["state"][i] = entry
            return state_dict

        optimizer.register_state_dict_post_hook(gather)
        optimizer.register_load_state_dict_pre_hook(shard)

    def _gather(self, rows: torch.Tensor) -> torch.Tensor:
        """Every rank's rows of a sharded tensor, in class order (collective)."""
        sizes = [dist.shard_range(self.num_classes, r, self.world)[1] for r in range(self.world)]
        return dist.all_gather_rows(rows.detach(), sizes)

    # ------------------------------------------------------------------ the head's hooks (HL's centers, warm start)
    # HL's centers are buffers of the head, replicated: every rank applies the same O(B·d) update from per-class
    # sums gathered over the ranks (``podhl.losses.hypersphere.updates``), so the hooks go to the head unchanged.
    @property
    def warm_start_epochs(self) -> int:
        return self.head.warm_start_epochs

    @property
    def warm_start_setting(self) -> str:
        return self.head.warm_start_setting

    def param_groups(self) -> list[dict[str, Any]]:
        return self.head.param_groups()  # HL's official.classifier_weight_decay applies to the shard

    def needs_prepared_batch(self) -> bool:
        return self.head.needs_prepared_batch()

    def prepare_batch(self, features: torch.Tensor, labels: torch.Tensor, step: int = 0) -> Any:
        return self.head.prepare_batch(features, labels, step)

    def on_epoch_start(self, epoch: int) -> None:
        self.head.on_epoch_start(epoch)

    def after_optimizer_step(
        self, features: torch.Tensor, labels: torch.Tensor, step: int = 0, prepared: Any = None
    ) -> None:
        self.head.after_optimizer_step(features, labels, step, prepared=prepared)

    def feature_pass(self, batches) -> None:
        self.head.feature_pass(batches)

    def on_epoch_end(self, epoch: int, stats: dict[str, float]) -> None:
        self.head.on_epoch_end(epoch, stats)

    def run_files(self) -> dict[str, torch.Tensor]:
        return self.head.run_files()

    def epoch_metrics(self) -> dict[str, float]:
        return self.head.epoch_metrics()

    def epoch_progress(self) -> dict[str, Any]:
        return self.head.epoch_progress()

    def load_epoch_progress(self, state: dict[str, Any]) -> None:
        self.head.load_epoch_progress(state)

    # ------------------------------------------------------------------ evaluation: the full classifier
    def train(self, mode: bool = True) -> ShardedClassifier:
        super().train(mode)
        self._eval_head.clear()
        if not mode and self.world > 1:  # gather W once per evaluation (every rank calls eval())
            # the copy shares the buffers (HL's replicated centers: no second C × d copy) and the shard
            shared = {id(t): t for t in (*self.head.buffers(), *self.sharded_parameters())}
            full = copy.deepcopy(self.head, shared)
            owner = full if self.kind == "margin" else full.classifier
            for name, p in zip(("weight", "bias"), (owner.weight, getattr(owner, "bias", None)), strict=True):
                if p is not None:
                    setattr(owner, name, nn.Parameter(self._gather(p), requires_grad=False))
            self._eval_head.append(full.eval())
        return self

    def _unsharded(self) -> Criterion:
        return self._eval_head[0] if self._eval_head else self.head

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        r"""$(B, C)$ scores over every class, without margin (the head's ``logits``). Training mode under DDP
        (the running train accuracy) scores the gathered batch on each shard and sends each rank its rows,
        without gradient (collectives: every rank calls it; no rank holds more than $B \times C$ scores)."""
        if self.world == 1 or not self.training:
            return self._unsharded().logits(features)
        with torch.no_grad():
            sizes = dist.gathered_sizes(features.shape[0], features.device)
            local = self.head.logits(dist.all_gather_rows(features, sizes))  # (B_g, C/world)
            counts = [dist.shard_range(self.num_classes, r, self.world)[1] for r in range(self.world)]
            return dist.own_rows_all_columns(local, sizes, counts)

    # ------------------------------------------------------------------ training: the distributed loss
    def forward(
        self, features: torch.Tensor, labels: torch.Tensor, step: int = 0, prepared: Any = None
    ) -> dict[str, torch.Tensor]:
        if not self.training:
            return self._unsharded()(features, labels)
        x = features.float() if self.kind == "hl" else fp32(features)  # HL computes in fp32
        sizes = dist.gathered_sizes(x.shape[0], x.device)
        offset = sum(sizes[: self.rank])
        x_all = dist.all_gather_rows_with_grad(x, sizes, scale=self.world)  # (B_g, d)
        y_all = dist.all_gather_rows(labels, sizes)
        owned = (y_all >= self.start) & (y_all < self.start + self.count)
        target = torch.where(owned, y_all - self.start, torch.full_like(y_all, -1))
        params = self.sharded_parameters()
        if self.sample_rate < 1.0:
            width = dist.shard_range(self.num_classes, 0, self.world)[1]  # rank 0's block is the largest
            positive = torch.unique(target[owned])
            index = sample_rows(positive, self.count, self.num_sample, self.rank, self.world, width)
            self.last_sampled_rows = index  # diagnostics and tests only (local rows); nothing reads it back
            params = [p[index] for p in params]
            target = torch.where(owned, torch.searchsorted(index, target.clamp_min(0)), target)
        terms: dict[str, torch.Tensor] = {}
        if self.kind == "margin":
            logits = self._margin_logits(x_all, x, target, owned, params[0], terms)
        else:  # softmax, HL: W f + b (HL's official.normalize_weight: unit rows, row by row)
            weight = params[0].to(x_all.dtype)
            if self.kind == "hl" and self.head.official.normalize_weight:
                weight = F.normalize(weight, dim=1)
            bias = params[1].to(x_all.dtype) if len(params) > 1 else None
            logits = F.linear(x_all, weight, bias)
        per_sample = _DistCrossEntropy.apply(logits, target)
        ce = per_sample[offset : offset + x.shape[0]].mean()
        if self.kind == "hl":  # the penalty: this rank's samples against their own (replicated) centers
            return self.head.add_center_terms(ce, x, labels, prepared)
        loss = ce + self.head.lambda_g * terms["g"] if "g" in terms else ce
        return {"loss": loss, "ce": ce, **terms}

    def _margin_logits(self, x_all, x, target, owned, weight, terms) -> torch.Tensor:
        """Scaled cosines on this rank's columns, ψ(θ_y) on the target column where this rank owns the class."""
        head = self.head
        kwargs = {}
        if isinstance(head, MagFaceLoss):  # per-sample margin m(a) of the gathered features; g(a) of this rank's
            a_all = x_all.norm(dim=1).clamp(head.l_a, head.u_a)
            kwargs["margin"] = magface_margin(a_all, head.l_a, head.u_a, head.l_m, head.u_m)
            a = x.norm(dim=1).clamp(head.l_a, head.u_a)
            terms["g"] = magface_g(a, head.u_a).mean()
            terms["margin"] = magface_margin(a, head.l_a, head.u_a, head.l_m, head.u_m).mean().detach()
        cosine = F.normalize(x_all, dim=1) @ F.normalize(weight.to(x_all.dtype), dim=1).t()
        column = target.clamp_min(0)
        cos_y = cosine.gather(1, column.unsqueeze(1)).squeeze(1)
        psi = torch.where(owned, head.target(cos_y, **kwargs), cos_y)  # other ranks' classes: unchanged
        return scatter_target(cosine, column, psi, head.scale)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, rows=[{self.start}, {self.start + self.count}) of rank {self.rank}/"
            f"{self.world}, sample_rate={self.sample_rate:g}"
        )


def _full_state(module: ShardedClassifier, state_dict, prefix: str, local_metadata) -> None:
    """state_dict post-hook: the head's keys without ``head.``, the sharded rows gathered (collective)."""
    sharded = set(module._sharded_names())
    for key in [k for k in state_dict if k.startswith(prefix + "head.")]:
        name = key[len(prefix) + len("head.") :]
        value = state_dict.pop(key)
        state_dict[prefix + name] = module._gather(value) if name in sharded else value


def _shard_state(module: ShardedClassifier, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
    """load_state_dict pre-hook: full-size tensors under the head's keys → this rank's rows under ``head.``."""
    sharded = set(module._sharded_names())
    for name in [n for n, _ in module.head.state_dict().items()]:
        key = prefix + name
        if key in state_dict:
            value = state_dict.pop(key)
            if name in sharded and value.shape[0] == module.num_classes:
                value = value[module.start : module.start + module.count]
            state_dict[prefix + "head." + name] = value
