"""``podhl-eval RUN_DIR_OR_CHECKPOINT [overrides...]``: evaluate a trained model without training.

The run's own composed config (``<run>/.hydra/config.yaml``, else the checkpoint's) is rebuilt through the
training build step (:func:`podhl.engine.build.build_run`), the checkpoint's model and criterion state are
loaded onto the current device (a GPU-trained model evaluates on a CPU), and ``task.evaluate`` scores it:
on the run's test split, or on whatever the overrides name (Hydra syntax):

* config groups (``dataset=digits_open``, ``task=verification``, ``+metrics=retrieval``) re-compose the config
  from the run's recorded overrides (``<run>/.hydra/overrides.yaml``) plus the new ones; the model-defining
  nodes (``backbone``, ``model``, ``loss``) stay the run's, so the checkpoint fits (``loss=...`` is refused);
* plain keys (``dataset.root=...``, ``task.eval_sets=[lfw]``) are applied to the run's config as it is;
* podhl-eval's own: ``checkpoint=best|last|<path>`` (default best), ``export=true`` (or ``--export``),
  ``eval.name=<name>`` (default: the dataset's name), ``eval.analysis=false`` (skip the config's analyses),
  ``eval.split=val`` (a validation split, where the task evaluates one; default test).

Results: ``<run>/eval/<name>/metrics.json`` (and with export: ``embeddings.npz``, ``pairs_<set>.npz``,
``detections.json`` + ``ground_truth.json``); training records are never written. Exit codes as podhl-train:
2 for a configuration or data problem (one line), 130 on Ctrl-C, 1 otherwise.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as podhl-train (podhl/train.py)

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from omegaconf import DictConfig, OmegaConf, open_dict  # noqa: E402

from podhl import resolvers  # noqa: E402
from podhl.errors import ConfigError, DatasetNotFoundError  # noqa: E402

log = logging.getLogger("podhl")
EXIT_CONFIG, EXIT_INTERRUPTED = 2, 130
OWN_KEYS = ("checkpoint", "export", "eval.name", "eval.analysis", "eval.split")  # podhl-eval's options, not config keys
PINNED = ("backbone", "model", "loss")  # what the checkpoint's tensors were made for: always the run's


# ---------------------------------------------------------------------- the run and its config
def find_run(target: str | Path) -> tuple[Path, Path | None]:
    """(run folder, checkpoint file named on the command line or None)."""
    path = Path(target).expanduser()
    if path.is_dir():
        return path, None
    if path.is_file():
        return path.parent, path
    raise ConfigError(f"{path}: no such run folder or checkpoint")


def choose_checkpoint(run_dir: Path, given: Path | None, choice: str | None) -> Path:
    """``checkpoint=best|last|<path>`` (default: the file named on the command line, else best.pt)."""
    if choice in (None, ""):
        if given is not None:
            return given
        choice = "best"
    if choice in ("best", "last"):
        path = run_dir / f"{choice}.pt"
        if not path.is_file():
            other = run_dir / ("last.pt" if choice == "best" else "best.pt")
            hint = f" ({other.name} is there: checkpoint={other.stem})" if other.is_file() else ""
            raise ConfigError(
                f"{run_dir} holds no {path.name}{hint}; was the run trained with trainer.save_checkpoints=false?"
            )
        return path
    path = Path(choice).expanduser()
    if not path.is_file():
        raise ConfigError(f"checkpoint={choice}: no such file")
    return path


def split_overrides(overrides: list[str]) -> tuple[dict[str, str], list[str]]:
    """(podhl-eval's own options, the config overrides)."""
    own, rest = {}, []
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and key.lstrip("+") in OWN_KEYS:
            own[key.lstrip("+")] = value
        else:
            rest.append(item)
    return own, rest


def _parse(overrides: list[str]):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(list(overrides))


def _is_group(key: str) -> bool:
    from podhl.config import CONFIG_DIR

    return "/" in key or (Path(CONFIG_DIR) / key).is_dir()


def _resolved(node: Any) -> Any:
    """A config node with its interpolations resolved (kept as it is where a resolver is unavailable)."""
    if not isinstance(node, DictConfig):
        return node
    try:
        return OmegaConf.create(OmegaConf.to_container(node, resolve=True))
    except Exception:  # noqa: BLE001 - e.g. ${hydra:...} outside a Hydra job
        return node


def run_config(run_dir: Path, checkpoint: Path) -> tuple[DictConfig, list[str]]:
    """The run's composed config and recorded overrides (the checkpoint's config when ``.hydra`` is missing)."""
    record = run_dir / ".hydra"
    if (record / "config.yaml").is_file():
        cfg = OmegaConf.load(record / "config.yaml")
        overrides = OmegaConf.load(record / "overrides.yaml") if (record / "overrides.yaml").is_file() else []
        return cfg, [str(o) for o in overrides]
    from podhl.engine.run_folder import read_checkpoint

    saved = read_checkpoint(checkpoint, mmap=True).get("config")
    if not saved:
        raise ConfigError(f"{run_dir} has no .hydra/config.yaml and {checkpoint} records no config")
    return OmegaConf.create(saved), []


def eval_config(run_cfg: DictConfig, run_overrides: list[str], overrides: list[str]) -> DictConfig:
    """The config to evaluate with: the run's, changed by ``overrides`` (see the module docstring)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    from podhl.config import CONFIG_DIR, check_added_keys, compose_config

    parsed = _parse(overrides)
    groups = [o.key_or_group for o in parsed if _is_group(o.key_or_group)]
    # a typo'd +key under podhl's own nodes (+trainer.limit_test_batch=1) is refused, as in podhl-train
    check_added_keys(list(overrides), {p.name: None for p in Path(CONFIG_DIR).iterdir() if p.is_dir()}, compose_config)
    pinned = [g for g in groups if g.split("/")[0] in PINNED]
    if pinned:
        raise ConfigError(
            f"podhl-eval keeps the run's {', '.join(PINNED)} (the checkpoint was trained with them): "
            f"drop {', '.join(pinned)}=... or train a new run"
        )
    if groups:
        new_keys = {o.key_or_group for o in parsed}
        kept = []
        for o in _parse(run_overrides):
            key = o.key_or_group
            replaced = key in new_keys or any(key.startswith(f"{g}.") for g in groups)
            if not replaced and not key.startswith("hydra.") and key not in ("resume", "overwrite"):
                kept.append(o.input_line)
        cfg = compose_config([*kept, *overrides])
        with open_dict(cfg):
            for key in PINNED:
                if key in run_cfg:
                    cfg[key] = _resolved(run_cfg[key])
    else:
        cfg = run_cfg.copy()
        OmegaConf.set_struct(cfg, True)  # a typo'd key is an error (add one with +key=...), as in podhl-train
        ConfigLoaderImpl._apply_overrides_to_config(parsed, cfg)
        OmegaConf.set_struct(cfg, False)
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return cfg


def prepare(cfg: DictConfig, overrides: list[str]) -> None:
    """Evaluation settings on top of the run's: no model.init_from (the checkpoint is loaded instead), no
    compile, no GPU pool, checkpoints never written; ``trainer.device=auto`` unless the run used the CPU or
    the command line names a device (a GPU-trained model evaluates wherever it is run)."""
    named = {o.key_or_group for o in _parse(overrides)}
    with open_dict(cfg):
        if "model" in cfg:
            cfg.model.init_from = None
        cfg.trainer.compile = False
        cfg.trainer.gpu_pool = None
        cfg.trainer.save_checkpoints = False
        if "trainer.device" not in named and str(cfg.trainer.get("device", "auto")) != "cpu":
            cfg.trainer.device = "auto"


# ---------------------------------------------------------------------- the model
def load_state(parts, state: dict[str, Any]) -> bool:
    """Load the checkpoint's model (must fit) and criterion state; False when the criterion does not fit
    (another dataset's classes: a verification task then reports its pair metrics only)."""
    try:
        parts.model.load_state_dict(state["model"])
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise ConfigError(
            f"the checkpoint's model does not fit the model built for this evaluation ({first[-1].strip()}); "
            "the dataset must give the same image channels and size"
        ) from None
    try:
        parts.criterion.load_state_dict(state["criterion"])
        return True
    except RuntimeError as err:
        from podhl.tasks.verification import VerificationTask

        if isinstance(parts.task, VerificationTask):
            log.warning(
                "the checkpoint's criterion does not fit this dataset's %d classes: classification metrics "
                "(test_*) are left out, the verification sets are scored",
                parts.task.num_classes,
            )
            return False
        raise ConfigError(
            f"the checkpoint's criterion does not fit this dataset's {parts.task.num_classes} classes "
            f"({str(err).strip().splitlines()[-1].strip()}); classification needs the training classes "
            "(task=verification scores pair sets with any classes)"
        ) from None


def evaluate(parts, cfg: DictConfig, criterion_loaded: bool, split: str = "test") -> dict[str, float]:
    """``task.evaluate`` as training's last evaluation runs it (same limit of test batches). ``split``: "test",
    or "val" where the task evaluates a validation split. Without the criterion's state (a verification task
    on other classes) the classification metrics of the split are left out: the criterion never saw those
    classes."""
    import inspect

    task = parts.task
    kwargs: dict[str, Any] = {"limit_batches": cfg.trainer.get("limit_test_batches")}
    if split != "test":
        if "split" not in inspect.signature(task.evaluate).parameters:
            raise ConfigError(
                f"eval.split={split}: this version of {type(task).__name__} evaluates the test split only"
            )
        kwargs["split"] = split
    out = task.evaluate(parts.model, parts.criterion, **kwargs)
    if not criterion_loaded:
        out = {k: v for k, v in out.items() if not k.startswith(("test_", "val_"))}
    return out


# ---------------------------------------------------------------------- output
def eval_name(cfg: DictConfig, given: str | None) -> str:
    name = given or str(cfg.dataset.get("name") or "eval")
    if not name or "/" in name or name in (".", ".."):
        raise ConfigError(f"eval.name={name!r}: use a plain folder name")
    return name


def table(metrics: dict[str, Any], reference: dict[str, Any] | None, epoch: int) -> str:
    """One table: metric, value, and the run's own value of the metric at the checkpoint's epoch when the
    evaluation used the run's data (``metrics.json``: the last epoch's ``<m>``, the selected epoch's ``best_<m>``)."""
    rows = [(k, v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    prefix = None
    if reference:
        if epoch == reference.get("epochs"):
            prefix = ""
        elif epoch == reference.get("best_epoch"):
            prefix = "best_"
    head = ["metric", "value"] + ([f"run (epoch {epoch})"] if prefix is not None else [])
    lines = []
    for key, value in rows:
        line = [key, f"{value:.4f}"]
        if prefix is not None:
            ref = reference.get(f"{prefix}{key}")
            line.append(f"{ref:.4f}" if isinstance(ref, (int, float)) and not isinstance(ref, bool) else "")
        lines.append(line)
    widths = [max(len(r[i]) for r in [head, *lines]) for i in range(len(head))]
    fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths)), *(fmt.format(*r) for r in lines)])


