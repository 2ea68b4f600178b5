"""CIFAR-style backbones timm lacks (HL Table III; after kuangliu/pytorch-cifar). Each returns pooled features
and sets ``.num_features``; ``CIFAR_MODELS`` maps the ``timm_name`` of ``podhl/conf/backbone/<name>.yaml``
to a builder."""

from podhl.models.cifar.dla import DLA, SimpleDLA
from podhl.models.cifar.efficientnet import EfficientNetB0
from podhl.models.cifar.mobilenet import MobileNet
from podhl.models.cifar.preact_resnet import PreActResNet18
from podhl.models.cifar.pyramidnet import PyramidNet

CIFAR_MODELS = {
    "cifar_dla": DLA,
    "cifar_simpledla": SimpleDLA,
    "cifar_efficientnet_b0": EfficientNetB0,
    "cifar_mobilenet": MobileNet,
    "cifar_preactresnet18": PreActResNet18,
    "cifar_pyramidnet": PyramidNet,
}

__all__ = ["CIFAR_MODELS", "DLA", "SimpleDLA", "EfficientNetB0", "MobileNet", "PreActResNet18", "PyramidNet"]
