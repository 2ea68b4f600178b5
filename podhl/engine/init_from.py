"""``model.init_from``: start a new run from a trained model's weights (a run folder or a checkpoint).

Every tensor of the new model whose name and shape match one in the checkpoint is copied (backbone,
FC1, a detector's RPN and heads); ``model.init_criterion=true`` does the same for the criterion's state
(classifier weights, centers). Nothing is silent: tensors left at their fresh initialization are listed
with the reason (a shape mismatch, or a name the checkpoint lacks), and so are checkpoint tensors the new
model has no place for; the report goes to the log and to ``<run dir>/init_from.json``. The schedule,
optimizers and epoch count start fresh (only weights are read). This is how the Hypersphere Loss authors'
detection runs start from a trained detector (TCCofWANG/Hypersphere_loss, faster_rcnn_HL/train.py at
8946f56: ``model_path`` loads the tensors whose key and shape match, prints the keys that did not, and
training starts at ``Init_Epoch = 0`` with a new optimizer).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from podhl.errors import ConfigError

log = logging.getLogger("podhl")
# A run folder's checkpoint: best.pt (the epoch the run selected; with a validation split the validated one),
# else last.pt. Our choice: the model a run reports as its result.
RUN_CHECKPOINTS = ("best.pt", "last.pt")


def resolve_checkpoint(path: str | Path, key: str = "model.init_from") -> Path:
    """The checkpoint file ``path`` names: the file itself, or a run folder's best.pt (else last.pt).
    Raises ConfigError (one line) when there is none."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        for name in RUN_CHECKPOINTS:
            if (path / name).is_file():
                return path / name
        raise ConfigError(
            f"{key}={path} is a folder without best.pt or last.pt (was the run trained with "
            f"trainer.save_checkpoints=false?)"
        )
    raise ConfigError(f"{key}={path}: no such file or folder")


def check_init_from(model_cfg) -> Path | None:
    """Before anything is built: the checkpoint ``model.init_from`` names exists (else ConfigError)."""
    source = model_cfg.get("init_from") if model_cfg is not None else None
    return None if source in (None, "") else resolve_checkpoint(str(source))


def read_states(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None, dict[str, Any]]:
    """(model state, criterion state or None, what the file is) of a podhl checkpoint or a bare state dict."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - damaged or foreign files
        raise ConfigError(f"model.init_from: cannot read {path} ({type(err).__name__}: {err})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        about = {"epoch": state.get("epoch"), "kind": "podhl checkpoint"}
        return state["model"], state.get("criterion"), about
    if isinstance(state, dict) and state and all(isinstance(v, torch.Tensor) for v in state.values()):
        return state, None, {"epoch": None, "kind": "state dict"}
    raise ConfigError(f"model.init_from: {path} is neither a podhl checkpoint nor a state dict of tensors")


def load_matching(module: nn.Module, source: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Copy every tensor of ``source`` whose name and shape match ``module``'s; return what was and was not loaded."""
    target = module.state_dict()
    loaded, shape, missing = [], [], []
    for name, tensor in target.items():
        if name not in source:
            missing.append(name)
        elif tuple(source[name].shape) != tuple(tensor.shape):
            shape.append({"name": name, "checkpoint": list(source[name].shape), "model": list(tensor.shape)})
        else:
            loaded.append(name)
    with torch.no_grad():
        for name in loaded:
            target[name].copy_(source[name].to(dtype=target[name].dtype))
    return {
        "loaded": loaded,
        "shape_mismatch": shape,
        "not_in_checkpoint": missing,
        "not_in_model": [k for k in source if k not in target],
    }


def _summary(what: str, part: dict[str, Any]) -> str:
    return (
        f"{what}: {len(part['loaded'])} tensors loaded, {len(part['shape_mismatch'])} shape mismatches, "
        f"{len(part['not_in_checkpoint'])} not in the checkpoint, {len(part['not_in_model'])} unused"
    )


def init_from(model_cfg, model: nn.Module, criterion: nn.Module) -> dict[str, Any] | None:
    """Apply ``model.init_from`` (and ``model.init_criterion``) to the freshly built model and criterion;
    returns the report (None without ``init_from``)."""
    path = check_init_from(model_cfg)
    if path is None:
        return None
    model_state, criterion_state, about = read_states(path)
    report: dict[str, Any] = {"source": str(path), **about, "model": load_matching(model, model_state)}
    if not report["model"]["loaded"]:
        raise ConfigError(
            f"model.init_from={path}: no tensor matches this model's names and shapes (a different backbone?)"
        )
    if bool(model_cfg.get("init_criterion", False)):
        if criterion_state is None:
            raise ConfigError(f"model.init_criterion=true, but {path} holds no criterion state (a bare state dict)")
        report["criterion"] = load_matching(criterion, criterion_state)
        refresh = getattr(criterion, "refresh_total", None)
        if callable(refresh):  # state derived from the centers (HL's T = Σ_l c_l) follows what was loaded
            refresh()
    log.info("model.init_from %s (%s, epoch %s)", path, about["kind"], about["epoch"])
    for what in ("model", "criterion"):
        part = report.get(what)
        if part is None:
            continue
        log.info("init_from %s", _summary(what, part))
        for item in part["shape_mismatch"]:
            log.warning(
                "init_from %s: %s not loaded: shape %s in the checkpoint, %s here",
                what,
                item["name"],
                tuple(item["checkpoint"]),
                tuple(item["model"]),
            )
        for name in part["not_in_checkpoint"]:
            log.warning("init_from %s: %s not loaded: not in the checkpoint (fresh initialization)", what, name)
        if part["not_in_model"]:
            log.info("init_from %s: unused checkpoint tensors: %s", what, ", ".join(part["not_in_model"]))
    return report
