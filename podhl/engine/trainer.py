"""The one trainer: data → model → criterion → optimizer, epochs of train/evaluate, logs, checkpoints.

It never branches on which loss or backbone it runs; everything loss-specific goes through the
criterion protocol (``podhl/losses/base.py``).
"""

from __future__ import annotations

import logging
import math
import random
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from podhl.data import build_data, build_loaders
from podhl.data.bundle import eval_loader
from podhl.data.samplers import ShardSampler
from podhl.data.gpu_loader import GpuResidentLoader
from podhl import distributed as dist
from podhl.engine.checkpoint import load_checkpoint, save_checkpoint, write_json
from podhl.engine.optim import (
    build_optimizer,
    build_scheduler,
    param_groups,
    step_scheduler_epoch,
    step_scheduler_update,
)
from podhl.engine.run_log import RunLog
from podhl.engine.seeding import epoch_seed, seed_everything, set_deterministic
from podhl.engine.validate import resolve_device, validate_config
from podhl.errors import ConfigError, NonFiniteLossError
from podhl.losses.base import Criterion
from podhl.models import build_model

log = logging.getLogger("podhl")

_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# Parts of the config that define the experiment: a resumed run must match them.
_IDENTITY_KEYS = ("dataset", "backbone", "loss", "model", "schedule", "seed")


