"""A Faster R-CNN (torchvision's RPN, box coder, sampling, losses and post-processing) whose region classifier
is not part of the model: the box head returns region features, and whatever scores them (a podhl criterion)
is attached at evaluation time.

Design (HL §IV-A, "Faster R-CNN [26]" with d = 2048 region features; the authors' ``faster_rcnn_HL`` code,
TCCofWANG/Hypersphere_loss @ 96376f0e, ``nets/resnet50.py``, ``nets/classifier.py``):

* ``resnet50_c4``: trunk = torchvision ResNet-50 ``conv1 … layer3`` (1024 channels, stride 16); box head =
  ``layer4`` + global average pool → 2048-d region features (the authors' ``Resnet50RoIHead``: ``fc7``).
  ImageNet weights = torchvision's ``IMAGENET1K_V1`` (the file the authors' code loads,
  ``resnet50-19c8e357.pth``). ``norm``: ``eval`` keeps every BatchNorm in eval mode (running statistics
  frozen, affine parameters trained: the authors' ``freeze_bn``), ``frozen`` uses torchvision's
  FrozenBatchNorm2d (nothing trained: torchvision's detection default), ``batch`` trains BatchNorm.
* ``tiny``: a 3-conv trunk (stride 8) and a 1-conv head for CPU tests.
* RoI pooling on the single stride-s map: ``pool`` = RoIPool (the authors' 14×14 ``RoIPool``, default) or
  ``align`` = RoIAlign (sampling ratio 2, as torchvision's MultiScaleRoIAlign).
* Box regression: a class-specific linear layer (4 deltas per class incl. background, init N(0, 0.001) as in
  the authors' ``cls_loc``), trained with torchvision's Fast R-CNN box loss (smooth-L1, β = 1/9, summed over
  the sampled positives and divided by the number of sampled RoIs).

Training forward: ``(region features (R, d), their labels (R,) in 0..K, {rpn + box losses})`` for the RoIs
torchvision's sampler picks (ground-truth boxes appended to the proposals, background = label 0).
Evaluation forward: torchvision's detections (boxes in the input image's pixels, scores, labels 1..K) from
``softmax(scorer(features))`` — the same post-processing torchvision applies to its own logits.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import FrozenBatchNorm2d, roi_align, roi_pool

from podhl.errors import ConfigError

ARCHS = ("resnet50_c4", "tiny")
NORMS = ("eval", "frozen", "batch", "group")
POOLS = ("pool", "align")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

Scorer = Callable[[torch.Tensor], torch.Tensor]


class RoIPooler(nn.Module):
    """RoIPool or RoIAlign on the one feature map ``features["0"]`` of stride ``stride`` (torchvision.ops)."""

    def __init__(self, kind: str, output_size: int, stride: int, sampling_ratio: int = 2) -> None:
        super().__init__()
        if kind not in POOLS:
            raise ConfigError(f"backbone.roi_pool must be one of {POOLS}, got {kind!r}")
        self.kind, self.output_size, self.scale, self.sampling_ratio = (
            kind,
            int(output_size),
            1.0 / stride,
            sampling_ratio,
        )

    def forward(
        self, features: Mapping[str, torch.Tensor], proposals: list[torch.Tensor], image_shapes=None
    ) -> torch.Tensor:
        x = features["0"].float()  # fp32 pooling: box coordinates in half precision would be off by pixels
        boxes = [p.float() for p in proposals]
        if self.kind == "pool":
            return roi_pool(x, boxes, self.output_size, self.scale)
        return roi_align(x, boxes, self.output_size, self.scale, self.sampling_ratio)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, output_size={self.output_size}, scale={self.scale}"


class BoxRegressor(nn.Module):
    """Class-specific box deltas (R, 4·(K + 1)); the class scores come from the criterion."""

    def __init__(self, feat_dim: int, num_classes: int) -> None:
        super().__init__()
        self.bbox_pred = nn.Linear(feat_dim, 4 * num_classes)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.bbox_pred(features)


def box_regression_loss(deltas: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """torchvision's ``fastrcnn_loss`` box term: smooth-L1 (β = 1/9) on the true class's deltas of the
    positives, summed and divided by the number of sampled RoIs."""
    positive = torch.where(labels > 0)[0]
    deltas = deltas.reshape(deltas.shape[0], -1, 4)
    loss = F.smooth_l1_loss(deltas[positive, labels[positive]], targets[positive], beta=1 / 9, reduction="sum")
    return loss / max(labels.numel(), 1)


class RegionHeads(RoIHeads):
    """torchvision's RoIHeads (sampling, box coder, post-processing) with the classifier taken out."""

    def sampled_regions(self, features, proposals, image_shapes, targets):
        """Training: sample RoIs as torchvision does → (features (R, d), labels (R,), {"loss_box_reg"})."""
        proposals, _, labels, regression_targets = self.select_training_samples(proposals, targets)
        self.regions_per_image = [len(lab) for lab in labels]  # rows of each image, in order (criteria's groups)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        deltas = self.box_predictor(box_features)
        labels, regression_targets = torch.cat(labels), torch.cat(regression_targets)
        return box_features, labels, {"loss_box_reg": box_regression_loss(deltas.float(), labels, regression_targets)}

    def labelled_regions(self, features, proposals, image_shapes, targets):
        """Every proposal with a label (torchvision's matcher: IoU ≥ fg → the object's class, < bg → 0, in
        between left out) plus the ground-truth boxes themselves; no random sampling."""
        gt_boxes = [t["boxes"].to(proposals[0].dtype) for t in targets]
        proposals = self.add_gt_proposals(proposals, gt_boxes)
        _, labels = self.assign_targets_to_proposals(proposals, gt_boxes, [t["labels"] for t in targets])
        keep = [lab >= 0 for lab in labels]
        proposals = [p[k] for p, k in zip(proposals, keep, strict=True)]
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        return box_features, torch.cat([lab[k] for lab, k in zip(labels, keep, strict=True)])

    def detect(self, features, proposals, image_shapes, scorer: Scorer) -> list[dict[str, torch.Tensor]]:
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        deltas = self.box_predictor(box_features).float()
        logits = scorer(box_features.float())
        boxes, scores, labels = self.postprocess_detections(logits.float(), deltas, proposals, image_shapes)
        return [{"boxes": b, "scores": s, "labels": lab} for b, s, lab in zip(boxes, scores, labels, strict=True)]

    def forward(self, *args, **kwargs):  # pragma: no cover - the detector calls the methods above
        raise NotImplementedError("RegionHeads is driven by Detector (sampled_regions / labelled_regions / detect)")


