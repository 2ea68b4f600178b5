"""Shared base of the POD family: the frozen PEDCC classifier and cosine-argmax prediction.

The PEDCC (``podhl.pedcc.generate_pedcc``; POD §2.1) replaces the last linear layer (FC2 in POD
Fig. 1). It is a buffer: no gradient, never in the optimizer, saved in every checkpoint.
Prediction is the cosine argmax of eq. 21–24: argmax_i x·p̃_i = argmax_i cos θ_{x, p̃_i}.

The losses use p̃ = normalize(PEDCC). The PEDCC is frozen, so p̃ is computed once, not in every
forward: ``unit_pedcc`` is cached and recomputed only when ``pedcc`` changes — replaced (a new
tensor assigned, ``.to()``, ``.double()``) or modified in place (``load_state_dict``, ``copy_``; seen
through the tensor's version counter). The cache is not a buffer, so checkpoints hold ``pedcc`` alone.
Every value is bit-identical to normalizing in each forward (tested).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from podhl.checks import integer, one_of
from podhl.losses.base import Criterion
from podhl.losses.pod.math import cosine_logits
from podhl.pedcc import METHODS, generate_pedcc, load_pedcc_file


class PEDCCCriterion(Criterion):
    r"""The POD family's base: owns the frozen PEDCC ``pedcc`` ($k \times n$ unit rows, a buffer) and
    predicts by cosine argmax (POD eq. 21–24); ``unit_pedcc`` is $\tilde p$ = normalize(pedcc).

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
        self.register_buffer("pedcc", pedcc)
        self._unit_cache: tuple[torch.Tensor, int, torch.Tensor] | None = None  # (pedcc, its version, p̃)

    @property
    def unit_pedcc(self) -> torch.Tensor:
        """normalize(pedcc), computed again only when ``pedcc`` was replaced or modified in place."""
        pedcc = self.pedcc
        try:
            version = pedcc._version
        except RuntimeError:  # an inference-mode tensor has no version counter: normalize every time
            return F.normalize(pedcc, dim=1)
        cache = self._unit_cache
        if cache is None or cache[0] is not pedcc or cache[1] != version:
            cache = self._unit_cache = (pedcc, version, F.normalize(pedcc, dim=1))
        return cache[2]

    def run_files(self) -> dict[str, torch.Tensor]:
        """The run folder keeps the centroids as ``pedcc.pt`` (loadable with ``loss.pedcc_file``)."""
        return {"pedcc.pt": self.pedcc.detach().cpu()}

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        r"""$(B, k)$ cosines between the features and the PEDCC points; argmax = prediction (eq. 21–24)."""
        return cosine_logits(features.float(), self.unit_pedcc, centroids_normalized=True)
