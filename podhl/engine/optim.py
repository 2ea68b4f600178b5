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
