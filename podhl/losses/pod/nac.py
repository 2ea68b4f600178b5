"""Norm-adaptive Cosine (NaC) Loss (POD §3.1.3, eq. 16–17) on the frozen PEDCC. Logs ``nac``.

    cos_Na θ_y = x·p̃_y / (‖x‖ + δ(e, M)),   L_NaC = mean (1 − cos_Na θ_y)²,   δ(e, M) = α·e·M

e is the 1-based epoch, M the mean l2 norm of the latent features over the training samples of the
previous epoch (``stats["mean_feature_norm"]`` from the trainer), M = 0.05 before the first epoch.
δ is a buffer (``criterion.delta``) set in ``on_epoch_start``; M (``criterion.mean_norm``) is set in
``on_epoch_end``; both survive resume. ``epoch_metrics()`` → ``delta`` (used this epoch) and ``M``
(measured this epoch), logged as ``loss/delta`` and ``loss/M``.

Official-code switches (TianYuZu/POD-Loss ``train.py``; the defaults are the paper's):

* ``norm_source="pedcc_output"``: M is the mean norm of the PEDCC-layer output xWᵀ (W = PEDCC)
  instead of x; gathered here in ``after_optimizer_step`` and summed over ranks at epoch end.
* ``denominator="sqrt"``: cos_Na = x·p̃_y / sqrt(‖x‖² + δ²).
* ``delta_schedule="official"``: δ = 0.05 in epoch 1, then δ = α·(e−1)·M_{e−1} in epoch e ≥ 2
  (the code's ``alpha * (epoch + 1) * mean`` with its 0-based ``epoch`` of the finished epoch).
"""

from __future__ import annotations

import torch

from podhl.checks import in_range, one_of
from podhl.distributed import all_reduce_sum
from podhl.losses.pod.head import PEDCCCriterion
from podhl.losses.pod.math import DENOMINATORS, nac_loss

NORM_SOURCES = ("features", "pedcc_output")
DELTA_SCHEDULES = ("paper", "official")
OFFICIAL_FIRST_DELTA = 0.05  # δ of the official code's first epoch


class NaCLoss(PEDCCCriterion):
    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        alpha: float = 0.01,
        initial_m: float = 0.05,
        norm_source: str = "features",
        denominator: str = "sum",
        delta_schedule: str = "paper",
        pedcc_seed: int = 0,
        pedcc_method: str = "auto",
        pedcc_file: str | None = None,
    ) -> None:
        alpha = in_range("alpha", alpha, 0.0)  # paper: 0.01
        initial_m = in_range("initial_m", initial_m, 0.0)  # paper: 0.05
        norm_source = one_of("norm_source", norm_source, NORM_SOURCES)
        denominator = one_of("denominator", denominator, DENOMINATORS)
        delta_schedule = one_of("delta_schedule", delta_schedule, DELTA_SCHEDULES)
        super().__init__(num_classes, feat_dim, pedcc_seed=pedcc_seed, pedcc_method=pedcc_method,
                         pedcc_file=pedcc_file)
        self.alpha = alpha
        self.norm_source = norm_source
        self.denominator = denominator
        self.delta_schedule = delta_schedule
        self.register_buffer("mean_norm", torch.tensor(float(initial_m)))  # M
        self.register_buffer("delta", torch.tensor(self.alpha * float(initial_m)))  # δ(1, M0) until set
        # Running sum/count of ‖xWᵀ‖ within an epoch (norm_source="pedcc_output"); reset every epoch
        # (checkpoints are written between epochs, so this is not state to resume).
        self._norm_sum, self._norm_count = 0.0, 0

    # -------------------------------------------------------------- δ(e, M)
    def delta_for_epoch(self, epoch: int) -> float:
        """δ used during 1-based ``epoch``, from the M measured in the previous one."""
        m = float(self.mean_norm)
        if self.delta_schedule == "official":
            return OFFICIAL_FIRST_DELTA if epoch <= 1 else self.alpha * (epoch - 1) * m
        return self.alpha * epoch * m

    def on_epoch_start(self, epoch: int) -> None:
        self.delta.fill_(self.delta_for_epoch(epoch))
        self._norm_sum, self._norm_count = 0.0, 0

    def after_optimizer_step(self, features: torch.Tensor, labels: torch.Tensor, step: int = 0) -> None:
        if self.norm_source == "pedcc_output":
            out = features.float() @ self.pedcc.t()
            self._norm_sum += float(out.norm(dim=1).sum())
            self._norm_count += out.shape[0]

    def on_epoch_end(self, epoch: int, stats: dict[str, float]) -> None:
        if self.norm_source == "pedcc_output":
            sums = [self._norm_sum, float(self._norm_count)]
            total = all_reduce_sum(torch.tensor(sums, dtype=torch.float32, device=self.pedcc.device))
            if float(total[1]) > 0:
                self.mean_norm.fill_(float(total[0] / total[1]))
        else:
            self.mean_norm.fill_(float(stats["mean_feature_norm"]))

    def epoch_metrics(self) -> dict[str, float]:
        return {"delta": float(self.delta), "M": float(self.mean_norm)}

    def epoch_progress(self) -> dict:
        return {"norm_sum": self._norm_sum, "norm_count": self._norm_count}

    def load_epoch_progress(self, state: dict) -> None:
        self._norm_sum, self._norm_count = state.get("norm_sum", 0.0), state.get("norm_count", 0)

    # -------------------------------------------------------------- loss
    def nac(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return nac_loss(features.float(), labels, self.unit_pedcc, self.delta, self.denominator, centroids_normalized=True)

    def forward(self, features: torch.Tensor, labels: torch.Tensor, step: int = 0) -> dict[str, torch.Tensor]:
        loss = self.nac(features, labels)
        return {"loss": loss, "nac": loss}

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, alpha={self.alpha}, norm_source={self.norm_source}, "
            f"denominator={self.denominator}, delta_schedule={self.delta_schedule}"
        )