def run_eval(target: str, overrides: list[str], export: bool = False) -> dict[str, Any]:
    """Evaluate; returns what ``eval/<name>/metrics.json`` holds."""
    from hydra.utils import instantiate

    from podhl.engine.build import build_run
    from podhl.engine.features import FeatureSource
    from podhl.engine.records import finite_or_none, write_json
    from podhl.engine.run_folder import read_checkpoint

    own, overrides = split_overrides(list(overrides))
    export = export or str(own.get("export", "false")).lower() == "true"
    run_dir, given = find_run(target)
    checkpoint = choose_checkpoint(run_dir, given, own.get("checkpoint"))
    run_cfg, run_overrides = run_config(run_dir, checkpoint)
    cfg = eval_config(run_cfg, run_overrides, overrides)
    prepare(cfg, overrides)
    name = eval_name(cfg, own.get("eval.name"))
    out_dir = run_dir / "eval" / name

    t0 = time.perf_counter()
    parts = build_run(cfg)
    state = read_checkpoint(checkpoint, map_location=parts.runtime.device)
    criterion_loaded = load_state(parts, state)
    log.info(
        "evaluating %s (epoch %s) on %s | device %s",
        checkpoint,
        state["epoch"],
        parts.task.describe(),
        parts.runtime.device,
    )
    split = str(own.get("eval.split") or "test")
    metrics = evaluate(parts, cfg, criterion_loaded, split)
    analysis = {}
    if str(own.get("eval.analysis", "true")).lower() != "false":
        source = FeatureSource(
            parts.task,
            parts.model,
            parts.criterion,
            out_dir,
            parts.runtime.device,
            label=str(cfg.loss.get("name") or ""),
            epoch=int(state["epoch"]),
        )
        for key, spec in (cfg.get("analysis") or {}).items():
            if spec is not None:
                analysis[key] = instantiate(spec)(source)
                log.info("analysis %s: %s", key, analysis[key])
    files = {}
    if export:
        from podhl.engine.export import export_outputs

        files = export_outputs(parts, cfg, out_dir, criterion_loaded, split)
    retrieval = analysis.get("retrieval") or {}
    shown = {**metrics, **{f"retrieval_{k}": v for k, v in retrieval.items() if k in RETRIEVAL_KEYS}}
    record = finite_or_none(
        {
            **shown,
            "primary_metric": parts.task.primary_metric,
            "analysis": analysis or None,
            "checkpoint": str(checkpoint),
            "checkpoint_epoch": int(state["epoch"]),
            "split": split,
            "run_dir": str(run_dir),
            "dataset": str(cfg.dataset.get("name")),
            "task": type(parts.task).__name__,
            "criterion_loaded": criterion_loaded,
            "overrides": overrides,
            "device": str(parts.runtime.device),
            "eval_time_s": round(time.perf_counter() - t0, 3),
            "exported": sorted(files),
        }
    )
    write_json(record, out_dir / "metrics.json")
    reference = None
    run_metrics = run_dir / "metrics.json"
    if run_metrics.is_file() and str(run_cfg.dataset.get("name")) == record["dataset"]:
        try:
            reference = json.loads(run_metrics.read_text())
        except (OSError, json.JSONDecodeError):
            reference = None
    if reference and isinstance((reference.get("analysis") or {}).get("retrieval"), dict):
        reference.update({f"retrieval_{k}": v for k, v in reference["analysis"]["retrieval"].items()})
    print(table(shown, reference, int(state["epoch"])))
    print(f"{out_dir / 'metrics.json'}")
    return record