class Detector(nn.Module):
    """Faster R-CNN with an external region scorer (see the module docstring)."""

    def __init__(
        self,
        trunk: nn.Module,
        head: nn.Module,
        stride: int,
        feat_dim: int,
        num_classes: int,
        *,
        min_size: int,
        max_size: int,
        anchor_sizes: Sequence[int],
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
        roi_pool: str = "pool",
        roi_size: int = 14,
        norm: str = "eval",
        rpn: Mapping[str, Any] | None = None,
        roi: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        rpn, roi = dict(rpn or {}), dict(roi or {})
        self.feat_dim, self.num_classes, self.stride, self.norm = int(feat_dim), int(num_classes), int(stride), norm
        self.transform = GeneralizedRCNNTransform(int(min_size), int(max_size), list(image_mean), list(image_std))
        self.backbone = trunk
        anchors = AnchorGenerator(
            sizes=(tuple(int(a) for a in anchor_sizes),), aspect_ratios=(tuple(float(r) for r in aspect_ratios),)
        )
        self.rpn = RegionProposalNetwork(
            anchors,
            RPNHead(trunk.out_channels, anchors.num_anchors_per_location()[0]),
            fg_iou_thresh=rpn.get("fg_iou_thresh", 0.7),
            bg_iou_thresh=rpn.get("bg_iou_thresh", 0.3),
            batch_size_per_image=rpn.get("batch_size_per_image", 256),
            positive_fraction=rpn.get("positive_fraction", 0.5),
            pre_nms_top_n={
                "training": rpn.get("pre_nms_top_n_train", 12000),
                "testing": rpn.get("pre_nms_top_n_test", 3000),
            },
            post_nms_top_n={
                "training": rpn.get("post_nms_top_n_train", 600),
                "testing": rpn.get("post_nms_top_n_test", 300),
            },
            nms_thresh=rpn.get("nms_thresh", 0.7),
        )
        self.roi_heads = RegionHeads(
            RoIPooler(roi_pool, roi_size, stride),
            head,
            BoxRegressor(feat_dim, num_classes),
            fg_iou_thresh=roi.get("fg_iou_thresh", 0.5),
            bg_iou_thresh=roi.get("bg_iou_thresh", 0.5),
            batch_size_per_image=roi.get("batch_size_per_image", 128),
            positive_fraction=roi.get("positive_fraction", 0.5),
            bbox_reg_weights=tuple(roi.get("bbox_reg_weights", (10.0, 10.0, 5.0, 5.0))),
            score_thresh=roi.get("score_thresh", 0.02),
            nms_thresh=roi.get("nms_thresh", 0.5),
            detections_per_img=roi.get("detections_per_img") or 10**9,
        )
        self._scorer: list[Scorer] = []  # a list, so a criterion never becomes a submodule (not in state_dict)

    # ------------------------------------------------------------------ modes
    def train(self, mode: bool = True) -> Detector:
        super().train(mode)
        if mode and self.norm == "eval":  # the authors' freeze_bn: statistics fixed, affine still trained
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def set_scorer(self, scorer: Scorer | None) -> None:
        """What scores region features at evaluation: ``criterion.logits`` (class 0 = background)."""
        self._scorer[:] = [] if scorer is None else [scorer]

    # ------------------------------------------------------------------ passes
    def _features(self, images: list[torch.Tensor], targets: list[dict] | None):
        image_list, targets = self.transform(images, targets)
        features = OrderedDict([("0", self.backbone(image_list.tensors))])
        return image_list, targets, features

    def forward(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None):
        if self.training:
            if targets is None:
                raise ValueError("the detector needs targets in training mode")
            image_list, targets, features = self._features(images, targets)
            proposals, rpn_losses = self.rpn(image_list, features, targets)
            region_features, labels, box_losses = self.roi_heads.sampled_regions(
                features, proposals, image_list.image_sizes, targets
            )
            self.regions_per_image = self.roi_heads.regions_per_image  # the sampled RoIs of each image, in order
            return region_features, labels, {**rpn_losses, **box_losses}
        if not self._scorer:
            raise RuntimeError("Detector in eval mode needs a region scorer: detector.set_scorer(criterion.logits)")
        original_sizes = [tuple(img.shape[-2:]) for img in images]
        image_list, _, features = self._features(images, None)
        proposals, _ = self.rpn(image_list, features)
        detections = self.roi_heads.detect(features, proposals, image_list.image_sizes, self._scorer[0])
        return self.transform.postprocess(detections, image_list.image_sizes, original_sizes)

    @torch.no_grad()
    def region_features(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]):
        """Labelled region features without sampling (the RPN's test-time proposals + ground-truth boxes), in the
        current mode (call in eval mode): the feature pass of center-type losses, analyses."""
        image_list, targets, features = self._features(images, targets)
        proposals, _ = self.rpn(image_list, features)
        return self.roi_heads.labelled_regions(features, proposals, image_list.image_sizes, targets)


