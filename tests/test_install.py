"""podhl installs like a library: a wheel carries the config tree and runs outside the checkout, and a
user's own configs and code (a new loss) plug in from a folder of their own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import podhl
from conftest import FAST, REPO

RUN = [*FAST, "schedule.epochs=1", "trainer.limit_train_batches=2"]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0", **extra}


def _run(args, cwd, env, timeout=600):
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory):
    """podhl built as a wheel from the checkout and installed into a fresh folder (no source tree there)."""
    root = tmp_path_factory.mktemp("wheel")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(REPO),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(root / "dist"),
        ],
        root,
        _env(),
    )
    wheel = next((root / "dist").glob("podhl-*.whl"))
    target = root / "site"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-compile",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        root,
        _env(),
    )
    return target


def test_wheel_ships_the_configs_and_trains_from_another_directory(installed_wheel, tmp_path):
    env = _env(PYTHONPATH=str(installed_wheel))
    where = _run(
        [sys.executable, "-c", "import podhl, podhl.conf; print(podhl.__file__)"], tmp_path, env
    ).stdout.strip()
    assert where.startswith(str(installed_wheel)), where  # the installed copy, not the checkout
    assert (installed_wheel / "podhl" / "conf" / "loss" / "hl_ablation" / "epoch.yaml").is_file()
    assert (installed_wheel / "podhl" / "runs" / "paper_values.json").is_file()
    assert (installed_wheel / "podhl" / "runs" / "paper_claims.yaml").is_file()  # podhl-tables --claims
    assert (installed_wheel / "podhl" / "py.typed").is_file() and (
        installed_wheel / "podhl" / "conf" / "logger" / "csv.yaml"
    ).is_file()
    assert list(installed_wheel.glob(f"podhl-{podhl.__version__}.dist-info/licenses/LICENSE"))  # the one version source
    script = installed_wheel / "bin" / "podhl-train"
    cfg = _run([sys.executable, str(script), "--cfg", "job", "loss=pod"], tmp_path, env).stdout
    assert "_target_: podhl.losses.pod.pod.PODLoss" in cfg or "PODLoss" in cfg
    _run([sys.executable, str(script), *RUN, f"hydra.run.dir={tmp_path / 'run'}"], tmp_path, env)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["completed"] and metrics["dataset"] == "digits" and metrics["test_acc"] > 0


USER_LOSS = '''
    """A user's own loss, outside the package: a scaled cosine softmax."""
    import torch
    import torch.nn.functional as F

    from podhl.losses import Criterion


    class ScaledCosineLoss(Criterion):
        def __init__(self, num_classes, feat_dim, scale=10.0):
            super().__init__(num_classes, feat_dim)
            self.scale = float(scale)
            self.weight = torch.nn.Parameter(torch.randn(num_classes, feat_dim))

        def logits(self, features):
            return self.scale * F.normalize(features.float(), dim=1) @ F.normalize(self.weight, dim=1).t()

        def forward(self, features, labels, step=0):
            ce = F.cross_entropy(self.logits(features), labels)
            return {"loss": ce, "ce": ce}
'''


@pytest.mark.parametrize("how", ["config_dir", "searchpath"])
def test_user_config_folder_adds_a_loss_from_user_code(tmp_path, how):
    (tmp_path / "my_losses.py").write_text(textwrap.dedent(USER_LOSS))
    (tmp_path / "my_configs" / "loss").mkdir(parents=True)
    (tmp_path / "my_configs" / "loss" / "my_loss.yaml").write_text(
        "# my own loss (my_losses.py)\n_target_: my_losses.ScaledCosineLoss\nscale: 12.0\n"
    )
    where = (
        ["--config-dir", str(tmp_path / "my_configs")]
        if how == "config_dir"
        else [f"hydra.searchpath=[file://{tmp_path / 'my_configs'}]"]
    )
    env = _env(PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    _run(
        [sys.executable, "-m", "podhl.train", *where, "loss=my_loss", *RUN, f"hydra.run.dir={tmp_path / 'run'}"],
        tmp_path,
        env,
    )
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["loss"] == "my_loss" and metrics["completed"]
    history = (tmp_path / "run" / "history.csv").read_text()
    assert "train_ce" in history
