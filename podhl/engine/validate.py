"""Checks run before any data is loaded, so a bad config fails in seconds, not hours."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from podhl.errors import ConfigError

PRECISIONS = ("fp32", "bf16", "fp16")


def _positive_int(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def validate_config(cfg: DictConfig) -> None:
    _positive_int(cfg.schedule.epochs, "schedule.epochs")
    _positive_int(cfg.schedule.batch_size, "schedule.batch_size")
    if cfg.model.fc1:
        _positive_int(cfg.model.feat_dim, "model.feat_dim")
    _positive_int(cfg.dataset.num_classes, "dataset.num_classes")
    if cfg.trainer.precision not in PRECISIONS:
        raise ConfigError(f"trainer.precision must be one of {PRECISIONS}, got {cfg.trainer.precision!r}")
    for key in ("stop_after", "limit_train_batches", "limit_test_batches"):
        if cfg.trainer[key] is not None:
            _positive_int(cfg.trainer[key], f"trainer.{key}")
    _positive_int(cfg.trainer.eval_every, "trainer.eval_every")
    _positive_int(cfg.schedule.get("accumulate_grad_batches", 1), "schedule.accumulate_grad_batches")
    _positive_int(cfg.trainer.log_every_n_steps, "trainer.log_every_n_steps")
    resolve_device(cfg.trainer.device)


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """``auto`` → cuda (``cuda:<local_rank>`` under torchrun) if present, then mps, else cpu.

    An explicit device that is unavailable is an error.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank) if local_rank is not None else torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name} but CUDA is not available here; use trainer.device=auto or cpu")
    return device
