"""The config tree (``podhl/conf``, shipped inside the package) and composing it outside the CLI.

``podhl-train`` reads the same tree through Hydra's package config path, so a wheel install works
without the source checkout. A user's own configs go in a folder of their own, added with
``--config-dir <dir>`` or ``hydra.searchpath=[file://<dir>]`` (README: "Your own configs and code").
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from podhl import resolvers

CONFIG_MODULE = "podhl.conf"
CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")  # the same tree as a folder (for listing options)


def config_options(group: str) -> list[str]:
    """The options of a config group (``loss``, ``dataset``, ``experiment``...), nested ones as ``sub/name``."""
    root = Path(CONFIG_DIR) / group
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def compose_config(overrides: Sequence[str] = (), config_name: str = "train",
                   return_hydra_config: bool = False) -> DictConfig:
    """The config ``podhl-train <overrides>`` would run, without starting a job."""
    resolvers.register()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides), return_hydra_config=return_hydra_config)
