"""Every option of every config group composes and instantiates."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from podhl.config import compose_config
from podhl.config import config_options as options
from podhl.data import build_data
from podhl.engine.optim import build_optimizer, build_scheduler, step_scheduler_epoch
from podhl.errors import DatasetNotFoundError
from podhl.losses.base import Criterion
from podhl.models import build_model


def test_groups_are_populated():
    assert {"digits", "mnist", "cifar10", "cifar100", "tiny_imagenet", "facescrub", "imagenet", "synthetic"} <= set(
        options("dataset")
    )
    assert {"small_cnn", "resnet18", "resnet34", "resnet50", "densenet121", "mobilenetv2", "vit_b16", "swin_b"} <= set(
        options("backbone")
    )
    assert {"quick", "pod", "pod_imagenet", "hl", "vit_finetune", "swin"} <= set(options("schedule"))
    assert "softmax" in options("loss") and "quickstart" in options("experiment")


@pytest.mark.parametrize(
    "name", [n for n in options("backbone") if not n.startswith("frcnn_")]
)  # detectors: test_detection.py
def test_backbone_builds_and_runs_one_forward(name):
    size = 224 if name == "swin_b" else 32
    cfg = compose_config(
        [f"backbone={name}", "dataset=synthetic", f"dataset.image_size={size}", "++backbone.pretrained=false"]
    )
    model = build_model(cfg.backbone, cfg.model, in_chans=3, image_size=size)  # dry-runs a batch of 2 itself
    assert model.feat_dim == cfg.dataset.feat_dim
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, size, size)).shape == (1, cfg.dataset.feat_dim)


def test_small_stem_matches_the_papers():
    cfg = compose_config(["backbone=resnet18", "dataset=synthetic"])
    backbone = build_model(cfg.backbone, cfg.model, 3, 32).backbone
    assert backbone.conv1.kernel_size == (3, 3) and backbone.conv1.stride == (1, 1)
    assert isinstance(backbone.maxpool, torch.nn.Identity)
    cfg = compose_config(["backbone=resnet18", "dataset=synthetic", "dataset.stem=small_maxpool"])
    assert isinstance(build_model(cfg.backbone, cfg.model, 3, 64).backbone.maxpool, torch.nn.MaxPool2d)
    cfg = compose_config(["backbone=resnet18", "dataset=synthetic", "dataset.stem=imagenet"])
    assert build_model(cfg.backbone, cfg.model, 3, 64).backbone.conv1.kernel_size == (7, 7)


def test_fc1_is_optional():
    cfg = compose_config(["backbone=resnet18", "dataset=synthetic", "model.fc1=false"])
    model = build_model(cfg.backbone, cfg.model, 3, 32)
    assert model.feat_dim == 512 and isinstance(model.fc1, torch.nn.Identity)


def test_local_weights_file_is_loaded(tmp_path):
    cfg = compose_config(["backbone=resnet18", "dataset=synthetic"])
    source = build_model(cfg.backbone, cfg.model, 3, 32).backbone
    torch.save({"state_dict": source.state_dict()}, tmp_path / "w.pth")
    cfg = compose_config(["backbone=resnet18", "dataset=synthetic", f"backbone.weights={tmp_path / 'w.pth'}"])
    loaded = build_model(cfg.backbone, cfg.model, 3, 32).backbone
    for k, v in source.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k


@pytest.mark.parametrize("name", ["digits", "synthetic"])
def test_embedded_datasets_load(name):
    cfg = compose_config(
        [f"dataset={name}", "dataset.train_size=64", "dataset.test_size=32"]
        if name == "synthetic"
        else [f"dataset={name}"]
    )
    bundle = build_data(cfg.dataset)
    image, label = bundle.train[0]
    assert image.shape == (bundle.in_chans, bundle.image_size, bundle.image_size) and 0 <= label < bundle.num_classes


def test_digits_split_is_stratified_and_disjoint():
    bundle = build_data(
        compose_config(
            [
                "dataset.val_fraction=0",
            ]
        ).dataset
    )
    assert (len(bundle.train), len(bundle.test)) == (1437, 360)
    counts = torch.bincount(bundle.test.labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37
    train_set = {tuple(x.flatten().tolist()) for x in bundle.train.images[:200]}
    assert (
        sum(tuple(x.flatten().tolist()) in train_set for x in bundle.test.images) < 10
    )  # (digits has a few exact duplicates)


@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100", "tiny_imagenet", "facescrub", "imagenet"])
def test_file_datasets_fail_clearly_without_files(name, tmp_path):
    cfg = compose_config([f"dataset={name}", f"dataset.root={tmp_path}"])
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path)):
        build_data(cfg.dataset)


def test_imagenet_feat_dim_follows_pod_table3():
    expected = {30: 256, 100: 512, 200: 512, 500: 1024, 1000: 2048}
    for k, n in expected.items():
        assert compose_config(["dataset=imagenet", f"dataset.num_classes={k}"]).model.feat_dim == n


@pytest.mark.parametrize("name", options("loss"))
def test_loss_builds_and_runs(name):
    cfg = compose_config([f"loss={name}"])
    criterion = instantiate(cfg.loss, num_classes=10, feat_dim=32)
    assert isinstance(criterion, Criterion)
    features, labels = torch.randn(16, 32), torch.arange(16) % 10
    criterion.on_epoch_start(1)
    for step in range(criterion.steps_per_batch):
        terms = criterion(features, labels, step=step)
        assert torch.isfinite(terms["loss"]) and terms["loss"].ndim == 0
    assert criterion.logits(features).shape == (16, 10)


@pytest.mark.parametrize("name", options("schedule"))
def test_schedule_builds_and_steps(name):
    cfg = compose_config([f"schedule={name}"])
    param = torch.nn.Parameter(torch.zeros(3))
    optimizer = build_optimizer(cfg.schedule, [{"params": [param]}])
    scheduler = build_scheduler(cfg.schedule, optimizer)
    lrs = []
    for epoch in range(1, cfg.schedule.epochs + 1):
        lrs.append(optimizer.param_groups[0]["lr"])
        step_scheduler_epoch(scheduler, epoch)
    assert all(lr > 0 for lr in lrs) and max(lrs) == pytest.approx(cfg.schedule.optimizer.lr, rel=1e-6)


def test_pod_schedule_decays_at_30_60_90():
    cfg = compose_config(["schedule=pod"])
    optimizer = build_optimizer(cfg.schedule, [{"params": [torch.nn.Parameter(torch.zeros(1))]}])
    scheduler = build_scheduler(cfg.schedule, optimizer)
    lrs = {}
    for epoch in range(1, 101):  # lr used during epoch `epoch`
        lrs[epoch] = optimizer.param_groups[0]["lr"]
        step_scheduler_epoch(scheduler, epoch)
    assert lrs[1] == lrs[30] == pytest.approx(0.1)
    assert lrs[31] == lrs[60] == pytest.approx(0.01)
    assert lrs[61] == pytest.approx(0.001) and lrs[91] == pytest.approx(0.0001)


@pytest.mark.parametrize("name", options("experiment"))
def test_experiment_composes(name):
    cfg = compose_config([f"experiment={name}"])
    assert cfg.schedule.epochs > 0


def test_quick_schedule_cosine_equals_timms_bit_for_bit():
    import timm.scheduler

    from podhl.engine.optim import CosineLR

    def rates(make, timm_style):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.05)
        sched, out = make(opt), []
        for epoch in range(1, 16):
            out.append(opt.param_groups[0]["lr"])
            sched.step(epoch) if timm_style else sched.step()
        return out

    ours = rates(lambda o: CosineLR(o, t_initial=12, lr_min=1e-4), False)
    assert ours == rates(lambda o: timm.scheduler.CosineLRScheduler(o, t_initial=12, lr_min=1e-4), True)
    assert ours[0] == 0.05 and ours[-1] == 1e-4


def test_a_small_cnn_run_imports_neither_timm_nor_scikit_learn(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from podhl.config import compose_run, run_names\n"
        "from podhl.engine.trainer import Trainer\n"
        "cfg, ch = compose_run(['trainer.device=cpu', 'trainer.progress=false', 'schedule.epochs=1',"
        " 'trainer.limit_train_batches=1'])\n"
        f"Trainer.from_config(cfg, {str(tmp_path / 'run')!r} + sys.argv[1], run_names(cfg, ch)).fit()\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'timm', 'sklearn', 'scipy', 'matplotlib'}))\n"
    )
    env = {**__import__("os").environ, "PODHL_CACHE_DIR": str(tmp_path / "cache")}
    first = subprocess.run([sys.executable, "-c", code, "1"], capture_output=True, text=True, env=env, timeout=300)
    second = subprocess.run([sys.executable, "-c", code, "2"], capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0 and second.returncode == 0, first.stderr[-2000:] + second.stderr[-2000:]
    assert second.stdout.strip().splitlines()[-1] == "[]"  # the digits split was cached by the first run
