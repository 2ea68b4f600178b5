"""The training loop: epochs, optimizer steps, evaluation, hooks, records.

It receives the run's parts (:func:`podhl.engine.build.build_run`) and never branches on which
task, loss or backbone it runs: batches go through the task (:mod:`podhl.tasks`), loss state
through the criterion protocol (:mod:`podhl.losses.base`), files through the run records
(:mod:`podhl.engine.records`).
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from podhl import distributed as dist
from podhl.engine.build import RunParts, build_run
from podhl.engine.features import FeatureSource
from podhl.engine.loggers import build_loggers
from podhl.engine.optim import step_scheduler_epoch, step_scheduler_update
from podhl.engine.records import (
    RunRecords,
    capture_rng,
    restore_rng,
    restore_training_state,
    run_metrics,
    training_state,
)
from podhl.engine.run_folder import read_checkpoint
from podhl.engine.seeding import epoch_seed, seed_everything
from podhl.errors import ConfigError, NonFiniteLossError
from podhl.tasks.stats import EpochStats

log = logging.getLogger("podhl")


class Trainer:
    def __init__(
        self, parts: RunParts, cfg: DictConfig, records: RunRecords, names: dict[str, Any] | None = None
    ) -> None:
        self.parts, self.cfg, self.records = parts, cfg, records
        self.task, self.model, self.criterion = parts.task, parts.model, parts.criterion
        self.runtime, self.optimizers, self.schedulers, self.scaler = (
            parts.runtime,
            parts.optimizers,
            parts.schedulers,
            parts.scaler,
        )
        self.names = dict(names or {})
        self.settings = cfg.trainer
        self.seed = int(cfg.seed)
        self.epochs = int(cfg.schedule.epochs)
        self.accumulate = int(cfg.schedule.get("accumulate_grad_batches", 1))
        self.grad_clip = cfg.schedule.get("grad_clip_norm")
        self.train_acc_every = int(cfg.trainer.get("train_acc_every", 1))  # checked by validate_config
        # loss parameters the loop averages over ranks (a sharded classifier's rows differ between ranks)
        sharded = {id(p) for p in self.criterion.sharded_parameters()}
        self.averaged_loss_params = [p for p in self.criterion.parameters() if id(p) not in sharded]
        self.primary = self.task.primary_metric
        self.selection, self.lower_is_better = self.selection_metric()
        # progress, restored on resume
        self.epoch = 0  # epochs done
        self.global_step = 0
        self.history: list[dict[str, Any]] = []
        self.last_eval: dict[str, float] = {}
        self.best_value, self.best_epoch = None, None
        self.best_eval: dict[str, float] = {}  # every metric of the selected epoch's evaluation
        self.train_time = 0.0
        self.analysis: dict[str, Any] = {}
        self.in_epoch: dict[str, Any] | None = None  # an unfinished epoch restored from a mid-epoch checkpoint
        self.running = False
        self.notes: list[str] = self.warm_start_notes()

    def warm_start_notes(self) -> list[str]:
        """A warning (and a ``metrics.json`` note) when the loss never leaves its softmax warm start."""
        warm = int(getattr(self.criterion, "warm_start_epochs", 0) or 0)
        if warm == 0 or self.epochs > warm:
            return []
        setting = getattr(self.criterion, "warm_start_setting", "") or "the loss's warm start"
        note = (
            f"{setting}={warm} ≥ schedule.epochs={self.epochs}: the loss never leaves its warm start, "
            "this run is plain softmax throughout"
        )
        log.warning(note)
        return [note]

    def selection_metric(self) -> tuple[str, bool]:
        """(history column that chooses best.pt, whether lower is better) from ``trainer.select``:
        ``auto`` = the validation metric when the data has a validation split, else the test metric (the papers'
        best-over-epochs protocol); ``val``; ``test``; ``last`` (the last evaluated epoch); ``val_loss`` (lowest)."""
        select = str(self.settings.get("select", "auto"))
        split = self.task.has_validation
        choices = {
            "auto": (self.task.validation_metric if split else self.primary, False),
            "val": (self.task.validation_metric, False),
            "test": (self.primary, False),
            "last": ("epoch", False),
            "val_loss": ("val_loss", True),
        }
        if select not in choices:
            raise ConfigError(f"trainer.select must be one of {', '.join(choices)}, got {select!r}")
        if select in ("val", "val_loss") and not split:
            raise ConfigError(
                f"trainer.select={select} needs a validation split: set dataset.val_fraction > 0 (e.g. 0.1)"
            )
        return choices[select]

    @classmethod
    def from_config(cls, cfg: DictConfig, run_dir: str | Path, names: dict[str, Any] | None = None) -> Trainer:
        loggers = build_loggers(cfg.get("logger"))  # before the data: a missing package fails now, on every rank
        parts = build_run(cfg)
        return cls(parts, cfg, RunRecords(run_dir, enabled=dist.is_main(), loggers=loggers), names)

    @property
    def run_dir(self) -> Path:
        return self.records.run_dir

    @property
    def feature_source(self) -> FeatureSource:
        """What analyses read: features of a split, the criterion's predictions, the run folder."""
        return FeatureSource(
            self.task,
            self.model,
            self.criterion,
            self.run_dir,
            self.runtime.device,
            label=str(self.names.get("loss") or ""),
            epoch=self.epoch,
        )

    # ------------------------------------------------------------------ run
    def fit(self) -> dict[str, Any]:
        if self.cfg.resume:
            self.resume()
        self.records.open(OmegaConf.to_container(self.cfg, resolve=True), self.epoch, self.global_step)
        self.records.tensors(self.criterion.run_files())
        stop_after = self.settings.stop_after
        last = self.epochs if stop_after is None else min(self.epochs, self.epoch + int(stop_after))
        self.running = True
        self.records.write("metrics.json", self.metrics())
        try:
            for epoch in range(self.epoch + 1, last + 1):
                self._run_epoch(epoch)
        finally:
            self.records.close()
        self.running = False
        if self.epoch >= self.epochs:
            self.run_analyses()
        metrics = self.metrics()
        self.records.write("metrics.json", metrics)
        return metrics

    def metrics(self) -> dict[str, Any]:
        return run_metrics(self)

    def run_analyses(self) -> dict[str, Any]:
        """``cfg.analysis``: name → partial callable taking a feature source and returning numbers (analysis.json)."""
        for name, spec in (self.cfg.get("analysis") or {}).items():
            if spec is not None:
                self.analysis[name] = instantiate(spec)(self.feature_source)
                log.info("analysis %s: %s", name, self.analysis[name])
        if self.analysis:
            self.records.write("analysis.json", self.analysis)
        return self.analysis

    def _run_epoch(self, epoch: int) -> None:
        seed = epoch_seed(self.seed, epoch)  # a resumed run replays the same shuffles and augmentations
        seed_everything(seed)
        mid, self.in_epoch = self.in_epoch, None
        self.task.start_epoch(epoch, seed, mid["batches"] if mid else 0)
        self.criterion.on_epoch_start(epoch)
        stats = EpochStats(self.runtime.device)
        if mid:  # continue where the mid-epoch checkpoint stopped: loss state, random streams, statistics
            self.criterion.load_state_dict(mid["criterion"])
            self.criterion.load_epoch_progress(mid.get("criterion_progress", {}))
            restore_rng(self.task, mid["rng"])
            stats.load(mid["stats"])
        lr = mid["lr"] if mid else self.optimizers[0].param_groups[0]["lr"]  # the rate this epoch trains with
        t0 = time.perf_counter()
        train = self._train_epoch(epoch, stats, mid["batches"] if mid else 0, lr)
        if self.criterion.needs_feature_pass:
            self.criterion.feature_pass(self.task.feature_batches(self.model, "train"))  # this rank's shard
        self.criterion.on_epoch_end(epoch, {"mean_feature_norm": train["feature_norm"], "num_samples": train["n"]})
        self.train_time += time.perf_counter() - t0
        evaluated = epoch % int(self.settings.eval_every) == 0 or epoch == self.epochs
        test = self.evaluate() if evaluated else None
        for scheduler in self.schedulers:
            step_scheduler_epoch(scheduler, epoch)
        self.epoch = epoch
        self._record_epoch(epoch, lr, train, test, time.perf_counter() - t0)

    def evaluate(self) -> dict[str, float]:
        """``val_*`` (when the data has a validation split) and ``test_*`` metrics of the current model."""
        limit = self.settings.limit_test_batches
        out: dict[str, float] = {}
        if self.task.has_validation:
            out.update(self.task.evaluate(self.model, self.criterion, limit_batches=limit, split="val"))
        out.update(self.task.evaluate(self.model, self.criterion, limit_batches=limit, split="test"))
        return out

    # ------------------------------------------------------------------ training
    def _train_epoch(self, epoch: int, stats: EpochStats, done: int, lr: float) -> dict[str, float]:
        """Train the epoch's batches after the first ``done`` (> 0 only when resuming a mid-epoch checkpoint)."""
        self.model.train()
        self.criterion.train()
        first_bad = torch.full((), -1, device=self.runtime.device, dtype=torch.long)
        batches = self.task.train_batches()
        limit = self.settings.limit_train_batches
        total = done + len(batches) if limit is None else min(int(limit), done + len(batches))
        every = int(self.settings.log_every_n_steps)
        save_every = self.settings.checkpoint_every_n_steps if self.settings.save_checkpoints else None
        bar = tqdm(
            total=total,
            initial=done,
            desc=f"epoch {epoch}/{self.epochs}",
            leave=False,
            dynamic_ncols=True,
            disable=None if self.runtime.progress else True,
        )
        t_start = time.perf_counter()
        for i, batch in enumerate(batches, start=done):
            if i >= total:
                break
            batch = self.task.to_device(batch)
            step_terms: dict[str, torch.Tensor] = {}
            for step in range(self.criterion.steps_per_batch):
                features, labels, terms, finite = self._optimizer_step(batch, step)
                first_bad = torch.where((first_bad < 0) & ~finite, torch.full_like(first_bad, i + 1), first_bad)
                if step == 0:
                    stats.add_predictions(self.criterion, features, labels, score=self._scores(i, total))
                named = {(k if step == 0 or k != "loss" else f"loss_step{step}"): v for k, v in terms.items()}
                stats.add_terms(named, len(labels))
                step_terms.update(named)
            self.global_step += 1
            bar.update(1)
            if (i + 1) % every == 0 or i + 1 == total:
                self._check_finite(first_bad, epoch)
                values = {k: float(v) for k, v in step_terms.items()}
                self.records.scalars("train_step", values, self.global_step, epoch)
                seen = float(stats.counts[0]) * self.runtime.world
                bar.set_postfix(
                    loss=f"{stats.running_mean('loss'):.4f}", img_s=f"{seen / (time.perf_counter() - t_start):.0f}"
                )
            if save_every and self.global_step % int(save_every) == 0 and i + 1 < total:
                self._check_finite(first_bad, epoch)
                position = {
                    "batches": i + 1,
                    "lr": lr,
                    "rng": capture_rng(self.task),
                    "stats": stats.state(),
                    "criterion_progress": self.criterion.epoch_progress(),
                }
                self.records.checkpoint(training_state(self, in_epoch=position), best=False)
        bar.close()
        return stats.reduce()

    def _scores(self, i: int, total: int) -> bool:
        """Whether batch ``i`` is scored for the running train accuracy (``trainer.train_acc_every``: every N-th
        batch and the epoch's last; 0: never)."""
        n = self.train_acc_every
        return n > 0 and (i % n == 0 or i + 1 == total)

    def _optimizer_step(self, batch, step: int):
        """One optimizer step on a batch (``accumulate_grad_batches`` micro-batches). Returns the batch's
        detached features and labels, its loss terms (batch means, on device) and whether the loss was finite."""
        optimizer = self.optimizers[step % len(self.optimizers)]
        scheduler = self.schedulers[step % len(self.schedulers)]
        optimizer.zero_grad(set_to_none=True)
        micro = self.task.split(batch, self.accumulate) if self.accumulate > 1 else [batch]
        total = self.task.batch_size(batch)
        prepare = self.criterion.needs_prepared_batch()
        extra = {"prepared": self._prepare_whole_batch(micro, step)} if prepare and len(micro) > 1 else {}
        features, labels, terms = [], [], {}
        finite = torch.ones((), dtype=torch.bool, device=self.runtime.device)
        for j, part in enumerate(micro):
            sync = nullcontext() if j == len(micro) - 1 or self.runtime.world == 1 else self.parts.train_model.no_sync()
            with sync:
                out = self.task.forward(self.parts.train_model, part)
                if prepare and len(micro) == 1:
                    extra = {"prepared": self.criterion.prepare_batch(out.features.detach(), out.labels, step)}
                # rows per image (detection), for a criterion that asks for them (loss=hl_official_detection)
                grouped = out.groups and getattr(self.criterion, "takes_groups", False)
                groups = {"groups": out.groups} if grouped else {}
                part_terms = self.criterion(out.features, out.labels, step=step, **extra, **groups)
                if out.terms:  # the task's own losses (e.g. a detector's box regression)
                    part_terms = {**part_terms, **out.terms, "loss": part_terms["loss"] + sum(out.terms.values())}
                weight = self.task.batch_size(part) / total
                finite &= torch.isfinite(part_terms["loss"])
                self.scaler.scale(part_terms["loss"] * weight).backward()
            features.append(out.features.detach())
            labels.append(out.labels)
            for k, v in part_terms.items():
                terms[k] = terms.get(k, 0.0) + v.detach() * weight
        dist.all_reduce_mean_(
            [p.grad for p in self.averaged_loss_params if p.grad is not None]
        )  # DDP does the model's; a sharded classifier's rows are each rank's own (PartialFC)
        if self.grad_clip:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(
                [p for g in optimizer.param_groups for p in g["params"]], float(self.grad_clip)
            )
        self.scaler.step(optimizer)
        self.scaler.update()
        step_scheduler_update(scheduler, self.global_step + 1)
        features, labels = torch.cat(features), torch.cat(labels)
        with torch.no_grad():
            self.criterion.after_optimizer_step(features, labels, step, **extra)
        return features, labels, terms, finite

    @torch.no_grad()
    def _prepare_whole_batch(self, micro: list, step: int):
        """With gradient accumulation, the criterion's per-step state needs every micro-batch's features before
        the first loss: a no-grad pass in training mode that leaves buffers (BatchNorm statistics) and the
        random stream as they were, so it sees exactly the features the real pass will produce."""
        buffers = [b.clone() for b in self.model.buffers()]
        devices = [self.runtime.device] if self.runtime.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            outs = [self.task.forward(self.model, part) for part in micro]
        for buffer, saved in zip(self.model.buffers(), buffers, strict=True):
            buffer.copy_(saved)
        features = torch.cat([o.features for o in outs])
        return self.criterion.prepare_batch(features, torch.cat([o.labels for o in outs]), step)

    def _check_finite(self, first_bad: torch.Tensor, epoch: int) -> None:
        """Raise if a step since the last check had a non-finite loss (one sync; collective under DDP)."""
        local = int(first_bad.item())
        if float(dist.all_reduce_sum(torch.tensor([float(local >= 0)], device=self.runtime.device))) > 0:
            where = f"batch {local}" if local >= 0 else "a batch on another rank"
            last = self.run_dir / "last.pt"
            kept = (
                f"The last good checkpoint is {last} (epoch {self.epoch})."
                if self.epoch and last.is_file()
                else "No checkpoint was written yet (the loss failed in the first epoch)."
            )
            raise NonFiniteLossError(
                f"loss became NaN/Inf at epoch {epoch}, {where}. {kept} "
                f"Lower the learning rate or check the loss' hyperparameters."
            )

    # ------------------------------------------------------------------ records
    def _record_epoch(self, epoch: int, lr: float, train: dict, test: dict | None, seconds: float) -> None:
        row: dict[str, Any] = {"epoch": epoch, "lr": lr, "epoch_time_s": round(seconds, 3)}
        row.update({f"train_{k}": v for k, v in train.items() if k != "n"})
        row.update(test or {})
        row.update({f"loss_{k}": v for k, v in self.criterion.epoch_metrics().items()})
        self.history.append(row)
        value = None if test is None else (epoch if self.selection == "epoch" else test[self.selection])
        improved = value is not None and (
            self.best_value is None or (value < self.best_value if self.lower_is_better else value > self.best_value)
        )
        if test is not None:
            self.last_eval = dict(test)
        if improved:
            self.best_value, self.best_epoch, self.best_eval = value, epoch, dict(test)
        shown = ""
        if test is not None:
            val = self.task.validation_metric
            shown = f" | {val} {test[val]:.2f}" if val in test else ""
            shown += f" | {self.primary} {test[self.primary]:.2f}"
        train_acc = f" | train_acc {train['acc']:.2f}" if "acc" in train else ""
        log.info(
            f"epoch {epoch}/{self.epochs} | loss {train['loss']:.4f}{train_acc}{shown} | lr {lr:.4g} | {seconds:.1f}s"
        )
        self.records.epoch(row, self.global_step)
        if self.settings.save_checkpoints:
            self.records.checkpoint(self.state_dict(), best=improved)
        self.records.write("metrics.json", self.metrics())

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return training_state(self)

    def resume(self) -> None:
        """Continue from ``last.pt`` (``resume=true``: it must exist; ``resume=auto``: if it exists)."""
        last = self.run_dir / "last.pt"
        if not last.is_file():
            if self.cfg.resume == "auto":
                return
            raise ConfigError(
                f"resume=true but {self.run_dir} holds no last.pt; point hydra.run.dir at the run to continue"
            )
        restore_training_state(self, read_checkpoint(last, map_location=self.runtime.device))
        where = f" (batch {self.in_epoch['batches']} of epoch {self.epoch + 1})" if self.in_epoch else ""
        log.info("resumed %s after epoch %d/%d%s", self.run_dir, self.epoch, self.epochs, where)
