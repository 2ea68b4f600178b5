"""README "Use the losses in your own training loop": its example runs as written, with HL and with POD."""

from __future__ import annotations

import re

import pytest
import torch

from conftest import REPO

SECTION = "## Use the losses in your own training loop"
HL_LINE = "criterion = HypersphereLoss(num_classes=10, feat_dim=32, warmup_epochs=1)"


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index(SECTION):]
    section = section[: section.index("\n## ", len(SECTION))]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs_with_hypersphere_loss():
    code = readme_example()
    assert HL_LINE in code and "PODLoss(num_classes=10, feat_dim=32)" in code
    torch.manual_seed(0)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102  (the documented example, verbatim)
    criterion = scope["criterion"]
    assert criterion.n_c == 2 * 4  # epochs 2 and 3 update the centers from every batch (t1 = 1)
    norms = criterion.centers.norm(dim=1)
    assert torch.allclose(norms[norms > 0], torch.tensor(40.0)) and (norms > 0).sum() >= 8
    assert scope["predictions"].shape == (16,)


def test_the_readme_example_runs_with_pod_loss():
    code = readme_example().replace(HL_LINE, "criterion = PODLoss(num_classes=10, feat_dim=32)")
    torch.manual_seed(0)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102
    criterion = scope["criterion"]
    # M is the last epoch's mean feature norm the loop handed to on_epoch_end; δ = α·e·M > 0 (POD §3.1.3)
    assert float(criterion.mean_norm) == pytest.approx(float(torch.cat(scope["norms"]).mean()), rel=1e-6)
    assert float(criterion.delta) > 0 and scope["predictions"].shape == (16,)
