"""How and when Hypersphere Loss updates its class centers: HL Table V's "class center updating way"
and Table IV's HL(10), as small strategy objects ``podhl.losses.HypersphereLoss`` is given.

* ``BatchEWMA`` (``every`` = N): eq. 15–16 from each N-th penalized mini-batch, before that
  batch's SGD step (Algorithm 1, lines 9–13). Default, N = 1; HL(10) is N = 10.
* ``EpochEWMA``: one eq. 15–16 step at each epoch end over all of that epoch's samples (their
  features as they were at their step): Σ v_i = (φ·n_k·c_k + (1−φ)·S_k)/(1−φ^{N_c}).
* ``WholeTrainingSet``: eq. 13 (eq. 9 when β = 0) after a feature pass over the whole training
  set (eval mode) at each epoch end; δ (eq. 14) leaves out samples inside the dead zone.

YAML selects one by name (``center_update: batch|epoch|dataset`` and ``update_every: N``, see
``make_center_update``); Python passes an object (``HypersphereLoss(..., center_update=BatchEWMA(10))``).
The loss keeps what must survive resume (``centers``, N_c, the iteration count: buffers, ``centers.py``)
and its hyperparameters (r, φ, β, ...); a strategy decides when, and from which features, to update,
through the criterion protocol's hooks (``podhl/losses/base.py``), each receiving the loss, and
stores an update with ``loss.commit(centers)``. Write your own by subclassing ``CenterUpdate``;
give each loss its own object (``EpochEWMA`` keeps per-epoch sums).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import torch

from podhl.checks import integer, one_of, require
from podhl.distributed import all_reduce_sum
from podhl.losses.center.math import add_class_sums
from podhl.losses.center.rows import ClassSlots, class_slot_stats
from podhl.losses.hypersphere.centers import RowUpdate
from podhl.losses.hypersphere.math import closed_form_centers, ewma_center_rows, ewma_center_update_from_sums


def batch_slots(loss, features: torch.Tensor, labels: torch.Tensor) -> ClassSlots:
    """Per-class sums and counts of (detached) features over the classes in the batch, combined over DDP
    ranks (``podhl.losses.center.rows``): O(B·d), in the centers' dtype (fp32)."""
    return class_slot_stats(features.detach().to(loss.centers.dtype), labels, loss.num_classes)


def ewma_rows(loss, slots: ClassSlots) -> RowUpdate:
    """The loss's next update (eq. 15–16, N_c + 1) of the classes in ``slots``, not stored: O(B·d), with
    Σ_{l≠k} c_l = T − c_k from the running total T (``loss.center_sum``). The new T is T + Σ(new − old) in
    float64, or, when absent classes become zero (``official.absent_class_center: zero``), Σ new."""
    keep = loss.official.absent_class_center == "keep"
    old = loss.centers[slots.rows]
    new = ewma_center_rows(
        old,
        slots.sums,
        slots.counts,
        loss.center_sum,
        loss.num_classes,
        loss.phi,
        loss.beta,
        loss.radius,
        loss.n_c + 1,
        loss.official.bias_correction,
        keep_absent=keep,
    )
    valid = slots.valid[:, None]
    change = new.double() - old.double() if keep else new.double()
    total = torch.where(valid, change, torch.zeros_like(change)).sum(dim=0)
    return RowUpdate(slots, new, loss.center_sum + total if keep else total, not keep, loss.centers)


