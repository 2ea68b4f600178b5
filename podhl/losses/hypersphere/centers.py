"""The state Hypersphere Loss's center updates act on (``updates.py``): the class centers (C, d) on the
radius-r sphere, their running total T = Σ_l c_l, N_c (eq. 15) and the penalized-iteration count, all
buffers so that checkpoints carry them and a resumed run continues the exact sequence. The counters
have a host copy, so the per-step bookkeeping needs no GPU sync; loading a state dict refreshes it.

A per-batch update changes only the rows of the classes in the batch (``RowUpdate``); T, which eq. 10's
separation and eq. 16's Σ_{l≠k} c_l = T − c_k need, follows them (T += new rows − old rows), so a step
costs O(B·d), not O(C·d). T is float64: its drift against a fresh sum stays at float64 rounding (measured
in docs/face-scale.md, "Center updates at 100k classes"), so it is never re-summed except on a
dense commit and when loading a checkpoint that lacks it. Change the centers through ``commit`` (or call
``refresh_total`` after writing them yourself).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from podhl.losses.center.rows import ClassSlots, lookup_rows, write_rows
from podhl.losses.linear.head import LinearClassifier


def _forget_host_counts(module: CenterState, incompatible_keys) -> None:
    module._counts = None  # re-read N_c and the iteration count from the loaded buffers
    module._live = None  # rows that may be nonzero: recomputed when needed


@dataclass
class RowUpdate:
    """An update of some centers, prepared and not yet stored: ``rows[s]`` is the new center of class
    ``slots.labels[s]`` (used slots only), ``total`` the new T (float64). ``replace``: every other center
    becomes zero (the authors' code, ``official.absent_class_center: zero``); else they are kept.
    ``base`` is the centers buffer it applies to."""

    slots: ClassSlots
    rows: torch.Tensor
    total: torch.Tensor
    replace: bool
    base: torch.Tensor

    def rows_for(self, labels: torch.Tensor) -> torch.Tensor:
        """$(n, d)$: the updated center of each label (O(n·d))."""
        fallback = torch.zeros_like(self.base[labels]) if self.replace else self.base[labels]
        return lookup_rows(self.slots, self.rows, labels, fallback)

    def to_dense(self) -> torch.Tensor:
        """The whole $(C, d)$ centers after this update (a copy; O(C·d): for tests and inspection)."""
        out = torch.zeros_like(self.base) if self.replace else self.base.clone()
        write_rows(out, self.slots, self.rows)
        return out


class CenterState(LinearClassifier):
    """A linear classifier plus ``centers`` (zeros until the first update), ``center_sum`` (T = Σ_l c_l,
    float64), ``num_updates`` (N_c) and ``iterations`` (penalized steps, counted by
    ``podhl.losses.hypersphere.updates.BatchEWMA``)."""

    def __init__(self, num_classes: int, feat_dim: int, bias: bool = True) -> None:
        super().__init__(num_classes, feat_dim, bias)
        self.register_buffer("centers", torch.zeros(num_classes, feat_dim))
        self.register_buffer("center_sum", torch.zeros(feat_dim, dtype=torch.float64))  # T
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))  # N_c
        self.register_buffer("iterations", torch.zeros((), dtype=torch.long))
        self._counts: tuple[int, int] | None = None  # host copy of (N_c, iterations)
        self._live: torch.Tensor | None = torch.zeros(0, dtype=torch.long)  # rows that may be nonzero
        self.register_load_state_dict_post_hook(_forget_host_counts)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        key = prefix + "center_sum"
        if key not in state_dict and prefix + "centers" in state_dict:  # a checkpoint from before T
            state_dict[key] = state_dict[prefix + "centers"].double().sum(dim=0)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

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

    def center_rows(self, labels: torch.Tensor, prepared=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(c_{y_i} (B, d), T = Σ_l c_l (d,)) from the stored centers, a prepared ``RowUpdate`` (O(B·d)), or
        prepared (C, d) centers (a custom strategy's; T summed, O(C·d))."""
        if prepared is None:
            return self.centers[labels], self.center_sum
        if isinstance(prepared, RowUpdate):
            return prepared.rows_for(labels), prepared.total
        return prepared[labels], prepared.sum(dim=0)

    def refresh_total(self) -> None:
        """Re-sum T from the centers (O(C·d)), after writing ``centers`` other than through ``commit``."""
        self.center_sum.copy_(self.centers.double().sum(dim=0))
        self._live = None

    def _live_rows(self) -> torch.Tensor:
        if self._live is None or self._live.device != self.centers.device:
            self._live = self.centers.ne(0).any(dim=1).nonzero().flatten()  # O(C·d), once after a load
        return self._live

    def commit(self, centers: torch.Tensor | RowUpdate, iterations: int = 0) -> None:
        """Store updated centers: N_c += 1 (and the iteration count += ``iterations``).

        Args:
            centers: a ``RowUpdate`` (O(B·d): its rows, then T) or all $(C, d)$ centers (T re-summed).
            iterations: added to the penalized-iteration count. Default 0.
        """
        if isinstance(centers, RowUpdate):
            if centers.replace:  # every other center becomes zero: only the last update's rows are nonzero
                self.centers.index_fill_(0, self._live_rows(), 0.0)
                self._live = centers.slots.rows
            write_rows(self.centers, centers.slots, centers.rows)
            self.center_sum.copy_(centers.total)
        else:
            self.centers.copy_(centers)
            self.refresh_total()
        self._set_counts(self.n_c + 1, self.n_iterations + iterations)

    def epoch_progress(self) -> dict:
        """The update strategy's per-epoch sums (``self.center_update``; mid-epoch checkpoints)."""
        return self.center_update.epoch_progress()

    def load_epoch_progress(self, state: dict) -> None:
        self.center_update.load_epoch_progress(state)
