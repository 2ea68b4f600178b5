"""Running epoch statistics kept on the device (no host sync per batch), reduced over ranks at the end."""

from __future__ import annotations

import torch

from podhl.distributed import all_reduce_sum


class EpochStats:
    """Sums of: samples, correct predictions (argmax of the criterion's logits) and the samples scored for
    them, feature norms, and every loss term weighted by its batch size. :meth:`reduce` turns them into means
    over all ranks."""

    def __init__(self, device: torch.device) -> None:
        self.counts = torch.zeros(4, device=device, dtype=torch.float64)  # n, correct, sum of ‖x‖, scored
        self.sums: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def add_predictions(self, criterion, features: torch.Tensor, labels: torch.Tensor, score: bool = True) -> None:
        """Count the batch; ``score=False`` skips the B×C scoring pass (``trainer.train_acc_every``): the
        accuracy is then over the scored batches only."""
        norms = features.norm(dim=1).sum()
        n = norms.new_tensor(len(labels))
        if score:
            correct = (criterion.logits(features).argmax(1) == labels).sum().to(norms.dtype)
            self.counts += torch.stack([n, correct, norms, n]).double()
        else:
            self.counts += torch.stack([n, torch.zeros_like(norms), norms, torch.zeros_like(norms)]).double()

    def add_terms(self, terms: dict[str, torch.Tensor], weight: float) -> None:
        for name, value in terms.items():
            self.sums[name] = self.sums.get(name, 0.0) + value.detach().double() * weight

    def running_mean(self, name: str) -> float:
        """This rank's mean of one term so far (a host sync: for progress bars only)."""
        return float(self.sums[name]) / max(float(self.counts[0]), 1.0)

    def state(self) -> dict:
        """This rank's sums, on the CPU (mid-epoch checkpoints)."""
        return {"counts": self.counts.cpu(), "sums": {k: v.cpu() for k, v in self.sums.items()}}

    def load(self, state: dict) -> None:
        counts = state["counts"].to(self.counts.device)
        if len(counts) == 3:  # written before ``scored`` was counted: every sample was scored
            counts = torch.cat([counts, counts[:1]])
        self.counts = counts
        self.sums = {k: v.to(self.counts.device) for k, v in state["sums"].items()}

    def reduce(self) -> dict[str, float]:
        """Means over every rank's samples (one all-reduce, one host sync): terms, ``acc`` (%, over the scored
        samples; absent when none was scored), ``feature_norm``, ``n``."""
        names = sorted(self.sums)
        packed = all_reduce_sum(torch.cat([self.counts, *(self.sums[k].view(1) for k in names)]))
        n, scored = float(packed[0]), float(packed[3])
        out = {k: float(v) / n for k, v in zip(names, packed[4:], strict=True)}
        if scored > 0:
            out["acc"] = 100.0 * float(packed[1]) / scored
        out.update(feature_norm=float(packed[2]) / n, n=int(n))
        return out
