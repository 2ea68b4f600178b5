"""Hypersphere Loss (HL, Wang et al., IEEE TII 2024): softmax + generalized center penalty (eq. 17)
with centers on a radius-r sphere updated by bias-corrected EWMA (eq. 15–16) after a softmax warm
start (Algorithm 1). The pure math lives in ``math.py`` beside this file.

Center-update timing (Algorithm 1, lines 9–13): in the default per-mini-batch mode the centers are
updated from the current batch *before* the SGD step on (17): ``forward`` (training mode) computes
the updated centers from the batch's detached features and penalizes against them, and
``after_optimizer_step`` commits that same update (same features) and increments N_c. So the first
penalized step (first batch of epoch t1+1) already uses centers = r·normalize(class sum), never zeros.
The per-epoch modes make their first update at the end of epoch t1 (last warm-start epoch), so
epoch t1+1 starts with centers set. A sample whose center was never set (possible with
``update_every`` > 1) is left out of the penalty.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from podhl.distributed import all_reduce_sum
from podhl.losses.base import Criterion
from podhl.losses.center.math import class_sums
from podhl.losses.hypersphere.math import (
    class_center_separation,
    closed_form_centers,
    ewma_center_update_from_sums,
    feature_sphere_radius,
    generalized_center_penalty,
    pairwise_cosine_stats,
)

CENTER_UPDATES = ("batch", "epoch", "dataset")


def _check(ok: bool, name: str, allowed: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"hl: {name} must be {allowed}, got {value!r}")


def _forget_host_counts(module: "HypersphereLoss", incompatible_keys) -> None:
    module._counts = None  # re-read N_c and the iteration count from the loaded buffers


class HypersphereLoss(Criterion):
    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        radius: float = 40.0,
        epsilon: float = 0.05,
        phi: float = 0.99,
        lam: float = 0.002,
        beta: float = 0.1,
        warmup_epochs: int = 5,
        generalized: bool = True,
        separation: bool = True,
        center_update: str = "batch",
        update_every: int = 1,
        bias_correction: bool = True,
        penalty_power: int = 2,
        penalty_normalization: str = "batch",
        ramp_lambda: bool = False,
        ramp_beta: bool = False,
        total_epochs: int | None = None,
        normalize_weight: bool = False,
        bias: bool = True,
        classifier_weight_decay: float | None = None,
    ) -> None:
        super().__init__(num_classes, feat_dim)
        _check(radius > 0, "radius (r)", "> 0", radius)
        _check(0.0 <= epsilon <= 1.0, "epsilon (ε)", "in [0, 1]", epsilon)
        _check(0.0 < phi < 1.0, "phi (φ)", "in (0, 1)", phi)
        _check(lam >= 0.0, "lam (λ)", "≥ 0", lam)
        _check(beta >= 0.0, "beta (β)", "≥ 0", beta)
        _check(int(warmup_epochs) == warmup_epochs and warmup_epochs >= 0, "warmup_epochs (t1)", "an integer ≥ 0", warmup_epochs)
        _check(center_update in CENTER_UPDATES, "center_update", f"one of {CENTER_UPDATES}", center_update)
        _check(int(update_every) == update_every and update_every >= 1, "update_every", "an integer ≥ 1", update_every)
        _check(update_every == 1 or center_update == "batch", "update_every", "1 unless center_update=batch", update_every)
        _check(center_update == "batch" or warmup_epochs >= 1, "warmup_epochs (t1)",
               "≥ 1 with center_update=epoch|dataset (their first update ends epoch t1)", warmup_epochs)
        _check(penalty_power in (2, 4), "penalty_power", "2 (paper) or 4 (official code)", penalty_power)
        _check(penalty_normalization in ("batch", "elements"), "penalty_normalization", "'batch' or 'elements'", penalty_normalization)
        ramps = ramp_lambda or ramp_beta
        _check(not ramps or (total_epochs is not None and int(total_epochs) >= 1), "total_epochs",
               "an integer ≥ 1 when ramp_lambda or ramp_beta is on", total_epochs)
        _check(classifier_weight_decay is None or classifier_weight_decay >= 0, "classifier_weight_decay", "null or ≥ 0", classifier_weight_decay)
        _check(not generalized or feat_dim >= 2, "feat_dim", "≥ 2 for the generalized center (radius a)", feat_dim)
        self.radius, self.epsilon, self.phi = float(radius), float(epsilon), float(phi)
        self.lam0 = float(lam)
        self.beta0 = float(beta) if separation else 0.0  # separation off = β = 0 in the update
        self.warmup_epochs, self.generalized, self.separation = int(warmup_epochs), bool(generalized), bool(separation)
        self.center_update, self.update_every = center_update, int(update_every)
        self.bias_correction, self.penalty_power = bool(bias_correction), int(penalty_power)
        self.penalty_normalization = penalty_normalization
        self.ramp_lambda, self.ramp_beta = bool(ramp_lambda), bool(ramp_beta)
        self.total_epochs = int(total_epochs) if total_epochs is not None else None
        self.normalize_weight, self.classifier_weight_decay = bool(normalize_weight), classifier_weight_decay
        self.sphere_radius = feature_sphere_radius(num_classes, feat_dim, radius) if generalized else float("nan")
        self.threshold = self.epsilon * self.sphere_radius if generalized else 0.0  # ε·a (eq. 11)
        self.needs_feature_pass = center_update == "dataset"

        self.classifier = nn.Linear(feat_dim, num_classes, bias=bias)
        self.register_buffer("centers", torch.zeros(num_classes, feat_dim))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))  # N_c
        self.register_buffer("iterations", torch.zeros((), dtype=torch.long))  # penalized steps taken
        self.register_buffer("_acc_sums", torch.zeros(num_classes, feat_dim), persistent=False)
        self.register_buffer("_acc_counts", torch.zeros(num_classes), persistent=False)
        self.epoch = 0
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None
        self._counts: tuple[int, int] | None = None  # host copy of (N_c, iterations): no GPU sync per step
        self.register_load_state_dict_post_hook(_forget_host_counts)

    # ------------------------------------------------------------------ counters (buffers for resume)
    @property
    def n_c(self) -> int:
        """N_c: center updates done so far (eq. 15)."""
        if self._counts is None:
            self._counts = (int(self.num_updates), int(self.iterations))
        return self._counts[0]

    @property
    def n_iterations(self) -> int:
        """Penalized training iterations done so far (for ``update_every``)."""
        self.n_c  # noqa: B018  (fills the host copy)
        return self._counts[1]

    def _set_counts(self, n_c: int, iterations: int) -> None:
        self._counts = (n_c, iterations)
        self.num_updates.fill_(n_c)
        self.iterations.fill_(iterations)

    # ------------------------------------------------------------------ schedule
    def _ramp(self, base: float, on: bool) -> float:
        """Official code: linspace(0, base, T)[epoch − 1]; otherwise constant."""
        if not on:
            return base
        t = self.total_epochs
        return base if t == 1 else base * min(max(self.epoch - 1, 0), t - 1) / (t - 1)

    @property
    def lam(self) -> float:
        return self._ramp(self.lam0, self.ramp_lambda)

    @property
    def beta(self) -> float:
        return self._ramp(self.beta0, self.ramp_beta)

    @property
    def penalized(self) -> bool:
        """Algorithm 1: epochs 1..t1 are softmax only."""
        return self.epoch > self.warmup_epochs

    # ------------------------------------------------------------------ classifier
    def logits(self, features: torch.Tensor) -> torch.Tensor:
        w = self.classifier.weight
        if self.normalize_weight:
            w = F.normalize(w, dim=1)
        return F.linear(features.float(), w, self.classifier.bias)

    def param_groups(self) -> list[dict[str, Any]]:
        group: dict[str, Any] = {"params": list(self.classifier.parameters())}
        if self.classifier_weight_decay is not None:
            group["weight_decay"] = float(self.classifier_weight_decay)
        return [group]

    # ------------------------------------------------------------------ loss
    def _batch_update(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        sums, counts = class_sums(features.detach().float(), labels, self.num_classes)
        all_reduce_sum(sums), all_reduce_sum(counts)
        return ewma_center_update_from_sums(
            self.centers, sums, counts, self.phi, self.beta, self.radius,
            self.n_c + 1, self.bias_correction,
        )

    def _update_due(self) -> bool:
        return self.center_update == "batch" and self.n_iterations % self.update_every == 0

    def forward(self, features: torch.Tensor, labels: torch.Tensor, step: int = 0) -> dict[str, torch.Tensor]:
        f = features.float()
        ce = F.cross_entropy(self.logits(f), labels)
        zero = ce.detach().new_zeros(())
        if not self.penalized:
            return {"loss": ce, "ce": ce, "center": zero, "separation": zero,
                    "dead_zone_fraction": zero, "center_distance": zero}
        centers = self.centers
        if self.training and self._update_due():
            centers = self._batch_update(f, labels)  # Algorithm 1: update from this batch, then step
            self._pending = (centers, labels)  # a cache for after_optimizer_step, not loss state
        valid = centers[labels].pow(2).sum(dim=1) > 0
        penalty = generalized_center_penalty(
            f, labels, centers, self.threshold, self.penalty_power, self.penalty_normalization, valid
        )
        sep = class_center_separation(labels, centers)
        with torch.no_grad():
            dist = (f - centers[labels]).norm(dim=1)
            inside = ((dist < self.threshold) & valid).float().mean()
            mean_dist = (dist * valid).sum() / valid.sum().clamp_min(1)  # no host sync
        return {"loss": ce + self.lam * penalty, "ce": ce, "center": penalty, "separation": sep,
                "dead_zone_fraction": inside, "center_distance": mean_dist}

    # ------------------------------------------------------------------ hooks
    def on_epoch_start(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self._acc_sums.zero_()
        self._acc_counts.zero_()
        self._pending = None

    def after_optimizer_step(self, features: torch.Tensor, labels: torch.Tensor, step: int = 0) -> None:
        if self.center_update == "epoch" and self.epoch >= self.warmup_epochs:
            sums, counts = class_sums(features.float(), labels, self.num_classes)
            self._acc_sums += sums
            self._acc_counts += counts
        if not self.penalized or self.center_update != "batch":
            return
        if self._update_due():
            pending, self._pending = self._pending, None
            new = pending[0] if pending is not None and pending[1] is labels else self._batch_update(features, labels)
            self.centers.copy_(new)
            self._set_counts(self.n_c + 1, self.n_iterations + 1)
        else:
            self._set_counts(self.n_c, self.n_iterations + 1)

    def feature_pass(self, batches) -> None:
        """Eq. 13 over the whole training set (eq. 9 with β = 0 and no dead zone), from epoch t1 on."""
        if self.epoch < self.warmup_epochs:
            return  # the generator is never consumed: no cost during the warm start
        sums = torch.zeros_like(self.centers)
        counts = torch.zeros_like(self._acc_counts)
        first = self.n_c == 0  # no centers yet: δ would test distances to zero, use τ
        for f, y in batches:
            f = f.float()
            keep = (f - self.centers[y]).pow(2).sum(dim=1) >= self.threshold**2  # δ(k, y_i), eq. 14
            if first:
                keep = torch.ones_like(keep)
            s, c = class_sums(f[keep], y[keep], self.num_classes)
            sums += s
            counts += c
        all_reduce_sum(sums), all_reduce_sum(counts)
        self.centers.copy_(closed_form_centers(self.centers, sums, counts, self.beta, self.radius))
        self._set_counts(self.n_c + 1, self.n_iterations)

    def on_epoch_end(self, epoch: int, stats: dict[str, float]) -> None:
        if self.center_update == "epoch" and epoch >= self.warmup_epochs:
            all_reduce_sum(self._acc_sums), all_reduce_sum(self._acc_counts)
            self.centers.copy_(ewma_center_update_from_sums(
                self.centers, self._acc_sums, self._acc_counts, self.phi, self.beta, self.radius,
                self.n_c + 1, self.bias_correction,
            ))
            self._set_counts(self.n_c + 1, self.n_iterations)

    def epoch_metrics(self) -> dict[str, float]:
        out = {"n_c": float(self.n_c), "lambda": self.lam, "beta": self.beta,
               "dead_zone_radius": self.threshold}
        if self.n_c > 0:  # pairwise cosines of the centers set so far
            out["center_cos_mean"], out["center_cos_max"] = pairwise_cosine_stats(self.centers)
        return out

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, r={self.radius}, a={self.sphere_radius:.4f}, ε={self.epsilon}, "
                f"φ={self.phi}, λ={self.lam0}, β={self.beta0}, t1={self.warmup_epochs}, "
                f"update={self.center_update}/{self.update_every}")
