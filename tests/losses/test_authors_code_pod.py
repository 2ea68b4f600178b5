"""The POD family against its authors' code, on tiny tensors; references written out from that code's
lines (plain Python loops and ``math``), never from podhl's functions.

* PEDCC-Loss: ZLeopard/PEDCC-Loss — ``MSELoss(reduction='sum')`` (tools/train_net.py @a7db70f) raised to
  the power ``METRIC.N`` (engine/trainer.py @907ad7f), on features normalized as ``modeling/VGG.py``
  does; ``loss=pedcc_official``.
* The PEDCC normalized once gives bit-identical values to normalizing it in every forward.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from podhl.config import compose_config
from podhl.losses import CosineLoss, NaCLoss, PEDCCLoss, PODLoss
from podhl.losses.pod import math as pod_math
from podhl.pedcc import generate_pedcc

pytestmark = pytest.mark.filterwarnings("ignore:PEDCC. feature dimension")


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PODHL_CACHE_DIR", str(tmp_path / "cache"))


def norm(v: list[float]) -> float:
    return math.sqrt(sum(a * a for a in v))


# ======================================================================== PEDCC-Loss
def code_pedcc_loss(x: list[list[float]], y: list[int], pedcc: list[list[float]], s: float, m: float, n: float):
    """ZLeopard/PEDCC-Loss as its trainer computes it: VGG's l2_norm (x/sqrt(Σx² + 1e-10)),
    CosineLinear_PEDCC (cos = x·w/|x|/|w|, clamped), AMSoftmax (margin on the target, × s, mean CE), and
    t_loss2 = MSELoss(reduction='sum')(x̃, pedcc[y]) ** METRIC.N; t_loss = t_loss1 + t_loss2."""
    am, mse = 0.0, 0.0
    for xi, yi in zip(x, y, strict=True):
        scale = math.sqrt(sum(v * v for v in xi) + 1e-10)
        xt = [v / scale for v in xi]
        cos = [max(-1.0, min(1.0, sum(a * b for a, b in zip(xt, c, strict=True)) / norm(xt) / norm(c))) for c in pedcc]
        logits = [s * (cj - (m if j == yi else 0.0)) for j, cj in enumerate(cos)]
        top = max(logits)
        am += top + math.log(sum(math.exp(v - top) for v in logits)) - logits[yi]
        mse += sum((a - b) ** 2 for a, b in zip(xt, pedcc[yi], strict=True))
    return am / len(y) + mse**n, mse


@pytest.mark.parametrize("n", [1.0, 2.0, 3.0])
def test_pedcc_loss_code_form_is_the_authors_trainer(n):
    torch.manual_seed(0)
    loss = PEDCCLoss(5, 8, s=7.5, m=0.35, lam=1.0, n_root=n, mse_reduction="sum", n_form="power")
    x, y = torch.randn(6, 8) * 3, torch.tensor([0, 1, 2, 3, 4, 1])
    total, mse = code_pedcc_loss(x.tolist(), y.tolist(), loss.pedcc.tolist(), 7.5, 0.35, n)
    out = {k: v.detach() for k, v in loss(x, y).items()}
    assert float(out["mse"]) == pytest.approx(mse, rel=1e-5)
    assert float(out["loss"]) == pytest.approx(total, rel=1e-5)


def test_pedcc_loss_paper_form_is_2n_times_smaller_and_takes_the_root():
    torch.manual_seed(1)
    x, y = torch.randn(6, 8), torch.tensor([0, 1, 2, 3, 4, 1])
    paper = PEDCCLoss(5, 8, n_root=2.0)
    code = PEDCCLoss(5, 8, n_root=2.0, mse_reduction="sum", n_form="power")
    _, code_mse = code_pedcc_loss(x.tolist(), y.tolist(), code.pedcc.tolist(), 15.0, 0.5, 1.0)
    paper_mse = code_mse / (2 * len(y))  # (1/2N)·Σ_i ‖x̃_i − p̃_{y_i}‖² (POD eq. 3)
    out = {k: v.detach() for k, v in paper(x, y).items()}
    assert float(out["mse"]) == pytest.approx(paper_mse, rel=1e-5)
    assert float(out["loss"] - out["am"]) == pytest.approx(paper_mse**0.5, rel=1e-5)  # eq. 4: the n-th root
    assert float(code(x, y)["loss"].detach() - out["am"]) == pytest.approx(
        code_mse**2, rel=1e-5
    )  # the code: the n-th power


def test_pedcc_official_preset():
    official = compose_config(["loss=pedcc_official"]).loss
    paper = compose_config(["loss=pedcc"]).loss
    assert (official.mse_reduction, official.n_form, official.lam) == ("sum", "power", 1.0)
    assert (paper.mse_reduction, paper.n_form) == ("paper", "root")  # the default stays the paper's
    assert {k for k in paper if paper[k] != official[k]} == {"mse_reduction", "n_form"}


# ======================================================================== POD family: the PEDCC is p̃ (unit rows)
@pytest.mark.parametrize(
    "cls,kwargs",
    [
        (CosineLoss, {}),
        (NaCLoss, {}),
        (NaCLoss, {"denominator": "sqrt"}),
        (PODLoss, {}),
        (PEDCCLoss, {}),
        (PEDCCLoss, {"mse_reduction": "sum"}),
    ],
)
def test_unit_pedcc_gives_the_same_values_as_normalizing_in_every_forward(cls, kwargs):
    """The buffer is the generated set itself (unit rows): bit-identical to the equations fed it as p̃,
    and equal to normalizing it in every forward (the earlier path) to float32 rounding."""
    crit = cls(7, 12, **kwargs)
    crit.on_epoch_start(3)
    x, y = torch.randn(9, 12) * 4, torch.tensor([0, 1, 2, 3, 4, 5, 6, 0, 1])
    p = generate_pedcc(7, 12)
    assert torch.equal(crit.pedcc, p) and crit.unit_pedcc is crit.pedcc
    for normalized in (True, False):
        old = {"logits": pod_math.cosine_logits(x, p, normalized)}
        if cls is CosineLoss:
            old["loss"] = pod_math.cosine_loss(x, y, p, normalized)
        elif cls is NaCLoss:
            old["loss"] = pod_math.nac_loss(x, y, p, crit.delta, crit.denominator, normalized)
        elif cls is PODLoss:
            old["loss"] = pod_math.nac_loss(x, y, p, crit.delta, centroids_normalized=normalized) + pod_math.sc_loss(
                x, y, p, centroids_normalized=normalized
            )
        else:
            old["loss"] = pod_math.pedcc_am_loss(x, y, p, 15.0, 0.5, normalized) + pod_math.pedcc_mse_loss(
                x, y, p, crit.mse_reduction, normalized
            )
        new = {"loss": crit(x, y)["loss"], "logits": crit.logits(x)}
        for key in old:
            if normalized:
                assert torch.equal(new[key], old[key]), key
            else:
                assert torch.allclose(new[key], old[key], rtol=1e-6, atol=1e-6), key


def test_unit_pedcc_stays_out_of_checkpoints_and_follows_the_pedcc():
    crit = PODLoss(5, 8)
    first = crit.unit_pedcc
    assert crit.unit_pedcc is first  # computed once
    state = crit.state_dict()
    assert "unit_pedcc" not in state and "pedcc" in state
    state["pedcc"] = state["pedcc"].flip(0) * 2.0  # e.g. a checkpoint made with other centroids
    crit.load_state_dict(state)  # copied in place
    assert torch.equal(crit.unit_pedcc, F.normalize(state["pedcc"], dim=1))
    crit.pedcc = torch.eye(5, 8) * 3.0  # replaced
    assert torch.equal(crit.unit_pedcc, torch.eye(5, 8))
    x = torch.randn(4, 8)
    assert torch.equal(crit.logits(x), pod_math.cosine_logits(x, torch.eye(5, 8)))
    assert crit.double().unit_pedcc.dtype == torch.float64
