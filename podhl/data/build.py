"""``dataset`` config → :class:`~podhl.data.bundle.DataBundle` (classification) or
:class:`~podhl.data.detection.DetectionBundle` (detection): the YAML's ``source`` node (Hydra's ``_target_`` is
the registry), checked against the shape the YAML declares; or a smoke run's SYNTHETIC stand-in."""

from __future__ import annotations

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from podhl.data.box_composites import random_boxes
from podhl.data.bundle import DataBundle
from podhl.data.detection import DetectionBundle
from podhl.data.synthetic import build as synthetic
from podhl.errors import ConfigError, DatasetNotFoundError

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


def build_data(dataset_cfg: DictConfig) -> DataBundle:
    """Instantiate ``dataset.source`` (or a smoke run's stand-in) and check it against the config's declared shape."""
    if dataset_cfg.get("standin") and not dataset_cfg.get("embedded"):
        return build_standin(dataset_cfg)
    bundle = _instantiate_source(dataset_cfg)
    if isinstance(bundle, DetectionBundle):
        raise ConfigError(f"dataset '{dataset_cfg.name}' is a detection dataset: run it with task=detection")
    if not isinstance(bundle, DataBundle):
        raise ConfigError(f"dataset.source._target_ must return a DataBundle, got {type(bundle).__name__}")
    _check_classes(dataset_cfg, bundle)
    return bundle


def build_detection_data(dataset_cfg: DictConfig) -> DetectionBundle:
    """Detection datasets: ``dataset.source`` must return a DetectionBundle with ``num_classes`` object classes;
    with ``dataset.standin=true`` (smoke runs) a file-based set becomes a SYNTHETIC stand-in of the same classes
    (:func:`~podhl.data.box_composites.random_boxes`: a few small canvases of coloured boxes)."""
    if dataset_cfg.get("standin") and not dataset_cfg.get("embedded"):
        return random_boxes(int(dataset_cfg.num_classes))
    bundle = _instantiate_source(dataset_cfg)
    if not isinstance(bundle, DetectionBundle):
        raise ConfigError(
            f"task=detection needs a detection dataset (voc0712, rpc, digits_boxes, or a source returning "
            f"a DetectionBundle); dataset '{dataset_cfg.name}' gives {type(bundle).__name__}"
        )
    _check_classes(dataset_cfg, bundle)
    return bundle
