"""Backbones by name: timm models returning pooled features, with the papers' small-image stems.

``stem``:
* ``imagenet``: unchanged (ImageNet, 224 px).
* ``small``: first conv 3×3 stride 1 and no max-pool (CIFAR, 32 px; POD §4, HL §IV-A).
* ``small_maxpool``: first conv 3×3 stride 1, max-pool kept (Tiny ImageNet, 64 px; POD §4).
Transformers (ViT, Swin) take ``img_size`` instead; a stem choice does not apply to them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from podhl.errors import ConfigError
from podhl.models.small_cnn import SmallCNN
from podhl.models.sphereface import SphereFace, SphereFaceBN

STEMS = ("imagenet", "small", "small_maxpool")


def _small_conv(old: nn.Conv2d) -> nn.Conv2d:
    return nn.Conv2d(old.in_channels, old.out_channels, 3, stride=1, padding=1, bias=old.bias is not None)


def adapt_stem(model: nn.Module, stem: str) -> nn.Module:
    """Replace a timm CNN's stem in place for small images (see module docstring)."""
    if stem == "imagenet":
        return model
    keep_pool = stem == "small_maxpool"
    if hasattr(model, "conv1") and hasattr(model, "maxpool"):  # ResNet family
        model.conv1 = _small_conv(model.conv1)
        model.maxpool = model.maxpool if keep_pool else nn.Identity()
    elif hasattr(model, "features") and hasattr(model.features, "conv0"):  # DenseNet
        model.features.conv0 = _small_conv(model.features.conv0)
        model.features.pool0 = model.features.pool0 if keep_pool else nn.Identity()
    elif hasattr(model, "conv_stem"):  # MobileNetV2 / EfficientNet (3×3 stem, no max-pool)
        model.conv_stem = _small_conv(model.conv_stem)
    else:
        raise ConfigError(f"don't know how to adapt the stem of {type(model).__name__} to '{stem}'")
    return model


def load_weights(model: nn.Module, path: str) -> None:
    """Load a local weights file (``.pt``/``.pth``/``.safetensors``; a raw or wrapped state dict)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"backbone.weights: no file at {file.resolve()}")
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(file))
    else:
        state = torch.load(file, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "backbone"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    state = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()}
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ConfigError(f"backbone.weights: no tensor in {file} matches the backbone's parameter names/shapes")
    model.load_state_dict(usable, strict=False)
    missing = sorted(set(own) - set(usable))
    if missing:
        print(
            f"[podhl] weights {file.name}: {len(usable)} tensors loaded, "
            f"{len(missing)} kept at init (e.g. {missing[:3]})"
        )


def _no_weights(name: str, why) -> str:
    return (
        f"backbone.pretrained=true needs timm's '{name}' weights from the Hugging Face hub, which is not "
        f"reachable ({why}) and has no local copy. Download the weights on a machine with internet and pass "
        f"backbone.weights=<file> (.safetensors/.pth), or set backbone.pretrained=false"
    )


def _check_weights_reachable(name: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not after a minute of hub retries, when the weights are neither cached nor downloadable."""
    import socket
    from urllib.parse import urlparse

    import timm
    from huggingface_hub import constants, try_to_load_from_cache

    hub_id = getattr(timm.models.get_pretrained_cfg(name) or object(), "hf_hub_id", None)
    if hub_id is None or constants.HF_HUB_OFFLINE:
        return  # not a hub model, or the user asked for the cache only: timm reports what it finds
    repo = hub_id.split("/", 2)
    repo_id = "/".join(repo[:2])
    for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
        if isinstance(try_to_load_from_cache(repo_id, filename), str):
            return
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
    except OSError as err:
        raise ConfigError(_no_weights(name, f"{host}: {err}")) from None


def create_backbone(
    name: str,
    in_chans: int = 3,
    stem: str = "imagenet",
    pretrained: bool = False,
    weights: str | None = None,
    img_size: int | tuple[int, int] | None = None,
    **kwargs,
) -> nn.Module:
    """A module mapping images to pooled features, with ``.num_features`` set."""
    if stem not in STEMS:
        raise ConfigError(f"stem must be one of {STEMS}, got '{stem}'")
    if name == "small_cnn":
        return SmallCNN(in_chans=in_chans, **kwargs)
    if name == "sphereface":  # SphereFace-20 (face verification, HL Table VII); built for the input size
        if pretrained:
            raise ConfigError("'sphereface' has no pretrained weights; set backbone.weights=<file> instead")
        model = SphereFace(in_chans=in_chans, img_size=img_size or (112, 96), **kwargs)
        if weights:
            load_weights(model, weights)
        return model
    if name == "sphereface_bn":  # the HL authors' SphereFace-20 with BatchNorm (models/spherenet.py)
        if pretrained:
            raise ConfigError("'sphereface_bn' has no pretrained weights; set backbone.weights=<file> instead")
        model = SphereFaceBN(in_chans=in_chans, img_size=img_size or (112, 96), **kwargs)
        if weights:
            load_weights(model, weights)
        return model
    if name.startswith("cifar_"):  # CIFAR-style models timm lacks (podhl/models/cifar/, HL Table III)
        from podhl.models.cifar import CIFAR_MODELS

        if name not in CIFAR_MODELS:
            raise ConfigError(f"unknown CIFAR backbone '{name}'; known: {', '.join(sorted(CIFAR_MODELS))}")
        if pretrained:
            raise ConfigError(f"'{name}' has no pretrained weights; set backbone.weights=<file> instead")
        model = CIFAR_MODELS[name](in_chans=in_chans, **kwargs)
        if weights:
            load_weights(model, weights)
        return model
    import timm  # imported here: runs with the small CNN don't pay for it

    if img_size is not None:
        kwargs["img_size"] = img_size
    if pretrained:
        _check_weights_reachable(name)
    try:
        model = timm.create_model(name, pretrained=pretrained, num_classes=0, in_chans=in_chans, **kwargs)
    except RuntimeError as err:
        raise ConfigError(f"timm could not create '{name}': {err}") from err
    except OSError as err:  # the hub failed after all (huggingface_hub's errors are OSErrors)
        raise ConfigError(_no_weights(name, err)) from err
    if img_size is None:
        adapt_stem(model, stem)
    if weights:
        load_weights(model, weights)
    return model
