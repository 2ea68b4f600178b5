"""Images → backbone pooled features → optional FC1 → latent features ``x`` (what every loss sees)."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from podhl.errors import ConfigError
from podhl.models.backbones import create_backbone


class FeatureNet(nn.Module):
    """The model never knows which loss trains it: it only returns latent features (B, feat_dim)."""

    def __init__(self, backbone: nn.Module, feat_dim: int | None) -> None:
        super().__init__()
        self.backbone = backbone
        width = int(backbone.num_features)
        head = getattr(backbone, "embedding_head", None)  # a backbone with its own FC5 block (sphereface20_bn)
        self.fc1 = (head(width, feat_dim) if head else nn.Linear(width, feat_dim)) if feat_dim else nn.Identity()
        self.feat_dim = int(feat_dim) if feat_dim else width

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc1(self.backbone(images))


def build_model(
    backbone_cfg: DictConfig, model_cfg: DictConfig, in_chans: int, image_size: int | tuple[int, int]
) -> FeatureNet:
    """Build and dry-run the model on one tiny batch so shape problems surface before training.

    ``image_size``: the side of square images, or (height, width) (e.g. 112×96 faces)."""
    feat_dim = model_cfg.feat_dim if model_cfg.fc1 else None
    if feat_dim is not None and int(feat_dim) <= 0:
        raise ConfigError(f"model.feat_dim must be a positive integer, got {feat_dim}")
    height, width = (image_size, image_size) if isinstance(image_size, int) else map(int, image_size)
    multiple = backbone_cfg.get("img_size_multiple")
    if multiple and (height % int(multiple) or width % int(multiple)):
        raise ConfigError(
            f"backbone '{backbone_cfg.name}' needs an image size that is a multiple of {multiple}, but the dataset "
            f"gives {height}×{width} px. Set dataset.resize (e.g. dataset.resize=224, as POD Table 8 does)."
        )
    meta = ("name", "kind", "timm_name", "fixed_img_size", "img_size_multiple")
    kwargs = {k: v for k, v in backbone_cfg.items() if k not in meta}
    if backbone_cfg.get("fixed_img_size"):
        kwargs["img_size"] = image_size
    backbone = create_backbone(backbone_cfg.timm_name, in_chans=in_chans, **kwargs)
    model = FeatureNet(backbone, feat_dim)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, in_chans, height, width))
    except Exception as err:  # noqa: BLE001 - re-raised with the config context
        raise ConfigError(
            f"backbone '{backbone_cfg.name}' cannot take {in_chans}×{height}×{width} images: {err}. "
            f"Pick a backbone/stem that fits the dataset, or set dataset.resize (e.g. 224 for ViT/Swin)."
        ) from err
    model.train(was_training)
    if out.shape != (2, model.feat_dim):
        raise ConfigError(f"model produced features of shape {tuple(out.shape)}, expected (2, {model.feat_dim})")
    return model
