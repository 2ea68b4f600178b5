"""Shared base of the POD family: the frozen PEDCC classifier and cosine-argmax prediction.

The PEDCC (``podhl.pedcc.generate_pedcc``; POD §2.1) replaces the last linear layer (FC2 in POD
Fig. 1). It is a buffer: no gradient, never in the optimizer, saved in every checkpoint.
Prediction is the cosine argmax of eq. 21–24: argmax_i x·p̃_i = argmax_i cos θ_{x, p̃_i}.

The losses use p̃ = normalize(PEDCC). The PEDCC is already normalized where it is made
(``generate_pedcc`` and ``load_pedcc_file`` return unit rows, normalized in float64), so the buffer
``pedcc`` *is* p̃ and ``unit_pedcc`` returns it: one (k, n) tensor (until this change a second,
float32-normalized copy was cached next to it: 205 MB more at k = 100,000, n = 512). Rows whose norm
is off 1 by more than 1e-5 (centroids assigned to ``pedcc`` or loaded by ``load_state_dict`` from
elsewhere) are normalized, in place, block by block. Checkpoints are unchanged (they always held
``pedcc`` alone) and load as before. Against the cached ``F.normalize(pedcc)`` of earlier versions the
centroids differ by float32 rounding (≤ 1 unit in the last place), so loss values agree to ~1e-7,
not bit for bit. ``pedcc.copy_`` of non-unit rows is not seen: copy unit rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from podhl.checks import integer, one_of
from podhl.losses.base import Criterion
from podhl.losses.pod.math import cosine_logits
from podhl.pedcc import METHODS, generate_pedcc, load_pedcc_file

_ROW_BLOCK = 8192  # rows checked or normalized at a time: no second (k, n) tensor
UNIT_TOL = 1e-5  # rows closer than this to norm 1 count as unit (float32 rounding is ~1e-7)


@torch.no_grad()
def is_unit(x: torch.Tensor) -> bool:
    """Every row of ``x`` has norm 1 ± ``UNIT_TOL``, block by block (in x's dtype: the float32 norm of a
    unit row is 1 to ~1e-7; 30× faster than float64 on a CPU, 0.2 s for 1,000,000 × 512)."""
    norms = (torch.linalg.vector_norm(x[s : s + _ROW_BLOCK], dim=1) for s in range(0, x.shape[0], _ROW_BLOCK))
    return all(bool(((norm - 1.0).abs() <= UNIT_TOL).all()) for norm in norms)


@torch.no_grad()
def unit_rows_(x: torch.Tensor) -> torch.Tensor:
    """``x`` as it is when :func:`is_unit`, else replaced in place by ``F.normalize(x, dim=1)`` (the same
    bits, block by block); returned. No (k, n) temporary."""
    if is_unit(x):
        return x
    for s in range(0, x.shape[0], _ROW_BLOCK):
        x[s : s + _ROW_BLOCK] = F.normalize(x[s : s + _ROW_BLOCK], dim=1)
    return x


class PEDCCCriterion(Criterion):
    r"""The POD family's base: owns the frozen PEDCC ``pedcc`` ($k \times n$ unit rows, a buffer) and
    predicts by cosine argmax (POD eq. 21–24); ``pedcc`` holds $\tilde p$ (unit rows; ``unit_pedcc`` is
    the same tensor).

    Args:
        num_classes: $k$, number of classes (PEDCC points).
        feat_dim: $n$, latent feature dimension.
        pedcc_seed: seed of the PEDCC construction. Default 0 (a fixed seed: the PEDCC is predefined).
            The same seed gives the same centroids on every machine.
        pedcc_method: PEDCC construction, one of ``podhl.pedcc.METHODS``. Default ``"auto"``.
        pedcc_file: a ``.pt``/``.npy`` file holding the $(k, n)$ centroids to use instead (e.g. the
            ``pedcc.pt`` every run writes into its folder), so a published run can be repeated exactly.
            Default None (generate from ``pedcc_seed``/``pedcc_method``).
    """

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        pedcc_seed: int = 0,
        pedcc_method: str = "auto",
        pedcc_file: str | None = None,
    ) -> None:
        super().__init__(num_classes, feat_dim)
        if pedcc_file:
            pedcc = load_pedcc_file(pedcc_file, self.num_classes, self.feat_dim)
        else:
            seed = integer("pedcc_seed", pedcc_seed)
            method = one_of("pedcc_method", pedcc_method, METHODS)
            pedcc = generate_pedcc(num_classes, feat_dim, seed=seed, method=method)
        self.register_buffer("pedcc", unit_rows_(pedcc))

    def __setattr__(self, name: str, value: object) -> None:
        if name == "pedcc" and isinstance(value, torch.Tensor) and "pedcc" in self.__dict__.get("_buffers", {}):
            value = value if is_unit(value) else F.normalize(value, dim=1)  # the buffer holds p̃: keep it unit
        super().__setattr__(name, value)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs) -> None:  # noqa: ANN001
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)
        if prefix + "pedcc" in state_dict:
            unit_rows_(self.pedcc)  # other centroids, not unit: normalized (unit ones load as they are)

    @property
    def unit_pedcc(self) -> torch.Tensor:
        """p̃ = normalize(PEDCC): the buffer ``pedcc`` itself, whose rows are unit (module docstring)."""
        return self.pedcc

    def run_files(self) -> dict[str, torch.Tensor]:
        """The run folder keeps the centroids as ``pedcc.pt`` (loadable with ``loss.pedcc_file``)."""
        return {"pedcc.pt": self.pedcc.detach().cpu()}

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        r"""$(B, k)$ cosines between the features and the PEDCC points; argmax = prediction (eq. 21–24)."""
        return cosine_logits(features.float(), self.unit_pedcc, centroids_normalized=True)
