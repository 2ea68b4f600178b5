"""The validation split (``dataset.val_fraction``, ``dataset.split_seed``) and what chooses the reported epoch
(``trainer.select``): disjoint, stratified, the same for every loss and seed, recorded; ``val_fraction=0`` is the
run without a split (the papers' protocol), unchanged."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from conftest import read_metrics
from podhl.data.split import indices_sha256, validation_split
from podhl.errors import ConfigError

ONE_TEST_IMAGE = 100 / 360  # digits' test split


def digits_cfg(**changes):
    from podhl.config import compose_run

    cfg, _ = compose_run([f"dataset.{k}={v}" for k, v in changes.items()])
    return cfg.dataset


# ---------------------------------------------------------------------- the split itself
def test_split_disjoint_stratified_by_hand():
    labels = np.repeat(np.arange(4), [10, 21, 5, 2])  # 38 samples; class sizes 10, 21, 5, 2
    split = validation_split(len(labels), 0.25, seed=3, labels=labels)
    assert not set(split.train) & set(split.val)
    assert sorted([*split.train, *split.val]) == list(range(38))
    # per class: floor(0.25 n + 0.5), at least one (n ≥ 2), at most n − 1 -> 3 (2.5 rounds up), 5, 1, 1
    assert np.bincount(labels[split.val], minlength=4).tolist() == [3, 5, 1, 1]
    assert split.stratified
    again = validation_split(len(labels), 0.25, seed=3, labels=labels)
    assert np.array_equal(again.val, split.val)  # a function of (labels, fraction, split_seed) only
    other = validation_split(len(labels), 0.25, seed=4, labels=labels)
    assert not np.array_equal(other.val, split.val)
    assert split.record(0.25, 3)["val_indices_sha256"] == indices_sha256(split.val[::-1])  # order-free identity


def test_split_unstratified_without_labels():
    split = validation_split(50, 0.1, seed=0)
    assert len(split.val) == 5 and not split.stratified and not set(split.train) & set(split.val)


def test_val_fraction_checked():
    from podhl.data import build_data

    for bad in (1.0, -0.1, "abc"):
        with pytest.raises(ConfigError, match="val_fraction must be a number in"):
            build_data(digits_cfg(val_fraction=bad))


def test_digits_split_is_carved_from_train_never_test():
    from podhl.data import build_data

    whole = build_data(digits_cfg(val_fraction=0))
    split = build_data(digits_cfg(val_fraction=0.1))
    assert whole.val is None and len(whole.train) == 1437 and len(whole.test) == 360
    assert len(split.train) + len(split.val) == 1437 and len(split.test) == 360  # test untouched
    train_idx, val_idx = set(split.train.indices), set(split.val.indices)
    assert not train_idx & val_idx and train_idx | val_idx == set(range(1437))
    assert len(split.val.dataset) == len(split.train.dataset) == 1437  # both index the training split
    labels = np.asarray(whole.train.targets)
    counts, held = np.bincount(labels), np.bincount(labels[sorted(val_idx)], minlength=10)
    assert np.array_equal(held, np.floor(0.1 * counts + 0.5).astype(int))  # stratified, per class
    for i in (0, 7, 100):  # the same samples, un-augmented
        image, label = split.val[i]
        ref_image, ref_label = whole.train[split.val.indices[i]]
        assert label == ref_label and np.array_equal(image.numpy(), ref_image.numpy())
    # the in-memory copy (trainer.gpu_resident) is split the same way
    assert split.resident_val.labels.tolist() == labels[split.val.indices].tolist()
    assert split.resident_train.labels.tolist() == labels[split.train.indices].tolist()
    assert split.resident_val.pad == 0 and not split.resident_val.flip


# ---------------------------------------------------------------------- runs
def test_split_shared_across_losses_and_seeds_and_recorded(run_cli):
    """The same split for every loss and seed of a sweep (split_seed, not seed); val_* and test_* every epoch;
    best.pt, best_* and the sweep objective from the validation metric."""
    proc, sweep = run_cli("loss=softmax,center", "seed=0,1", "schedule.epochs=2", multirun=True)
    runs = sorted(p.parent for p in sweep.glob("*/metrics.json"))
    assert len(runs) == 4, proc.stdout + proc.stderr
    hashes = set()
    for run in runs:
        m = read_metrics(run)
        hashes.add(m["split"]["val_indices_sha256"])
        assert m["split"]["val_size"] == 145 and m["split"]["train_size"] == 1292 and m["split"]["stratified"]
        assert m["selected_by"] == "val_acc" and m["objective_metric"] == "best_val_acc"
        assert m["protocol"].startswith("validated (val_fraction=0.1")
        with open(run / "history.csv") as f:
            rows = list(csv.DictReader(f))
        assert {"val_acc", "val_loss", "test_acc", "test_loss"} <= set(rows[0])
        best = max(rows, key=lambda r: float(r["val_acc"]))  # first maximum, as the trainer keeps it
        assert m["best_epoch"] == int(best["epoch"])
        assert m["best_val_acc"] == pytest.approx(float(best["val_acc"]))
        assert m["best_test_acc"] == pytest.approx(float(best["test_acc"]))  # test at the best-validation epoch
        assert m["test_acc"] == pytest.approx(float(rows[-1]["test_acc"]))  # and at the last epoch
        assert m["objective"] == m["best_val_acc"]
    assert len(hashes) == 1
    other, _ = run_cli("dataset.split_seed=1", "schedule.epochs=1", run_dir=sweep.parent / "other")
    assert read_metrics(sweep.parent / "other")["split"]["val_indices_sha256"] not in hashes


def test_val_fraction_0_is_the_run_without_a_split(run_cli):
    """val_fraction=0 trains on the whole training split and selects on test, as before the split existed: the
    quickstart's softmax run gives the numbers it gave then (99.72 last, 100.00 best over epochs, on this project's
    machine with 2 threads; within one test image across thread counts)."""
    _, run = run_cli("experiment=quickstart", "loss=softmax", "dataset.val_fraction=0", "hydra.mode=RUN")
    m = read_metrics(run)
    assert m["split"] == {"val_fraction": 0} and m["selected_by"] == "test_acc"
    assert m["protocol"].startswith("test-selected") and m["objective"] == m["test_acc"]
    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert not any(k.startswith("val_") for k in rows[0])
    assert m["best_test_acc"] == max(float(r["test_acc"]) for r in rows)
    assert abs(m["test_acc"] - 99.72) <= ONE_TEST_IMAGE + 0.01 and abs(m["best_test_acc"] - 100.0) <= ONE_TEST_IMAGE
    assert "1437 train / 360 test" in (run / "train.log").read_text()


@pytest.mark.parametrize(
    ("select", "column", "pick"), [("val_loss", "val_loss", min), ("last", "epoch", max), ("test", "test_acc", max)]
)
def test_trainer_select(train, select, column, pick):
    trainer, m = train("schedule.epochs=3", f"trainer.select={select}", "trainer.save_checkpoints=false")
    chosen = pick(trainer.history, key=lambda r: r[column])
    assert m["selected_by"] == column and m["best_epoch"] == chosen["epoch"]
    assert m["best_test_acc"] == chosen["test_acc"] and m["best_val_loss"] == chosen["val_loss"]


def test_select_val_needs_a_split(run_cli):
    proc, _ = run_cli("trainer.select=val", "dataset.val_fraction=0", check=False)
    assert proc.returncode == 2
    assert "trainer.select=val needs a validation split: set dataset.val_fraction > 0" in proc.stdout + proc.stderr


def test_paper_experiments_keep_the_papers_protocol():
    from podhl.config import compose_run

    for name in ("pod_table4", "hl_table6", "repro_table4_digits"):
        cfg, _ = compose_run([f"experiment={name}"])
        assert cfg.dataset.val_fraction == 0, name
    cfg, _ = compose_run(["experiment=pod_table4", "dataset.val_fraction=0.1"])  # the validated protocol
    assert cfg.dataset.val_fraction == 0.1
    assert OmegaConf.select(compose_run([])[0], "dataset.val_fraction") == 0.1  # plain runs: validated


def test_verification_selects_on_held_out_training_identities(train):
    trainer, m = train("experiment=verification_digits", "schedule.epochs=1", "trainer.save_checkpoints=false")
    assert m["selected_by"] == "val_acc" and m["best_val_acc"] is not None and m["verify_acc"] is not None
    assert "digits_open_acc" in trainer.history[-1] and "val_acc" in trainer.history[-1]


def test_detection_validation_metrics(train):
    trainer, m = train(
        "task=detection",
        "dataset=digits_boxes",
        "backbone=frcnn_tiny",
        "smoke=cpu",
        "trainer.save_checkpoints=false",
    )
    row = trainer.history[-1]
    assert {"val_map50", "val_box_acc", "val_loss", "map50"} <= set(row)
    assert m["selected_by"] == "val_map50" and m["objective"] == m["best_val_map50"]
    assert json.dumps(m["split"])  # recorded
    assert not m["split"]["stratified"]  # images hold several classes: an unstratified hold-out
