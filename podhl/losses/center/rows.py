"""Per-class statistics of a batch over the classes present in it, for center updates in O(B·d).

A batch of B samples holds at most B classes, and a center update (center loss, HL eq. 15–16) changes
only their centers. ``batch_classes`` groups the batch by class into B *slots* (sorted labels, one slot
per class present, the rest unused) without a host sync (sort + cumsum, no ``torch.unique``), and sums
features per slot with ``index_add_`` in sample order, the order ``class_sums`` adds them (so the sums
are the dense ones, bit for bit, on CPU). ``reduce_classes`` combines the ranks' slots under DDP by
all-gathering them (world × B rows instead of an all-reduce of C×d); ``write_rows`` scatters the
updated rows back. Nothing here is (C, d): podhl's choice for C = 10⁵–10⁶ classes (issue 23).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from podhl.distributed import all_gather_rows, gathered_sizes, is_initialized

__all__ = ["ClassSlots", "batch_classes", "reduce_classes", "class_slot_stats", "write_rows", "lookup_rows"]


@dataclass
class ClassSlots:
    """A batch grouped by class: slot s holds class ``labels[s]`` with ``counts[s]`` samples summing to
    ``sums[s]``. Labels are sorted; unused slots (count 0) have label ``num_classes``.

    Attributes:
        labels: $(S,)$ long, the class of each slot (``num_classes`` when unused).
        sums: $(S, d)$ per-slot feature sums $S_k$.
        counts: $(S,)$ per-slot counts $n_k$ (in ``sums``' dtype).
        num_classes: $C$.
    """

    labels: torch.Tensor
    sums: torch.Tensor
    counts: torch.Tensor
    num_classes: int

    @property
    def valid(self) -> torch.Tensor:
        """$(S,)$ bool: slots holding a class."""
        return self.counts > 0

    @property
    def rows(self) -> torch.Tensor:
        """$(S,)$ in-range row indices: the slot's class, or slot 0's for unused slots (read-only use)."""
        return torch.where(self.valid, self.labels, self.labels[:1])

    def __len__(self) -> int:
        return self.labels.numel()


def _group(keys: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(slot of each entry, sorted label of each slot; ``num_classes`` for unused slots), no host sync."""
    n = keys.numel()
    sorted_keys, order = torch.sort(keys, stable=True)
    starts = torch.ones(n, dtype=torch.bool, device=keys.device)
    starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    seg_sorted = torch.cumsum(starts, 0) - 1
    slot = torch.empty_like(seg_sorted).scatter_(0, order, seg_sorted)
    slot_labels = torch.full((n,), num_classes, dtype=keys.dtype, device=keys.device)
    slot_labels.scatter_(0, seg_sorted, sorted_keys)  # repeated slots write the same label
    return slot, slot_labels


def batch_classes(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> ClassSlots:
    """This process's batch grouped by class: B slots, O(B·d), no host sync.

    Args:
        features: $(B, d)$ features (the dtype of the sums).
        labels: $(B,)$ class indices in $[0, C)$.
        num_classes: $C$.

    Returns:
        ``ClassSlots`` with B slots.
    """
    labels = labels.long()
    slot, slot_labels = _group(labels, num_classes)
    b = labels.numel()
    sums = torch.zeros(b, features.shape[1], dtype=features.dtype, device=features.device)
    sums.index_add_(0, slot, features)
    counts = torch.zeros(b, dtype=features.dtype, device=features.device)
    counts.index_add_(0, slot, torch.ones_like(labels, dtype=features.dtype))
    return ClassSlots(slot_labels, sums, counts, num_classes)


def reduce_classes(slots: ClassSlots) -> ClassSlots:
    """Every rank's slots combined (DDP), identical on every rank; ``slots`` itself in one process.

    All-gathers each rank's (labels, sums, counts) (``podhl.distributed.all_gather_rows``, after one small
    gather of the slot counts: a host sync, DDP only), groups the gathered slots by class and adds the
    ranks' rows in rank order, one ``index_add_`` per rank. A rank's slots hold distinct classes, so no
    row receives two additions in one call: the result does not depend on atomics, and every rank
    computes the same centers. Traffic: world·S·(d + 2) numbers instead of C·(d + 1).

    Args:
        slots: this rank's ``batch_classes``.

    Returns:
        ``ClassSlots`` of the global batch (one slot per gathered slot).
    """
    if not is_initialized():
        return slots
    sizes = gathered_sizes(len(slots), slots.labels.device)
    labels, sums, counts = (all_gather_rows(t, sizes) for t in (slots.labels, slots.sums, slots.counts))
    slot, slot_labels = _group(labels, slots.num_classes)  # unused slots: one group, label C
    out_sums, out_counts = torch.zeros_like(sums), torch.zeros_like(counts)
    start = 0
    for size in sizes:
        part = slice(start, start + size)
        out_sums.index_add_(0, slot[part], sums[part])
        out_counts.index_add_(0, slot[part], counts[part])
        start += size
    return ClassSlots(slot_labels, out_sums, out_counts, slots.num_classes)


def class_slot_stats(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> ClassSlots:
    """``batch_classes`` of the batch, combined over DDP ranks (``reduce_classes``)."""
    return reduce_classes(batch_classes(features, labels, num_classes))


def write_rows(centers: torch.Tensor, slots: ClassSlots, rows: torch.Tensor) -> None:
    """``centers[labels[s]] = rows[s]`` for every used slot, in place, no host sync: unused slots rewrite
    slot 0's row with slot 0's value (a repeated index with one value, so the order does not matter)."""
    if len(slots) == 0:
        return
    target = torch.where(slots.valid, torch.arange(len(slots), device=rows.device), 0)
    centers.index_copy_(0, slots.labels[target], rows[target].to(centers.dtype))


def lookup_rows(slots: ClassSlots, rows: torch.Tensor, labels: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """$(n, d)$: the slot row of each label, or ``fallback``'s row for labels with no slot.

    Args:
        slots: the classes of ``rows`` (sorted labels).
        rows: $(S, d)$ a row per slot.
        labels: $(n,)$ class indices.
        fallback: $(n, d)$ rows for labels that have no slot.
    """
    if len(slots) == 0:
        return fallback
    pos = torch.searchsorted(slots.labels, labels.long()).clamp_max(len(slots) - 1)
    found = (slots.labels[pos] == labels) & slots.valid[pos]
    return torch.where(found[:, None], rows[pos], fallback)
