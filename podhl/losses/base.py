"""The criterion protocol every loss implements (docs/concepts/criterion.md, "Adding a loss").

A criterion is an ``nn.Module`` built from ``podhl/conf/loss/<name>.yaml`` with ``num_classes``
and ``feat_dim`` supplied by the task. It owns whatever classifies: a linear W, a normalized W, a
frozen PEDCC buffer, centers... The training loop knows nothing else about it, and the same
criterion serves every task: image features (classification, verification) or a detector's region
features (detection, background = class 0) go in; loss terms and class scores come out.

* ``forward(features, labels, step=0, prepared=None) -> dict``: ``"loss"`` is back-propagated,
  every other entry is a named term logged as ``train/<name>``. Must not change state (it also
  runs on test data, where ``prepared`` is None).
* ``logits(features) -> (B, num_classes)``: scores whose argmax is the prediction.
* Per-step state (HL's Algorithm 1: update the centers from the batch, then step against them):
  when ``needs_prepared_batch()`` is true, the loop calls ``prepare_batch(features, labels, step)``
  once per optimizer step with the detached fp32 features of the step's whole batch (all
  micro-batches when accumulating gradients; this rank's part under DDP, so reduce what you
  gather) and hands the result to ``forward`` (as ``prepared``, for every micro-batch) and to
  ``after_optimizer_step`` (to commit it). Nothing is matched by identity.
* Hooks, all no-ops by default, so stateful losses need no loop change:
  ``on_epoch_start(epoch)`` (1-based); ``after_optimizer_step(features, labels, step, prepared)``
  (under ``torch.no_grad``, detached fp32 features of the batch just stepped);
  ``on_epoch_end(epoch, stats)`` (``stats["mean_feature_norm"]``, ``stats["num_samples"]``,
  gathered over the epoch and over ranks); ``feature_pass(batches)`` when ``needs_feature_pass``
  (an iterator of (features, labels) over the whole training set without augmentation, in eval
  mode, at each epoch end before ``on_epoch_end``; under DDP each rank gets its shard, so reduce
  with ``podhl.distributed.all_reduce_sum``).
* Optimizer wiring: ``param_groups()`` lists the loss's own trainable parameters as optimizer
  groups; a group may override ``lr``/``weight_decay``/``momentum`` (e.g. ``weight_decay=0``).
  Buffers (frozen PEDCC, EWMA centers) never reach the optimizer.
* ``steps_per_batch`` > 1: the loop runs that many forward/backward/step rounds per batch,
  passing ``step`` = 0, 1, ...; ``separate_step_optimizers`` gives each round its own optimizer
  state (COT alternates cross-entropy and complement-entropy steps).
* Class sharding (``podhl.losses.sharded``): ``sharded_parameters()`` lists parameters whose rows differ
  between DDP ranks (never broadcast at the start nor gradient-averaged by the loop);
  ``attach_optimizer(optimizer)`` lets the criterion hook the optimizer's state dict (full-size checkpoints).
* ``run_files()``: tensors the run folder keeps as files, written when the run starts (POD's
  ``pedcc.pt``, so a run can be repeated with its own centroids).
* ``epoch_metrics()``: scalars logged once per epoch (e.g. δ and M of NaC).
* ``epoch_progress()`` / ``load_epoch_progress(state)``: what an unfinished epoch has accumulated
  outside buffers (per-epoch sums), saved in mid-epoch checkpoints and restored after ``on_epoch_start``.
* State that must survive resume lives in buffers/parameters, so ``state_dict`` carries it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from podhl.checks import integer


class Criterion(nn.Module):
    """Base class of every loss: an ``nn.Module`` owning its classifier, with the training loop's hooks.

    Subclasses implement ``forward`` and ``logits``; every hook is a no-op by default (the
    protocol: ``podhl.losses.base``). No formula of its own.

    Args:
        num_classes: $C$, number of classes (≥ 2), supplied by the task.
        feat_dim: $d$, dimension of the features the model hands to the loss (≥ 1), supplied by the task.
    """

    steps_per_batch: int = 1
    separate_step_optimizers: bool = False
    needs_feature_pass: bool = False
    warm_start_setting: str = "loss.warmup_epochs"  # what sets ``warm_start_epochs`` (the trainer's warning)

    def __init__(self, num_classes: int, feat_dim: int) -> None:
        super().__init__()
        self.num_classes = integer("num_classes", num_classes, low=2)
        self.feat_dim = integer("feat_dim", feat_dim, low=1)

    @property
    def warm_start_epochs(self) -> int:
        """Epochs 1..n that train plain softmax before the loss's own term starts (0: none).

        By default a loss's ``warmup_epochs`` hyperparameter (HL's $t_1$), else 0; a loss whose warm start
        has no setting overrides it (CCL: 1). The trainer warns and notes it in ``metrics.json`` when
        ``schedule.epochs`` ≤ this number."""
        return int(getattr(self, "warmup_epochs", 0) or 0)

    def forward(
        self, features: torch.Tensor, labels: torch.Tensor, step: int = 0, prepared: Any = None
    ) -> dict[str, torch.Tensor]:
        """The loss terms of a batch; must not change state (it also runs on test batches).

        Args:
            features: $(B, d)$ features from the model (any float dtype; losses compute in fp32).
            labels: $(B,)$ class indices in $[0, C)$.
            step: the round within a batch, 0 ... ``steps_per_batch`` − 1 (COT's two steps).
            prepared: ``prepare_batch``'s result for this optimizer step, or None (test batches).

        Returns:
            ``{"loss": ..., <term>: ...}``: ``loss`` is back-propagated, every other entry is a scalar
            term logged as ``train/<term>``.
        """
        raise NotImplementedError

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Class scores of a batch.

        Args:
            features: $(B, d)$ features from the model.

        Returns:
            $(B, C)$ scores whose argmax is the prediction.
        """
        raise NotImplementedError

    def param_groups(self) -> list[dict[str, Any]]:
        """The loss's own trainable parameters as optimizer groups (a group may set ``lr``,
        ``weight_decay``, ``momentum``); empty when it has none (frozen PEDCC)."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": params}] if params else []

    def sharded_parameters(self) -> list[nn.Parameter]:
        """Parameters each DDP rank holds a different part of (``podhl.losses.sharded``): the loop neither
        broadcasts nor all-reduces them. Empty by default."""
        return []

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Called once per optimizer the loop builds (a sharded criterion hooks its state dict). No-op by default."""

    def needs_prepared_batch(self) -> bool:
        """True when the coming optimizer step needs ``prepare_batch`` (checked before every step)."""
        return False

    def prepare_batch(self, features: torch.Tensor, labels: torch.Tensor, step: int = 0) -> Any:
        """Per-step state computed from the whole batch's detached features (see the module docstring)."""
        return None

    def on_epoch_start(self, epoch: int) -> None:
        """Called before epoch ``epoch`` (1-based) trains."""

    def after_optimizer_step(
        self, features: torch.Tensor, labels: torch.Tensor, step: int = 0, prepared: Any = None
    ) -> None:
        """Called under ``torch.no_grad()`` after each optimizer step with that batch's features."""

    def feature_pass(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Consume (features, labels) over the whole training set (only if ``needs_feature_pass``)."""

    def on_epoch_end(self, epoch: int, stats: dict[str, float]) -> None:
        """Called after epoch ``epoch`` trained, with statistics gathered over it."""

    def run_files(self) -> dict[str, torch.Tensor]:
        """File name → tensor, saved into the run folder when the run starts (see the module docstring)."""
        return {}

    def epoch_metrics(self) -> dict[str, float]:
        """Scalars logged once per epoch as ``loss/<name>`` (e.g. NaC's ``delta`` and ``M``)."""
        return {}

    def epoch_progress(self) -> dict[str, Any]:
        """Accumulated-so-far state of the running epoch kept outside buffers (mid-epoch checkpoints)."""
        return {}

    def load_epoch_progress(self, state: dict[str, Any]) -> None:
        """Restore ``epoch_progress`` (called after ``on_epoch_start`` when a run resumes mid-epoch)."""

    def extra_repr(self) -> str:
        """``num_classes`` and ``feat_dim`` in the module's ``repr``."""
        return f"num_classes={self.num_classes}, feat_dim={self.feat_dim}"
