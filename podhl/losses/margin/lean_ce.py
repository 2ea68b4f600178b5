r"""Margin softmax cross-entropy without the (B, C) copies autograd keeps: ``margin_cross_entropy`` and
``normalized_margin_cross_entropy``, the loss of every margin head.

Both compute the mean over the batch of

$$\mathrm{CE}(z_i, y_i), \quad z_{ij} = s\cos\theta_{ij}\ (j \ne y_i), \quad z_{iy_i} = s\,\psi(\cos\theta_{iy_i})$$

exactly as ``F.cross_entropy(scatter_target(cos, labels, ψ(cos_y), s), labels)`` does (the readable
reference, ``MarginHead.margin_logits``), with the same values and gradients, but as custom autograd
functions that keep one (B, C) buffer instead of about ten (B, C)-sized tensors (podhl's design, in the
spirit of insightface's ``arcface_torch``, which applies the margin on the target column in place):

* the margin is applied to the B target cosines only: ψ runs on a (B,) vector, under autograd (so each
  head's file keeps its own ψ formula and its gradient, including per-sample margins such as MagFace's
  m(‖x‖), passed as ``psi_args``), and the result replaces the target column of the logits buffer;
* the logits buffer becomes the softmax probabilities in place (max, subtract, exp, divide), which is
  all the backward needs: ∂L/∂z = (p − onehot(y))/B. The backward turns that same buffer into the
  gradient w.r.t. the cosines in place (s·p off target; ψ'·s·(p_y − 1) on target, through autograd
  on the (B,) graph of ψ).

``normalized_margin_cross_entropy`` also fuses the L2 normalization of features and class weights
(``F.normalize``, eps 1e-12): it takes the raw W (C × d) and never builds the normalized copy Ŵ
(C × d, two (B, C) matrices' worth at d = 2B) that ``F.normalize(W) @ x̂ᵀ`` keeps for backward; the
cosines are (x̂ Wᵀ)/‖W_j‖ and the gradient of W is projected row by row,
∂L/∂W_j = A_j − (A_j·W_j) W_j/‖W_j‖² with A_j = Σ_i G_ij x̂_i/‖W_j‖ (G = ∂L/∂cos). With ``chunk_size`` it goes over the
classes in chunks and keeps no (B, C) buffer at all: the forward runs an online log-sum-exp, the
backward recomputes each chunk's cosines (one more B×C×d matrix product: slower, O(B·chunk) memory).

Everything runs in the inputs' dtype with autocast off (the heads pass fp32, the tests fp64).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext

import torch

__all__ = ["margin_cross_entropy", "normalized_margin_cross_entropy"]

NORM_EPS = 1e-12  # F.normalize's default eps: x / max(‖x‖, eps)
_ROWS = 8192  # rows per block for the row-wise dot products of the weight gradient (bounded temporaries)


def _no_autocast(t: torch.Tensor):
    return torch.autocast(t.device.type, enabled=False) if t.device.type in ("cuda", "cpu") else nullcontext()


def _target_graph(cos_y: torch.Tensor, psi: Callable, psi_args: Sequence[torch.Tensor]):
    """ψ(cos_y, *psi_args) (B,) with its own small autograd graph, for the backward."""
    with torch.enable_grad():
        c = cos_y.detach().requires_grad_(True)
        args = [a.detach().requires_grad_(a.requires_grad) for a in psi_args]
        t = psi(c, *args)
    return c, args, t


def _target_grads(ctx, grad_t: torch.Tensor):
    """∂L/∂cos_y and ∂L/∂psi_args from ∂L/∂ψ (B,), through ψ's saved graph."""
    c, args, t = ctx.psi_graph
    wrt = [c] + [a for a in args if a.requires_grad]
    if not t.requires_grad:  # ψ ignores its inputs (e.g. a constant target)
        return torch.zeros_like(c), [None] * len(args)
    # retain_graph: the (B,)-sized graph of ψ dies with ctx; kept for a second backward (gradcheck)
    grads = iter(torch.autograd.grad(t, wrt, grad_t.to(t.dtype), retain_graph=True, allow_unused=True))
    grad_c = next(grads)
    grad_c = torch.zeros_like(c) if grad_c is None else grad_c
    grad_args = [next(grads) if a.requires_grad else None for a in args]
    return grad_c, grad_args