class Trainer:
    def __init__(self, cfg: DictConfig, run_dir: str | Path, names: dict[str, str] | None = None) -> None:
        validate_config(cfg)
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.names = names or {}
        tcfg = cfg.trainer
        dist.init_from_env(tcfg.ddp_backend)
        self.rank, self.world = dist.rank(), dist.world_size()
        self.device = resolve_device(tcfg.device, dist.local_rank() if self.world > 1 else None)
        self.seed = int(cfg.seed)
        set_deterministic(bool(tcfg.deterministic))
        seed_everything(self.seed)

        self.accumulate = int(cfg.schedule.get("accumulate_grad_batches", 1))
        self.global_batch = int(cfg.schedule.batch_size)
        if self.global_batch % (self.world * self.accumulate):
            raise ConfigError(
                f"schedule.batch_size={self.global_batch} (the global batch) must be divisible by "
                f"world size {self.world} × schedule.accumulate_grad_batches {self.accumulate}"
            )
        self.data = build_data(cfg.dataset)
        self._build_loaders()
        self.model = build_model(cfg.backbone, cfg.model, self.data.in_chans, self.data.image_size)
        self.criterion: Criterion = instantiate(
            cfg.loss, num_classes=self.data.num_classes, feat_dim=self.model.feat_dim
        )
        if not isinstance(self.criterion, Criterion):
            raise ConfigError(f"loss._target_ must build a podhl Criterion, got {type(self.criterion).__name__}")
        if self.world > 1 and tcfg.sync_bn:
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.model.to(self.device)
        self.criterion.to(self.device)
        dist.broadcast_(list(self.criterion.parameters()) + list(self.criterion.buffers()))
        self.channels_last = bool(tcfg.channels_last)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.ddp_model = self.model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_model = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.forward_model = torch.compile(self.ddp_model) if tcfg.compile else self.ddp_model

        n_opt = self.criterion.steps_per_batch if self.criterion.separate_step_optimizers else 1
        groups = param_groups(self.model, self.criterion)
        self.optimizers = [build_optimizer(cfg.schedule, groups) for _ in range(n_opt)]
        self.schedulers = [build_scheduler(cfg.schedule, opt) for opt in self.optimizers]
        self.amp_dtype = _AMP_DTYPES.get(tcfg.precision)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=tcfg.precision == "fp16")
        self.grad_clip = cfg.schedule.get("grad_clip_norm")

        self.epochs = int(cfg.schedule.epochs)
        self.start_epoch = 0  # epochs already done
        self.global_step = 0
        self.history: list[dict[str, Any]] = []
        self.best_acc, self.best_epoch = -1.0, 0
        self.train_time = 0.0
        self.analysis: dict[str, Any] = {}
        self.num_params = sum(p.numel() for p in self.model.parameters())
        self.log = RunLog(self.run_dir, enabled=dist.is_main())

    def _build_loaders(self) -> None:
        tcfg = self.cfg.trainer
        per_rank = self.global_batch // self.world
        eval_bs = self.cfg.schedule.get("eval_batch_size") or per_rank
        pin = tcfg.pin_memory if tcfg.pin_memory != "auto" else self.device.type == "cuda"
        self.train_loader, self.test_loader, self._loader_gen = build_loaders(
            self.data, per_rank, int(tcfg.num_workers), self.seed, self.rank, self.world,
            pin_memory=bool(pin), eval_batch_size=eval_bs,
        )
        if tcfg.gpu_resident:
            if self.data.resident_train is None:
                raise ConfigError(
                    f"trainer.gpu_resident=true needs an in-memory dataset (digits, mnist, cifar10/100 without "
                    f"resize, synthetic); '{self.cfg.dataset.name}' is read from image files"
                )
            self.train_loader = GpuResidentLoader(
                self.data.resident_train, per_rank, self.train_loader.sampler, self.device, augment=True, seed=self.seed
            )
            self.test_loader = GpuResidentLoader(
                self.data.resident_test, eval_bs, self.test_loader.sampler, self.device, augment=False
            )

    def eval_loader(self, split: str, shard: bool = True):
        """In-order, un-augmented loader over ``split`` ("train" or "test"); this rank's shard if ``shard``."""
        rank, world = (self.rank, self.world) if shard else (0, 1)
        bs = self.cfg.schedule.get("eval_batch_size") or self.global_batch // self.world
        if self.cfg.trainer.gpu_resident:
            arrays = self.data.resident_train if split == "train" else self.data.resident_test
            return GpuResidentLoader(arrays, bs, ShardSampler(len(arrays.labels), rank, world), self.device, augment=False)
        dataset = (self.data.train_eval or self.data.train) if split == "train" else self.data.test
        return eval_loader(dataset, bs, int(self.cfg.trainer.num_workers), rank, world, self.device.type == "cuda")

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.start_epoch,
            "global_step": self.global_step,
            "model": self.model.state_dict(),
            "criterion": self.criterion.state_dict(),
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() if s is not None else None for s in self.schedulers],
            "scaler": self.scaler.state_dict(),
            "history": self.history,
            "best_acc": self.best_acc,
            "best_epoch": self.best_epoch,
            "train_time": self.train_time,
            "config": OmegaConf.to_container(self.cfg, resolve=True),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("config", {})
        current = OmegaConf.to_container(self.cfg, resolve=True)
        for key in _IDENTITY_KEYS:
            if key in saved and saved[key] != current.get(key):
                raise ConfigError(
                    f"resume: '{key}' differs from the run in {self.run_dir} "
                    f"(saved {saved[key]!r}, now {current.get(key)!r}); resume with the same settings"
                )
        self.model.load_state_dict(state["model"])
        self.criterion.load_state_dict(state["criterion"])
        for opt, s in zip(self.optimizers, state["optimizers"]):
            opt.load_state_dict(s)
        for sch, s in zip(self.schedulers, state["schedulers"]):
            if sch is not None and s is not None:
                sch.load_state_dict(s)
        self.scaler.load_state_dict(state["scaler"])
        self.start_epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.history = list(state["history"])
        self.best_acc, self.best_epoch = float(state["best_acc"]), int(state["best_epoch"])
        self.train_time = float(state["train_time"])

    def maybe_resume(self) -> None:
        if not self.cfg.resume:
            return
        last = self.run_dir / "last.pt"
        if not last.is_file():
            log.warning("resume=true but %s does not exist: starting from scratch", last)
            return
        self.load_state_dict(load_checkpoint(last, map_location=self.device))
        log.info("resumed %s at epoch %d/%d", self.run_dir, self.start_epoch, self.epochs)

    # ------------------------------------------------------------------ loop
    def fit(self) -> dict[str, Any]:
        self.maybe_resume()
        self.log.open()
        stop_after = self.cfg.trainer.stop_after
        last_epoch = self.epochs if stop_after is None else min(self.epochs, self.start_epoch + int(stop_after))
        if self.start_epoch == 0:
            self._write_metrics(final=False)
        try:
            for epoch in range(self.start_epoch + 1, last_epoch + 1):
                self._run_epoch(epoch)
        finally:
            self.log.close()
        final = self.start_epoch >= self.epochs
        if final:
            self.run_analyses()
        return self._write_metrics(final=final)

    def run_analyses(self) -> dict[str, Any]:
        """Run ``cfg.analysis`` (name → partial callable taking the trainer, returning a dict of numbers).

        Results go to ``<run dir>/analysis.json`` and into ``metrics.json`` under ``analysis``.
        """
        specs = self.cfg.get("analysis") or {}
        for name, spec in specs.items():
            if spec is None:
                continue
            fn = instantiate(spec)
            self.analysis[name] = fn(self)
            log.info("analysis %s: %s", name, self.analysis[name])
        if self.analysis and dist.is_main():
            write_json(self.analysis, self.run_dir / "analysis.json")
        return self.analysis

    @torch.no_grad()
    def collect_features(self, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
        """All latent features (fp32, CPU) and labels of a whole split, without augmentation (every rank gets all)."""
        loader = self.eval_loader(split, shard=False)
        feats, labels = [], []
        for f, y in self._feature_batches(loader):
            feats.append(f.cpu())
            labels.append(y.cpu())
        return torch.cat(feats), torch.cat(labels)

    def _seed_epoch(self, epoch: int) -> None:
        s = epoch_seed(self.seed, epoch)
        torch.manual_seed(s)
        random.seed(s)
        np.random.seed(s % (2**32))
        self._loader_gen.manual_seed(s)
        if hasattr(self.train_loader, "manual_seed"):  # GPU-resident augmentation
            self.train_loader.manual_seed(s)
        self.train_loader.sampler.set_epoch(epoch)

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _to_device(self, images: torch.Tensor, labels: torch.Tensor):
        images = images.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, labels.to(self.device, non_blocking=True)

    def _features(self, images: torch.Tensor, model=None) -> torch.Tensor:
        with self._autocast():
            features = (model or self.model)(images)
        return features.float()  # losses always run in fp32

    def _run_epoch(self, epoch: int) -> None:
        self._seed_epoch(epoch)
        self.criterion.on_epoch_start(epoch)
        t0 = time.perf_counter()
        train = self._train_epoch(epoch)
        if self.criterion.needs_feature_pass:
            self.criterion.feature_pass(self._feature_batches(self.eval_loader("train")))  # sharded over ranks
        self.criterion.on_epoch_end(epoch, {"mean_feature_norm": train["feature_norm"], "num_samples": train["n"]})
        self.train_time += time.perf_counter() - t0
        every = int(self.cfg.trainer.eval_every)
        test = self.evaluate() if (epoch % every == 0 or epoch == self.epochs) else None
        for sched in self.schedulers:
            step_scheduler_epoch(sched, epoch)
        self.start_epoch = epoch
        self._record_epoch(epoch, train, test, time.perf_counter() - t0)

    def _check_finite(self, first_bad: torch.Tensor, epoch: int) -> None:
        """Raise if a step since the last check had a non-finite loss (one sync; collective under DDP)."""
        local = int(first_bad.item())
        anywhere = dist.all_reduce_sum(torch.tensor([float(local >= 0)], device=self.device))
        if float(anywhere) > 0:
            where = f"batch {local}" if local >= 0 else "a batch on another rank"
            raise NonFiniteLossError(
                f"loss became NaN/Inf at epoch {epoch}, {where}. The last good checkpoint is "
                f"{self.run_dir / 'last.pt'}. Lower the learning rate or check the loss' hyperparameters."
            )

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        self.criterion.train()
        sums: dict[str, torch.Tensor] = {}
        stats = torch.zeros(3, device=self.device, dtype=torch.float64)  # n, correct, sum of feature norms
        first_bad = torch.full((), -1, device=self.device, dtype=torch.long)
        limit = self.cfg.trainer.limit_train_batches
        total = len(self.train_loader) if limit is None else min(int(limit), len(self.train_loader))
        every = int(self.cfg.trainer.log_every_n_steps)
        bar = tqdm(
            total=total, desc=f"epoch {epoch}/{self.epochs}", leave=False, dynamic_ncols=True,
            disable=None if (self.cfg.trainer.progress and dist.is_main()) else True,
        )
        t_start = time.perf_counter()
        for i, (images, labels) in enumerate(self.train_loader):
            if i >= total:
                break
            images, labels = self._to_device(images, labels)
            step_terms: dict[str, torch.Tensor] = {}
            for step in range(self.criterion.steps_per_batch):
                features, terms, finite = self._optimizer_step(images, labels, step)
                first_bad = torch.where((first_bad < 0) & ~finite, torch.full_like(first_bad, i + 1), first_bad)
                if step == 0:
                    with torch.no_grad():
                        stats += self._batch_stats(features, labels)
                for name, value in terms.items():
                    key = name if (step == 0 or name != "loss") else f"loss_step{step}"
                    step_terms[key] = value
                    sums[key] = sums.get(key, 0.0) + value.double() * len(labels)
            self.global_step += 1
            bar.update(1)
            if (i + 1) % every == 0 or i + 1 == total:
                self._check_finite(first_bad, epoch)
                self.log.scalars("train_step", {k: float(v) for k, v in step_terms.items()}, self.global_step)
                seen = float(stats[0]) * self.world
                bar.set_postfix(loss=f"{float(sums['loss']) / float(stats[0]):.4f}",
                                img_s=f"{seen / (time.perf_counter() - t_start):.0f}")
        bar.close()
        return self._reduce_epoch(stats, sums)

    def _batch_stats(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(samples, correct predictions, sum of feature norms) of one batch, on the device in fp64."""
        correct = (self.criterion.logits(features).argmax(1) == labels).sum()
        return torch.stack([correct.new_tensor(len(labels)), correct, features.norm(dim=1).sum()]).double()

    @staticmethod
    def _reduce_epoch(stats: torch.Tensor, sums: dict[str, torch.Tensor]) -> dict[str, float]:
        """Sum per-rank epoch totals over ranks (one all-reduce, one host sync) and turn them into means."""
        names = sorted(sums)
        packed = dist.all_reduce_sum(torch.cat([stats, torch.stack([sums[k] for k in names])]))
        n = float(packed[0])
        out = {k: float(v) / n for k, v in zip(names, packed[3:])}
        out.update(acc=100.0 * float(packed[1]) / n, feature_norm=float(packed[2]) / n, n=int(n))
        return out

    def _optimizer_step(self, images, labels, step: int):
        """One optimizer step on a batch (split into ``accumulate_grad_batches`` micro-batches).

        Returns the batch's detached fp32 features, its loss terms (micro-batch weighted means, on
        device) and a device bool telling whether the loss was finite.
        """
        optimizer = self.optimizers[step if len(self.optimizers) > 1 else 0]
        scheduler = self.schedulers[step if len(self.schedulers) > 1 else 0]
        optimizer.zero_grad(set_to_none=True)
        chunks = list(zip(images.chunk(self.accumulate), labels.chunk(self.accumulate)))
        all_features, terms_sum = [], {}
        finite = torch.ones((), dtype=torch.bool, device=self.device)
        for j, (x, y) in enumerate(chunks):
            last = j == len(chunks) - 1
            sync = nullcontext() if (last or self.world == 1) else self.ddp_model.no_sync()
            with sync:
                features = self._features(x, self.forward_model)
                terms = self.criterion(features, y, step=step)
                loss = terms["loss"]
                finite &= torch.isfinite(loss)
                self.scaler.scale(loss * (len(y) / len(labels))).backward()
            all_features.append(features.detach())
            for k, v in terms.items():
                terms_sum[k] = terms_sum.get(k, 0.0) + v.detach() * (len(y) / len(labels))
        criterion_params = [p for p in self.criterion.parameters() if p.grad is not None]
        dist.all_reduce_mean_([p.grad for p in criterion_params])  # DDP averages the model's; do the loss' too
        if self.grad_clip:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(
                [p for g in optimizer.param_groups for p in g["params"]], float(self.grad_clip)
            )
        self.scaler.step(optimizer)
        self.scaler.update()
        step_scheduler_update(scheduler, self.global_step + 1)
        features = torch.cat(all_features)
        with torch.no_grad():
            self.criterion.after_optimizer_step(features, labels, step)
        return features, terms_sum, finite

    @torch.no_grad()
    def _feature_batches(self, loader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.model.eval()
        for images, labels in loader:
            images, labels = self._to_device(images, labels)
            yield self._features(images), labels
        self.model.train()

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Test accuracy (argmax of ``criterion.logits``), the loss terms, the mean feature norm and ``n``."""
        self.model.eval()
        self.criterion.eval()
        sums: dict[str, torch.Tensor] = {}
        stats = torch.zeros(3, device=self.device, dtype=torch.float64)  # n, correct, sum of norms
        limit = self.cfg.trainer.limit_test_batches
        for i, (features, labels) in enumerate(self._feature_batches(self.test_loader)):
            if limit is not None and i >= int(limit):
                break
            stats += self._batch_stats(features, labels)
            for name, value in self.criterion(features, labels).items():
                sums[name] = sums.get(name, 0.0) + value.double() * len(labels)
        return self._reduce_epoch(stats, sums)

    # ------------------------------------------------------------------ records
    def _record_epoch(self, epoch: int, train: dict, test: dict | None, seconds: float) -> None:
        lr = self.optimizers[0].param_groups[0]["lr"]
        row: dict[str, Any] = {"epoch": epoch, "lr": lr, "epoch_time_s": round(seconds, 3)}
        row.update({f"train_{k}": v for k, v in train.items() if k != "n"})
        if test is not None:
            row.update({f"test_{k}": v for k, v in test.items() if k != "n"})
        row.update({f"loss_{k}": v for k, v in self.criterion.epoch_metrics().items()})
        self.history.append(row)
        improved = test is not None and test["acc"] > self.best_acc
        if improved:
            self.best_acc, self.best_epoch = test["acc"], epoch
        self.log.epoch(row, epoch)
        msg = f"epoch {epoch}/{self.epochs} | loss {train['loss']:.4f} | train_acc {train['acc']:.2f}"
        if test is not None:
            msg += f" | test_acc {test['acc']:.2f}"
        log.info(msg + f" | lr {lr:.4g} | {seconds:.1f}s")
        if self.cfg.trainer.save_checkpoints and dist.is_main():
            state = self.state_dict()
            save_checkpoint(state, self.run_dir / "last.pt")
            if improved:
                save_checkpoint(state, self.run_dir / "best.pt")
        self._write_metrics(final=False)

    def _write_metrics(self, final: bool) -> dict[str, Any]:
        last_test = next((r["test_acc"] for r in reversed(self.history) if "test_acc" in r), None)
        last = self.history[-1] if self.history else {}
        metrics = {
            "test_acc": last_test,
            "best_test_acc": self.best_acc if self.best_acc >= 0 else None,
            "best_epoch": self.best_epoch or None,
            "epochs": self.start_epoch,
            "epochs_planned": self.epochs,
            "completed": final,
            "train_acc": last.get("train_acc"),
            "train_loss": last.get("train_loss"),
            "test_loss": last.get("test_loss"),
            "mean_feature_norm": last.get("train_feature_norm"),
            "train_time_s": round(self.train_time, 2),
            "num_params": self.num_params,
            "num_classes": self.data.num_classes,
            "feat_dim": self.model.feat_dim,
            "seed": self.seed,
            "device": str(self.device),
            "analysis": self.analysis or None,
            **{k: v for k, v in self.names.items()},
        }
        for key, value in metrics.items():
            if isinstance(value, float) and not math.isfinite(value):
                metrics[key] = None
        if dist.is_main():
            write_json(metrics, self.run_dir / "metrics.json")
        return metrics
