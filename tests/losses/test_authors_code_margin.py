"""Margin heads against their authors' code, on tiny tensors; references written out from that code's
lines (plain Python loops and ``math``, or the dense tensor formula), never from podhl's functions.

* A-Softmax: wy1iu/sphereface ``margin_inner_product_layer.cpp`` @966c44c — the λ sequence (counter
  incremented before λ) and the hand-written backward (``backward=caffe``).
* RegularFace: the dense C×C form of the exclusive term (zeakey/face2019 ``pytorch/ops.py``) against
  the row-block nearest-neighbour search; the defaults of the author's training scripts.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from podhl.config import compose_config
from podhl.losses import ASoftmaxLoss, ExclusiveRegularizationLoss
from podhl.losses.margin import math as margin_math


def norm(v: list[float]) -> float:
    return math.sqrt(sum(a * a for a in v))


# ======================================================================== A-Softmax (SphereFace)
def test_asl_lambda_sequence_is_the_caffe_layers():
    """Forward_cpu: iter_ += 1; lambda_ = max(base·(1 + gamma·iter_)^−power, lambda_min), iter_ starting at 0."""
    loss = ASoftmaxLoss(4, 3)
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 3, 1])
    seen, logged = [], []
    for _ in range(12):
        seen.append(loss.current_lambda())
        logged.append(float(loss(x, y)["lambda"]))
        loss(x, y)  # a test batch between steps does not advance λ
        loss.after_optimizer_step(x, y)
    caffe = [max(1000.0 * (1.0 + 0.12 * it) ** -1.0, 5.0) for it in range(1, 13)]
    assert seen == pytest.approx(caffe, rel=1e-12) and logged == pytest.approx(caffe, rel=1e-6)
    assert seen[0] == pytest.approx(892.857, abs=1e-3) and seen[10] == pytest.approx(431.034, abs=1e-3)
    for _ in range(1650):
        loss.after_optimizer_step(x, y)
    assert loss.current_lambda() == 5.0 and int(loss.iteration) == 1662


def caffe_backward(x, w, labels, lam: float):
    """Backward_cpu of MarginInnerProductLayer, type QUADRUPLE (m = 4), with top_diff the gradient of the
    mean cross-entropy: bottom_diff (B, K) and the weight blob's diff (N, K)."""
    xs, ws, ys = x.tolist(), w.tolist(), labels.tolist()
    b, n = len(xs), len(ws)
    top = []
    for i in range(b):  # forward, to get top_diff
        xn = norm(xs[i])
        row = []
        for j in range(n):
            dot = sum(a * c for a, c in zip(xs[i], ws[j], strict=True))
            if j == ys[i]:
                c = dot / xn
                s0 = math.copysign(1.0, c)
                s3 = s0 * math.copysign(1.0, 2 * c * c - 1)
                s4 = 2 * s0 + s3 - 3
                psi = s3 * (8 * c**4 - 8 * c**2 + 1) + s4
                row.append((xn * psi + lam * dot) / (1 + lam))
            else:
                row.append(dot)
        top.append(row)
    top_diff = []
    for i in range(b):
        mx = max(top[i])
        e = [math.exp(v - mx) for v in top[i]]
        top_diff.append([(e[j] / sum(e) - (1.0 if j == ys[i] else 0.0)) / b for j in range(n)])
    bottom = [[0.0] * len(xs[0]) for _ in range(b)]
    for i in range(b):
        xn = norm(xs[i])
        for j in range(n):
            g = top_diff[i][j]
            if j != ys[i]:
                bottom[i] = [d + g / (1 + lam) * wk for d, wk in zip(bottom[i], ws[j], strict=True)]
            else:
                c = sum(a * cc for a, cc in zip(xs[i], ws[j], strict=True)) / xn
                s0 = math.copysign(1.0, c)
                s3 = s0 * math.copysign(1.0, 2 * c * c - 1)
                s4 = 2 * s0 + s3 - 3
                coeff_w = s3 * (32 * c**3 - 16 * c)
                coeff_x = 1.0 / (-xn) * (s3 * (24 * c**4 - 8 * c**2 - 1) - s4)
                coeff_norm = math.sqrt(coeff_w**2 + coeff_x**2)
                coeff_w, coeff_x = coeff_w / coeff_norm, coeff_x / coeff_norm
                bottom[i] = [
                    d + g / (1 + lam) * coeff_w * wk + g / (1 + lam) * coeff_x * xk
                    for d, wk, xk in zip(bottom[i], ws[j], xs[i], strict=True)
                ]
            bottom[i] = [d + lam / (1 + lam) * g * wk for d, wk in zip(bottom[i], ws[j], strict=True)]  # the final gemm
    weight_diff = [[sum(top_diff[i][j] * xs[i][k] for i in range(b)) for k in range(len(xs[0]))] for j in range(n)]
    return torch.tensor(bottom, dtype=torch.float64), torch.tensor(weight_diff, dtype=torch.float64)