def ewma_centers(loss, sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """The loss's next update (eq. 15–16, N_c + 1) of all C centers from (C, d) sums and (C,) counts, not
    stored (``EpochEWMA``, once per epoch)."""
    return ewma_center_update_from_sums(
        loss.centers,
        sums,
        counts,
        loss.phi,
        loss.beta,
        loss.radius,
        loss.n_c + 1,
        loss.official.bias_correction,
        keep_absent=loss.official.absent_class_center == "keep",
    )


class CenterUpdate:
    """Base of the center-update strategies: every hook a no-op. Subclass it for your own strategy.

    Each hook receives the ``podhl.losses.hypersphere.loss.HypersphereLoss`` (``loss``) and stores
    an update with ``loss.commit(centers)``. ``min_warmup_epochs`` is the least $t_1$ the strategy
    works with; ``needs_feature_pass`` asks the trainer for ``feature_pass``.
    """

    name = "custom"
    min_warmup_epochs = 0
    needs_feature_pass = False

    def needs_prepared_batch(self, loss) -> bool:
        """Whether the coming optimizer step needs ``prepare_batch`` (the loss's hook)."""
        return False

    def prepare_batch(self, loss, features: torch.Tensor, labels: torch.Tensor) -> Any:
        """Per-step state from the whole batch's detached features, handed to ``forward`` and
        ``after_optimizer_step`` (``None`` here)."""
        return None

    def after_optimizer_step(self, loss, features: torch.Tensor, labels: torch.Tensor, prepared: Any) -> None:
        """After each optimizer step, with that batch's detached features and ``prepare_batch``'s result."""

    def epoch_progress(self) -> dict[str, Any]:
        """What the running epoch has accumulated (mid-epoch checkpoints)."""
        return {}

    def load_epoch_progress(self, state: dict[str, Any]) -> None:
        """Restore ``epoch_progress`` (a run resumed mid-epoch)."""

    def on_epoch_start(self, loss, epoch: int) -> None:
        """Before 1-based ``epoch`` trains."""

    def feature_pass(self, loss, batches: Iterator[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """(features, labels) over the whole training set at each epoch end (if ``needs_feature_pass``)."""

    def on_epoch_end(self, loss, epoch: int) -> None:
        """After 1-based ``epoch`` trained."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BatchEWMA(CenterUpdate):
    """HL eq. 15–16 from every ``every``-th penalized mini-batch (the loss counts iterations), prepared
    from the whole batch before its step and committed after it (Algorithm 1, lines 9–13). Steps in
    between keep the centers. ``center_update: batch`` in YAML, the default.

    Args:
        every: N ≥ 1, update period in penalized iterations. Default 1 (HL Table IV "HL(10)": 10).
    """

    name = "batch"

    def __init__(self, every: int = 1) -> None:
        self.every = integer("update_every", every, low=1)
        self._warned = False

    def needs_prepared_batch(self, loss) -> bool:
        return loss.penalized and loss.n_iterations % self.every == 0

    def prepare_batch(self, loss, features: torch.Tensor, labels: torch.Tensor) -> RowUpdate:
        return ewma_rows(loss, batch_slots(loss, features, labels))  # the updated rows, not stored yet

    def after_optimizer_step(self, loss, features, labels, prepared) -> None:
        if not loss.penalized:
            return
        if loss.n_iterations % self.every:
            loss.count_iteration()
            return
        if prepared is None:  # a loop that does not call prepare_batch: update after the step instead
            if not self._warned:
                warnings.warn(
                    "HypersphereLoss: an update was due but no `prepared` centers came with the step; "
                    "updating after it (Algorithm 1 updates before: call prepare_batch, see "
                    "podhl/losses/base.py)",
                    stacklevel=3,
                )
                self._warned = True
            prepared = self.prepare_batch(loss, features, labels)
        loss.commit(prepared, iterations=1)

    def __repr__(self) -> str:
        return f"BatchEWMA(every={self.every})"


class EpochEWMA(CenterUpdate):
    """One HL eq. 15–16 step per epoch from the per-class sums of all its training steps' features, from
    the end of epoch t1 on (so epoch t1 + 1 starts with centers). ``center_update: epoch`` in YAML
    (HL Table V). No parameters."""

    name = "epoch"
    min_warmup_epochs = 1

    def __init__(self) -> None:
        self._sums: torch.Tensor | None = None
        self._counts: torch.Tensor | None = None

    def on_epoch_start(self, loss, epoch: int) -> None:
        self._sums = torch.zeros_like(loss.centers)
        self._counts = torch.zeros(loss.num_classes, device=loss.centers.device)

    def _accumulators(self, loss) -> tuple[torch.Tensor, torch.Tensor]:
        if self._sums is None:  # a loop that skipped on_epoch_start
            self.on_epoch_start(loss, loss.epoch)
        return self._sums, self._counts

    def after_optimizer_step(self, loss, features, labels, prepared) -> None:
        if loss.epoch >= loss.warmup_epochs:
            add_class_sums(*self._accumulators(loss), features.float(), labels)

    def epoch_progress(self) -> dict[str, Any]:
        return {} if self._sums is None else {"sums": self._sums.clone(), "counts": self._counts.clone()}

    def load_epoch_progress(self, state: dict[str, Any]) -> None:
        if state:
            self._sums, self._counts = state["sums"].to(self._sums.device), state["counts"].to(self._counts.device)

    def on_epoch_end(self, loss, epoch: int) -> None:
        if epoch >= loss.warmup_epochs:
            sums, counts = self._accumulators(loss)
            all_reduce_sum(sums), all_reduce_sum(counts)
            loss.commit(ewma_centers(loss, sums, counts))


class WholeTrainingSet(CenterUpdate):
    """HL eq. 13 over the whole training set (a feature pass in eval mode) at each epoch end from epoch
    t1 on (HL Table V row 1: eq. 9, β = 0, no dead zone); δ (eq. 14) leaves out samples inside the dead
    zone. The first update has no centers to measure δ against: it uses every sample.
    ``center_update: dataset`` in YAML. No parameters."""

    name = "dataset"
    min_warmup_epochs = 1
    needs_feature_pass = True

    def feature_pass(self, loss, batches) -> None:
        if loss.epoch < loss.warmup_epochs:
            return  # the generator is never consumed: no cost during the warm start
        sums = torch.zeros_like(loss.centers)
        counts = torch.zeros(loss.num_classes, device=loss.centers.device)
        first = loss.n_c == 0
        for f, y in batches:
            f = f.float()
            keep = (f - loss.centers[y]).pow(2).sum(dim=1) >= loss.threshold**2  # δ(k, y_i), eq. 14
            if first:
                keep = torch.ones_like(keep)
            add_class_sums(sums, counts, f[keep], y[keep])
        all_reduce_sum(sums), all_reduce_sum(counts)
        loss.commit(closed_form_centers(loss.centers, sums, counts, loss.beta, loss.radius))


CENTER_UPDATES = {"batch": BatchEWMA, "epoch": EpochEWMA, "dataset": WholeTrainingSet}


def make_center_update(center_update: str | CenterUpdate = "batch", update_every: int = 1) -> CenterUpdate:
    """The strategy an HL config names, or the object given.

    Args:
        center_update: ``"batch"`` (default, ``BatchEWMA``), ``"epoch"`` (``EpochEWMA``),
            ``"dataset"`` (``WholeTrainingSet``), or a ``CenterUpdate`` returned as is.
        update_every: the period of ``"batch"``; must be 1 otherwise. Default 1.

    Returns:
        A new strategy object (or ``center_update`` itself).
    """
    update_every = integer("update_every", update_every, low=1)
    if isinstance(center_update, CenterUpdate):
        require(
            update_every == 1,
            "update_every",
            "1 when center_update is an object (give it its own period)",
            update_every,
        )
        return center_update
    one_of("center_update", center_update, tuple(CENTER_UPDATES))
    if center_update == "batch":
        return BatchEWMA(update_every)
    require(update_every == 1, "update_every", "1 unless center_update=batch", update_every)
    return CENTER_UPDATES[center_update]()
