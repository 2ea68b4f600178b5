"""``podhl-train``: the Hydra entry point (configs in ``podhl/conf``, shipped inside the package).

Failure behaviour (docs/failures.md): a single run exits 2 on a configuration or data
problem found before training, 3 on a non-finite loss, 130 on Ctrl-C, 1 on a full disk (one line) or
anything unexpected (the traceback);
each is recorded in ``<run dir>/metrics.json`` (``status``, ``error``) when the run folder is its
own. In a multirun every job runs; a failed job is recorded the same way and the sweep exits 1 at
the end (``podhl.runs.summary``).
"""

from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning: on a CPU node shared with other jobs, spinning threads
# steal the cores the work needs (docs/scale-and-speed.md: shared CPU machines).
# Export OMP_WAIT_POLICY=ACTIVE to change it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import logging  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
from pathlib import Path

import hydra  # noqa: E402
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from podhl import resolvers
from podhl.errors import ConfigError, DatasetNotFoundError, DiskFullError, NonFiniteLossError

resolvers.register()
log = logging.getLogger("podhl")
EXIT_CONFIG, EXIT_NONFINITE, EXIT_INTERRUPTED = 2, 3, 130


def run(cfg: DictConfig, run_dir: str | Path, choices: dict[str, str]) -> dict:
    """Train one configuration; returns the final metrics (also in ``<run dir>/metrics.json``)."""
    from podhl.config import run_names
    from podhl.engine.trainer import Trainer

    names = run_names(cfg, choices)
    if cfg.trainer.get("gpu_slot") is not None:
        names["gpu_slot"] = cfg.trainer.gpu_slot
    trainer = Trainer.from_config(cfg, run_dir, names)
    if trainer.parts.init_report is not None:  # model.init_from: what was loaded and what not
        trainer.records.write("init_from.json", trainer.parts.init_report)
    log.info(
        "run dir %s | %s with %s, %s | feat_dim %d | device %s",
        run_dir,
        names["backbone"],
        names["loss"],
        trainer.task.describe(),
        trainer.model.feat_dim,
        trainer.runtime.device,
    )
    metrics = trainer.fit()
    primary = metrics["primary_metric"]
    log.info(
        "%s %s | at the epoch chosen by %s (%s): %s | %s/metrics.json",
        primary,
        metrics.get(primary),
        metrics["selected_by"],
        metrics["best_epoch"],
        metrics.get(f"best_{primary}"),
        run_dir,
    )
    return metrics


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


def _user_error(err: BaseException) -> BaseException | None:
    """The error to show a user for a bad config: ours anywhere in the cause chain, or a failed instantiation."""
    seen = err
    while seen is not None:
        if isinstance(seen, (ConfigError, DatasetNotFoundError)):
            return seen
        seen = seen.__cause__ or seen.__context__
    return err if isinstance(err, InstantiationException) else None


def _save_hydra_record(run_dir: Path, cfg: DictConfig, hc) -> None:
    """``<run dir>/.hydra/{config,overrides,hydra}.yaml`` as Hydra writes them (it is told not to: see train.yaml)."""
    folder = run_dir / ".hydra"
    folder.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, folder / "config.yaml")
    OmegaConf.save(OmegaConf.create(OmegaConf.to_container(hc.overrides.task)), folder / "overrides.yaml")
    OmegaConf.save(OmegaConf.create({"hydra": OmegaConf.to_container(hc)}), folder / "hydra.yaml")


def _record(run_dir: Path, status: str, error: str, code: int) -> None:
    """The outcome in ``metrics.json``, if it can be written (not on a full disk: then the log says so)."""
    from podhl.engine.records import mark_run

    try:
        mark_run(run_dir, status=status, error=error, exit_code=code)
    except OSError as err:
        log.error("could not record status %s in %s/metrics.json: %s", status, run_dir, err)


def _command(hc, run_dir: Path, *extra: str) -> str:
    """The command that continues this run: its own overrides (as Hydra recorded them) in its folder."""
    kept = [o for o in hc.overrides.task if o.split("=", 1)[0].lstrip("+~") not in ("resume", "overwrite")]
    return " ".join(["podhl-train", *map(shlex.quote, [*kept, f"hydra.run.dir={run_dir}", *extra])])


def _last_checkpoint(run_dir: Path, names: tuple[str, ...] = ("last.pt",)) -> str | None:
    """The first readable checkpoint of ``names`` in the run folder, described (``<path> (epoch N)``)."""
    from podhl.engine.run_folder import describe_checkpoint

    return next(filter(None, (describe_checkpoint(run_dir / name) for name in names)), None)


