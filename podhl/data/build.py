"""``dataset`` config → :class:`~podhl.data.bundle.DataBundle` (classification) or
:class:`~podhl.data.detection.DetectionBundle` (detection): the YAML's ``source`` node (Hydra's ``_target_`` is
the registry), checked against the shape the YAML declares; or a smoke run's SYNTHETIC stand-in."""

from __future__ import annotations

import copy
import dataclasses
import logging

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from podhl.data.box_composites import random_boxes
from podhl.data.bundle import DataBundle
from podhl.data.detection import DetectionBundle
from podhl.data.split import SplitSubset, check_fraction, labels_of, validation_split
from podhl.data.synthetic import build as synthetic
from podhl.errors import ConfigError, DatasetNotFoundError

log = logging.getLogger("podhl")
STANDIN_SIZES = (64, 32)  # train / test images of a smoke run's stand-in


def build_standin(dataset_cfg: DictConfig) -> DataBundle:
    """A SYNTHETIC stand-in with the dataset's classes and channels at ≤ 32 px, for smoke runs
    (``dataset.standin=true``, set by ``smoke=cpu``): it tests the plumbing; its accuracy means nothing."""
    size = dataset_cfg.image_size  # a side, or [height, width] (faces): the stand-in is square
    side = int(size) if isinstance(size, int) else max(int(s) for s in size)
    return synthetic(
        num_classes=int(dataset_cfg.num_classes),
        image_size=min(side, 32),
        in_chans=int(dataset_cfg.in_chans),
        train_size=STANDIN_SIZES[0],
        test_size=STANDIN_SIZES[1],
    )


def _instantiate_source(dataset_cfg: DictConfig):
    try:
        return instantiate(dataset_cfg.source)
    except InstantiationException as err:  # surface our own errors (missing files) unwrapped
        if isinstance(err.__cause__, (ConfigError, DatasetNotFoundError)):
            raise err.__cause__ from None
        raise


def _check_classes(dataset_cfg: DictConfig, bundle) -> None:
    declared = int(dataset_cfg.num_classes)
    targets = getattr(bundle.train, "targets", None)
    present = len(set(targets)) if targets is not None else bundle.num_classes
    if bundle.num_classes != declared or present != declared:
        raise ConfigError(
            f"dataset '{dataset_cfg.name}' declares num_classes={declared} but its training split holds "
            f"{present} classes; set dataset.num_classes={present} (or fewer, where the dataset allows a subset)"
        )


def with_validation(bundle, fraction: float, seed: int):
    """``bundle`` with ``fraction`` of its training split held out for validation (:mod:`podhl.data.split`):
    ``train``/``train_eval``/``resident_train`` shrink to the rest, ``val`` is the hold-out without augmentation
    (detection: unflipped, difficult objects kept, as test images are evaluated)."""
    detection = isinstance(bundle, DetectionBundle)
    labels = None if detection else labels_of(bundle.train)
    if labels is None and getattr(bundle, "resident_train", None) is not None:
        labels = bundle.resident_train.labels.tolist()
    split = validation_split(len(bundle.train), fraction, seed, labels)
    if not split.stratified and not detection:
        log.warning("dataset.val_fraction: the training split has no per-sample labels to stratify by; unstratified")
    plain = bundle.train_eval or bundle.train  # the training samples without augmentation
    if detection:
        plain = copy.copy(plain)
        plain.flip, plain.drop_difficult = False, False
    changes = {
        "train": SplitSubset(bundle.train, split.train, labels),
        "train_eval": None if bundle.train_eval is None else SplitSubset(bundle.train_eval, split.train, labels),
        "val": SplitSubset(plain, split.val, labels),
        "split": split.record(fraction, seed),
    }
    arrays = getattr(bundle, "resident_train", None)
    if arrays is not None:
        index_t, index_v = torch.as_tensor(split.train), torch.as_tensor(split.val)
        changes["resident_train"] = dataclasses.replace(
            arrays, images=arrays.images[index_t], labels=arrays.labels[index_t]
        )
        changes["resident_val"] = dataclasses.replace(
            arrays, images=arrays.images[index_v], labels=arrays.labels[index_v], pad=0, flip=False
        )
    return dataclasses.replace(bundle, **changes)


def _split_off_validation(dataset_cfg: DictConfig, bundle):
    fraction = check_fraction(dataset_cfg.get("val_fraction", 0) or 0)
    if fraction == 0:
        return bundle  # no split: the training split as it is (today's runs, the papers' protocol)
    return with_validation(bundle, fraction, int(dataset_cfg.get("split_seed", 0) or 0))


def build_data(dataset_cfg: DictConfig) -> DataBundle:
    """Instantiate ``dataset.source`` (or a smoke run's stand-in), check it against the config's declared shape and
    hold out ``dataset.val_fraction`` of the training split for validation."""
    if dataset_cfg.get("standin") and not dataset_cfg.get("embedded"):
        return _split_off_validation(dataset_cfg, build_standin(dataset_cfg))
    bundle = _instantiate_source(dataset_cfg)
    if isinstance(bundle, DetectionBundle):
        raise ConfigError(f"dataset '{dataset_cfg.name}' is a detection dataset: run it with task=detection")
    if not isinstance(bundle, DataBundle):
        raise ConfigError(f"dataset.source._target_ must return a DataBundle, got {type(bundle).__name__}")
    _check_classes(dataset_cfg, bundle)
    return _split_off_validation(dataset_cfg, bundle)


def build_detection_data(dataset_cfg: DictConfig) -> DetectionBundle:
    """Detection datasets: ``dataset.source`` must return a DetectionBundle with ``num_classes`` object classes;
    with ``dataset.standin=true`` (smoke runs) a file-based set becomes a SYNTHETIC stand-in of the same classes
    (:func:`~podhl.data.box_composites.random_boxes`: a few small canvases of coloured boxes)."""
    if dataset_cfg.get("standin") and not dataset_cfg.get("embedded"):
        return _split_off_validation(dataset_cfg, random_boxes(int(dataset_cfg.num_classes)))
    bundle = _instantiate_source(dataset_cfg)
    if not isinstance(bundle, DetectionBundle):
        raise ConfigError(
            f"task=detection needs a detection dataset (voc0712, rpc, digits_boxes, or a source returning "
            f"a DetectionBundle); dataset '{dataset_cfg.name}' gives {type(bundle).__name__}"
        )
    _check_classes(dataset_cfg, bundle)
    return _split_off_validation(dataset_cfg, bundle)
