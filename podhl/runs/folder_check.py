"""Hydra callback: check the run (or sweep) folder before Hydra creates it, so that a folder that is a file,
lies under a file, or cannot be written stops the command with one line (exit 2) instead of a traceback."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from podhl.engine.run_folder import check_folder
from podhl.errors import ConfigError

log = logging.getLogger("podhl")


def check_output_folders(folder: str, key: str, output_dir: str | None) -> None:
    """``paths.output_dir`` first when ``folder`` lies under it (the key a user would change), then ``folder``."""
    if output_dir and Path(folder).absolute().is_relative_to(Path(output_dir).absolute()):
        check_folder(output_dir, "paths.output_dir")
    check_folder(folder, key)


class FolderCheck(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(
            config
        )  # hydra.run.dir reads ${hydra:runtime.choices...} (run_job sets it too)
        self._check(config, str(config.hydra.run.dir), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, str(config.hydra.sweep.dir), "hydra.sweep.dir")

    @staticmethod
    def _check(config: DictConfig, folder: str, key: str) -> None:
        try:
            check_output_folders(folder, key, config.get("paths", {}).get("output_dir"))
        except ConfigError as err:
            log.error("configuration error: %s", err)
            sys.exit(2)
