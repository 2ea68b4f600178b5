"""scikit-learn's bundled 8×8 handwritten digits (1,797 real images, 10 classes, no download).

Split: stratified, ``test_fraction`` of each class held out with a fixed ``split_seed``
(scikit-learn's ``train_test_split``). Pixels are 0..16 in the source; they are scaled to [0, 1] and
normalized with the train mean/std.

Start-up: importing scikit-learn costs ~2 s (scipy), more than a digits epoch. The images are read
straight from the CSV file scikit-learn ships, and the split's indices are cached per (seed,
fraction, scikit-learn version) in ``$PODHL_CACHE_DIR/digits`` (default ``~/.cache/podhl``), so only
the first run imports scikit-learn.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from podhl.data.bundle import DataBundle
from podhl.data.tensor_dataset import TensorImageDataset


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 8, 8) float, labels (1797,) int) from scikit-learn's ``digits.csv.gz``, without importing it."""
    origin = importlib.util.find_spec("sklearn").origin
    with gzip.open(Path(origin).parent / "datasets" / "data" / "digits.csv.gz", "rt") as f:
        data = np.loadtxt(f, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's stratified ``train_test_split`` of the indices, cached on disk."""
    cache = Path(os.environ.get("PODHL_CACHE_DIR") or Path.home() / ".cache" / "podhl") / "digits"
    path = cache / f"split_{len(labels)}_{test_fraction!r}_{seed}_sklearn{version('scikit-learn')}.npz"
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


def build(test_fraction: float = 0.2, split_seed: int = 0, resize: int | None = None) -> DataBundle:
    raw_images, raw_labels = load_digits_arrays()
    images = torch.tensor(raw_images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8)
    labels = torch.tensor(raw_labels)
    idx_train, idx_test = stratified_split(raw_labels, test_fraction, split_seed)
    if resize:
        images = torch.nn.functional.interpolate(images, size=(resize, resize), mode="bilinear", align_corners=False)
    train_images = images[idx_train]
    mean, std = [float(train_images.mean())], [float(train_images.std())]
    train = TensorImageDataset(train_images, labels[idx_train], mean, std)
    test = TensorImageDataset(images[idx_test], labels[idx_test], mean, std)
    return DataBundle(
        train=train, test=test, num_classes=10, in_chans=1, image_size=images.shape[-1],
        resident_train=train.resident(), resident_test=test.resident(),
    )
