"""Latent features x of a split, saved and drawn (POD Fig. 6): ``+analysis=latent_features``.

Saves ``features.npz`` (features, labels, class means, PEDCC rows if the loss has them), writes
``features.png`` — a 2-D scatter with the class means (black dots) and the PEDCC points (black
circles); POD Fig. 6 when ``model.feat_dim=2``, the first two principal components otherwise — and
logs a TensorBoard projector embedding and the figure (``tb/``). ``python -m podhl.runs.figures
features <sweep>`` puts several runs' panels side by side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from podhl.runs.figures import class_means, plt, scatter_features


@torch.no_grad()
def latent_features(
    source,
    split: str = "test",
    max_points: int = 10000,
    projector: bool = True,
    projector_points: int = 2000,
    png: bool = True,
) -> dict:
    """Save the latent features of ``split`` (``features.npz``), a scatter PNG and a TensorBoard embedding."""
    feats, labels = source.features(split)
    num_classes = source.num_classes
    if len(labels) > max_points:  # deterministic subsample
        idx = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[:max_points]
        feats, labels = feats[idx], labels[idx]
    f, y = feats.numpy().astype(np.float32), labels.numpy()
    means = class_means(f, y, num_classes)
    pedcc = None if source.centroids is None else source.centroids.numpy()
    run_dir = Path(source.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    arrays = {"features": f, "labels": y, "class_means": means}
    if pedcc is not None:
        arrays["pedcc"] = pedcc
    np.savez_compressed(run_dir / "features.npz", **arrays)

    fig = None
    if png or projector:
        fig, ax = plt.subplots(figsize=(5, 5))
        title = f"{source.label} ({split}, d={f.shape[1]})"
        scatter_features(ax, f, y, means, pedcc, title=title.strip())
        fig.tight_layout()
        if png:
            fig.savefig(run_dir / "features.png", dpi=120)
    if projector:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(run_dir / "tb"))
        n = min(projector_points, len(y))
        writer.add_embedding(feats[:n], metadata=[int(v) for v in y[:n]], tag=f"latent_{split}")
        if fig is not None:
            writer.add_figure(f"features/{split}", fig, global_step=int(source.epoch))
        writer.close()
    if fig is not None:
        plt.close(fig)

    norms = np.linalg.norm(f, axis=1)
    unit = means / np.linalg.norm(means, axis=1, keepdims=True)
    cos = unit @ unit.T
    off = cos[~np.eye(num_classes, dtype=bool)]
    off = off[np.isfinite(off)]
    return {
        "split": split,
        "num_points": int(len(y)),
        "file": "features.npz",
        "mean_norm": float(norms.mean()),
        "class_mean_cos_max": float(off.max()) if off.size else None,
        "class_mean_min_angle_deg": float(np.degrees(np.arccos(np.clip(off.max(), -1, 1)))) if off.size else None,
    }
