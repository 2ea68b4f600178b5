"""Shared base of the POD family: the frozen PEDCC classifier and cosine-argmax prediction.

The PEDCC (``podhl.pedcc.generate_pedcc``; POD §2.1) replaces the last linear layer (FC2 in POD
Fig. 1). It is a buffer: no gradient, never in the optimizer, saved in every checkpoint.
Prediction is the cosine argmax of eq. 21–24: argmax_i x·p̃_i = argmax_i cos θ_{x, p̃_i}.

The losses use p̃ = normalize(PEDCC). The PEDCC is frozen, so p̃ is computed once, when the
criterion is built, and the buffer ``pedcc`` *is* p̃ (``unit_pedcc`` returns it): one (k, n) copy,
not two (at k = 100,000, n = 512 a second copy cost 205 MB). The normalization is
``F.normalize(·, dim=1)`` row block by row block in place, the same bits as the earlier per-forward
(and then cached) p̃, so every loss value is unchanged (tested). Assigning ``pedcc`` normalizes what
is assigned; ``load_state_dict`` normalizes checkpoints written before this change (module version
1: their ``pedcc`` was the raw set, and p̃ is then bit-identical to what those versions used) and any
loaded rows whose norms are not 1 (to 1e-5); a version-2 checkpoint's unit rows (or a plain dict's,
which carries no version) load as they are, so a resumed run continues with the same bits.
``pedcc.copy_`` of non-unit rows is not seen: copy unit rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from podhl.checks import integer, one_of
from podhl.losses.base import Criterion
from podhl.losses.pod.math import cosine_logits
from podhl.pedcc import METHODS, generate_pedcc, load_pedcc_file

_ROW_BLOCK = 8192  # rows normalized at a time: no second (k, n) tensor


@torch.no_grad()
def normalize_rows_(x: torch.Tensor) -> torch.Tensor:
    """``x`` replaced in place by ``F.normalize(x, dim=1)`` (the same bits, block by block), returned."""
    for s in range(0, x.shape[0], _ROW_BLOCK):
        x[s : s + _ROW_BLOCK] = F.normalize(x[s : s + _ROW_BLOCK], dim=1)
    return x


class PEDCCCriterion(Criterion):
    r"""The POD family's base: owns the frozen PEDCC ``pedcc`` ($k \times n$ unit rows, a buffer) and
    predicts by cosine argmax (POD eq. 21–24); ``pedcc`` holds $\tilde p$, normalized once (``unit_pedcc``
    is the same tensor).

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

    _version = 2  # 1: ``pedcc`` held the raw set (normalized on load); 2: it holds p̃

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
        self.register_buffer("pedcc", normalize_rows_(pedcc))

    def __setattr__(self, name: str, value: object) -> None:
        if name == "pedcc" and isinstance(value, torch.Tensor) and "pedcc" in self.__dict__.get("_buffers", {}):
            value = F.normalize(value, dim=1)  # the buffer holds p̃: keep it unit
        super().__setattr__(name, value)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs) -> None:  # noqa: ANN001
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)
        key = prefix + "pedcc"
        if key not in state_dict:
            return
        version = (local_metadata or {}).get("version")  # None: a plain dict without torch's metadata
        old = version is not None and version < 2
        with torch.no_grad():
            pedcc = self.pedcc
            if old or not bool(((pedcc.double().norm(dim=1) - 1.0).abs() <= 1e-5).all()):
                normalize_rows_(pedcc)

    @property
    def unit_pedcc(self) -> torch.Tensor:
        """p̃ = normalize(PEDCC): the buffer ``pedcc`` itself (normalized once; module docstring)."""
        return self.pedcc

    def run_files(self) -> dict[str, torch.Tensor]:
        """The run folder keeps the centroids as ``pedcc.pt`` (loadable with ``loss.pedcc_file``)."""
        return {"pedcc.pt": self.pedcc.detach().cpu()}

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        r"""$(B, k)$ cosines between the features and the PEDCC points; argmax = prediction (eq. 21–24)."""
        return cosine_logits(features.float(), self.unit_pedcc, centroids_normalized=True)