RETRIEVAL_KEYS = ("precision_at_1", "r_precision", "mean_average_precision_at_r")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="podhl-eval",
        description="Evaluate a trained run's checkpoint on its test split or on other data (Hydra-style "
        "overrides: group=option, key=value, +metrics=retrieval; podhl-eval's own: checkpoint=best|last|<path>, "
        "eval.name=<folder>, eval.analysis=false). Writes <run>/eval/<name>/metrics.json and prints one table.",
        epilog="Examples: podhl-eval outputs/runs/X | podhl-eval outputs/runs/X checkpoint=last dataset=digits_open "
        "task=verification | podhl-eval outputs/runs/X --export +metrics=retrieval. Docs: docs/after-training.md",
    )
    parser.add_argument("run", help="a run folder (its best.pt unless checkpoint=last|<path>) or a checkpoint file")
    parser.add_argument("overrides", nargs="*", help="config overrides and podhl-eval's own key=value options")
    parser.add_argument(
        "--export",
        action="store_true",
        help="also write embeddings (.npz), pair scores (pairs_<set>.npz) or detections (COCO JSON); = export=true",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    export = "--export" in argv  # anywhere on the line (argparse stops taking positionals after an option)
    args = parser.parse_args([a for a in argv if a != "--export"])
    resolvers.register()
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    from podhl.train import _user_error

    try:
        run_eval(args.run, args.overrides, export=export or args.export)
        return 0
    except KeyboardInterrupt:
        log.error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 - reported as the exit code says
        shown = _user_error(err) or _hydra_error(err)
        if shown is None:
            log.error("failed: %s: %s", type(err).__name__, err, exc_info=True)
            return 1
        kind = "data error" if isinstance(shown, DatasetNotFoundError) else "configuration error"
        log.error("%s: %s", kind, one_line(shown))
        return EXIT_CONFIG


def one_line(err: BaseException) -> str:
    """The error on one line: Hydra's "Could not find 'dataset/x'" keeps its first line and the options it lists."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    if len(lines) > 1 and lines[1].startswith("Available options"):
        options = [line for line in lines[2:] if not line.startswith(("Config search path", "provider="))]
        return f"{lines[0]} (options: {', '.join(options)})"
    return " ".join(lines)


def _hydra_error(err: BaseException) -> BaseException | None:
    """Bad overrides (unknown group option, unknown key, a parse error) are configuration errors too."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    return err if isinstance(err, (HydraException, OmegaConfBaseException, ConfigError)) else None


def cli() -> None:
    sys.exit(main())


if __name__ == "__main__":
    cli()
