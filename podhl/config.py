"""The config tree (``podhl/conf``, shipped inside the package) and composing it outside the CLI.

``podhl-train`` reads the same tree through Hydra's package config path, so a wheel install works
without the source checkout. A user's own configs go in a folder of their own, added with
``--config-dir <dir>`` or ``hydra.searchpath=[file://<dir>]`` (docs/getting-started.md, "Your own configs and code").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from podhl import resolvers
from podhl.errors import ConfigError

CONFIG_MODULE = "podhl.conf"
CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")  # the same tree as a folder (for listing options)


def config_options(group: str) -> list[str]:
    """The options of a config group (``loss``, ``dataset``, ``experiment``...), nested ones as ``sub/name``."""
    root = Path(CONFIG_DIR) / group
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def compose_config(
    overrides: Sequence[str] = (), config_name: str = "train", return_hydra_config: bool = False
) -> DictConfig:
    """The config ``podhl-train <overrides>`` would run, without starting a job."""
    resolvers.register()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides), return_hydra_config=return_hydra_config)


def compose_run(overrides: Sequence[str] = ()) -> tuple[DictConfig, dict[str, str]]:
    """The job config (without the ``hydra`` node) and its config-group choices, as a CLI run would see them."""
    from omegaconf import OmegaConf, open_dict

    cfg = compose_config(overrides, return_hydra_config=True)
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    check_added_keys(overrides, choices, compose_config)
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


# ---------------------------------------------------------------------- typo'd `+key` overrides
_MISSING = object()
OWN_NODES = ("trainer", "schedule", "model", "dataset", "loss")  # a `+key` under these must be one podhl reads


def _added_keys(overrides: Sequence[str], choices: dict) -> list[tuple[str, str]]:
    """The ``+a.b=v`` overrides (not ``++``, not config groups such as ``+analysis=gda``) under podhl's own nodes."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    found = []
    for o in OverridesParser.create().parse_overrides(list(overrides)):
        key = o.key_or_group
        group = "/" in key or key in choices
        if o.is_add() and o.package is None and not group and key.split(".")[0] in OWN_NODES:
            found.append((o.input_line, key))
    return found


def _declared_keys() -> set[str]:
    """Every key path some config of the shipped tree declares (``dataset.standin`` by smoke=cpu,
    ``schedule.eval_batch_size`` by schedule=detection...): the keys podhl's code reads from its nodes."""
    from omegaconf import OmegaConf

    paths: set[str] = set()

    def walk(node, prefix):
        for key, value in node.items():
            if key == "defaults" and not prefix:
                continue
            path = f"{prefix}{key}"
            paths.add(path)
            if isinstance(value, dict):
                walk(value, path + ".")

    root = Path(CONFIG_DIR)
    for file in root.rglob("*.yaml"):
        rel = file.relative_to(root).parts
        if rel[0] == "hydra":
            continue
        first = file.read_text().split("\n", 1)[0]
        package = rel[0] if len(rel) > 1 else ""  # a group's option goes under the group's name
        if first.startswith("# @package"):
            package = first.split("@package", 1)[1].strip()
        package = "" if package == "_global_" else package
        walk(OmegaConf.to_container(OmegaConf.load(file)) or {}, f"{package}." if package else "")
    return paths


def _parameters(node) -> list[str] | None:
    """The keyword names a ``_target_`` node's callable takes; None when it takes any or cannot be told."""
    import inspect

    from hydra.utils import get_object

    try:
        params = inspect.signature(get_object(str(node["_target_"]))).parameters
    except Exception:  # noqa: BLE001 - an unimportable target fails later with its own message
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]


def _known_paths(schema: DictConfig, declared: set[str]) -> list[str]:
    """Key paths under podhl's nodes, to suggest from: the composed ones, the arguments of their ``_target_``
    nodes, and the paths declared anywhere in the tree under nodes that have no ``_target_``."""
    from omegaconf import OmegaConf

    paths, targets = set(), []

    def walk(node, prefix):
        if "_target_" in node:
            targets.append(prefix)
            paths.update(prefix + n for n in _parameters(node) or [])
        for key, value in node.items():
            paths.add(f"{prefix}{key}")
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")

    walk({k: OmegaConf.to_container(schema[k]) for k in OWN_NODES if OmegaConf.is_dict(schema.get(k))}, "")
    paths.update(p for p in declared if not any(p.startswith(t) for t in targets))
    return sorted(p for p in paths if p.split(".")[0] in OWN_NODES and p not in OWN_NODES and "._" not in p)


def unknown_key_error(path: str, known: list[str], choice: str | None = None) -> str:
    """'unknown key trainer.epoch (did you mean schedule.epochs?)': the known paths closest by name, then by path."""
    from difflib import SequenceMatcher

    name = path.rsplit(".", 1)[-1]
    scored = []
    for p in known:
        by_name = SequenceMatcher(None, name, p.rsplit(".", 1)[-1]).ratio()
        by_path = SequenceMatcher(None, path, p).ratio()
        if max(by_name, by_path) >= 0.75:
            scored.append((-max(by_name, by_path), -by_path, p))
    close = [p for *_, p in sorted(scored)[:3]]
    where = f" for {choice}" if choice else ""
    hint = f" (did you mean {' / '.join(close)}?)" if close else ""
    return f"unknown key {path}{where}{hint}; to add a key that code of your own reads, use ++{path}=..."


def check_added_keys(overrides: Sequence[str], choices: dict, compose_without) -> None:
    """Refuse ``+key=value`` overrides that add a key podhl never reads to its own nodes (``+trainer.epoch=3``
    would be accepted by Hydra and ignored). ``compose_without(overrides)`` composes the config the other
    overrides give: the schema. A key is known when that config has a ``_target_`` node taking it as an
    argument, an empty or null node to fill, or when some config of the shipped tree declares it. Config
    groups (``+analysis=gda``), keys of a user's own nodes and ``++key=value`` pass unchecked.
    Costs one more composition, only when such an override is given."""
    from omegaconf import OmegaConf

    added = _added_keys(overrides, choices)
    if not added:
        return
    lines = {line for line, _ in added}
    try:
        schema = compose_without([o for o in overrides if o not in lines])
    except Exception:  # noqa: BLE001 - another override needs the added key (+a.b=1 a.b=2): nothing to compare with
        return
    declared = _declared_keys()
    for _, path in added:
        parts = path.split(".")
        depth = 1
        while (
            depth < len(parts)
            and OmegaConf.select(
                schema, ".".join(parts[: depth + 1]), default=_MISSING, throw_on_resolution_failure=False
            )
            is not _MISSING
        ):
            depth += 1
        node = OmegaConf.select(schema, ".".join(parts[:depth]))
        if not OmegaConf.is_dict(node) or len(node) == 0:
            continue  # a null or empty node is there to be filled (trainer.gpu_pool, analysis)
        if "_target_" in node:
            params = _parameters(node)
            if params is None or parts[depth] in params or parts[depth].startswith("_"):  # _partial_, _args_...
                continue
        elif path in declared:
            continue
        top = parts[0]
        raise ConfigError(
            unknown_key_error(path, _known_paths(schema, declared), f"{top}={choices[top]}" if top in choices else None)
        )
