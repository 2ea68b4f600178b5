"""Optimizers and LR schedulers from the ``schedule`` config (torch optimizers, timm schedulers)."""

from __future__ import annotations

import math
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from podhl.losses.base import Criterion


def param_groups(model: nn.Module, criterion: Criterion) -> list[dict[str, Any]]:
    """The model's trainable parameters, then the groups the criterion declares for itself."""
    groups = [{"params": [p for p in model.parameters() if p.requires_grad], "name": "model"}]
    for i, group in enumerate(criterion.param_groups()):
        groups.append({"name": f"criterion{i}", **group})
    return [g for g in groups if len(g["params"]) > 0]


def build_optimizer(schedule: DictConfig, groups: list[dict[str, Any]]):
    return instantiate(schedule.optimizer)(groups)


def build_scheduler(schedule: DictConfig, optimizer):
    if schedule.get("scheduler") is None:
        return None
    return instantiate(schedule.scheduler)(optimizer)


def step_scheduler_epoch(scheduler, epochs_done: int) -> None:
    """timm schedulers take the epoch index; torch ones take nothing."""
    if scheduler is None:
        return
    if hasattr(scheduler, "step_update"):
        scheduler.step(epochs_done)
    else:
        scheduler.step()


def step_scheduler_update(scheduler, num_updates: int) -> None:
    if scheduler is not None and hasattr(scheduler, "step_update"):
        scheduler.step_update(num_updates)


class CosineLR(torch.optim.lr_scheduler.LRScheduler):
    """Cosine decay from each group's rate to ``lr_min`` over ``t_initial`` epochs, stepped once per epoch:
    lr(t) = lr_min + ½·(lr₀ − lr_min)·(1 + cos(π·t/t_initial)), then lr_min. The same floating-point
    expression as timm's ``CosineLRScheduler`` without warm-up or restarts, so runs are bit-identical to
    it, without importing timm (which pulls in all of timm's models: ~2 s of start-up for small runs)."""

    def __init__(self, optimizer, t_initial: int, lr_min: float = 0.0, last_epoch: int = -1) -> None:
        self.t_initial, self.lr_min = int(t_initial), float(lr_min)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        t = self.last_epoch
        if t >= self.t_initial:
            return [self.lr_min for _ in self.base_lrs]
        return [
            self.lr_min + 0.5 * (base * 1.0 - self.lr_min) * (1 + math.cos(math.pi * t**1.0 / self.t_initial**1.0))
            for base in self.base_lrs
        ]


class MultiStepUpdates(torch.optim.lr_scheduler.LRScheduler):
    """Caffe's ``lr_policy: "multistep"``, counted in optimizer updates: the update after ``n`` updates runs at
    lr₀·γ^k, k = the number of ``milestones`` ≤ n (Caffe's ``SGDSolver::GetLearningRate``: ``current_step_`` grows
    when ``iter_ >= stepvalue``). The trainer calls ``step_update(n)`` after every update; its once-per-epoch
    ``step(epoch)`` changes nothing. schedule=sphereface_official (SphereFace's 16k/24k iterations)."""

    def __init__(self, optimizer, milestones, gamma: float = 0.1, last_epoch: int = -1) -> None:
        self.milestones, self.gamma, self.updates = sorted(int(m) for m in milestones), float(gamma), 0
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        k = sum(1 for m in self.milestones if m <= self.updates)
        return [base * self.gamma**k for base in self.base_lrs]

    def step(self, epoch: int | None = None) -> None:  # noqa: ARG002 - the epoch does not move the rate
        self._last_lr = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, self._last_lr, strict=True):
            group["lr"] = lr

    def step_update(self, num_updates: int) -> None:
        self.updates = int(num_updates)
        self.step()
