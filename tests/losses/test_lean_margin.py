"""The lean margin softmax cross-entropy (``podhl.losses.margin.lean_ce``) against the readable formula.

Every margin head's loss, and the two public functions, must equal the plain-autograd reference
(``lean = False``: ``F.cross_entropy(margin_logits(F.normalize(x) @ F.normalize(W).t()), y)``) in value
and in gradients w.r.t. the features, the class weights and ψ's extra inputs: float64, small B and C,
several margins and scales, class chunks, repeated labels and every class present, half-precision
features cast to fp32.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from podhl.losses.margin import (
    AMCMSoftmaxLoss,
    AMSoftmaxLoss,
    ArcFaceLoss,
    ASoftmaxLoss,
    CombinedMarginLoss,
    ExclusiveRegularizationLoss,
    MagFaceLoss,
)
from podhl.losses.margin.lean_ce import margin_cross_entropy, normalized_margin_cross_entropy
from podhl.losses.margin.math import angle, monotone_fallback, scatter_target

HEADS = [
    (ArcFaceLoss, {}),
    (ArcFaceLoss, {"scale": 64.0, "margin": 1.2}),
    (AMSoftmaxLoss, {}),
    (AMSoftmaxLoss, {"scale": 5.0, "margin": 0.0}),
    (CombinedMarginLoss, {}),
    (CombinedMarginLoss, {"m1": 1.3, "m2": 0.2, "m3": 0.4, "scale": 16.0}),
    (AMCMSoftmaxLoss, {}),
    (MagFaceLoss, {}),
    (MagFaceLoss, {"easy_margin": True, "scale": 30.0}),
    (ExclusiveRegularizationLoss, {}),
    (ExclusiveRegularizationLoss, {"m2": 0.5}),
    (ASoftmaxLoss, {}),
    (ASoftmaxLoss, {"base": 0.0, "lambda_min": 0.0, "m": 3}),
]
IDS = [f"{cls.__name__}-{i}" for i, (cls, _) in enumerate(HEADS)]


def _setup(cls, kw, num_classes=11, dim=6, batch=9, seed=0, dtype=torch.float64, feat_scale=20.0):
    torch.manual_seed(seed)
    head = cls(num_classes, dim, **kw).to(dtype)
    with torch.no_grad():  # rows of any norm: the fused normalization's gradient must hold off the sphere
        head.weight.mul_(torch.rand(num_classes, 1, dtype=dtype) * 2 + 0.3)
    x = (torch.randn(batch, dim, dtype=dtype) * feat_scale).requires_grad_(True)
    labels = torch.randint(0, num_classes, (batch,))
    labels[:3] = labels[0]  # a repeated label
    return head, x, labels


def _loss_and_grads(head, x, labels, lean, chunk=None):
    head.lean = lean
    if hasattr(head, "chunk_size"):
        head.chunk_size = chunk
    out = head(x, labels)
    grads = torch.autograd.grad(out["loss"], [x, head.weight])
    return out, grads


CASES = [(h, chunk) for h in HEADS for chunk in ([None] if h[0] is ASoftmaxLoss else [None, 1, 4, 100])]


@pytest.mark.parametrize(("case", "chunk"), CASES, ids=[f"{IDS[HEADS.index(h)]}-chunk{c}" for h, c in CASES])
def test_head_equals_reference_formula(case, chunk):
    cls, kw = case
    head, x, labels = _setup(cls, kw)
    ref, (gx_ref, gw_ref) = _loss_and_grads(head, x, labels, lean=False)
    new, (gx, gw) = _loss_and_grads(head, x, labels, lean=True, chunk=chunk)
    for key in ref:
        torch.testing.assert_close(new[key], ref[key], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(gw, gw_ref, rtol=1e-10, atol=1e-13)
    assert gw.abs().max() > 1e-6  # the comparison is not of zeros


@pytest.mark.parametrize(("cls", "kw"), HEADS[:1] + HEADS[7:8] + HEADS[11:12], ids=["arc", "magface", "asl"])
def test_every_class_present_and_one_label_only(cls, kw):
    head, x, _ = _setup(cls, kw, num_classes=4, batch=10)
    for labels in (torch.arange(10) % 4, torch.full((10,), 2)):
        ref, (gx_ref, gw_ref) = _loss_and_grads(head, x, labels, lean=False)
        new, (gx, gw) = _loss_and_grads(head, x, labels, lean=True)
        torch.testing.assert_close(new["loss"], ref["loss"], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(gx, gx_ref, rtol=1e-10, atol=1e-13)
        torch.testing.assert_close(gw, gw_ref, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("cls", "kw"), [HEADS[0], HEADS[7], HEADS[11]], ids=["arc", "magface", "asl"])
def test_half_precision_features_are_cast_to_fp32(cls, kw, half):
    head, x, labels = _setup(cls, kw, dtype=torch.float32, feat_scale=3.0)
    xh = x.detach().to(half).requires_grad_(True)
    ref, (gx_ref, gw_ref) = _loss_and_grads(head, xh, labels, lean=False)
    new, (gx, gw) = _loss_and_grads(head, xh, labels, lean=True)
    assert new["loss"].dtype == torch.float32 and gx.dtype == half
    torch.testing.assert_close(new["loss"], ref["loss"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx, gx_ref)  # half-precision tolerances
    torch.testing.assert_close(gw, gw_ref, rtol=1e-4, atol=1e-6)


def test_lean_path_differs_from_a_wrong_margin():
    """The comparison can fail: a head with another margin gives another loss and gradient."""
    head, x, labels = _setup(ArcFaceLoss, {})
    ref, (_, gw_ref) = _loss_and_grads(head, x, labels, lean=False)
    head.margin = 0.45
    new, (_, gw) = _loss_and_grads(head, x, labels, lean=True)
    assert abs(float((new["loss"] - ref["loss"]).detach())) > 1e-3
    assert (gw - gw_ref).abs().max() > 1e-4


# ------------------------------------------------------------------ the two public functions
def _arc_psi(m):
    def psi(c, margin=None):
        phi = angle(c) + (m if margin is None else margin)
        return monotone_fallback(torch.cos(phi), c, phi, m2=m if margin is None else margin)

    return psi


@pytest.mark.parametrize("scale", [1.0, 30.0, 64.0])
def test_margin_cross_entropy_from_cosines(scale):
    torch.manual_seed(1)
    b, c = 8, 13
    cos = (torch.rand(b, c, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    margin = (torch.rand(b, dtype=torch.float64) * 0.8).requires_grad_(True)  # per sample, as MagFace's
    labels = torch.tensor([0, 3, 3, 12, 5, 5, 5, 1])
    psi = _arc_psi(None)

    def reference(cos, margin):
        cos_y = cos.gather(1, labels.view(-1, 1)).squeeze(1)
        return F.cross_entropy(scatter_target(cos, labels, psi(cos_y, margin), scale), labels)

    ref = reference(cos, margin)
    new = margin_cross_entropy(cos, labels, psi, scale, (margin,))
    torch.testing.assert_close(new, ref, rtol=1e-12, atol=1e-12)
    g_ref = torch.autograd.grad(ref, [cos, margin])
    g_new = torch.autograd.grad(new, [cos, margin])
    for a, r in zip(g_new, g_ref, strict=True):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-14)


def test_margin_cross_entropy_backward_runs_once():
    cos = torch.rand(3, 4, dtype=torch.float64, requires_grad=True)
    loss = margin_cross_entropy(cos * 1.0, torch.tensor([0, 1, 2]), lambda c: c - 0.35, 30.0)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="runs once"):
        loss.backward()


@pytest.mark.parametrize("chunk", [None, 2, 7, 50])
def test_normalized_margin_cross_entropy_matches_f_normalize(chunk):
    torch.manual_seed(2)
    b, c, d = 6, 7, 5
    x = (torch.randn(b, d, dtype=torch.float64) * 5).requires_grad_(True)
    w = torch.randn(c, d, dtype=torch.float64).requires_grad_(True)
    labels = torch.tensor([6, 0, 6, 2, 3, 6])
    psi = _arc_psi(0.5)

    cos = F.normalize(x, dim=1) @ F.normalize(w, dim=1).t()
    cos_y = cos.gather(1, labels.view(-1, 1)).squeeze(1)
    ref = F.cross_entropy(scatter_target(cos, labels, psi(cos_y), 30.0), labels)
    new = normalized_margin_cross_entropy(x, w, labels, psi, 30.0, chunk_size=chunk)
    torch.testing.assert_close(new, ref, rtol=1e-12, atol=1e-12)
    for a, r in zip(torch.autograd.grad(new, [x, w]), torch.autograd.grad(ref, [x, w]), strict=True):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("chunk", [None, 3])
def test_normalized_margin_cross_entropy_gradcheck_and_second_backward(chunk):
    torch.manual_seed(3)
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    margin = torch.rand(4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([1, 1, 4, 0])

    def f(x, w, margin):
        return normalized_margin_cross_entropy(x, w, labels, _arc_psi(None), 4.0, (margin,), chunk_size=chunk)

    assert torch.autograd.gradcheck(f, (x, w, margin))


def test_normalized_margin_cross_entropy_only_weight_needs_grad():
    torch.manual_seed(4)
    x = torch.randn(4, 3, dtype=torch.float64)
    w = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([1, 2, 4, 0])
    (gw,) = torch.autograd.grad(normalized_margin_cross_entropy(x, w, labels, lambda c: c - 0.35, 30.0), [w])
    ref_cos = F.normalize(x, dim=1) @ F.normalize(w, dim=1).t()
    ref = F.cross_entropy(
        30.0 * ref_cos.scatter(1, labels.view(-1, 1), (ref_cos.gather(1, labels.view(-1, 1)) - 0.35)), labels
    )
    torch.testing.assert_close(gw, torch.autograd.grad(ref, [w])[0], rtol=1e-10, atol=1e-14)


def test_chunk_size_must_be_positive():
    with pytest.raises(ValueError, match="chunk_size"):
        normalized_margin_cross_entropy(
            torch.ones(1, 2), torch.ones(3, 2), torch.tensor([0]), lambda c: c, 1.0, chunk_size=0
        )


def test_lean_path_keeps_one_batch_by_class_buffer():
    """What autograd keeps for backward: one (B, C) buffer, no normalized copy of W; none with chunks."""
    b, c, d = 16, 300, 8
    head = ArcFaceLoss(c, d)
    x = torch.randn(b, d, requires_grad=True)
    labels = torch.randint(0, c, (b,))

    def kept(lean, chunk=None):
        head.lean, head.chunk_size = lean, chunk
        sizes = {}
        skip = {head.weight.untyped_storage().data_ptr(), x.untyped_storage().data_ptr()}

        def pack(t):
            if t.untyped_storage().data_ptr() not in skip:
                sizes[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            head(x, labels)
        return sum(sizes.values())

    bc = b * c * 4
    assert kept(lean=False) >= 2 * bc + c * d * 4  # the reference: (B, C) tensors and Ŵ
    assert bc <= kept(lean=True) < bc + 4 * (b + c) * 8  # one (B, C) buffer and vectors
    assert kept(lean=True, chunk=64) < 4 * (b + c) * 8  # vectors only


def test_scale_of_margin_in_degrees_is_still_refused():
    with pytest.raises(Exception, match="radians"):
        ArcFaceLoss(3, 2, margin=math.degrees(0.5))


def test_hl_official_classifier_ce_is_the_lean_path_with_the_same_values_and_gradients():
    """hl_official's f·normalize(W)ᵀ cross-entropy (Cifar10_HL_main.py's SoftmaxLoss, no bias) goes through the
    lean normalized CE: equal to the plain form in float64 (value, ∂/∂f, ∂/∂W), without the normalized W copy."""
    from hydra.utils import instantiate

    from podhl.config import compose_config
    from podhl.losses.hypersphere.math import classifier_cross_entropy

    torch.manual_seed(0)
    crit = instantiate(compose_config(["loss=hl_official"]).loss, num_classes=13, feat_dim=6).double()
    assert crit.classifier.bias is None and crit.official.normalize_weight
    crit.classifier.weight.data.mul_(torch.rand(13, 1, dtype=torch.float64) * 3 + 0.1)  # rows not of unit norm
    f = torch.randn(9, 6, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 3, 3, 12, 5, 0, 7, 7, 7])
    saved = []
    lean = classifier_cross_entropy(f, crit.classifier, y, True, crit.logits)
    plain = F.cross_entropy(F.linear(f, F.normalize(crit.classifier.weight, dim=1)), y)
    assert float(lean.detach()) == pytest.approx(float(plain.detach()), abs=1e-12)
    for a, b in zip(
        torch.autograd.grad(lean, [f, crit.classifier.weight]),
        torch.autograd.grad(plain, [f, crit.classifier.weight]),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        classifier_cross_entropy(f, crit.classifier, y, True, crit.logits)
    assert not any(t.shape == crit.classifier.weight.shape and t is not crit.classifier.weight for t in saved)
