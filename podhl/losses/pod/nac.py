"""Norm-adaptive Cosine (NaC) Loss (POD §3.1.3, eq. 16–17) on the frozen PEDCC: ``NaCLoss``, with
the official code's switches (TianYuZu/POD-Loss ``train.py``)."""

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
    r"""NaC Loss: Cosine Loss with an epoch-adaptive $\delta$ in the denominator (POD eq. 16–17).

    $$L_{\mathrm{NaC}} = \frac{1}{N}\sum_i \big(1 - \cos_{Na}\theta_{y_i}\big)^2, \qquad
    \cos_{Na}\theta_{y_i} = \frac{x_i\cdot\tilde p_{y_i}}{\lVert x_i\rVert + \delta(e, M)}, \qquad
    \delta(e, M) = \alpha\, e\, M$$

    (Zhu & Zu, POD Loss, §3.1.3, eq. 16–17), $e$ the 1-based epoch, $M$ the mean $\lVert x\rVert$ over
    the previous epoch's training samples (``stats["mean_feature_norm"]`` from the trainer),
    ``initial_m`` before the first epoch. $\delta$ (buffer ``delta``) is set in ``on_epoch_start``,
    $M$ (buffer ``mean_norm``) in ``on_epoch_end``; both survive resume. ``epoch_metrics()`` gives
    ``delta`` (used this epoch) and ``M`` (measured this epoch). Config: ``loss=nac``. The three
    string switches reproduce TianYuZu/POD-Loss ``train.py`` @3237322; their defaults are the paper's.

    Args:
        num_classes: $k$, number of classes (PEDCC points).
        feat_dim: $n$, latent feature dimension.
        alpha: $\alpha \ge 0$, weight of $\delta(e, M) = \alpha e M$ (per epoch, unitless). Default
            0.01: POD Table 4 "NaC Loss (α = 0.01)" and §4.2.5.
        initial_m: $M \ge 0$ before the first epoch (feature-norm units). Default 0.05: POD §3.1.3.
        norm_source: ``"features"`` (default, POD §3.1.3): $M$ = mean $\lVert x\rVert$;
            ``"pedcc_output"`` (official code): mean $\lVert x P^\top\rVert$ of the PEDCC layer's output.
        denominator: ``"sum"`` (default, eq. 16): $\lVert x\rVert + \delta$; ``"sqrt"`` (official
            code): $\sqrt{\lVert x\rVert^2 + \delta^2}$.
        delta_schedule: ``"paper"`` (default): $\delta = \alpha e M_{e-1}$; ``"official"``:
            $\delta = 0.05$ in epoch 1, then $\alpha (e - 1) M_{e-1}$.
        pedcc_seed: seed of the PEDCC construction. Default 0 (podhl's choice, see ``CosineLoss``).
        pedcc_method: PEDCC construction. Default ``"auto"`` (podhl's choice, see ``CosineLoss``).
        pedcc_file: centroids to load instead of generating them. Default None (see ``CosineLoss``).

    Returns:
        forward (dict[str, torch.Tensor]): ``loss`` (back-propagated) and ``nac``, the same value.
        logits (torch.Tensor): $(B, k)$ cosines to the PEDCC points; argmax = prediction (eq. 21–24).
    """

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
        super().__init__(num_classes, feat_dim, pedcc_seed=pedcc_seed, pedcc_method=pedcc_method, pedcc_file=pedcc_file)
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
        r"""$L_{\mathrm{NaC}}$ (eq. 17), a scalar, with this epoch's $\delta$."""
        return nac_loss(
            features.float(), labels, self.unit_pedcc, self.delta, self.denominator, centroids_normalized=True
        )

    def forward(self, features: torch.Tensor, labels: torch.Tensor, step: int = 0) -> dict[str, torch.Tensor]:
        loss = self.nac(features, labels)
        return {"loss": loss, "nac": loss}

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, alpha={self.alpha}, norm_source={self.norm_source}, "
            f"denominator={self.denominator}, delta_schedule={self.delta_schedule}"
        )
