"""Models: a backbone giving pooled features, then an optional FC1 to the latent dimension."""

from podhl.models.backbones import create_backbone
from podhl.models.feature_net import FeatureNet, build_model

__all__ = ["FeatureNet", "build_model", "create_backbone"]
