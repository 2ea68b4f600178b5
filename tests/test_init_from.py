"""``model.init_from``: a new run starts from a trained run's weights; exactly the tensors it reports as
loaded come from the checkpoint, every other tensor keeps the fresh initialization a run without
``init_from`` gets (same seed), and mismatches are listed (log and ``init_from.json``)."""

from __future__ import annotations

import json
import logging

import torch

from conftest import build_trainer
from podhl.engine.run_folder import read_checkpoint

VERIFICATION = ["task=verification", "dataset=digits_open", "task.eval_sets=[]", "task.flip=false"]
QUICK = ["~logger", "schedule.epochs=1"]
DETECTION = [
    "task=detection",
    "dataset=digits_boxes",
    "backbone=frcnn_tiny",
    "schedule=detection",
    "schedule.epochs=1",
    "schedule.batch_size=8",
    "schedule.optimizer.lr=1e-3",
    "task.rpn.post_nms_top_n_train=64",
    "task.rpn.post_nms_top_n_test=32",
    "task.roi.batch_size_per_image=32",
    "~logger",
]


def check_loaded(module: torch.nn.Module, fresh: torch.nn.Module, source: dict, part: dict) -> None:
    """Tensors reported loaded equal the checkpoint's; all others equal a fresh build's (nothing else changed)."""
    state, initial = module.state_dict(), fresh.state_dict()
    assert set(part["loaded"]) | set(part["not_in_checkpoint"]) | {m["name"] for m in part["shape_mismatch"]} == set(
        state
    )
    for name, tensor in state.items():
        if name in part["loaded"]:
            assert torch.equal(tensor, source[name]), name
        else:
            assert torch.equal(tensor, initial[name]), name


def test_classification_run_from_a_verification_run(tmp_path, caplog):
    """digits_open (6 classes) → digits (10 classes): backbone and FC1 load, the criterion's 6×32 classifier (and
    its bias) does not fit 10×32 and is listed; with another feat_dim, FC1 does not fit either."""
    source_run = tmp_path / "verification"
    build_trainer(*QUICK, *VERIFICATION, run_dir=source_run).fit()
    saved = read_checkpoint(source_run / "best.pt")
    caplog.set_level(logging.INFO, logger="podhl")
    run = build_trainer(*QUICK, f"model.init_from={source_run}", "model.init_criterion=true", run_dir=tmp_path / "a")
    fresh = build_trainer(*QUICK, run_dir=tmp_path / "b")
    report = run.parts.init_report
    assert report["source"] == str(source_run / "best.pt") and report["epoch"] == 1
    assert not report["model"]["shape_mismatch"] and not report["model"]["not_in_checkpoint"]
    check_loaded(run.model, fresh.model, saved["model"], report["model"])
    criterion = report["criterion"]
    assert [m["name"] for m in criterion["shape_mismatch"]] == ["classifier.weight", "classifier.bias"]
    assert criterion["shape_mismatch"][0]["checkpoint"] == [6, 32] and criterion["shape_mismatch"][0]["model"] == [
        10,
        32,
    ]
    check_loaded(run.criterion, fresh.criterion, saved["criterion"], criterion)
    assert any(
        "classifier.weight not loaded: shape (6, 32) in the checkpoint, (10, 32) here" in r.getMessage()
        for r in caplog.records
    )
    # a fresh schedule: the optimizer has no state, epoch 0
    assert run.epoch == 0 and not run.optimizers[0].state

    narrow = build_trainer(
        *QUICK, f"model.init_from={source_run / 'last.pt'}", "model.feat_dim=16", run_dir=tmp_path / "c"
    )
    fresh16 = build_trainer(*QUICK, "model.feat_dim=16", run_dir=tmp_path / "d")
    part = narrow.parts.init_report["model"]
    mismatched = {m["name"] for m in part["shape_mismatch"]}
    assert mismatched and all(name.startswith("fc1") or "fc" in name for name in mismatched)
    assert any(name.startswith("backbone") for name in part["loaded"])
    check_loaded(narrow.model, fresh16.model, read_checkpoint(source_run / "last.pt")["model"], part)
    assert "criterion" not in narrow.parts.init_report  # init_criterion=false: the criterion is fresh
    assert all(
        torch.equal(a, b)
        for a, b in zip(narrow.criterion.state_dict().values(), fresh16.criterion.state_dict().values(), strict=True)
    )


def test_detection_run_from_a_detection_run(tmp_path):
    source_run = tmp_path / "first"
    build_trainer(*DETECTION, run_dir=source_run).fit()
    saved = read_checkpoint(source_run / "last.pt")
    run = build_trainer(
        *DETECTION, f"model.init_from={source_run / 'last.pt'}", "model.init_criterion=true", run_dir=tmp_path / "a"
    )
    fresh = build_trainer(*DETECTION, run_dir=tmp_path / "b")
    report = run.parts.init_report
    for part in ("model", "criterion"):
        assert (
            not report[part]["shape_mismatch"]
            and not report[part]["not_in_checkpoint"]
            and not report[part]["not_in_model"]
        )
    assert any(n.startswith("rpn") for n in report["model"]["loaded"]) and any(
        "roi" in n or "box" in n for n in report["model"]["loaded"]
    )
    check_loaded(run.model, fresh.model, saved["model"], report["model"])
    check_loaded(run.criterion, fresh.criterion, saved["criterion"], report["criterion"])


def test_init_from_json_and_missing_path_exit_2(tmp_path, run_cli):
    from podhl.config import compose_run
    from podhl.train import run

    source_run = tmp_path / "source"
    build_trainer(*QUICK, run_dir=source_run).fit()
    cfg, choices = compose_run(
        ["trainer.device=cpu", "trainer.progress=false", *QUICK, f"model.init_from={source_run}"]
    )
    run(cfg, tmp_path / "second", choices)
    report = json.loads((tmp_path / "second" / "init_from.json").read_text())
    assert report["source"] == str(source_run / "best.pt") and len(report["model"]["loaded"]) == len(
        read_checkpoint(source_run / "best.pt")["model"]
    )
    proc, folder = run_cli(*QUICK, f"model.init_from={tmp_path / 'missing'}", check=False, run_dir=tmp_path / "third")
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() + proc.stdout.splitlines() if "ERROR" in line]
    assert (
        len(errors) == 1 and f"configuration error: model.init_from={tmp_path / 'missing'}: no such file" in errors[0]
    )
    assert not (folder / "history.csv").exists()


def test_start_keys_do_not_block_resume():
    """model.init_from/init_criterion only say how a run started: a run saved before they existed, or started
    from other weights, resumes; a real change of the model still does not."""
    from podhl.engine.run_folder import identity_mismatch

    old = {"model": {"fc1": True, "feat_dim": 32}}
    assert (
        identity_mismatch(old, {"model": {"fc1": True, "feat_dim": 32, "init_from": None, "init_criterion": False}})
        is None
    )
    assert (
        identity_mismatch(old, {"model": {"fc1": True, "feat_dim": 32, "init_from": "/runs/a", "init_criterion": True}})
        is None
    )
    why = identity_mismatch(old, {"model": {"fc1": True, "feat_dim": 16, "init_from": None}})
    assert why == "'model' differs: model.feat_dim saved 32, now 16"
