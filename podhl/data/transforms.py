"""Augmentations of the papers.

* 32/64 px sets (CIFAR, Tiny ImageNet, FaceScrub): pad 4, random crop to the original size,
  horizontal flip p=0.5; test images untouched (POD §4.1, HL §IV-A).
* ImageNet: RandomResizedCrop(224) + flip; test Resize(256) + CenterCrop(224) (POD §4.1).
* ``resize``: every image resized to that side (224 for the transformer experiments, POD Table 8).
"""

from __future__ import annotations

from collections.abc import Sequence

from torchvision import transforms as T


def small_image_transforms(
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    augment: bool = True,
    resize: int | None = None,
    padding: int = 4,
) -> tuple[T.Compose, T.Compose]:
    """(train, test) transforms for PIL images of a fixed small size."""
    pre = [T.Resize(resize)] if resize else []
    side = resize or image_size
    aug = [T.RandomCrop(side, padding=padding * side // image_size), T.RandomHorizontalFlip()] if augment else []
    post = [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(pre + aug + post), T.Compose(pre + post)


def imagenet_transforms(
    mean: Sequence[float], std: Sequence[float], crop: int = 224, resize: int = 256, augment: bool = True
) -> tuple[T.Compose, T.Compose]:
    """(train, test) transforms: RandomResizedCrop/flip and Resize/CenterCrop (POD §4.1)."""
    post = [T.ToTensor(), T.Normalize(mean, std)]
    train = [T.RandomResizedCrop(crop), T.RandomHorizontalFlip()] if augment else [T.Resize(resize), T.CenterCrop(crop)]
    return T.Compose(train + post), T.Compose([T.Resize(resize), T.CenterCrop(crop)] + post)
