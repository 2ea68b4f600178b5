"""The config tree (``podhl/conf``, shipped inside the package) and composing it outside the CLI.

``podhl-train`` reads the same tree through Hydra's package config path, so a wheel install works
without the source checkout. A user's own configs go in a folder of their own, added with
``--config-dir <dir>`` or ``hydra.searchpath=[file://<dir>]`` (docs/getting-started.md, "Your own configs and code").
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


def compose_run(overrides: Sequence[str] = ()) -> tuple[DictConfig, dict[str, str]]:
    """The job config (without the ``hydra`` node) and its config-group choices, as a CLI run would see them."""
    from omegaconf import OmegaConf, open_dict

    cfg = compose_config(overrides, return_hydra_config=True)
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, {k: v for k, v in choices.items() if not k.startswith("hydra")}


NAMED_GROUPS = ("task", "dataset", "backbone", "loss", "schedule", "experiment")


def canonical(value) -> str:
    """One spelling per value: '0.10', '1e-1' and 0.1 all read '0.1'; integral floats read as ints."""
    text = str(value)
    if isinstance(value, bool) or text.strip().lower() in ("true", "false"):
        return text.lower()
    try:
        number = float(text)
    except ValueError:
        return text
    if number != number or number in (float("inf"), float("-inf")):
        return text
    return str(int(number)) if number.is_integer() else repr(number)


def run_names(cfg: DictConfig, choices: dict[str, str]) -> dict[str, str | None]:
    """What ``metrics.json`` records about where a run belongs: its config-group choices and, for a
    paper table's run, the table, row and column (``table`` node of the experiment config: each of
    ``row``/``col`` a list of config groups or config paths, values joined by '/')."""
    from omegaconf import OmegaConf

    names: dict[str, str | None] = {g: choices.get(g) for g in NAMED_GROUPS}
    table = cfg.get("table")
    if table:
        def axis(keys):
            if not keys:
                return None
            parts = [choices[k] if k in choices else OmegaConf.select(cfg, k, default="—") for k in keys]
            return "/".join(canonical(p) for p in parts)

        names.update(table=str(table.name), row=axis(table.get("row")), col=axis(table.get("col")))
    return names
