"""Compose the training config outside the CLI (tests, notebooks, scripts)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from podhl.train import CONFIG_DIR


def compose_config(overrides: Sequence[str] = (), config_name: str = "train") -> DictConfig:
    """The config ``podhl-train <overrides>`` would run, without starting a job."""
    with initialize_config_dir(config_dir=str(Path(CONFIG_DIR)), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides), return_hydra_config=False)
