"""Figures of both papers, as PNG files, from run folders.

* ``scatter_features`` — one POD-Fig.-6 panel (used by the ``latent_features`` analysis too).
* ``plot_curves`` — test accuracy per epoch from ``history.csv`` files, mean line and min–max band over
  seeds (POD Fig. 4, HL Fig. 2).
* ``plot_loss_vs_lambda`` — final training loss against lg λ (POD Fig. 5).
* ``plot_feature_grid`` — several runs' ``features.npz`` side by side (the whole of POD Fig. 6).

``python -m podhl.runs.figures curves|lambda|features <run or sweep dirs...> -o out.png``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib
import matplotlib.ticker
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from podhl.engine.records import read_history  # noqa: E402

# ------------------------------------------------------------------ feature scatter


def class_means(features: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, d) mean feature per class; NaN rows for classes without samples."""
    means = np.full((num_classes, features.shape[1]), np.nan, dtype=np.float64)
    for c in range(num_classes):
        sel = labels == c
        if sel.any():
            means[c] = features[sel].mean(0)
    return means


def _project_2d(features: np.ndarray, *others: np.ndarray | None):
    """Features (and other point sets) in 2-D: unchanged if d == 2, else the first two principal components."""
    if features.shape[1] == 2:
        return (features, *others)
    center = features.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(features - center, full_matrices=False)
    basis = vt[:2].T
    proj = [(features - center) @ basis]
    for o in others:
        proj.append(None if o is None else (o - center) @ basis)
    return tuple(proj)


def scatter_features(ax, features, labels, means=None, pedcc=None, title: str | None = None, max_points: int = 5000):
    """One POD-Fig.-6 panel: samples coloured by class, class means (black dots), PEDCC points (black circles)."""
    features, labels = np.asarray(features, dtype=np.float64), np.asarray(labels)
    if len(labels) > max_points:
        idx = np.random.default_rng(0).choice(len(labels), max_points, replace=False)
        features, labels = features[idx], labels[idx]
    pts, m2, p2 = _project_2d(features, means, pedcc)
    cmap = plt.get_cmap("tab10")
    for c in np.unique(labels):
        sel = labels == c
        ax.scatter(
            pts[sel, 0], pts[sel, 1], s=2, alpha=0.5, color=cmap(int(c) % 10), label=str(int(c)), rasterized=True
        )
    if m2 is not None:
        ax.scatter(m2[:, 0], m2[:, 1], s=30, color="black", marker="o", zorder=3)
    if p2 is not None:
        ax.scatter(
            p2[:, 0], p2[:, 1], s=40, facecolors="none", edgecolors="black", marker="o", linewidths=1.5, zorder=4
        )
    ax.set_aspect("equal", adjustable="datalim")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


# ------------------------------------------------------------------ curves and λ


def _float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def mean_curve(run_dirs: Iterable[Path], column: str = "test_acc") -> tuple[np.ndarray, np.ndarray]:
    """Epochs and the mean of ``column`` over runs (NaN where a run has no value for an epoch)."""
    per_epoch: dict[int, list[float]] = {}
    for run in run_dirs:
        for row in read_history(Path(run) / "history.csv"):
            per_epoch.setdefault(int(row["epoch"]), []).append(_float(row.get(column)))
    epochs = np.array(sorted(per_epoch))
    values = np.array([np.nanmean(per_epoch[e]) if np.isfinite(per_epoch[e]).any() else np.nan for e in epochs])
    return epochs, values


def _save(fig, out: Path, dpi: int = 120) -> Path:
    """Lay out, write ``out`` as PNG (creating its folder) and free the figure."""
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


BAND = "min–max over seeds"  # what the shaded band of a curve is (legend and title say it)


def curve_band(run_dirs: Iterable[Path], column: str = "test_acc") -> dict[str, np.ndarray]:
    """Per epoch over the runs: ``mean``, ``low`` (min), ``high`` (max) and ``n`` (runs with a value).

    NaN where no run has a value for an epoch (a run that stopped early still counts where it has one)."""
    per_epoch: dict[int, list[float]] = {}
    for run in run_dirs:
        for row in read_history(Path(run) / "history.csv"):
            per_epoch.setdefault(int(row["epoch"]), []).append(_float(row.get(column)))
    epochs = np.array(sorted(per_epoch), dtype=int)
    rows = [np.array(per_epoch[e], dtype=float) for e in epochs]
    rows = [r[np.isfinite(r)] for r in rows]
    nan = np.nan
    return {
        "epochs": epochs,
        "mean": np.array([r.mean() if len(r) else nan for r in rows]),
        "low": np.array([r.min() if len(r) else nan for r in rows]),
        "high": np.array([r.max() if len(r) else nan for r in rows]),
        "n": np.array([len(r) for r in rows], dtype=int),
    }


