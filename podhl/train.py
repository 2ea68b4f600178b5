"""``podhl-train``: the Hydra entry point (configs in ``podhl/conf``, shipped inside the package)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf import DictConfig, open_dict

from podhl import resolvers
from podhl.errors import ConfigError, DatasetNotFoundError, NonFiniteLossError

resolvers.register()
log = logging.getLogger("podhl")


def run(cfg: DictConfig, run_dir: str | Path, choices: dict[str, str]) -> dict:
    """Train one configuration; returns the final metrics (also in ``<run dir>/metrics.json``)."""
    from podhl.config import run_names
    from podhl.distributed import env_world_size
    from podhl.engine.trainer import Trainer

    if env_world_size() > 1 and int(os.environ.get("RANK", "0")) > 0:
        _quiet_non_main_rank()
    names = run_names(cfg, choices)
    if cfg.trainer.get("gpu_slot") is not None:
        names["gpu_slot"] = cfg.trainer.gpu_slot
    trainer = Trainer.from_config(cfg, run_dir, names)
    log.info("run dir %s | %s with %s, %s | feat_dim %d | device %s", run_dir, names["backbone"], names["loss"],
             trainer.task.describe(), trainer.model.feat_dim, trainer.runtime.device)
    metrics = trainer.fit()
    primary = metrics["primary_metric"]
    log.info("%s %s | best %s (epoch %s) | %s/metrics.json", primary, metrics.get(primary),
             metrics.get(f"best_{primary}"), metrics["best_epoch"], run_dir)
    return metrics


def _quiet_non_main_rank() -> None:
    """Ranks > 0 share rank 0's run directory: they log warnings to the console only, no train.log."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
    logging.getLogger("podhl").setLevel(logging.WARNING)


def _user_error(err: BaseException) -> BaseException | None:
    """The error to show a user for a bad config: ours anywhere in the cause chain, or a failed instantiation."""
    seen = err
    while seen is not None:
        if isinstance(seen, (ConfigError, DatasetNotFoundError)):
            return seen
        seen = seen.__cause__
    return err if isinstance(err, InstantiationException) else None


def run_in_pool(cfg: DictConfig, run_dir: str, choices: dict[str, str]) -> dict:
    """Run with ``trainer.gpu_pool``: hold a free device of the pool for the whole job."""
    from podhl.engine.gpu_pool import gpu_slot

    pool = cfg.trainer.gpu_pool
    with gpu_slot(list(pool.devices), pool.lock_dir, timeout_s=pool.get("timeout_s")) as device:
        with open_dict(cfg):
            cfg.trainer.device = f"cuda:{device}" if pool.get("device_type", "cuda") == "cuda" else cfg.trainer.device
            cfg.trainer.gpu_slot = device
        log.info("gpu pool: this job holds device %s", device)
        return run(cfg, run_dir, choices)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    hc = HydraConfig.get()
    run_dir, choices = hc.runtime.output_dir, dict(hc.runtime.choices)
    try:
        metrics = run_in_pool(cfg, run_dir, choices) if cfg.trainer.get("gpu_pool") else run(cfg, run_dir, choices)
    except NonFiniteLossError as err:
        log.error("training stopped: %s", err)
        sys.exit(3)
    except Exception as err:  # noqa: BLE001 - config errors get a clean message, the rest a traceback
        shown = _user_error(err)
        if shown is None:
            raise
        log.error("configuration error: %s", shown)
        sys.exit(2)
    return metrics.get(metrics["primary_metric"])  # the objective for Hydra sweepers (e.g. Optuna)


if __name__ == "__main__":
    main()
