"""docs/concepts/criterion.md, "Use the losses in your own training loop": its example runs as written, with HL
and with POD."""

from __future__ import annotations

import re

import pytest
import torch

from conftest import REPO

SECTION = "## Use the losses in your own training loop"
HL_LINE = "criterion = HypersphereLoss(num_classes=10, feat_dim=32, warmup_epochs=1)"


DOC = REPO / "docs" / "concepts" / "criterion.md"


def documented_example() -> str:
    text = DOC.read_text()
    section = text[text.index(SECTION) :]
    section = section.split("\n## ", 1)[0]  # up to the next section, if any
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_documented_example_runs_with_hypersphere_loss():
    code = documented_example()
    assert HL_LINE in code and "PODLoss(num_classes=10, feat_dim=32)" in code
    torch.manual_seed(0)
    scope: dict = {}
    exec(compile(code, str(DOC), "exec"), scope)  # noqa: S102  (the documented example, verbatim)
    criterion = scope["criterion"]
    assert criterion.n_c == 2 * 4  # epochs 2 and 3 update the centers from every batch (t1 = 1)
    norms = criterion.centers.norm(dim=1)
    assert torch.allclose(norms[norms > 0], torch.tensor(40.0)) and (norms > 0).sum() >= 8
    assert scope["predictions"].shape == (16,)


def test_the_documented_example_runs_with_pod_loss():
    code = documented_example().replace(HL_LINE, "criterion = PODLoss(num_classes=10, feat_dim=32)")
    torch.manual_seed(0)
    scope: dict = {}
    exec(compile(code, str(DOC), "exec"), scope)  # noqa: S102
    criterion = scope["criterion"]
    # M is the last epoch's mean feature norm the loop handed to on_epoch_end; δ = α·e·M > 0 (POD §3.1.3)
    assert float(criterion.mean_norm) == pytest.approx(float(torch.cat(scope["norms"]).mean()), rel=1e-6)
    assert float(criterion.delta) > 0 and scope["predictions"].shape == (16,)
