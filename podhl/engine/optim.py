"""Optimizers and LR schedulers from the ``schedule`` config (torch optimizers, timm schedulers)."""

from __future__ import annotations

from typing import Any

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
