"""scikit-learn's bundled 8×8 handwritten digits (1,797 real images, 10 classes, no download).

Split: stratified, ``test_fraction`` of each class held out with a fixed ``split_seed``
(scikit-learn's ``train_test_split``). Pixels are 0..16 in the source; they are scaled to [0, 1] and
normalized with the train mean/std.

``classes`` keeps only those digits (relabelled 0..k−1 in the given order). ``verification_classes``
adds an open-set verification set (``dataset=digits_open``): same/different pairs drawn only from
those digits' images, which training never sees, normalized like the training images.

Start-up: importing scikit-learn costs ~2 s (scipy), more than a digits epoch. The images are read
straight from the CSV file scikit-learn ships, and the split's indices are cached per (labels, seed,
fraction, scikit-learn version) in ``$PODHL_CACHE_DIR/digits`` (default ``~/.cache/podhl``), so only
the first run imports scikit-learn.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from podhl.data.bundle import DataBundle, VerificationSet
from podhl.data.tensor_dataset import TensorImageDataset
from podhl.errors import ConfigError


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 8, 8) float, labels (1797,) int) from scikit-learn's ``digits.csv.gz``, without importing it."""
    origin = importlib.util.find_spec("sklearn").origin
    with gzip.open(Path(origin).parent / "datasets" / "data" / "digits.csv.gz", "rt") as f:
        data = np.loadtxt(f, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's stratified ``train_test_split`` of the indices, cached on disk."""
    cache = Path(os.environ.get("PODHL_CACHE_DIR") or Path.home() / ".cache" / "podhl") / "digits"
    key = hashlib.sha1(np.ascontiguousarray(labels, dtype=np.int64).tobytes()).hexdigest()[:16]
    path = cache / f"split_{key}_{test_fraction!r}_{seed}_sklearn{version('scikit-learn')}.npz"
    try:
        stored = np.load(path)
        return stored["train"], stored["test"]
    except (OSError, KeyError, ValueError):
        pass
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(np.arange(len(labels)), test_size=test_fraction, random_state=seed, stratify=labels)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.npz")
        np.savez(tmp, train=train, test=test)
        tmp.replace(path)
    except OSError:
        pass
    return train, test


def _images(resize: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    raw_images, raw_labels = load_digits_arrays()
    images = torch.tensor(raw_images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8)
    if resize:
        images = torch.nn.functional.interpolate(images, size=(resize, resize), mode="bilinear", align_corners=False)
    return images, torch.tensor(raw_labels)


def pair_indices(labels: np.ndarray, num_pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``num_pairs`` (half same, half different; order shuffled) index pairs into ``labels``:
    (P, 2) and is-same (P,)."""
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


def build(
    test_fraction: float = 0.2,
    split_seed: int = 0,
    resize: int | None = None,
    classes: Sequence[int] | None = None,
    verification_classes: Sequence[int] | None = None,
    verification_pairs: int = 3000,
    verification_name: str = "digits_open",
    pair_seed: int = 0,
) -> DataBundle:
    images, labels = _images(resize)
    if classes is not None:
        classes = [int(c) for c in classes]
        keep = torch.isin(labels, torch.tensor(classes))
        remap = torch.full((10,), -1, dtype=torch.long)
        remap[torch.tensor(classes)] = torch.arange(len(classes))
        pool_images, pool_labels = images[keep], remap[labels[keep]]
    else:
        pool_images, pool_labels = images, labels
    idx_train, idx_test = stratified_split(pool_labels.numpy(), test_fraction, split_seed)
    train_images = pool_images[idx_train]
    mean, std = [float(train_images.mean())], [float(train_images.std())]
    train = TensorImageDataset(train_images, pool_labels[idx_train], mean, std)
    test = TensorImageDataset(pool_images[idx_test], pool_labels[idx_test], mean, std)
    verification = {}
    if verification_classes:
        held_out = [int(c) for c in verification_classes]
        if classes is None or set(held_out) & set(classes):
            raise ConfigError(
                f"verification_classes {held_out} must be digits the training classes {classes} leave out "
                f"(an open-set verification set)"
            )
        mask = torch.isin(labels, torch.tensor(held_out))
        pool, pool_y = images[mask], labels[mask].numpy()
        index, issame = pair_indices(pool_y, int(verification_pairs), pair_seed)
        verification[verification_name] = VerificationSet(
            verification_name,
            pool[torch.from_numpy(index.reshape(-1))],
            issame,
            mean,
            std,
            f"scikit-learn digits {held_out} ({len(pool)} images never trained on)",
        )
    return DataBundle(
        train=train,
        test=test,
        num_classes=len(classes) if classes is not None else 10,
        in_chans=1,
        image_size=images.shape[-1],
        resident_train=train.resident(),
        resident_test=test.resident(),
        verification=verification,
    )
