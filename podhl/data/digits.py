"""scikit-learn's bundled 8×8 handwritten digits (1,797 real images, 10 classes, no download).

Split: stratified, ``test_fraction`` of each class held out with a fixed ``split_seed``.
Pixels are 0..16 in the source; they are scaled to [0, 1] and normalized with the train mean/std.

``classes`` keeps only those digits (relabelled 0..k−1 in the given order). ``verification_classes``
adds an open-set verification set (``dataset=digits_open``): same/different pairs drawn only from
those digits' images, which training never sees, normalized like the training images.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from podhl.data.bundle import DataBundle, VerificationSet
from podhl.data.tensor_dataset import TensorImageDataset
from podhl.errors import ConfigError


def _images(resize: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8)
    if resize:
        images = torch.nn.functional.interpolate(images, size=(resize, resize), mode="bilinear", align_corners=False)
    return images, torch.tensor(digits.target)


def pair_indices(labels: np.ndarray, num_pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``num_pairs`` (half same, half different; order shuffled) index pairs into ``labels``: (P, 2) and is-same (P,)."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    if len(classes) < 2:
        raise ConfigError(f"verification pairs need at least 2 classes, got {classes.tolist()}")
    members = {c: np.flatnonzero(labels == c) for c in classes}
    pairs, same = [], []
    for k in range(num_pairs):
        if k % 2 == 0:  # same: two distinct images of one class
            c = rng.choice([c for c in classes if len(members[c]) > 1])
            pairs.append(rng.choice(members[c], 2, replace=False))
            same.append(True)
        else:  # different: one image of each of two classes
            a, b = rng.choice(classes, 2, replace=False)
            pairs.append([rng.choice(members[a]), rng.choice(members[b])])
            same.append(False)
    order = rng.permutation(num_pairs)  # folds mix same and different pairs
    return np.asarray(pairs)[order], np.asarray(same)[order]


def build(test_fraction: float = 0.2, split_seed: int = 0, resize: int | None = None,
          classes: Sequence[int] | None = None, verification_classes: Sequence[int] | None = None,
          verification_pairs: int = 3000, verification_name: str = "digits_open", pair_seed: int = 0) -> DataBundle:
    images, labels = _images(resize)
    if classes is not None:
        classes = [int(c) for c in classes]
        keep = torch.isin(labels, torch.tensor(classes))
        remap = torch.full((10,), -1, dtype=torch.long)
        remap[torch.tensor(classes)] = torch.arange(len(classes))
        pool_images, pool_labels = images[keep], remap[labels[keep]]
    else:
        pool_images, pool_labels = images, labels
    idx_train, idx_test = train_test_split(
        np.arange(len(pool_labels)), test_size=test_fraction, random_state=split_seed, stratify=pool_labels.numpy()
    )
    train_images = pool_images[idx_train]
    mean, std = [float(train_images.mean())], [float(train_images.std())]
    train = TensorImageDataset(train_images, pool_labels[idx_train], mean, std)
    test = TensorImageDataset(pool_images[idx_test], pool_labels[idx_test], mean, std)
    verification = {}
    if verification_classes:
        held_out = [int(c) for c in verification_classes]
        if classes is None or set(held_out) & set(classes):
            raise ConfigError(f"verification_classes {held_out} must be digits the training classes {classes} leave out "
                              f"(an open-set verification set)")
        mask = torch.isin(labels, torch.tensor(held_out))
        pool, pool_y = images[mask], labels[mask].numpy()
        index, issame = pair_indices(pool_y, int(verification_pairs), pair_seed)
        verification[verification_name] = VerificationSet(
            verification_name, pool[torch.from_numpy(index.reshape(-1))], issame, mean, std,
            f"scikit-learn digits {held_out} ({len(pool)} images never trained on)")
    return DataBundle(
        train=train, test=test, num_classes=len(classes) if classes is not None else 10, in_chans=1,
        image_size=images.shape[-1], resident_train=train.resident(), resident_test=test.resident(),
        verification=verification,
    )
