"""The state Hypersphere Loss's center updates act on (``updates.py``): the class centers (C, d) on the
radius-r sphere, N_c (eq. 15) and the penalized-iteration count, all buffers so that checkpoints
carry them and a resumed run continues the exact sequence. The counters have a host copy, so the
per-step bookkeeping needs no GPU sync; loading a state dict refreshes it.
"""

from __future__ import annotations

import torch

from podhl.losses.linear.head import LinearClassifier


def _forget_host_counts(module: CenterState, incompatible_keys) -> None:
    module._counts = None  # re-read N_c and the iteration count from the loaded buffers


class CenterState(LinearClassifier):
    """A linear classifier plus ``centers`` (zeros until the first update), ``num_updates`` (N_c) and
    ``iterations`` (penalized steps, counted by ``podhl.losses.hypersphere.updates.BatchEWMA``)."""

    def __init__(self, num_classes: int, feat_dim: int, bias: bool = True) -> None:
        super().__init__(num_classes, feat_dim, bias)
        self.register_buffer("centers", torch.zeros(num_classes, feat_dim))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))  # N_c
        self.register_buffer("iterations", torch.zeros((), dtype=torch.long))
        self._counts: tuple[int, int] | None = None  # host copy of (N_c, iterations)
        self.register_load_state_dict_post_hook(_forget_host_counts)

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

    def count_iteration(self) -> None:
        self._set_counts(self.n_c, self.n_iterations + 1)

    def commit(self, centers: torch.Tensor, iterations: int = 0) -> None:
        """Store updated centers: N_c += 1 (and the iteration count += ``iterations``)."""
        self.centers.copy_(centers)
        self._set_counts(self.n_c + 1, self.n_iterations + iterations)

    def epoch_progress(self) -> dict:
        """The update strategy's per-epoch sums (``self.center_update``; mid-epoch checkpoints)."""
        return self.center_update.epoch_progress()

    def load_epoch_progress(self, state: dict) -> None:
        self.center_update.load_epoch_progress(state)