def plot_curves(
    groups: dict[str, Sequence[Path]], out: Path, column: str = "test_acc", title: str | None = None
) -> Path:
    """One line per group, the mean over its runs, with a shaded min–max band over the runs (seeds):
    POD Fig. 4 / HL Fig. 2 draw one line per loss; the band shows how far seeds spread."""
    return draw_curves({label: curve_band(runs, column) for label, runs in groups.items()}, out, column, title)


def draw_curves(
    series: dict[str, dict[str, np.ndarray]], out: Path, column: str = "test_acc", title: str | None = None
) -> Path:
    """Draw :func:`curve_band` results: mean line, min–max band (where n > 1), legend ``label (n = k)``."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (label, band) in enumerate(series.items()):
        epochs = band["epochs"]
        if not len(epochs):
            continue
        color = plt.get_cmap("tab10")(i % 10)
        n = int(band["n"].max())
        ax.plot(
            epochs, band["mean"], marker="o" if len(epochs) < 20 else None, ms=3, color=color, label=f"{label} (n={n})"
        )
        if n > 1:
            ax.fill_between(epochs, band["low"], band["high"], color=color, alpha=0.2, linewidth=0)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel(column.replace("_", " ") + (" (%)" if column.endswith("acc") else ""))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, ncol=2, title=f"line: mean; band: {BAND}", title_fontsize=7)
    ax.set_title((f"{title}\n" if title else "") + f"mean over seeds, shaded: {BAND}", fontsize=9)
    return _save(fig, out)


def plot_loss_vs_lambda(points: dict[str, list[tuple[float, float]]], out: Path, title: str | None = None) -> Path:
    """POD Fig. 5: ``points[series] = [(λ, loss), ...]`` drawn against lg λ."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, pts in points.items():
        pts = sorted((lam, loss) for lam, loss in pts if lam > 0 and math.isfinite(loss))
        if pts:
            ax.plot([math.log10(p[0]) for p in pts], [p[1] for p in pts], marker="o", ms=3, label=label)
    ax.set_xlabel("lg λ")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, out)


def plot_feature_grid(panels: dict[str, Path], out: Path, ncols: int = 3) -> Path:
    """POD Fig. 6: one panel per run from its ``features.npz`` (title → run dir)."""
    n = len(panels)
    ncols = min(ncols, max(n, 1))
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.6 * nrows), squeeze=False)
    for ax, (title, run) in zip(axes.flat, panels.items(), strict=False):
        data = np.load(Path(run) / "features.npz")
        scatter_features(
            ax,
            data["features"],
            data["labels"],
            data["class_means"],
            data["pedcc"] if "pedcc" in data.files else None,
            title=title,
        )
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return _save(fig, out, dpi=90)


# ------------------------------------------------------------------ CLI


def main(argv: Sequence[str] | None = None) -> None:
    from podhl.runs.reader import load_runs, varying_keys

    parser = argparse.ArgumentParser(prog="python -m podhl.runs.figures", description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("curves", "lambda", "features"))
    parser.add_argument("dirs", nargs="+", help="run dirs or multirun dirs")
    parser.add_argument("-o", "--out", required=True, help="PNG file to write")
    parser.add_argument("--column", default="test_acc", help="curves: history.csv column (default test_acc)")
    parser.add_argument(
        "--by", default=None, help="group runs by these override keys (comma list; default: all that differ but seed)"
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="features: only the runs of this seed (one panel per setting)"
    )
    args = parser.parse_args(argv)
    runs = load_runs(args.dirs)
    if args.seed is not None:
        runs = [r for r in runs if r.lookup("seed") is not None and int(r.lookup("seed")) == args.seed]
    keys = args.by.split(",") if args.by else varying_keys(runs)
    if args.kind == "curves":
        groups: dict[str, list[Path]] = {}
        for r in runs:
            groups.setdefault(r.label(keys) or "runs", []).append(r.dir)
        print(plot_curves(groups, Path(args.out), args.column))
    elif args.kind == "lambda":
        series: dict[str, list[tuple[float, float]]] = {}
        for r in runs:
            lam = r.lookup("loss.lam")
            if lam is None:
                continue
            label = r.label([k for k in (keys or ["dataset"]) if k != "loss.lam"]) or "loss"
            series.setdefault(label, []).append((float(lam), _float(r.metrics.get("train_loss"))))
        print(plot_loss_vs_lambda(series, Path(args.out)))
    else:
        panels = {}
        for r in runs:
            if (r.dir / "features.npz").is_file():
                label = " ".join(r.overrides.get(k, "") for k in keys).strip() or r.dir.name
                acc = r.metrics.get("test_acc")
                panels[label + ("" if acc is None else f" ({acc:.1f}%)")] = r.dir
        print(plot_feature_grid(panels, Path(args.out)))


if __name__ == "__main__":
    main()
