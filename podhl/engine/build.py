"""The build step: the composed config becomes the run's parts, in a fixed order (so a seed fixes
every initial weight): runtime (device, processes, seeds) → task (data, loaders) → model → criterion
→ optimizers and schedulers. The loop (:mod:`podhl.engine.trainer`) receives the parts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from podhl import distributed as dist
from podhl.engine.init_from import check_init_from, init_from
from podhl.engine.optim import build_optimizer, build_scheduler, param_groups
from podhl.engine.seeding import seed_everything, set_deterministic
from podhl.engine.validate import resolve_device, validate_config
from podhl.errors import ConfigError
from podhl.losses.base import Criterion
from podhl.losses.sharded import ShardedClassifier
from podhl.tasks.base import Runtime, Task

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class RunParts:
    runtime: Runtime
    task: Task
    model: nn.Module  # the plain model (evaluation, feature passes, checkpoints)
    train_model: nn.Module  # what training forwards go through: DDP-wrapped and/or compiled
    criterion: Criterion
    optimizers: list[torch.optim.Optimizer]  # one per criterion step when it asks for separate ones (COT)
    schedulers: list
    scaler: torch.amp.GradScaler
    init_report: dict | None = None  # what model.init_from loaded and what not (<run dir>/init_from.json)


def start_runtime(tcfg: DictConfig) -> Runtime:
    """Set the thread count, join the process group the environment describes (torchrun/SLURM), pick the device."""
    if tcfg.get("num_threads"):
        torch.set_num_threads(int(tcfg.num_threads))
    dist.init_from_env(tcfg.ddp_backend)
    world = dist.world_size()
    device = resolve_device(tcfg.device, dist.local_rank() if world > 1 else None)
    return Runtime(
        device=device,
        rank=dist.rank(),
        world=world,
        amp_dtype=AMP_DTYPES.get(tcfg.precision),
        channels_last=bool(tcfg.channels_last),
        progress=bool(tcfg.progress) and dist.is_main(),
    )


def check_backbone_kind(task: Task, backbone: DictConfig) -> None:
    """A backbone serves one kind of task (``backbone.kind``: features by default, detector for Faster R-CNN)."""
    kind = str(backbone.get("kind", "features"))
    if kind != task.backbone_kind:
        raise ConfigError(
            f"backbone={backbone.get('name')} is a {kind} backbone (backbone.kind), but "
            f"{type(task).__name__} needs a {task.backbone_kind} backbone: use {task.backbone_examples}"
        )


def build_run(cfg: DictConfig) -> RunParts:
    validate_config(cfg)
    check_init_from(cfg.get("model"))  # a missing model.init_from stops the run before the data is read
    tcfg = cfg.trainer
    runtime = start_runtime(tcfg)
    accumulate = int(cfg.schedule.get("accumulate_grad_batches", 1))
    if int(cfg.schedule.batch_size) % (runtime.world * accumulate):
        raise ConfigError(
            f"schedule.batch_size={cfg.schedule.batch_size} (the global batch) must be divisible by "
            f"world size {runtime.world} × schedule.accumulate_grad_batches {accumulate}"
        )
    set_deterministic(bool(tcfg.deterministic))
    seed_everything(int(cfg.seed))

    task: Task = instantiate(cfg.task)
    check_backbone_kind(task, cfg.backbone)
    task.setup(cfg, runtime)
    model = task.build_model(cfg)
    criterion = instantiate(cfg.loss, num_classes=task.num_classes, feat_dim=model.feat_dim)
    if not isinstance(criterion, Criterion):
        raise ConfigError(f"loss._target_ must build a podhl Criterion, got {type(criterion).__name__}")
    init_report = init_from(cfg.get("model"), model, criterion)  # weights of a trained model (fresh schedule)
    if tcfg.get("shard_classes", False):  # PartialFC: each rank keeps C/world rows (docs/face-scale.md)
        if runtime.world > 1 and cfg.schedule.get("grad_clip_norm"):
            raise ConfigError(
                "schedule.grad_clip_norm with trainer.shard_classes=true: each rank would clip by the norm of "
                "its own classifier rows; unset one of them"
            )
        criterion = ShardedClassifier(criterion, sample_rate=float(tcfg.get("class_sample_rate", 1.0)))
    if runtime.world > 1 and tcfg.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(runtime.device)
    criterion.to(runtime.device)
    sharded = {id(p) for p in criterion.sharded_parameters()}  # rows that differ between ranks
    shared = [p for p in criterion.parameters() if id(p) not in sharded]
    dist.broadcast_(shared + list(criterion.buffers()))  # same initial loss state on every rank
    if runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    train_model = model
    if runtime.world > 1:
        ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if tcfg.compile:
        train_model = torch.compile(train_model)

    n_opt = criterion.steps_per_batch if criterion.separate_step_optimizers else 1
    groups = param_groups(model, criterion)
    optimizers = [build_optimizer(cfg.schedule, groups) for _ in range(n_opt)]
    for optimizer in optimizers:
        criterion.attach_optimizer(optimizer)
    schedulers = [build_scheduler(cfg.schedule, opt) for opt in optimizers]
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=tcfg.precision == "fp16")
    return RunParts(runtime, task, model, train_model, criterion, optimizers, schedulers, scaler, init_report)
