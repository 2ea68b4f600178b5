"""Face verification (HL §IV-G, Table VII): train a classifier, judge its feature network as an embedder.

Training is :class:`~podhl.tasks.classification.ClassificationTask`'s, unchanged (the criterion sees
the embedding x and the training identities: 512-d and 10,572/10,575 classes for CASIA-WebFace).
Evaluation embeds both images of every pair of each verification set with the model in eval mode
(optionally with its horizontal flip, ``flip``: the sum of the two embeddings, as insightface, or for
``protocol=sphereface`` their concatenation, as SphereFace's ``evaluation.m``) and runs the 10-fold
protocol ``protocol`` (``insightface`` | ``exact`` | ``sphereface``) of
:mod:`podhl.tasks.verification_metrics`.

Metrics per set ``<name>`` (keys of ``task.sets``, e.g. ``lfw``; plus any set the dataset carries,
e.g. ``digits_open``): ``<name>_acc`` (mean 10-fold accuracy, %), ``<name>_acc_std`` (its std over
the folds), ``<name>_threshold`` (mean chosen cosine threshold) and ``<name>_tar_at_far_<FAR>`` (%,
when the set has ≥ 1/FAR different pairs). ``verify_acc``, the mean of the sets' accuracies, is the
primary metric (best.pt follows it): one number that weighs every configured set alike, whichever
sets a run evaluates. If the dataset has a test split (digits_open), the classification metrics
(``test_acc`` ...) are reported too; CASIA-WebFace has none.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn
from tqdm.auto import tqdm

from podhl.data.bundle import VerificationSet
from podhl.data.faces import check_verification_files, image_hw, load_verification_set
from podhl.data.faces import standin_pairs as make_standin_pairs
from podhl.errors import ConfigError
from podhl.tasks.base import Runtime
from podhl.tasks.classification import ClassificationTask
from podhl.tasks.verification_metrics import PROTOCOLS, protocol_metrics

log = logging.getLogger("podhl")


def far_label(far: float) -> str:
    """1e-3 → '1e-3' (for metric names)."""
    mantissa, exponent = f"{far:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


class VerificationTask(ClassificationTask):
    primary_metric = "verify_acc"

    def __init__(
        self,
        sets: dict[str, Any] | None = None,
        eval_sets: Sequence[str] = ("lfw", "cfp_fp", "agedb_30"),
        flip: bool = True,
        folds: int = 10,
        far: float = 1e-3,
        decode_workers: int = 4,
        standin_pairs: int = 20,
        bin_dir: str | None = None,
        protocol: str = "insightface",
    ) -> None:
        self.sets = {k: dict(v) for k, v in (sets or {}).items() if v is not None}
        self.eval_sets = list(eval_sets or [])
        unknown = [s for s in self.eval_sets if s not in self.sets]
        if unknown:
            raise ConfigError(
                f"task.eval_sets names {unknown}, which task.sets does not define "
                f"(defined: {', '.join(self.sets) or 'none'})"
            )
        self.flip, self.folds, self.far = bool(flip), int(folds), float(far)
        if protocol not in PROTOCOLS:
            raise ConfigError(f"task.protocol must be one of {', '.join(PROTOCOLS)}, got '{protocol}'")
        self.protocol = str(protocol)
        if self.folds < 2:
            raise ConfigError(f"task.folds must be at least 2, got {folds}")
        if not 0.0 < self.far < 1.0:
            raise ConfigError(f"task.far must be in (0, 1), got {far}")
        self.decode_workers, self.standin_pairs = int(decode_workers), int(standin_pairs)
        self.bin_dir = bin_dir  # only the default set paths use it (task.bin_dir in the YAML)
        self.pairs: dict[str, VerificationSet] = {}

    def setup(self, cfg: DictConfig, runtime: Runtime) -> None:
        standin = bool(cfg.dataset.get("standin")) and not cfg.dataset.get("embedded")  # as podhl.data.build_data
        if not standin:  # missing files stop the run before the (long) training data scan
            for name in self.eval_sets:
                spec = self.sets[name]
                check_verification_files(
                    name,
                    spec.get("format", "bin"),
                    spec["path"],
                    spec.get("images"),
                    hint=f"Set task.sets.{name}.path=<file> (format pairs: also task.sets.{name}.images="
                    f"<dir>), task.bin_dir=<dir> for all .bin files, or evaluate fewer sets: "
                    f"task.eval_sets=[...]",
                )
        super().setup(cfg, runtime)
        self.eval_batch_size = self.loaders.eval_batch_size
        size = image_hw(self.data.image_size)
        self.pairs = {}
        for name in self.eval_sets:
            spec = self.sets[name]
            if standin:
                self.pairs[name] = make_standin_pairs(self.data, name, self.standin_pairs, seed=len(self.pairs))
            else:
                self.pairs[name] = load_verification_set(
                    name,
                    spec.get("format", "bin"),
                    spec["path"],
                    spec.get("images"),
                    size,
                    self.decode_workers,
                    runtime.progress,
                )
        for name, pairs in self.data.verification.items():
            if name in self.pairs:
                raise ConfigError(f"the dataset brings a verification set '{name}' and task.eval_sets names one too")
            self.pairs[name] = pairs
        if not self.pairs:
            raise ConfigError(
                "task=verification has no verification set: list some in task.eval_sets "
                "(or use a dataset that carries one, e.g. dataset=digits_open)"
            )
        expected = (self.data.in_chans, *size)
        for name, pairs in self.pairs.items():
            if tuple(pairs.images.shape[1:]) != expected or len(pairs.images) != 2 * pairs.num_pairs:
                raise ConfigError(
                    f"verification set '{name}' holds images of shape {tuple(pairs.images.shape[1:])} "
                    f"(×{len(pairs.images)}), but the model takes {expected} (2 per pair)"
                )
            if pairs.num_pairs < self.folds:
                raise ConfigError(
                    f"verification set '{name}' has {pairs.num_pairs} pairs: too few for {self.folds} folds"
                )
            log.info(
                "verification set %s: %d pairs (%d same) from %s",
                name,
                pairs.num_pairs,
                int(np.sum(pairs.issame)),
                pairs.source,
            )

    def describe(self) -> str:
        sets = ", ".join(f"{n} ({p.num_pairs} pairs)" for n, p in self.pairs.items())
        fusion = ""
        if self.flip:
            fusion = " with flip concatenation" if self.protocol == "sphereface" else " with flip fusion"
        return f"{super().describe()}; verification on {sets}{fusion}, {self.protocol} protocol"

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def embed(self, model: nn.Module, pairs: VerificationSet) -> torch.Tensor:
        """Embeddings (2P, d), fp32 on the CPU, model in eval mode; with ``flip`` f(x) + f(flip(x)) (not normalized),
        or for ``protocol=sphereface`` [f(x), f(flip(x))] (2P, 2d) (evaluation.m ``extractDeepFeature``)."""
        was_training = model.training
        model.eval()
        out = []
        total = len(pairs.images)
        bar = tqdm(
            total=total,
            desc=f"embedding {pairs.name}",
            leave=False,
            dynamic_ncols=True,
            disable=None if self.runtime.progress else True,
        )
        try:
            for start in range(0, total, self.eval_batch_size):
                x = pairs.normalized(start, start + self.eval_batch_size, self.runtime.device)
                n = len(x)
                if self.flip:
                    x = torch.cat([x, x.flip(-1)])  # one pass over the images and their mirror images
                x = x.contiguous(memory_format=torch.channels_last) if self.runtime.channels_last else x
                with self.runtime.autocast():
                    features = model(x).float()
                if self.flip and self.protocol == "sphereface":
                    features = torch.cat([features[:n], features[n:]], 1)
                elif self.flip:
                    features = features[:n] + features[n:]
                out.append(features.cpu())
                bar.update(n)
        finally:
            bar.close()
            model.train(was_training)
        return torch.cat(out)

    def evaluate(
        self, model: nn.Module, criterion: nn.Module, limit_batches: int | None = None, split: str = "test"
    ) -> dict[str, float]:
        """Verification metrics of every set (whole sets: ``limit_batches`` only limits the classification test
        split). ``split="val"``: the classification metrics of the validation hold-out of the training identities
        (``val_acc`` chooses best.pt: the verification sets are test sets)."""
        if split == "val":
            return super().evaluate(model, criterion, limit_batches, split="val")
        out: dict[str, float] = {}
        if len(self.data.test):
            out.update(super().evaluate(model, criterion, limit_batches))
        accs, shown = [], []
        tar_key = f"tar_at_far_{far_label(self.far)}"
        for name, pairs in self.pairs.items():
            embeddings = self.embed(model, pairs).double().numpy()
            m = protocol_metrics(embeddings, pairs.issame, self.protocol, self.folds, self.far)
            out[f"{name}_acc"], out[f"{name}_acc_std"] = m["acc"], m["acc_std"]
            if m["threshold"] is not None:
                out[f"{name}_threshold"] = m["threshold"]
            if m["tar_at_far"] is not None:
                out[f"{name}_{tar_key}"] = m["tar_at_far"]
            accs.append(m["acc"])
            shown.append(f"{name} {m['acc']:.2f} ± {m['acc_std']:.2f}")
        out[self.primary_metric] = float(np.mean(accs))
        log.info("verification (%d-fold accuracy %%, %s): %s", self.folds, self.protocol, " | ".join(shown))
        return out