def _softmax_(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn (B, C) ``logits`` into softmax probabilities exp(z − top)/total in place; returns the (B, 1)
    ``top`` (row max) and ``total`` (Σ exp(z − top)): log-sum-exp = top + log total."""
    top = logits.amax(dim=1, keepdim=True)
    logits.sub_(top).exp_()
    total = logits.sum(dim=1, keepdim=True)
    logits.div_(total)
    return top, total


def _grad_logits_(probs: torch.Tensor, index: torch.Tensor, grad_c: torch.Tensor, factor: torch.Tensor) -> None:
    """probs → ∂L/∂cos in place: factor·p off target (factor = s·g/B), ``grad_c`` on target."""
    probs.mul_(factor)
    probs.scatter_(1, index, grad_c.unsqueeze(1).to(probs.dtype))


class _MarginCE(torch.autograd.Function):
    """Mean CE of s·cos with the target column replaced by s·ψ(cos_y), from a (B, C) cosine matrix."""

    @staticmethod
    def forward(ctx, cos, labels, psi, scale, *psi_args):
        with _no_autocast(cos):
            index = labels.view(-1, 1)
            cos_y = cos.gather(1, index).squeeze(1)
            ctx.psi_graph = _target_graph(cos_y, psi, psi_args)
            target = scale * ctx.psi_graph[2].detach().to(cos.dtype)  # s·ψ(θ_y)
            probs = cos.mul(scale)  # the one (B, C) buffer: logits, then probabilities, then gradient
            probs.scatter_(1, index, target.unsqueeze(1))
            top, total = _softmax_(probs)
            lse = (top + total.log()).squeeze(1)
            ctx.save_for_backward(probs, labels, lse, target)
            ctx.scale = scale
            return (lse - target).mean()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        probs, labels, lse, target = ctx.saved_tensors
        if getattr(ctx, "consumed", False):
            raise RuntimeError(
                "margin_cross_entropy's backward runs once: its probabilities became the gradient in place "
                "(use normalized_margin_cross_entropy, which recomputes them, to back-propagate twice)"
            )
        ctx.consumed = True
        probs = probs.data  # overwritten in place below, its version counter untouched
        with _no_autocast(probs):
            factor = grad / probs.shape[0]
            grad_t = ctx.scale * factor * ((target - lse).exp() - 1.0)  # s·(p_y − 1)·g/B
            grad_c, grad_args = _target_grads(ctx, grad_t)
            _grad_logits_(probs, labels.view(-1, 1), grad_c, ctx.scale * factor)
        return (probs, None, None, None, *grad_args)


def margin_cross_entropy(
    cos: torch.Tensor,
    labels: torch.Tensor,
    psi: Callable[..., torch.Tensor],
    scale: float,
    psi_args: Sequence[torch.Tensor] = (),
) -> torch.Tensor:
    r"""Mean cross-entropy of $s\cdot[\cos\theta_j\ (j \ne y);\ \psi(\cos\theta_y)\ (j = y)]$ from cosines.

    Equal in value and gradient to
    ``F.cross_entropy(scale * cos.scatter(1, y, psi(cos_y, *psi_args)), labels)``, but keeps a single
    (B, C) tensor for backward (the probabilities, overwritten in place by the gradient); ``cos``
    itself is not kept. Module docstring: how.

    Args:
        cos: $(B, C)$ cosines (any autograd history; fp32 or fp64).
        labels: $(B,)$ class indices (repeats allowed).
        psi: the target logit before the scale, ``psi(cos_y, *psi_args) -> (B,)``, differentiable
            (e.g. ArcFace's ``lambda c: torch.cos(torch.acos(c) + m)``); it sees (B,) tensors only.
        scale: $s$, scale of the logits.
        psi_args: extra (B,)- or scalar-shaped tensors ψ depends on (MagFace's per-sample margin);
            their gradients flow back.

    Returns:
        The scalar mean cross-entropy.
    """
    return _MarginCE.apply(cos, labels, psi, float(scale), *psi_args)


def _inv_norms(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """‖t_i‖ (rows) and 1/max(‖t_i‖, eps), as F.normalize divides."""
    norms = t.norm(dim=1)
    return norms, norms.clamp_min(NORM_EPS).reciprocal()


def _normalize_backward(grad_u: torch.Tensor, t: torch.Tensor, norms: torch.Tensor, inv: torch.Tensor) -> torch.Tensor:
    """∂L/∂t from ∂L/∂u for u = t/max(‖t‖, eps) (F.normalize), in place on ``grad_u`` (row blocks)."""
    live = (norms > NORM_EPS).to(t.dtype)  # the clamp cuts the norm's gradient below eps
    for r0 in range(0, t.shape[0], _ROWS):
        rows = slice(r0, r0 + _ROWS)
        dot = (grad_u[rows] * t[rows]).sum(dim=1)  # ⟨∂L/∂u, t⟩
        coef = dot * inv[rows] * inv[rows] * live[rows] / norms[rows].clamp_min(NORM_EPS)
        grad_u[rows].mul_(inv[rows].unsqueeze(1)).addcmul_(t[rows], coef.unsqueeze(1), value=-1.0)
    return grad_u


class _NormalizedMarginCE(torch.autograd.Function):
    """``_MarginCE`` of cos = normalize(x)·normalize(W)ᵀ, the normalizations fused, optional class chunks."""

    @staticmethod
    def forward(ctx, x, weight, labels, psi, scale, normalize_features, chunk_size, *psi_args):
        with _no_autocast(x):
            index = labels.view(-1, 1)
            w_norms, w_inv = _inv_norms(weight)
            if normalize_features:
                x_norms, x_inv = _inv_norms(x)
                xh = x * x_inv.unsqueeze(1)
            else:
                x_norms = x_inv = None
                xh = x
            cos_y = (xh * weight[labels]).sum(dim=1) * w_inv[labels]  # B target cosines, O(B·d)
            ctx.psi_graph = _target_graph(cos_y, psi, psi_args)
            target = scale * ctx.psi_graph[2].detach().to(x.dtype)  # s·ψ(θ_y)
            num = weight.shape[0]
            if chunk_size is None:
                probs = torch.mm(xh, weight.t()).mul_(w_inv.mul(scale))  # s·cos, the one (B, C) buffer
                probs.scatter_(1, index, target.unsqueeze(1))
                top, total = _softmax_(probs)
            else:  # online log-sum-exp over class chunks, no (B, C) buffer kept
                probs = None
                top = torch.full_like(target, float("-inf")).unsqueeze(1)
                total = torch.zeros_like(top)
                for c0 in range(0, num, chunk_size):
                    z = _chunk_logits(xh, weight, w_inv, labels, target, scale, c0, c0 + chunk_size)
                    new_top = torch.maximum(top, z.amax(dim=1, keepdim=True))
                    total = total * (top - new_top).exp() + z.sub_(new_top).exp_().sum(dim=1, keepdim=True)
                    top = new_top
            lse = (top + total.log()).squeeze(1)
            ctx.save_for_backward(x, weight, labels, lse, target, w_norms, w_inv, x_norms, x_inv, probs, top, total)
            ctx.scale, ctx.normalize_features, ctx.chunk_size = scale, normalize_features, chunk_size
            return (lse - target).mean()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight, labels, lse, target, w_norms, w_inv, x_norms, x_inv, probs, top, total = ctx.saved_tensors
        scale = ctx.scale
        with _no_autocast(x):
            xh = x * x_inv.unsqueeze(1) if ctx.normalize_features else x
            factor = grad / x.shape[0]
            grad_t = scale * factor * ((target - lse).exp() - 1.0)  # s·(p_y − 1)·g/B
            grad_c, grad_args = _target_grads(ctx, grad_t)
            need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
            grad_xh = torch.zeros_like(xh) if need_x else None
            grad_w = torch.empty_like(weight) if need_w else None
            num = weight.shape[0]
            reuse = probs is not None and not getattr(ctx, "consumed", False)
            step = num if reuse else (ctx.chunk_size or num)
            ctx.consumed = True  # a second backward (retain_graph, gradcheck) recomputes the probabilities
            for c0 in range(0, num, step):
                c1 = min(c0 + step, num)
                if reuse:
                    g = probs.data  # the saved buffer, overwritten in place (its version counter untouched)
                else:  # recompute the chunk's probabilities, as the forward's _softmax_ did (bit for bit)
                    g = _chunk_logits(xh, weight, w_inv, labels, target, scale, c0, c1).sub_(top).exp_().div_(total)
                # ∂L/∂(x̂·W_j) = ∂L/∂cos_j / ‖W_j‖, in one pass: s·g/B·p/‖W_j‖ off target, ψ'-term/‖W_y‖ on it
                _grad_chunk_(g, labels, grad_c * w_inv[labels], w_inv[c0:c1] * (scale * factor), c0, c1)
                if need_x:
                    grad_xh.addmm_(g, weight[c0:c1])
                if need_w:
                    torch.mm(g.t(), xh, out=grad_w[c0:c1])  # A_j = Σ_i G_ij x̂_i/‖W_j‖, projected below
                del g
            if need_w:  # ∂L/∂W_j = A_j − (A_j·W_j)/‖W_j‖²·W_j, A = (G/‖W‖)ᵀx̂ (rows with ‖W_j‖ > eps)
                live = (w_norms > NORM_EPS).to(weight.dtype)
                for r0 in range(0, num, _ROWS):
                    rows = slice(r0, r0 + _ROWS)
                    dot = (grad_w[rows] * weight[rows]).sum(dim=1)
                    coef = dot * live[rows] / w_norms[rows].clamp_min(NORM_EPS).square()
                    grad_w[rows].addcmul_(weight[rows], coef.unsqueeze(1), value=-1.0)
            grad_x = None
            if need_x:
                grad_x = _normalize_backward(grad_xh, x, x_norms, x_inv) if ctx.normalize_features else grad_xh
        return (grad_x, grad_w, None, None, None, None, None, *grad_args)


def _chunk_logits(xh, weight, w_inv, labels, target, scale, c0, c1) -> torch.Tensor:
    """(B, c1 − c0) logits s·cos of classes c0..c1, target logits s·ψ in place where the label falls."""
    c1 = min(c1, weight.shape[0])
    z = torch.mm(xh, weight[c0:c1].t()).mul_(w_inv[c0:c1].mul(scale))
    rows = ((labels >= c0) & (labels < c1)).nonzero().squeeze(1)
    z[rows, labels[rows] - c0] = target[rows]
    return z


def _grad_chunk_(g, labels, grad_c, factor, c0, c1) -> None:
    """Probabilities of classes c0..c1 → factor·p off target and ``grad_c`` on target, in place."""
    g.mul_(factor)
    rows = ((labels >= c0) & (labels < c0 + g.shape[1])).nonzero().squeeze(1)
    g[rows, labels[rows] - c0] = grad_c[rows].to(g.dtype)


def normalized_margin_cross_entropy(
    features: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    psi: Callable[..., torch.Tensor],
    scale: float,
    psi_args: Sequence[torch.Tensor] = (),
    normalize_features: bool = True,
    chunk_size: int | None = None,
) -> torch.Tensor:
    r"""``margin_cross_entropy`` of $\cos\theta_{ij} = \langle x_i/\lVert x_i\rVert, W_j/\lVert W_j\rVert\rangle$,
    normalizations fused: equal to
    ``margin_cross_entropy(F.normalize(x) @ F.normalize(W).t(), labels, psi, scale, psi_args)`` in value
    and gradients (w.r.t. ``features``, ``weight`` and ``psi_args``), without the normalized copy of W.

    Memory kept for backward: ``features``, ``weight`` (already alive), (B,)/(C,) vectors and one
    (B, C) buffer; none with ``chunk_size`` (the backward then recomputes the cosines chunk by chunk).

    Args:
        features: $(B, d)$ features $x$ (fp32 or fp64).
        weight: $(C, d)$ class weights $W$, any row norms, same dtype.
        labels: $(B,)$ class indices (repeats allowed).
        psi: target logit before the scale, ``psi(cos_y, *psi_args) -> (B,)`` (``margin_cross_entropy``).
        scale: $s$, scale of the logits.
        psi_args: extra tensors ψ depends on; their gradients flow back.
        normalize_features: True (default): $x/\lVert x\rVert$; False: the features as given, so the
            "cosines" are $\langle x_i, \hat W_j\rangle$ (A-Softmax's $\lVert x\rVert\cos\theta$).
        chunk_size: None (default): one (B, C) buffer; an int: classes per chunk, O(B·chunk) memory
            and one more matrix product (podhl's option for C in the millions).

    Returns:
        The scalar mean cross-entropy.
    """
    if chunk_size is not None and int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    chunk = None if chunk_size is None else int(chunk_size)
    return _NormalizedMarginCE.apply(
        features, weight, labels, psi, float(scale), bool(normalize_features), chunk, *psi_args
    )