@pytest.mark.parametrize("steps", [0, 40, 2000])  # λ = 892.9, ≈ 171, 5
def test_asl_caffe_backward_is_the_layers(steps):
    torch.manual_seed(steps)
    caffe = ASoftmaxLoss(4, 6, backward="caffe").double()
    exact = ASoftmaxLoss(4, 6).double()
    exact.load_state_dict(caffe.state_dict())
    caffe.iteration.fill_(steps), exact.iteration.fill_(steps)
    x = (torch.randn(7, 6, dtype=torch.float64) * 2).requires_grad_(True)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2])
    lam = caffe.current_lambda()
    ref_x, ref_w = caffe_backward(x.detach(), F.normalize(caffe.weight.detach(), dim=1), y, lam)
    out = caffe(x, y)
    gx, gw = torch.autograd.grad(out["loss"], (x, caffe.weight))
    assert torch.allclose(gx, ref_x, atol=1e-12) and torch.allclose(gw, ref_w, atol=1e-12)
    assert float(out["loss"].detach()) == pytest.approx(float(exact(x, y)["loss"].detach()), rel=1e-12)  # same forward
    (ex,) = torch.autograd.grad(exact(x, y)["loss"], x)
    assert not torch.allclose(ex, gx, rtol=1e-3)  # autograd's exact d/dx differs: the rescaled coefficients


def test_asl_caffe_mode_renormalizes_the_weight_after_each_step():
    loss = ASoftmaxLoss(4, 6, backward="caffe")
    with torch.no_grad():
        loss.weight.mul_(torch.tensor([[2.0], [0.5], [3.0], [1.0]]))
        loss.after_optimizer_step(torch.zeros(1, 6), torch.zeros(1, dtype=torch.long))
    assert torch.allclose(loss.weight.norm(dim=1), torch.ones(4), atol=1e-6)


# ======================================================================== RegularFace (ER)
def dense_exclusive(weight: torch.Tensor) -> torch.Tensor:
    """ExclusiveLinear's exclusive_loss: the full C×C cosine matrix, each row's max off the diagonal, mean."""
    w = weight / weight.norm(dim=1, keepdim=True)
    cos = w @ w.t()
    cos = cos.masked_fill(torch.eye(len(w), dtype=torch.bool), -100.0)  # cos1.scatter_(..., -100)
    return cos.max(dim=1).values.mean()


@pytest.mark.parametrize("num,block", [(2, 1024), (7, 3), (50, 8), (50, 1024), (301, 64), (130, 129)])
def test_exclusive_term_equals_the_dense_form(num, block):
    torch.manual_seed(num)
    w = torch.randn(num, 9, dtype=torch.float64, requires_grad=True)
    fast = margin_math.exclusive_regularizer(w, block_size=block)
    dense = dense_exclusive(w)
    (g_fast,), (g_dense,) = torch.autograd.grad(fast, w), torch.autograd.grad(dense, w)
    assert float(fast.detach()) == pytest.approx(float(dense.detach()), abs=1e-14)
    assert torch.allclose(g_fast, g_dense, atol=1e-14)
    cos = F.normalize(w.detach(), dim=1) @ F.normalize(w.detach(), dim=1).t()
    expected = cos.fill_diagonal_(-2.0).argmax(dim=1)
    assert torch.equal(margin_math.nearest_other_rows(F.normalize(w.detach(), dim=1), block), expected)


def test_exclusive_term_saves_no_c_by_c_tensor():
    num = 300
    w = torch.randn(num, 8, requires_grad=True)
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        margin_math.exclusive_regularizer(w, block_size=64)
    assert sizes and max(sizes) <= num * 8


def test_er_loss_value_gradient_and_defaults():
    torch.manual_seed(8)
    er = ExclusiveRegularizationLoss(6, 4)
    assert (er.lam, er.scale, er.m1, er.m2, er.m3) == (6.0, 15.0, 1.0, 0.0, 0.0)  # face2019 train scripts
    cfg = compose_config(["loss=er"]).loss
    assert (cfg.lam, cfg.scale) == (6.0, 15.0)
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 5])
    out = er(x, y)
    logits = 15.0 * F.normalize(x, dim=1) @ F.normalize(er.weight, dim=1).t()
    ref = F.cross_entropy(logits, y) + 6.0 * dense_exclusive(er.weight)
    assert float(out["loss"].detach()) == pytest.approx(float(ref.detach()), rel=1e-6)
    (g,), (g_ref,) = torch.autograd.grad(out["loss"], er.weight), torch.autograd.grad(ref, er.weight)
    assert torch.allclose(g, g_ref, atol=1e-6)
