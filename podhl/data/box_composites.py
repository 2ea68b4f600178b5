"""Generated detection sets, deterministic for a seed, built in memory (no files):

* :func:`digits_boxes` — a SYNTHETIC COMPOSITE of real pixels: scikit-learn's bundled 8×8 handwritten digits
  (real scans), upscaled and pasted at known, non-overlapping boxes onto small noisy canvases. Train canvases
  use the digits of the stratified training split, test canvases those of the held-out split (the same split
  as ``dataset=digits``). 10 object classes (digit d → label d + 1). For CPU tests and quick runs.
* :func:`random_boxes` — a SYNTHETIC STAND-IN for smoke runs: random rectangles of a class colour on noise,
  random labels; it tests the plumbing, its AP means nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from podhl.data.detection import DetectionBundle, TensorDetectionDataset


def _place(rng: np.random.Generator, height: int, width: int, size: int, taken: list[list[float]], gap: int = 2):
    """Top-left corner of a size×size patch overlapping no taken box (None after 50 tries)."""
    for _ in range(50):
        y, x = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
        if all(x + size + gap <= b[0] or b[2] + gap <= x or y + size + gap <= b[1] or b[3] + gap <= y for b in taken):
            return y, x
    return None


def _canvases(
    rng: np.random.Generator,
    count: int,
    canvas: Sequence[int],
    per_image: Sequence[int],
    patch_size: Sequence[int],
    make_patch,
) -> tuple[list, list, list]:
    """``count`` canvases (uint8, 3×H×W) with 1..n patches each; ``make_patch(size) -> (patch (3, s, s) float
    in [0, 1], mask (s, s) bool, label)``; boxes are the tight boxes of each patch's mask."""
    images, boxes, labels = [], [], []
    for _ in range(count):
        height, width = (int(v) for v in rng.integers(canvas[0], canvas[1] + 1, size=2))
        image = torch.from_numpy(rng.uniform(0.0, 0.15, size=(3, height, width)).astype(np.float32))
        taken, these = [], []
        for _ in range(int(rng.integers(per_image[0], per_image[1] + 1))):
            size = int(rng.integers(patch_size[0], patch_size[1] + 1))
            corner = _place(rng, height, width, size, taken)
            if corner is None:
                continue
            y, x = corner
            patch, mask, label = make_patch(size)
            region = image[:, y : y + size, x : x + size]
            image[:, y : y + size, x : x + size] = torch.where(mask, torch.maximum(region, patch), region)
            rows, cols = torch.where(mask)
            box = [x + int(cols.min()), y + int(rows.min()), x + int(cols.max()) + 1, y + int(rows.max()) + 1]
            taken.append([float(v) for v in box])
            these.append(label)
        images.append((image.clamp(0, 1) * 255).round().to(torch.uint8))
        boxes.append(torch.tensor(taken, dtype=torch.float32).reshape(-1, 4))
        labels.append(torch.tensor(these, dtype=torch.int64))
    return images, boxes, labels


def digits_boxes(
    train_images: int = 48,
    test_images: int = 16,
    canvas: Sequence[int] = (64, 96),
    per_image: Sequence[int] = (1, 3),
    digit_size: Sequence[int] = (16, 28),
    seed: int = 0,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    augment: bool = True,
    min_size: int = 80,
    max_size: int = 120,
    anchor_sizes: Sequence[int] = (16, 32),
) -> DetectionBundle:
    """scikit-learn digits pasted at known boxes on noisy canvases (a SYNTHETIC COMPOSITE of real digit scans)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pixels = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8) in [0, 1]
    targets = np.asarray(digits.target)
    idx_train, idx_test = train_test_split(
        np.arange(len(targets)), test_size=test_fraction, random_state=split_seed, stratify=targets
    )

    def splits(pool: np.ndarray, count: int, stream: int):
        rng = np.random.default_rng([seed, stream])  # one stream per split: the test set never depends on train_images

        def patch(size: int):
            i = int(pool[rng.integers(0, len(pool))])
            digit = F.interpolate(pixels[i : i + 1], size=(size, size), mode="bilinear", align_corners=False)[0, 0]
            mask = digit > 0.05
            return digit.clamp(0, 1).expand(3, size, size), mask, int(targets[i]) + 1

        return _canvases(rng, count, canvas, per_image, digit_size, patch)

    train = TensorDetectionDataset(*splits(idx_train, train_images, 0), train=True)
    test = TensorDetectionDataset(*splits(idx_test, test_images, 1), train=False)
    train.flip = bool(augment)
    return DetectionBundle(
        train,
        test,
        [str(d) for d in range(10)],
        in_chans=3,
        min_size=int(min_size),
        max_size=int(max_size),
        anchor_sizes=[int(a) for a in anchor_sizes],
        train_eval=train.evaluation_copy(),
        synthetic=True,
    )


def random_boxes(
    num_classes: int,
    train_images: int = 2,
    test_images: int = 2,
    canvas: Sequence[int] = (48, 64),
    per_image: Sequence[int] = (1, 2),
    box_size: Sequence[int] = (12, 28),
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> DetectionBundle:
    """A SYNTHETIC STAND-IN (smoke runs): coloured rectangles with random labels on noise; AP means nothing."""
    colours = torch.from_numpy(np.random.default_rng(12345).uniform(0.3, 1.0, size=(num_classes, 3)).astype(np.float32))

    def split(count: int, stream: int):
        rng = np.random.default_rng([seed, stream])

        def patch(size: int):
            label = int(rng.integers(1, num_classes + 1))
            return (
                colours[label - 1].view(3, 1, 1).expand(3, size, size),
                torch.ones(size, size, dtype=torch.bool),
                label,
            )

        return _canvases(rng, count, canvas, per_image, box_size, patch)

    train = TensorDetectionDataset(*split(train_images, 0), train=True)
    test = TensorDetectionDataset(*split(test_images, 1), train=False)
    names = list(class_names) if class_names is not None else [f"class{k}" for k in range(1, num_classes + 1)]
    return DetectionBundle(
        train,
        test,
        names,
        in_chans=3,
        min_size=64,
        max_size=96,
        anchor_sizes=[16, 32],
        train_eval=train.evaluation_copy(),
        synthetic=True,
    )
