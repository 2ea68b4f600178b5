"""The authors'-code switches of Hypersphere Loss, one group (``official:`` in ``podhl/conf/loss/hl.yaml``).

Where the public code (TCCofWANG/Hypersphere_loss, ``Cifar10_HL_main.py``) departs from the paper
(Wang et al., IEEE TII 2024). Every default is the paper's; ``OfficialSwitches.authors_code`` is
the column of the newest version of that file, ba67071 (2023-07-07), which ``loss=hl_official`` selects
(with ε = 0.05, its ``rho``). The file's earlier versions differ only in the dead zone and the power
of the penalty, which ``generalized``, ``epsilon`` and ``official.penalty_power`` express
(docs/losses/hypersphere.md, presets ``loss=hl_official_versions/<name>``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from podhl.checks import in_range, integer, one_of, require
from podhl.errors import ConfigError
from podhl.losses.hypersphere.math import PENALTY_NORMALIZATIONS, PENALTY_POWERS, feature_sphere_radius

FLAGS = (False, True)
ABSENT_CLASS_CENTERS = ("keep", "zero")  # a class absent from the update's batch: keeps its center | code: zero
CODE_FEATURE_RADIUS_FACTOR = 0.998  # the code's a: alpha = 0.998*radius (f27ae61 onwards)


@dataclass
class OfficialSwitches:
    r"""Where the authors' code departs from the HL paper, one switch each; every default is the paper's.

    ``OfficialSwitches()`` is the paper (Wang et al., IEEE TII 2024); ``authors_code`` is
    TCCofWANG/Hypersphere_loss ``Cifar10_HL_main.py`` @ba67071 (``loss=hl_official``). No formula of
    its own: each switch names the equation it replaces.

    Args:
        bias_correction: True (default): the $1/(1 - \varphi^{N_c})$ of eq. 15; code: False.
        penalty_power: 2 (default): $[\iota d]^2$ of eq. 17; code: 4 ($d^4$).
        penalty_normalization: ``"batch"`` (default): $1/(2B)$ of eq. 17; code: ``"elements"``,
            $1/(2Bd)$.
        ramp_lambda: False (default): constant $\lambda$; code: True, $\lambda$ ramps linearly,
            ``linspace(0, lam, T)[epoch − 1]``.
        ramp_beta: False (default): constant $\beta$; code: True, $\beta$ ramps the same way.
        total_epochs: $T$ of the ramps, in epochs (required when a ramp is on). Default None.
        lambda_ramp_lags: with ``ramp_lambda``, False (default): $\lambda(e)$ = ``linspace[e − 1]``;
            code: True, ``linspace[e − 2]`` (set after epoch $e - 1$).
        normalize_weight: False (default): logits $W f + b$; code: True, $f\,\mathrm{normalize}(W)^\top$.
        bias: True (default): classifier bias $b$; code: False.
        classifier_weight_decay: None (default): the schedule's weight decay on $W, b$; code: 0.0 (own
            optimizer).
        feature_radius_factor: None (default): $a$ from $C$, $d$, $r$ (§III-A); code: 0.998
            ($a = 0.998 r$).
        absent_class_center: ``"keep"`` (default): a class absent from an EWMA update keeps its
            center; code: ``"zero"``.
    """

    bias_correction: bool = True
    penalty_power: int = 2
    penalty_normalization: str = "batch"
    ramp_lambda: bool = False
    ramp_beta: bool = False
    total_epochs: int | None = None
    lambda_ramp_lags: bool = False
    normalize_weight: bool = False
    bias: bool = True
    classifier_weight_decay: float | None = None
    feature_radius_factor: float | None = None
    absent_class_center: str = "keep"

    def __post_init__(self) -> None:
        for name in ("bias_correction", "ramp_lambda", "ramp_beta", "lambda_ramp_lags", "normalize_weight", "bias"):
            setattr(self, name, bool(one_of(f"official.{name}", getattr(self, name), FLAGS)))
        self.penalty_power = int(one_of("official.penalty_power", self.penalty_power, PENALTY_POWERS))
        self.penalty_normalization = one_of(
            "official.penalty_normalization", self.penalty_normalization, PENALTY_NORMALIZATIONS
        )
        if self.total_epochs is not None:
            self.total_epochs = integer("official.total_epochs", self.total_epochs, low=1)
        require(
            not (self.ramp_lambda or self.ramp_beta) or self.total_epochs is not None,
            "official.total_epochs",
            "an integer ≥ 1 when official.ramp_lambda or official.ramp_beta is on",
            self.total_epochs,
        )
        if self.classifier_weight_decay is not None:
            self.classifier_weight_decay = in_range(
                "official.classifier_weight_decay", self.classifier_weight_decay, 0.0
            )
        if self.feature_radius_factor is not None:
            self.feature_radius_factor = in_range(
                "official.feature_radius_factor", self.feature_radius_factor, 0.0, 1.0, low_open=True
            )
        self.absent_class_center = one_of(
            "official.absent_class_center", self.absent_class_center, ABSENT_CLASS_CENTERS
        )

    @classmethod
    def of(cls, value: OfficialSwitches | Mapping[str, Any] | None) -> OfficialSwitches:
        """The switches from ``None`` (the paper), an instance, or a mapping (the YAML's ``official:``)."""
        if value is None or isinstance(value, cls):
            return value or cls()
        if not isinstance(value, Mapping):
            raise ConfigError(f"official must be a mapping of switches or null, got {value!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        for key in value:
            require(key in known, f"official.{key}", f"one of the switches {sorted(known)}", value[key])
        return cls(**{key: value[key] for key in value})

    @classmethod
    def authors_code(cls, total_epochs: int) -> OfficialSwitches:
        """Every switch as the newest authors' code (``Cifar10_HL_main.py`` @ba67071) has it (ramps over
        ``total_epochs``)."""
        return cls(
            bias_correction=False,
            penalty_power=4,
            penalty_normalization="elements",
            ramp_lambda=True,
            ramp_beta=True,
            total_epochs=total_epochs,
            lambda_ramp_lags=True,
            normalize_weight=True,
            bias=False,
            classifier_weight_decay=0.0,
            feature_radius_factor=CODE_FEATURE_RADIUS_FACTOR,
            absent_class_center="zero",
        )

    def feature_radius(self, num_classes: int, feat_dim: int, radius: float) -> float:
        """a, the feature spheres' radius of the dead zone ε·a: from C, d and r (§III-A), or the code's
        ``alpha = 0.998*radius`` (``feature_radius_factor``; 0.99839·r by §III-A at C = 10, d = 512)."""
        if self.feature_radius_factor is not None:
            return self.feature_radius_factor * radius
        return feature_sphere_radius(num_classes, feat_dim, radius)

    def ramp(self, base: float, on: bool, epoch: int, lag: bool = False) -> float:
        """``base``, or the code's linear ramp linspace(0, base, T)[epoch − 1] when ``on``; ``lag``: the
        code's λ, set after each epoch, so epoch e uses linspace(0, base, T)[e − 2] and epoch 1 the initial
        value ``base`` (the code spends its first epochs in the cross-entropy warm-up)."""
        if not on:
            return base
        if lag:
            if epoch <= 1:
                return base
            epoch -= 1
        t = self.total_epochs
        return base if t == 1 else base * min(max(epoch - 1, 0), t - 1) / (t - 1)
