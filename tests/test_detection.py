"""The detection task end to end on real pixels (the digits composite, a tiny detector), through the real CLI
and in-process: the loop, AP@0.5 and best-box accuracy, the run directory, stateful losses on region features,
the ResNet-50 C4 detector, and two processes through torchrun."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import torch

from conftest import FAST, build_trainer, read_metrics
from podhl.engine.records import restore_training_state

# A tiny detector on the digits composite (48 train / 16 test canvases, 64–96 px), few proposals and RoIs.
TINY = [
    "task=detection",
    "dataset=digits_boxes",
    "backbone=frcnn_tiny",
    "schedule=detection",
    "schedule.epochs=2",
    "schedule.batch_size=8",
    "schedule.optimizer.lr=1e-3",
    "task.rpn.post_nms_top_n_train=64",
    "task.rpn.post_nms_top_n_test=32",
    "task.roi.batch_size_per_image=32",
]


def test_tiny_detection_run_through_the_cli(run_cli):
    _, run = run_cli(*TINY)
    m = read_metrics(run)
    assert m["completed"] and m["epochs"] == 2 and m["primary_metric"] == "map50"
    assert (
        m["task"] == "detection" and m["dataset"] == "digits_boxes" and m["num_classes"] == 11 and m["feat_dim"] == 64
    )
    for key in ("map50", "box_acc", "best_map50"):
        assert 0.0 <= m[key] <= 100.0, key
    assert m["box_acc_matched"] > 0 and m["detections_per_image"] > 0
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {
        "map50",
        "box_acc",
        "train_loss",
        "train_ce",
        "train_loss_objectness",
        "train_loss_rpn_box_reg",
        "train_loss_box_reg",
        "train_acc",
        "lr",
    } <= set(rows[0])
    assert float(rows[-1]["map50"]) == pytest.approx(m["map50"])
    # the loop's loss is the criterion's plus the detector's three terms
    r = rows[-1]
    parts = sum(
        float(r[k]) for k in ("train_ce", "train_loss_objectness", "train_loss_rpn_box_reg", "train_loss_box_reg")
    )
    assert float(r["train_loss"]) == pytest.approx(parts, rel=1e-5)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(run / "tb")).Reload().Tags()["scalars"]
    assert {"map50", "box_acc", "train/loss_box_reg", "train/loss_objectness"} <= set(tags)
    state = torch.load(run / "last.pt", weights_only=False)
    assert state["epoch"] == 2 and "classifier.weight" in state["criterion"]
    assert not any("criterion" in k or "scorer" in k for k in state["model"])  # the scorer is never part of the model
    assert (run / "best.pt").is_file() and (run / ".hydra" / "config.yaml").is_file() and (run / "train.log").is_file()


def test_hl_centers_move_on_region_features(train):
    trainer, m = train(*TINY, "loss=hl", "loss.warmup_epochs=0")
    history = trainer.history
    assert [row["loss_n_c"] for row in history] == [6.0, 12.0]  # one EWMA update per batch (48 images / 8)
    centers = trainer.criterion.centers
    assert torch.allclose(
        centers.norm(dim=1), torch.full((11,), 40.0), atol=1e-3
    )  # background + 10 digits, on the r-sphere
    assert history[-1]["train_center"] > 0 and 0.0 <= m["map50"] <= 100.0


@pytest.mark.parametrize("loss", ["arc", "ccl"])
def test_other_losses_score_regions(train, loss):
    """ArcFace (scaled cosines: softmax over s·cos θ at post-processing); CCL (its per-epoch feature pass reads
    the labelled region features of the training images)."""
    trainer, m = train(*TINY, f"loss={loss}", "schedule.epochs=1")
    assert m["completed"] and 0.0 <= m["map50"] <= 100.0 and 0.0 <= m["box_acc"] <= 100.0
    if loss == "ccl":
        assert bool(trainer.criterion.initialized)
        assert torch.allclose(trainer.criterion.centers.norm(dim=1), torch.full((11,), 40.0), atol=1e-3)


def test_feature_batches_label_proposals_and_ground_truth(tmp_path):
    trainer = build_trainer(*TINY, run_dir=tmp_path)
    feats, labels = zip(*trainer.task.feature_batches(trainer.model, "test"), strict=True)
    feats, labels = torch.cat(feats), torch.cat(labels)
    assert feats.shape == (len(labels), 64) and feats.dtype == torch.float32
    objects = torch.cat([t["labels"] for _, t in trainer.task.data.test])
    assert (labels == 0).any()  # background proposals
    for c in objects.unique():  # every ground-truth box is among the regions (plus matching proposals)
        assert (labels == c).sum() >= (objects == c).sum()
    assert trainer.model.training  # mode restored


def test_resnet50_c4_detector_matches_the_papers_design(tmp_path):
    trainer = build_trainer(
        "task=detection", "dataset=voc0712", "backbone=frcnn_resnet50", "smoke=cpu", run_dir=tmp_path
    )
    model = trainer.model
    assert model.feat_dim == 2048 and trainer.task.num_classes == 21 and trainer.criterion.feat_dim == 2048
    assert model.backbone.out_channels == 1024 and model.stride == 16
    assert model.roi_heads.box_roi_pool.kind == "pool" and model.roi_heads.box_roi_pool.output_size == 14
    assert model.roi_heads.box_predictor.bbox_pred.out_features == 4 * 21
    assert (
        type(model.roi_heads.box_head[0]).__name__ == "Sequential" and len(model.roi_heads.box_head[0]) == 3
    )  # layer4
    model.train()
    assert all(not m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))  # the authors' freeze_bn
    batch = trainer.task.to_device(next(iter(trainer.task.train_batches())))
    out = trainer.task.forward(model, batch)
    assert out.features.shape[1] == 2048 and out.features.requires_grad and (out.labels == 0).any()
    assert out.features.shape[0] <= 2 * 4  # smoke: 2 images, at most 4 sampled RoIs each
    assert set(out.terms) == {"loss_objectness", "loss_rpn_box_reg", "loss_box_reg"}
    metrics = trainer.task.evaluate(model, trainer.criterion, limit_batches=1)
    assert set(metrics) >= {"map50", "box_acc"} and model.training


def test_two_processes_evaluate_the_whole_test_set(tmp_path):
    """torchrun with 2 CPU processes (gloo): list batches per rank, DDP, and the evaluation gathers every
    rank's shard: its AP equals a single process evaluating the same weights (one image per evaluation batch,
    so every image is padded alike in both runs: the tiny trunk's GroupNorm sees the padding)."""
    run = tmp_path / "ddp"
    common = [*TINY, "schedule.epochs=1", "schedule.eval_batch_size=1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "podhl.train",
        *FAST,
        *common,
        f"hydra.run.dir={run}",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ddp = read_metrics(run)
    single = build_trainer(*common, run_dir=tmp_path / "single")
    restore_training_state(single, torch.load(run / "last.pt", weights_only=False))
    again = single.task.evaluate(single.model, single.criterion)
    assert again["map50"] == pytest.approx(ddp["map50"], abs=1e-6)
    assert again["box_acc"] == pytest.approx(ddp["box_acc"], abs=1e-6)


def test_podhl_tables_hl_table8_best_mean_std(tmp_path):
    """Runs named by the experiment's table node land in their loss row; map50 and box_acc get best / mean / std
    beside the paper's Table VIII."""
    import json

    from podhl.runs.tables import make_tables

    values = {"hl": [(80.0, 88.0), (82.0, 89.0)], "softmax": [(78.0, 85.0)]}
    for loss, runs in values.items():
        for seed, (ap, acc) in enumerate(runs):
            run = tmp_path / f"{loss}{seed}"
            (run / ".hydra").mkdir(parents=True)
            (run / ".hydra" / "overrides.yaml").write_text(f"- loss={loss}\n- seed={seed}\n")
            (run / "history.csv").write_text(f"epoch,map50,box_acc\n1,{ap},{acc}\n")
            (run / "metrics.json").write_text(
                json.dumps(
                    {
                        "status": "completed",
                        "completed": True,
                        "table": "hl_table8",
                        "row": loss,
                        "col": None,
                        "map50": ap,
                        "box_acc": acc,
                    }
                )
            )
    written = make_tables([tmp_path], "hl_table8", tmp_path / "tables", hparams=False)
    with written["csv"].open() as fh:
        table = {r["row"]: r for r in csv.DictReader(fh)}
    assert float(table["hl"]["map50:ours_best"]) == 82.0 and float(table["hl"]["map50:ours_mean"]) == 81.0
    assert float(table["hl"]["box_acc:ours_std"]) == pytest.approx(0.7071, abs=1e-4)
    assert float(table["hl"]["map50:paper_best"]) == 82.35 and float(table["hl"]["box_acc:paper_mean"]) == 88.92
    assert table["softmax"]["map50:ours_std"] == "" and table["ccl"]["map50:n"] == "0"
    assert "HL Table VIII" in written["markdown"].read_text()


def test_table_experiments_follow_the_paper():
    """HL §IV-A for Tables VIII–IX: 10 losses × 5 seeds, Faster R-CNN with ResNet-50 C4, 100 epochs, lr 1e-4 × 0.6
    every 10 epochs (Adam, batch 32: the authors' code)."""
    from podhl.config import compose_config
    from podhl.engine.optim import build_optimizer, build_scheduler, step_scheduler_epoch

    for name, dataset, classes in (("hl_table8", "voc0712", 20), ("hl_table9", "rpc", 200)):
        cfg = compose_config([f"experiment={name}"], return_hydra_config=True)
        params = cfg.hydra.sweeper.params
        assert str(params.loss).split(",") == "softmax,asl,er,center,ccl,mml,hml,am,arc,hl".split(",")
        assert str(params.seed).split(",") == ["0", "1", "2", "3", "4"]
        assert cfg.dataset.name == dataset and cfg.dataset.num_classes == classes and cfg.table.name == name
        assert cfg.task._target_.endswith("DetectionTask") and cfg.backbone.arch == "resnet50_c4"
        assert cfg.backbone.roi_pool == "pool" and cfg.backbone.roi_size == 14 and cfg.backbone.pretrained
        assert cfg.schedule.epochs == 100 and cfg.schedule.batch_size == 32
    optimizer = build_optimizer(cfg.schedule, [{"params": [torch.nn.Parameter(torch.zeros(1))]}])
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["weight_decay"] == 0
    scheduler = build_scheduler(cfg.schedule, optimizer)
    lrs = {}
    for epoch in range(1, 101):
        lrs[epoch] = optimizer.param_groups[0]["lr"]
        step_scheduler_epoch(scheduler, epoch)
    assert lrs[1] == lrs[10] == pytest.approx(1e-4) and lrs[11] == pytest.approx(0.6e-4)
    assert lrs[100] == pytest.approx(1e-4 * 0.6**9)
