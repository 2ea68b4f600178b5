"""Helpers for the loss tests, on top of ``tests/conftest.py`` (whose fixtures ``train`` and ``run_cli``
apply here as everywhere under ``tests/``).

Once this directory is collected, ``from conftest import ...`` (here and in ``tests/*.py``) gets this
file, so it re-exports the shared helpers ``read_metrics``, ``FAST``, ``REPO``, ``build_trainer`` and
``interrupt_cli``. The loss tests read a
run's records from its directory (``metrics.json``, ``history.csv``, ``last.pt``) and compute features with
``trainer.model``: they depend on no trainer attribute besides ``criterion``, ``model`` and ``optimizers``.
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import torch

_spec = importlib.util.spec_from_file_location(
    "_podhl_tests_conftest", Path(__file__).resolve().parents[1] / "conftest.py"
)
_shared = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_shared)
FAST, REPO, read_metrics, build_trainer = _shared.FAST, _shared.REPO, _shared.read_metrics, _shared.build_trainer
interrupt_cli = _shared.interrupt_cli


def read_history(run_dir: Path) -> list[dict]:
    """``history.csv`` (one row per epoch) with numbers parsed; empty cells are None."""

    def number(text: str):
        if text == "":
            return None
        try:
            return int(text)
        except ValueError:
            return float(text)

    with open(Path(run_dir) / "history.csv", newline="") as f:
        return [{k: number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def load_checkpoint(path: Path) -> dict:
    """A checkpoint as written by the trainer (a plain ``torch.save`` of a dict)."""
    return torch.load(path, map_location="cpu", weights_only=False)


@torch.no_grad()
def split_features(model: torch.nn.Module, split: str, *overrides: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Latent features (fp32) and labels of a whole split of the dataset ``overrides`` compose to,
    without augmentation, from ``model`` in eval mode (restored to train mode after)."""
    from podhl.config import compose_config
    from podhl.data import build_data

    cfg = compose_config(list(overrides))
    bundle = build_data(cfg.dataset)
    dataset = (bundle.train_eval or bundle.train) if split == "train" else bundle.test
    batch_size = cfg.schedule.get("eval_batch_size") or cfg.schedule.batch_size  # the trainer's eval batches
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    feats, labels = [], []
    for x, y in torch.utils.data.DataLoader(dataset, batch_size=batch_size):
        feats.append(model(x.to(device)).float().cpu())
        labels.append(y)
    model.train(was_training)
    return torch.cat(feats), torch.cat(labels)