# ---------------------------------------------------------------------------------------------- builders
class _Trunk(nn.Sequential):
    def __init__(self, *layers: nn.Module, out_channels: int) -> None:
        super().__init__(*layers)
        self.out_channels = out_channels


def _resnet50_c4(pretrained: bool, weights: str | None, norm: str):
    from torchvision.models import ResNet50_Weights, resnet50

    if norm not in ("eval", "frozen", "batch"):
        raise ConfigError(f"backbone.norm for resnet50_c4 must be eval, frozen or batch, got {norm!r}")
    net = resnet50(
        weights=ResNet50_Weights.IMAGENET1K_V1 if pretrained else None,
        norm_layer=FrozenBatchNorm2d if norm == "frozen" else nn.BatchNorm2d,
    )
    if weights:
        from podhl.models.backbones import load_weights

        load_weights(net, weights)
    trunk = _Trunk(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, out_channels=1024)
    head = nn.Sequential(net.layer4, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return trunk, head, 16, 2048


def _conv(cin: int, cout: int, stride: int, norm: str) -> nn.Sequential:
    layer = nn.GroupNorm(8, cout) if norm == "group" else nn.BatchNorm2d(cout)
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), layer, nn.ReLU(inplace=True))


def _tiny(in_chans: int, width: int, feat_dim: int, norm: str):
    if norm not in ("group", "batch", "eval"):
        raise ConfigError(f"backbone.norm for tiny must be group, batch or eval, got {norm!r}")
    trunk = _Trunk(
        _conv(in_chans, width // 2, 2, norm),
        _conv(width // 2, width, 2, norm),
        _conv(width, width, 2, norm),
        out_channels=width,
    )
    head = nn.Sequential(_conv(width, feat_dim, 2, norm), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return trunk, head, 8, feat_dim


def build_detector(
    backbone: Mapping[str, Any],
    num_classes: int,
    in_chans: int,
    *,
    min_size: int,
    max_size: int,
    anchor_sizes: Sequence[int],
    settings: Mapping[str, Any] | None = None,
) -> Detector:
    """``backbone``: the ``backbone`` config of a detector (``arch`` resnet50_c4 | tiny, ``norm``, ``roi_pool``,
    ``roi_size``, ``pretrained``, ``weights``; tiny: ``width``, ``feat_dim``); ``num_classes`` includes the
    background; ``settings``: RPN/RoI/post-processing values (``rpn``, ``roi``, ``aspect_ratios``,
    ``image_mean``, ``image_std``)."""
    arch = backbone.get("arch")
    if arch not in ARCHS:
        raise ConfigError(
            f"task=detection needs a detector backbone (backbone=frcnn_resnet50 or frcnn_tiny: "
            f"backbone.arch one of {ARCHS}); got backbone '{backbone.get('name')}'"
        )
    norm = str(backbone.get("norm", "eval"))
    if arch == "resnet50_c4":
        if in_chans != 3:
            raise ConfigError(f"resnet50_c4 takes 3-channel images, the dataset has {in_chans}")
        trunk, head, stride, feat_dim = _resnet50_c4(
            bool(backbone.get("pretrained", False)), backbone.get("weights"), norm
        )
    else:
        if backbone.get("pretrained"):
            raise ConfigError("the tiny detector backbone has no pretrained weights (backbone.pretrained=false)")
        trunk, head, stride, feat_dim = _tiny(
            in_chans, int(backbone.get("width", 32)), int(backbone.get("feat_dim", 64)), norm
        )
    settings = dict(settings or {})
    mean = settings.get("image_mean") or IMAGENET_MEAN
    std = settings.get("image_std") or IMAGENET_STD
    if len(mean) != in_chans or len(std) != in_chans:
        raise ConfigError(f"task.image_mean/image_std need {in_chans} values (the dataset's channels)")
    return Detector(
        trunk,
        head,
        stride,
        feat_dim,
        num_classes,
        min_size=min_size,
        max_size=max_size,
        anchor_sizes=anchor_sizes,
        aspect_ratios=settings.get("aspect_ratios", (0.5, 1.0, 2.0)),
        image_mean=mean,
        image_std=std,
        roi_pool=str(backbone.get("roi_pool", "pool")),
        roi_size=int(backbone.get("roi_size", 14)),
        norm=norm,
        rpn=settings.get("rpn"),
        roi=settings.get("roi"),
    )
