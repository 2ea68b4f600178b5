"""Hypersphere Loss (HL; Wang et al., IEEE TII 2024, §III, eqs. 10–17 and Algorithm 1): ``HypersphereLoss``.

Pure maths: ``math.py``; centers and N_c: ``centers.py``; update ways (Tables IV, V): ``updates.py``;
the authors'-code switches: ``switches.py``.

Algorithm 1's order per step (criterion protocol, ``podhl/losses/base.py``): when an update is due,
``needs_prepared_batch()`` is true and the loop calls ``prepare_batch`` with the whole batch's detached
features, which returns the updated centers of the batch's classes (a ``RowUpdate``: O(B·d), per-class
sums gathered over DDP ranks) without storing them; every micro-batch's ``forward(..., prepared=...)``
is penalized against them, and
``after_optimizer_step(..., prepared=...)`` commits them and increments N_c. So the first penalized step
(first batch of epoch t1 + 1) already has centers. Without ``prepared`` (test batches, steps with no
update due) ``forward`` uses the stored centers; a sample whose center was never set is left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

import podhl.losses.hypersphere.math as hl_math
from podhl.checks import in_range, integer, one_of, require
from podhl.losses.hypersphere.centers import CenterState
from podhl.losses.hypersphere.switches import OfficialSwitches
from podhl.losses.hypersphere.updates import CenterUpdate, make_center_update

FLAGS = (False, True)


class HypersphereLoss(CenterState):
    r"""Hypersphere Loss: softmax plus a generalized center penalty, centers on a radius-$r$ sphere (HL eq. 17).

    $$L = \mathrm{CE}(W f + b) + \frac{\lambda}{2B}\sum_i \big[\iota(d_i)\, d_i\big]^2, \qquad
    d_i = \lVert f_i - c_{y_i}\rVert, \qquad \iota(d) = [d \ge \varepsilon a]$$

    (Wang et al., IEEE TII 2024, eq. 17 and eq. 11), class centers with $\lVert c_k\rVert = r$
    (eq. 10), $a = r\sin\theta_C$ the feature-sphere radius (§III-A), the centers updated with the
    network fixed: by default a bias-corrected EWMA per mini-batch (eq. 15–16), after a $t_1$-epoch
    softmax warm start (Algorithm 1). $\beta$ (eq. 10's separation) acts through the update (eq. 16);
    the separation is logged, not back-propagated. Config: ``loss=hl`` (presets ``hl10``,
    ``hl_ablation/<row>``, ``hl_official``); HL feeds the backbone's pooled features to the loss
    (``model.fc1=false``).

    Args:
        num_classes: $C$, number of classes (rows of $W$ and of the centers).
        feat_dim: $d$, feature dimension (≥ 2 when ``generalized``).
        radius: $r > 0$, norm of every class center (feature-norm units, eq. 10). Default 40: §IV-A.
        epsilon: $\varepsilon \in [0, 1]$, dead-zone radius as a fraction of $a$ (eq. 11). Default
            0.05: §III-B.
        phi: $\varphi \in (0, 1)$, EWMA factor of the center update (eq. 15). Default 0.99: §III-B.
        lam: $\lambda \ge 0$, weight of the center penalty (eq. 17). Default 0.002: best of Table II
            (§IV-B).
        beta: $\beta \ge 0$, class-center separation weight, used by the update (eq. 16). Default
            0.1: Table II (§IV-B).
        warmup_epochs: $t_1 \ge 0$, epochs of plain softmax first (≥ 1 for ``center_update`` epoch or
            dataset). Default 5: Algorithm 1, §III-B.
        generalized: True (default): dead zone $\varepsilon a$; False: plain center penalty (Table V
            "generalized class center" ×).
        separation: True (default); False: $\beta = 0$ (Table V "class center separation" ×).
        center_update: how the centers are updated (Table V): ``"batch"`` (default, EWMA per
            mini-batch, eq. 15–16), ``"epoch"`` (one EWMA step per epoch), ``"dataset"`` (closed form
            over the whole training set, eq. 13), or a ``podhl.losses.hypersphere.updates.CenterUpdate``.
        update_every: with ``"batch"``, update at every N-th penalized iteration. Default 1 (Table IV
            "HL(10)": 10).
        official: the authors'-code switches, a ``podhl.losses.hypersphere.switches.OfficialSwitches``
            or its mapping (YAML ``official:``). Default None: every switch as the paper.

    Returns:
        forward (dict[str, torch.Tensor]): ``loss`` (back-propagated), ``ce``, ``center`` (the penalty,
            unweighted), ``separation`` (eq. 10's term, logged only), ``dead_zone_fraction`` and
            ``center_distance`` (mean $d_i$); zeros for the last four during the warm start.
        logits (torch.Tensor): $(B, C)$ scores $W f + b$ ($f\,\mathrm{normalize}(W)^\top$ with
            ``official.normalize_weight``); argmax = prediction.
    """

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
        center_update: str | CenterUpdate = "batch",
        update_every: int = 1,
        official: OfficialSwitches | Mapping[str, Any] | None = None,
    ) -> None:
        switches = OfficialSwitches.of(official)
        super().__init__(num_classes, feat_dim, bias=switches.bias)
        self.official = switches
        self.radius = in_range("radius", radius, 0.0, low_open=True)  # r
        self.epsilon = in_range("epsilon", epsilon, 0.0, 1.0)  # ε
        self.phi = in_range("phi", phi, 0.0, 1.0, low_open=True, high_open=True)  # φ
        self.lam0 = in_range("lam", lam, 0.0)  # λ
        self.beta0 = in_range("beta", beta, 0.0)  # β
        self.warmup_epochs = integer("warmup_epochs", warmup_epochs, low=0)  # t1
        self.generalized = bool(one_of("generalized", generalized, FLAGS))
        self.separation = bool(one_of("separation", separation, FLAGS))
        self.center_update = make_center_update(center_update, update_every)
        require(
            self.warmup_epochs >= self.center_update.min_warmup_epochs,
            "warmup_epochs",
            f"≥ {self.center_update.min_warmup_epochs} with center_update={self.center_update.name} "
            "(its first update ends epoch t1)",
            warmup_epochs,
        )
        require(
            not self.generalized or feat_dim >= 2, "feat_dim", "≥ 2 for the generalized center (radius a)", feat_dim
        )
        self.beta0 = self.beta0 if self.separation else 0.0  # separation off = β = 0 in the update
        a = switches.feature_radius(num_classes, feat_dim, self.radius) if self.generalized else float("nan")
        self.sphere_radius = a  # a (§III-A), or the code's 0.998·r
        self.threshold = self.epsilon * self.sphere_radius if self.generalized else 0.0  # ε·a (eq. 11)
        self.needs_feature_pass = self.center_update.needs_feature_pass
        self.epoch = 0

    # ------------------------------------------------------------------ schedule
    @property
    def lam(self) -> float:
        return self.official.ramp(self.lam0, self.official.ramp_lambda, self.epoch, self.official.lambda_ramp_lags)

    @property
    def beta(self) -> float:
        return self.official.ramp(self.beta0, self.official.ramp_beta, self.epoch)

    @property
    def penalized(self) -> bool:
        """Algorithm 1: epochs 1..t1 are softmax only."""
        return self.epoch > self.warmup_epochs

    # ------------------------------------------------------------------ classifier and loss
    def logits(self, features: torch.Tensor) -> torch.Tensor:
        w = F.normalize(self.classifier.weight, dim=1) if self.official.normalize_weight else self.classifier.weight
        return F.linear(features.float(), w, self.classifier.bias)

    def param_groups(self) -> list[dict[str, Any]]:
        group: dict[str, Any] = {"params": list(self.classifier.parameters())}
        if self.official.classifier_weight_decay is not None:
            group["weight_decay"] = self.official.classifier_weight_decay
        return [group]

    def forward(
        self, features: torch.Tensor, labels: torch.Tensor, step: int = 0, prepared: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        f = features.float()
        ce = hl_math.classifier_cross_entropy(f, self.classifier, labels, self.official.normalize_weight, self.logits)
        return self.add_center_terms(ce, f, labels, prepared)

    def add_center_terms(
        self, ce: torch.Tensor, f: torch.Tensor, labels: torch.Tensor, prepared: Any = None
    ) -> dict[str, torch.Tensor]:
        """``forward``'s terms from the cross-entropy ``ce`` of fp32 features ``f``: eq. 17's penalty against
        each sample's own center (``center_rows``: O(B·d)), the logged separation; ``ce`` alone in the warm
        start. The class-sharded classifier (``podhl.losses.sharded``) hands it its distributed ``ce``."""
        zero = ce.detach().new_zeros(())
        if not self.penalized:
            return dict(loss=ce, ce=ce, center=zero, separation=zero, dead_zone_fraction=zero, center_distance=zero)
        rows, total = self.center_rows(labels, prepared)  # Algorithm 1: this step's updated centers
        valid = rows.pow(2).sum(dim=1) > 0
        penalty = hl_math.penalty_from_rows(
            f, rows, self.threshold, self.official.penalty_power, self.official.penalty_normalization, valid
        )
        sep = hl_math.separation_from_rows(rows, total, self.num_classes)
        with torch.no_grad():
            dist = (f - rows).norm(dim=1)
            inside = ((dist < self.threshold) & valid).float().mean()
            mean_dist = (dist * valid).sum() / valid.sum().clamp_min(1)  # no host sync
        terms = dict(ce=ce, center=penalty, separation=sep, dead_zone_fraction=inside, center_distance=mean_dist)
        return {"loss": ce + self.lam * penalty, **terms}

    # ------------------------------------------------------------------ hooks: the update strategy's
    def needs_prepared_batch(self) -> bool:
        return self.center_update.needs_prepared_batch(self)

    @torch.no_grad()
    def prepare_batch(self, features: torch.Tensor, labels: torch.Tensor, step: int = 0) -> Any:
        return self.center_update.prepare_batch(self, features, labels)

    def on_epoch_start(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.center_update.on_epoch_start(self, self.epoch)

    def after_optimizer_step(
        self, features: torch.Tensor, labels: torch.Tensor, step: int = 0, prepared: Any = None
    ) -> None:
        self.center_update.after_optimizer_step(self, features, labels, prepared)

    def feature_pass(self, batches) -> None:
        self.center_update.feature_pass(self, batches)

    def on_epoch_end(self, epoch: int, stats: dict[str, float]) -> None:
        self.center_update.on_epoch_end(self, int(epoch))

    def epoch_metrics(self) -> dict[str, float]:
        out = {"n_c": float(self.n_c), "lambda": self.lam, "beta": self.beta, "dead_zone_radius": self.threshold}
        if self.n_c > 0:  # pairwise cosines of the centers set so far
            out["center_cos_mean"], out["center_cos_max"] = hl_math.pairwise_cosine_stats(self.centers)
        return out

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, r={self.radius}, a={self.sphere_radius:.4f}, ε={self.epsilon}, "
            f"φ={self.phi}, λ={self.lam0}, β={self.beta0}, t1={self.warmup_epochs}, "
            f"update={self.center_update!r}, official={self.official}"
        )
