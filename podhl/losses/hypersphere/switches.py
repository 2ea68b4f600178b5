"""The authors'-code switches of Hypersphere Loss, one group (``official:`` in ``podhl/conf/loss/hl.yaml``).

Where the public code (TCCofWANG/Hypersphere_loss, ``Cifar10_HL_main.py``) departs from the paper
(Wang et al., IEEE TII 2024). Every default is the paper's; :meth:`OfficialSwitches.authors_code` is
the code's column (``loss=hl_official``, which also sets ε = 0.5).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from podhl.checks import in_range, integer, one_of, require
from podhl.errors import ConfigError
from podhl.losses.hypersphere.math import PENALTY_NORMALIZATIONS, PENALTY_POWERS

FLAGS = (False, True)


@dataclass
class OfficialSwitches:
    bias_correction: bool = True  # 1/(1 − φ^{N_c}) of eq. 15 | code: none
    penalty_power: int = 2  # [ι·d]² of eq. 17 | code: 4
    penalty_normalization: str = "batch"  # 1/(2B) of eq. 17 | code: "elements", 1/(2·B·d)
    ramp_lambda: bool = False  # constant λ | code: λ ramps linearly 0 → lam, linspace(0, lam, T)[epoch − 1]
    ramp_beta: bool = False  # constant β | code: β ramps the same way
    total_epochs: int | None = None  # T of the ramps
    normalize_weight: bool = False  # logits W·f + b | code: f·normalize(W)ᵀ
    bias: bool = True  # classifier bias b | code: none
    classifier_weight_decay: float | None = None  # the schedule's on W, b | code: 0 (own optimizer)

    def __post_init__(self) -> None:
        for name in ("bias_correction", "ramp_lambda", "ramp_beta", "normalize_weight", "bias"):
            setattr(self, name, bool(one_of(f"official.{name}", getattr(self, name), FLAGS)))
        self.penalty_power = int(one_of("official.penalty_power", self.penalty_power, PENALTY_POWERS))
        self.penalty_normalization = one_of("official.penalty_normalization", self.penalty_normalization,
                                            PENALTY_NORMALIZATIONS)
        if self.total_epochs is not None:
            self.total_epochs = integer("official.total_epochs", self.total_epochs, low=1)
        require(not (self.ramp_lambda or self.ramp_beta) or self.total_epochs is not None, "official.total_epochs",
                "an integer ≥ 1 when official.ramp_lambda or official.ramp_beta is on", self.total_epochs)
        if self.classifier_weight_decay is not None:
            self.classifier_weight_decay = in_range("official.classifier_weight_decay",
                                                    self.classifier_weight_decay, 0.0)

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
        """Every switch as the authors' code has it (ramps over ``total_epochs``)."""
        return cls(bias_correction=False, penalty_power=4, penalty_normalization="elements", ramp_lambda=True,
                   ramp_beta=True, total_epochs=total_epochs, normalize_weight=True, bias=False,
                   classifier_weight_decay=0.0)

    def ramp(self, base: float, on: bool, epoch: int) -> float:
        """``base``, or the code's linear ramp linspace(0, base, T)[epoch − 1] when ``on``."""
        if not on:
            return base
        t = self.total_epochs
        return base if t == 1 else base * min(max(epoch - 1, 0), t - 1) / (t - 1)
