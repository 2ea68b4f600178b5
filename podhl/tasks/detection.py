"""Object detection with a podhl criterion as the region classifier (HL §IV-H, Tables VIII–IX).

The detector (:mod:`podhl.models.detection`: torchvision's Faster R-CNN pieces, a ResNet-50 C4 box head with
2048-d region features) returns, for each training batch, the features of the RoIs torchvision's sampler
picks and their labels (background = class 0, objects 1..K), plus its own losses (RPN objectness, RPN box,
RoI box regression). The loop hands features and labels to the criterion like image features, and adds the
task's losses to the criterion's ``loss`` (:class:`~podhl.tasks.base.StepOutput` ``terms``). Stateful
criteria (HL centers, center loss, CCL) see region features through the same hooks. At evaluation the
criterion's ``logits`` score the test-time proposals (softmax over them, then torchvision's per-class NMS),
and AP@0.5 and the best-box accuracy are computed as the authors' code does
(:mod:`podhl.tasks.detection_metrics`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm.auto import tqdm

from podhl import distributed as dist
from podhl.checks import in_range, integer, one_of
from podhl.data import build_detection_data, collate_detection
from podhl.data.letterbox import AuthorsAugment
from podhl.errors import ConfigError
from podhl.models.detection import Detector, build_detector
from podhl.tasks.base import LoadersTask, Runtime, StepOutput
from podhl.tasks.detection_metrics import ImageDetections, ImageTruth, average_precision, best_box_accuracy


def unwrap(model: nn.Module) -> Detector:
    """The detector inside a DDP and/or torch.compile wrapper."""
    for attr in ("_orig_mod", "module", "_orig_mod"):
        model = getattr(model, attr, model)
    if not isinstance(model, Detector):
        raise ConfigError(
            f"task=detection works on its detector, got {type(model).__name__} "
            "(analyses with layer=backbone do not apply to detection; use layer=latent)"
        )
    return model


NORMALIZATIONS = ("imagenet", "divide255")
AUGMENTATIONS = ("flip", "authors")


def _base_dataset(dataset):
    """The dataset under ``Subset`` wrappers."""
    while hasattr(dataset, "dataset") and not hasattr(dataset, "augmentation"):
        dataset = dataset.dataset
    return dataset


class DetectionTask(LoadersTask):
    """Faster R-CNN on a detection dataset (``dataset`` group: voc0712, rpc, digits_boxes); ``map50`` is
    AP@0.5 (%), ``box_acc`` the best-box classification accuracy (%).

    Options (``podhl/conf/task/detection.yaml``): ``normalize`` (``imagenet`` | ``divide255``, the HL authors'),
    ``augment`` (``flip`` | ``authors``: :class:`podhl.data.letterbox.AuthorsAugment` with ``letterbox_size``,
    ``jitter``, ``scale``, ``hsv``), ``eval_loss`` (also report the training loss on the evaluation images, the
    HL authors' checkpoint criterion)."""

    primary_metric = "map50"
    validation_metric = "val_map50"
    backbone_kind = "detector"
    backbone_examples = "backbone=frcnn_resnet50 or backbone=frcnn_tiny"

    def __init__(
        self,
        rpn: dict | None = None,
        roi: dict | None = None,
        aspect_ratios=(0.5, 1.0, 2.0),
        image_mean=None,
        image_std=None,
        iou_threshold: float = 0.5,
        normalize: str = "imagenet",
        augment: str = "flip",
        letterbox_size: int = 600,
        jitter: float = 0.3,
        scale=(0.25, 2.0),
        hsv=(0.1, 0.7, 0.4),
        eval_loss: bool = False,
    ) -> None:
        self.rpn = dict(OmegaConf.to_container(rpn, resolve=True) if isinstance(rpn, DictConfig) else rpn or {})
        self.roi = dict(OmegaConf.to_container(roi, resolve=True) if isinstance(roi, DictConfig) else roi or {})
        self.aspect_ratios = [float(r) for r in aspect_ratios]
        self.image_mean = list(image_mean) if image_mean is not None else None
        self.image_std = list(image_std) if image_std is not None else None
        self.iou_threshold = in_range("iou_threshold", iou_threshold, 0.0, 1.0, low_open=True)
        for key in (
            "pre_nms_top_n_train",
            "post_nms_top_n_train",
            "pre_nms_top_n_test",
            "post_nms_top_n_test",
            "batch_size_per_image",
        ):
            if key in self.rpn:
                integer(f"rpn.{key}", self.rpn[key], low=1)
        integer("roi.batch_size_per_image", self.roi.get("batch_size_per_image", 128), low=1)
        self.normalize = one_of("task.normalize", normalize, NORMALIZATIONS)
        if self.normalize == "divide255" and (self.image_mean is not None or self.image_std is not None):
            raise ConfigError("task.normalize=divide255 sets the mean and std itself: leave task.image_mean/std null")
        self.augment = one_of("task.augment", augment, AUGMENTATIONS)
        self.authors_augment = (
            AuthorsAugment(letterbox_size, jitter, list(scale), list(hsv)) if self.augment == "authors" else None
        )
        self.eval_loss = bool(one_of("task.eval_loss", eval_loss, (False, True)))

    # ------------------------------------------------------------------ setup
    def setup(self, cfg: DictConfig, runtime: Runtime) -> None:
        self.runtime = runtime
        self.dataset_name = str(cfg.dataset.name)
        self.data = build_detection_data(cfg.dataset)
        if self.authors_augment is not None:  # task.augment=authors, on the training copy whose flip is on
            train = _base_dataset(self.data.train)
            if getattr(train, "flip", False):
                train.augmentation = self.authors_augment
        if cfg.trainer.gpu_resident:
            raise ConfigError(
                "trainer.gpu_resident=true applies to in-memory classification sets, not to task=detection"
            )
        self.build_loaders(cfg, runtime, self.data, collate_fn=collate_detection)
        # smoke runs (smoke=cpu): fewer proposals and sampled RoIs per image
        for key, targets in (
            (
                "limit_proposals_per_image",
                [(self.rpn, "post_nms_top_n_train", 600), (self.rpn, "post_nms_top_n_test", 300)],
            ),
            ("limit_rois_per_image", [(self.roi, "batch_size_per_image", 128)]),
        ):
            limit = cfg.trainer.get(key)
            if limit is not None:
                integer(f"trainer.{key}", limit, low=1)
                for node, name, default in targets:
                    node[name] = min(int(node.get(name, default)), int(limit))

    @property
    def num_classes(self) -> int:
        return self.data.num_classes + 1  # background = class 0

    def build_model(self, cfg: DictConfig) -> nn.Module:
        backbone = OmegaConf.to_container(cfg.backbone, resolve=True)
        return build_detector(
            backbone,
            self.num_classes,
            self.data.in_chans,
            min_size=self.data.min_size,
            max_size=self.data.max_size,
            anchor_sizes=self.data.anchor_sizes,
            settings={
                "rpn": self.rpn,
                "roi": self.roi,
                "aspect_ratios": self.aspect_ratios,
                "image_mean": [0.0] * self.data.in_chans if self.normalize == "divide255" else self.image_mean,
                "image_std": [1.0] * self.data.in_chans if self.normalize == "divide255" else self.image_std,
            },
        )

    def describe(self) -> str:
        kind = " (SYNTHETIC)" if self.data.synthetic else ""
        return (
            f"{self.dataset_name}{kind}: {len(self.data.train)} train / {len(self.data.test)} test images, "
            f"{self.data.num_classes} object classes + background"
        )

    # ------------------------------------------------------------------ training
    def _images_to_device(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        return [image.to(self.runtime.device, non_blocking=True) for image in images]

    def to_device(self, batch):
        images, targets = batch
        device = self.runtime.device
        return self._images_to_device(images), [
            {k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets
        ]

    def split(self, batch, parts: int):
        images, targets = batch
        bounds = np.linspace(0, len(images), parts + 1).round().astype(int)
        return [(images[a:b], targets[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=False) if b > a]

    def batch_size(self, batch) -> int:
        return len(batch[0])

    def forward(self, model: nn.Module, batch) -> StepOutput:
        images, targets = batch
        with self.runtime.autocast():
            features, labels, terms = model(images, targets)
        groups = list(getattr(unwrap(model), "regions_per_image", None) or []) or None
        return StepOutput(features.float(), labels, {k: v.float() for k, v in terms.items()}, groups)

    @torch.no_grad()
    def feature_batches(
        self, model: nn.Module, split: str, shard: bool = True
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Per batch of images of ``split`` (training images without flipping, difficult objects left out):
        the region features of every test-time proposal labelled by the training matcher (IoU ≥ fg → its
        object's class, < bg → background 0, in between left out) and of every ground-truth box, in eval mode.
        Center-type losses' feature passes and analyses read these (all regions, not a random sample)."""
        detector = unwrap(model)
        was_training = detector.training
        detector.eval()
        try:
            for batch in self.loaders.eval(split, shard):
                images, targets = self.to_device(batch)
                with self.runtime.autocast():
                    features, labels = detector.region_features(images, targets)
                yield features.float(), labels
        finally:
            detector.train(was_training)

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(
        self, model: nn.Module, criterion: nn.Module, limit_batches: int | None = None, split: str = "test"
    ) -> dict[str, float]:
        """Detect on ``split`` with ``criterion.logits`` as the region scorer; AP@0.5 (%), best-box accuracy (%).
        Test keys are unprefixed (``map50``, ``box_acc``); validation keys are ``val_map50``, ... plus ``val_loss``
        (the training loss on the validation images, :meth:`evaluation_loss`; on test too with ``task.eval_loss=true``:
        ``test_loss``)."""
        out = self._detect(model, criterion, limit_batches, split)
        if split == "val":
            return {f"val_{k}": v for k, v in out.items()}
        if "loss" in out:
            out["test_loss"] = out.pop("loss")  # test_loss as classification names it
        return out

    def _detect(self, model: nn.Module, criterion: nn.Module, limit_batches: int | None, split: str):
        detector = unwrap(model)
        was_training = detector.training
        detector.eval()
        criterion.eval()
        detector.set_scorer(criterion.logits)
        detections: list[ImageDetections] = []
        truths: list[ImageTruth] = []
        loader = self.loaders.eval(split)
        total = len(loader) if limit_batches is None else min(int(limit_batches), len(loader))
        bar = tqdm(
            total=total,
            desc="evaluate",
            leave=False,
            dynamic_ncols=True,
            disable=None if self.runtime.progress else True,
        )
        try:
            for i, (images, targets) in enumerate(loader):
                if i >= total:
                    break
                with self.runtime.autocast():
                    outputs = detector(self._images_to_device(images))
                for out, target in zip(outputs, targets, strict=True):
                    detections.append(
                        ImageDetections(
                            out["boxes"].float().cpu().numpy(),
                            out["scores"].float().cpu().numpy(),
                            out["labels"].cpu().numpy(),
                        )
                    )
                    truths.append(
                        ImageTruth(target["boxes"].numpy(), target["labels"].numpy(), target["difficult"].numpy())
                    )
                bar.update(1)
        finally:
            bar.close()
            detector.set_scorer(None)
            detector.train(was_training)
            criterion.train()
        detections = [d for part in dist.all_gather_objects(detections) for d in part]  # every rank's shard
        truths = [t for part in dist.all_gather_objects(truths) for t in part]
        with_loss = self.eval_loss or split == "val"  # val_loss: for trainer.select=val_loss
        extra = {"loss": self.evaluation_loss(model, criterion, loader, total)} if with_loss else {}
        ap = average_precision(detections, truths, self.iou_threshold)
        acc = best_box_accuracy(detections, truths, self.iou_threshold)
        return {
            "map50": 100.0 * ap["map"],
            "box_acc": 100.0 * acc["accuracy"],
            "box_acc_matched": 100.0 * acc["matched"] / max(acc["objects"], 1),  # objects counted by box_acc
            "detections_per_image": float(np.mean([len(d.labels) for d in detections])) if detections else 0.0,
            **extra,
        }

    @torch.no_grad()
    def evaluation_loss(self, model: nn.Module, criterion: nn.Module, loader, total: int) -> float:
        """The training loss (criterion + RPN and box terms) on evaluation images, mean over batches, as the HL
        authors' validation loss (``faster_rcnn_HL/utils/utils_fit.py`` @87301df: ``train_util.forward`` under
        ``no_grad``, model in training mode with its BatchNorm frozen, RoIs sampled as in training). torch's
        random state, the model's buffers and the criterion's state are left as they were: nothing is updated."""
        detector = unwrap(model)
        was_training = detector.training
        buffers = [b.clone() for b in model.buffers()]
        criterion_state = {k: v.clone() for k, v in criterion.state_dict().items()}
        detector.train()
        sums, count = 0.0, 0
        devices = [self.runtime.device] if self.runtime.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                for i, batch in enumerate(loader):
                    if i >= total:
                        break
                    images, targets = self.to_device(batch)
                    # difficult objects left out, as in training (voc_annotation.py @87301df drops them)
                    targets = [
                        {"boxes": t["boxes"][~t["difficult"]], "labels": t["labels"][~t["difficult"]]} for t in targets
                    ]
                    with self.runtime.autocast():
                        features, labels, terms = detector(images, targets)
                    groups = list(detector.regions_per_image)
                    grouped = getattr(criterion, "takes_groups", False)
                    out = criterion(features.float(), labels, **({"groups": groups} if grouped else {}))
                    sums += float(out["loss"] + sum(v.float() for v in terms.values()))
                    count += 1
        finally:
            detector.train(was_training)
            for buffer, saved in zip(model.buffers(), buffers, strict=True):
                buffer.copy_(saved)
            criterion.load_state_dict(criterion_state)
        local = torch.tensor([sums, float(count)], dtype=torch.float64, device=self.runtime.device)
        dist.all_reduce_sum(local)
        return float(local[0] / local[1].clamp_min(1))