def _warn_if_search_on_test(cfg: DictConfig, hc) -> None:
    """An Optuna search without a validation split optimizes a test number (docs/tuning.md): say so."""
    if "optuna" in str(hc.sweeper.get("_target_") or "").lower() and not cfg.dataset.get("val_fraction"):
        log.warning(
            "hyperparameter search with dataset.val_fraction=%s: no validation split, so the objective returned "
            "to the sweeper is a TEST metric; set dataset.val_fraction=0.1 (docs/tuning.md)",
            cfg.dataset.get("val_fraction"),
        )


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from podhl.config import check_added_keys
    from podhl.engine.run_folder import RunFolder

    hc = HydraConfig.get()
    run_dir, choices = Path(hc.runtime.output_dir), dict(hc.runtime.choices)
    multirun = hc.mode == RunMode.MULTIRUN
    main_rank = int(os.environ.get("RANK", "0")) == 0
    folder, claimed, handler = RunFolder(run_dir), False, None
    try:
        check_added_keys(
            list(hc.overrides.task),
            choices,
            lambda kept: (
                GlobalHydra.instance().config_loader().load_configuration(hc.job.config_name, kept, RunMode.RUN)
            ),
        )
        if main_rank:
            resume = cfg.resume if cfg.resume in (True, False) else str(cfg.resume)
            folder.claim(resume, bool(cfg.overwrite), OmegaConf.to_container(cfg, resolve=True))
            claimed = True
            _save_hydra_record(run_dir, cfg, hc)
            handler = logging.FileHandler(run_dir / f"{hc.job.name}.log")
            handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
            logging.getLogger().addHandler(handler)
        else:
            logging.getLogger("podhl").setLevel(logging.WARNING)  # ranks > 0 share rank 0's folder: console only
        if multirun:
            _warn_if_search_on_test(cfg, hc)
        metrics = run_in_pool(cfg, run_dir, choices) if cfg.trainer.get("gpu_pool") else run(cfg, run_dir, choices)
        return metrics.get("objective")  # for Hydra sweepers (e.g. Optuna): validation metric when there is a split
    except KeyboardInterrupt:
        last = _last_checkpoint(run_dir) if claimed else None
        if last:
            log.error("interrupted. %s is kept; continue with: %s", last, _command(hc, run_dir, "resume=true"))
        elif claimed:  # a fresh start: the folder is reusable unless finished epochs are recorded
            again = ("overwrite=true",) if (run_dir / "history.csv").is_file() else ()
            log.error(
                "interrupted; no last.pt was written, so there is nothing to resume. Start again with: %s",
                _command(hc, run_dir, *again),
            )
        else:
            log.error("interrupted before the run started")
        if claimed:
            _record(
                run_dir, "interrupted", f"interrupted (Ctrl-C); {last or 'no last.pt was written'}", EXIT_INTERRUPTED
            )
        sys.exit(EXIT_INTERRUPTED)
    except Exception as err:  # noqa: BLE001 - recorded, then reported as the exit code says
        shown = _user_error(err)
        if isinstance(err, NonFiniteLossError):
            code, text = EXIT_NONFINITE, f"training stopped: {err}"
        elif isinstance(err, DiskFullError):
            if handler is not None:  # train.log lives on the full disk too
                logging.getLogger().removeHandler(handler)
            last = _last_checkpoint(run_dir, ("last.pt", "best.pt")) if claimed else None
            code, text = (
                1,
                f"{err}; the last good checkpoint is {last}" if last else f"{err}; no checkpoint was written yet",
            )
        elif shown is not None:
            kind = "data error" if isinstance(shown, DatasetNotFoundError) else "configuration error"
            code, text = EXIT_CONFIG, f"{kind}: {shown}"
        else:
            code, text = 1, f"failed: {type(err).__name__}: {err}"
        log.error(text, exc_info=code == 1 and not isinstance(err, DiskFullError))
        if claimed:
            _record(run_dir, "failed", text, code)
        if multirun:
            return None  # the sweep goes on; the summary reports the job and the sweep exits 1
        sys.exit(code)
    finally:
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            try:
                handler.close()
            except OSError:  # a full disk: the log's last lines are lost, the console has them
                pass
        folder.release()


if __name__ == "__main__":
    main()
