"""Checks run before any data is loaded, so a bad config fails in seconds, not hours (exit code 2)."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from podhl.checks import in_range, integer, one_of, require
from podhl.errors import ConfigError

PRECISIONS = ("fp32", "bf16", "fp16")
DEVICE_TYPES = ("auto", "cpu", "cuda", "cuda:<index>", "mps")
SEED_MAX = (
    2**63 - 2
)  # epoch seeds are taken modulo 2**63 - 1 (podhl.engine.seeding.epoch_seed): larger seeds would alias


def validate_config(cfg: DictConfig) -> None:
    integer("seed", cfg.seed, low=0, high=SEED_MAX)
    integer("schedule.epochs", cfg.schedule.epochs, low=1)
    integer("schedule.batch_size", cfg.schedule.batch_size, low=1)
    integer("schedule.accumulate_grad_batches", cfg.schedule.get("accumulate_grad_batches", 1), low=1)
    in_range("schedule.optimizer.lr", cfg.schedule.optimizer.lr, 0.0, low_open=True)
    if cfg.schedule.optimizer.get("weight_decay") is not None:
        in_range("schedule.optimizer.weight_decay", cfg.schedule.optimizer.weight_decay, 0.0)
    if cfg.model.get("fc1", False):
        integer("model.feat_dim", cfg.model.feat_dim, low=1)
    integer("dataset.num_classes", cfg.dataset.num_classes, low=2)
    if cfg.model.get("fc1", False) and "pedcc_method" in cfg.loss:  # the PEDCC losses (podhl/losses/pod)
        # k evenly spread unit centroids in n dimensions: the 1-D "sphere" is the two points ±1 (POD §2.1)
        k = int(cfg.dataset.num_classes)
        require(
            int(cfg.model.feat_dim) >= 2 or k <= 2,
            "model.feat_dim",
            f"at least 2 for {k} PEDCC class centroids (a 1-D latent space holds only 2; POD §3.2 suggests 2k to 40k)",
            cfg.model.feat_dim,
        )
        if cfg.loss.get("pedcc_method") == "auto" and not cfg.loss.get("pedcc_file") and int(cfg.model.feat_dim) >= 2:
            from podhl.pedcc.generate import resolve_method

            resolve_method(k, int(cfg.model.feat_dim), "auto")  # ConfigError when no construction is quick
    one_of("trainer.precision", cfg.trainer.precision, PRECISIONS)
    for key in ("stop_after", "limit_train_batches", "limit_test_batches", "checkpoint_every_n_steps"):
        if cfg.trainer.get(key) is not None:
            integer(f"trainer.{key}", cfg.trainer[key], low=1)
    integer("trainer.eval_every", cfg.trainer.eval_every, low=1)
    integer("trainer.log_every_n_steps", cfg.trainer.log_every_n_steps, low=1)
    integer("trainer.num_workers", cfg.trainer.num_workers, low=0)
    integer("trainer.train_acc_every", cfg.trainer.get("train_acc_every", 1), low=0)
    if cfg.trainer.get("num_threads") is not None:
        integer("trainer.num_threads", cfg.trainer.num_threads, low=1)
    in_range("trainer.class_sample_rate", cfg.trainer.get("class_sample_rate", 1.0), 0.0, 1.0, low_open=True)
    resolve_device(cfg.trainer.device)


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """``auto`` → cuda (``cuda:<local_rank>`` under torchrun) if present, then mps, else cpu.

    An explicit device that is unknown or unavailable here is an error naming the choices.
    """
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank) if local_rank is not None else torch.device("cuda")
        return torch.device("mps") if mps else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"trainer.device={name!r} is not a device; use one of {', '.join(DEVICE_TYPES)}") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": mps}
    if device.type not in available:
        raise ConfigError(f"trainer.device={name!r} is not supported; use one of {', '.join(DEVICE_TYPES)}")
    if not available[device.type]:
        raise ConfigError(
            f"trainer.device={name} but {device.type.upper()} is not available on this machine; "
            f"use trainer.device=auto or cpu"
        )
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"trainer.device={name} but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device
