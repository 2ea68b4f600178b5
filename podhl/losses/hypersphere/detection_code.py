"""Hypersphere Loss as the authors' detection code runs it (TCCofWANG/Hypersphere_loss ``faster_rcnn_HL/``
@87301df, the newest commit): ``OfficialDetectionHL`` (``loss=hl_official_detection``).

What the code does per training batch (``nets/frcnn_training.py`` @87301df, ``FasterRCNNTrainer.forward``):
the centers start from zero for every batch (``train.py`` makes ``nCenter = torch.zeros(21, 2048)`` once and
``get_center_momentum`` returns a new tensor, so the caller's zeros are never changed); then for each image
of the batch in turn, ``nCenter = get_center_momentum(feature_i, label_i, nCenter)`` (the first image: the
directions of the class sums; the next ones: one EWMA step from the previous image's centers), and that
image's RoI-classification loss is CE + ``gCL(feature_i, label_i, nCenter)``; the batch loss is the mean
over images. Nothing is carried from one batch to the next, so the criterion has no state besides its
classifier. The maths of one step: :func:`code_center_update` (the code's eqs. 15–16) and :func:`code_center_penalty`
(the code's eq. 17 penalty).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from podhl.checks import in_range, integer, one_of
from podhl.losses.linear.head import LinearClassifier

CHAINS = ("image", "batch")


def code_center_update(
    features: torch.Tensor,
    labels: torch.Tensor,
    previous: torch.Tensor,
    radius: float = 40.0,
    phi: float = 0.99,
    beta: float = 0.1,
) -> torch.Tensor:
    r"""``get_center_momentum`` of ``faster_rcnn_HL/nets/frcnn_training.py`` @87301df, vectorized (no equation
    number; the code's version of HL eqs. 15–16 without bias correction).

    With all-zero ``previous``: $C_k = \sum_{y_i = k} f_i$. Otherwise, with $c = r\,\hat c^{\,prev}$,
    $v_i = \varphi\, c_{y_i} + (1 - \varphi) f_i$ and $\bar c_k = \frac{1}{K-1}\sum_{j \ne k} c_j$:
    $C_k = \sum_{y_i = k} (v_i - \beta \bar c_k)$. Returns ``C.renorm(2, 0, 1e-5).mul(1e5)``: unit rows,
    zero rows for classes absent from ``labels``.

    Args:
        features: $(N, d)$ features (detached inside).
        labels: $(N,)$ class indices in $[0, K)$.
        previous: $(K, d)$ unit centers of the previous step, or zeros (the first image of a batch).
        radius: $r$, the code's ``radius``. Default 40.0: ``get_center_momentum(..., radius=40)``.
        phi: $\varphi$, the code's ``beta``. Default 0.99: ``get_center_momentum(..., beta=0.99)``.
        beta: $\beta$, the code's ``sep_weight``. Default 0.1: ``get_center_momentum(..., sep_weight=0.1)``.

    Returns:
        $(K, d)$ centers, unit norm (zero for absent classes).
    """
    with torch.no_grad():
        f = features.detach()
        f = f if f.dtype == torch.float64 else f.float()
        k = previous.shape[0]
        prev = previous.to(f)
        total = torch.zeros(k, f.shape[1], dtype=f.dtype, device=f.device)
        if torch.all(prev == 0):
            total.index_add_(0, labels, f)
        else:
            centers = radius * prev
            v = phi * centers[labels] + (1.0 - phi) * f
            others = (centers.sum(dim=0, keepdim=True) - centers) / (k - 1)
            counts = torch.bincount(labels, minlength=k).to(f)
            total.index_add_(0, labels, v)
            total -= counts.unsqueeze(1) * beta * others
        return total.renorm(2, 0, 1e-5).mul(1e5)


def code_center_penalty(
    features: torch.Tensor, labels: torch.Tensor, centers: torch.Tensor, radius: float, threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``gCL.forward`` of ``faster_rcnn_HL/nets/frcnn_training.py`` @87301df without its ``loss_weight``
    (no equation number; the code's version of HL eq. 17's penalty):
    $\frac{1}{2 N d}\sum_i [d_i > t]\, d_i^4$, $d_i = \lVert f_i - r\,c_{y_i}\rVert$ (``feat.numel()`` = $N d$).

    Args:
        features: $(N, d)$ features (with gradient).
        labels: $(N,)$ class indices.
        centers: $(K, d)$ unit centers (:func:`code_center_update`).
        radius: $r$, the code's ``self.radius`` (40).
        threshold: $t$, the code's ``alpha * rho`` (40 × 0.05 = 2).

    Returns:
        (penalty, distances): the scalar penalty and the $(N,)$ distances $d_i$.
    """
    dists = torch.norm(features - radius * centers[labels], p=2, dim=1)
    outside = torch.where(dists > threshold, 1, 0) * dists  # the code's indicate1
    return torch.sum((outside * dists) ** 2) / (2 * features.numel()), dists


class OfficialDetectionHL(LinearClassifier):
    r"""HL as the authors' Faster R-CNN code trains it: softmax plus $\lambda\,\frac{1}{2Nd}\sum [d_i > t]\, d_i^4$.

    Per image $b$ of a batch (its $N_b$ sampled RoIs): centers $c^{(b)}$ from :func:`code_center_update`
    applied to $c^{(b-1)}$, with $c^{(0)} = 0$ at every batch; $L_b = \mathrm{CE}(W f) + \lambda\,
    \frac{1}{2 N_b d}\sum_i [d_i > \alpha\rho]\, d_i^4$ with $d_i = \lVert f_i - r\, c^{(b)}_{y_i}\rVert$;
    $L = \frac{1}{B}\sum_b L_b$ (TCCofWANG/Hypersphere_loss ``faster_rcnn_HL/nets/frcnn_training.py`` @87301df,
    ``FasterRCNNTrainer.forward``, ``get_center_momentum``, ``gCL``; HL's eq. 17 written as that code has it).
    Config: ``loss=hl_official_detection`` (task=detection; ``docs/detection.md``). The detection task hands
    each image's RoI count (``groups``); without it the whole batch is one image.

    Args:
        num_classes: $K$, classes incl. background (21 on VOC).
        feat_dim: $d$, region-feature dimension (2048).
        radius: $r > 0$, center norm. Default 40.0: ``gCL(radius=40)``, ``get_center_momentum(radius=40)``.
        alpha: $\alpha > 0$, the code's "half inter-class distance"; threshold $t = \alpha\rho$. Default 40.0:
            ``gCL(alpha=40)``.
        rho: $\rho \in [0, 1]$. Default 0.05: ``train.py`` ``--rho`` default 0.05.
        lam: $\lambda \ge 0$. Default 0.003: ``train.py`` ``--loss_weight`` default 0.003.
        phi: $\varphi \in (0, 1)$, EWMA factor. Default 0.99: ``get_center_momentum(beta=0.99)``.
        beta: $\beta \ge 0$, separation weight. Default 0.1: ``get_center_momentum(sep_weight=0.1)``
            (``train.py``'s ``--sep_weight`` is parsed but never passed).
        warmup_epochs: epochs of plain softmax first. Default 0: ``train.py`` ``Freeze_Epoch = 0`` and the
            penalty is on when ``epoch >= self.Freeze_epoch``.
        chain: ``"image"`` (default: one center step per image, as the code) or ``"batch"`` (one step from
            zero over the whole batch).
        bias: classifier bias. Default False: ``nets/loss_function.py`` ``SoftmaxLoss``
            (``nn.Linear(2048, class_num, bias=False)``).
        init_std: std of the classifier's normal init. Default 0.01: ``SoftmaxLoss``
            (``score.weight.data.normal_(0, 0.01)``).

    Returns:
        forward (dict[str, torch.Tensor]): ``loss`` (back-propagated), ``ce``, ``center`` (the unweighted
            penalty, mean over images), ``dead_zone_fraction`` (share of RoIs with $d \le t$) and
            ``center_distance`` (mean $d_i$).
        logits (torch.Tensor): $(B, K)$ scores $W f$; argmax = prediction.
    """

    takes_groups = True  # the detection task passes each image's RoI count as ``groups``

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        radius: float = 40.0,
        alpha: float = 40.0,
        rho: float = 0.05,
        lam: float = 0.003,
        phi: float = 0.99,
        beta: float = 0.1,
        warmup_epochs: int = 0,
        chain: str = "image",
        bias: bool = False,
        init_std: float = 0.01,
    ) -> None:
        super().__init__(num_classes, feat_dim, bias=bias)
        self.radius = in_range("radius", radius, 0.0, low_open=True)
        self.alpha = in_range("alpha", alpha, 0.0, low_open=True)
        self.rho = in_range("rho", rho, 0.0, 1.0)
        self.lam = in_range("lam", lam, 0.0)
        self.phi = in_range("phi", phi, 0.0, 1.0, low_open=True, high_open=True)
        self.beta = in_range("beta", beta, 0.0)
        self.warmup_epochs = integer("warmup_epochs", warmup_epochs, low=0)
        self.chain = one_of("chain", chain, CHAINS)
        self.init_std = in_range("init_std", init_std, 0.0, low_open=True)
        self.threshold = self.alpha * self.rho  # the code's thres = alpha * rho
        with torch.no_grad():
            self.classifier.weight.normal_(0.0, self.init_std)
            if self.classifier.bias is not None:
                self.classifier.bias.zero_()
        self.epoch = 0

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        r"""$(B, K)$ scores $W f$ (fp32; fp64 features stay fp64, for tests); argmax = prediction."""
        return self.classifier(features if features.dtype == torch.float64 else features.float())

    def on_epoch_start(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _groups(self, n: int, groups: Sequence[int] | None) -> list[int]:
        if groups is None or self.chain == "batch":
            return [n]
        sizes = [int(g) for g in groups if int(g) > 0]
        if sum(sizes) != n:
            raise ValueError(f"groups {list(groups)} do not add up to the batch's {n} features")
        return sizes

    def forward(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        step: int = 0,
        prepared: torch.Tensor | None = None,
        groups: Sequence[int] | None = None,
    ) -> dict[str, torch.Tensor]:
        f = features if features.dtype == torch.float64 else features.float()  # fp32 (fp64 kept for tests)
        logits = self.logits(f)
        penalized = self.epoch > self.warmup_epochs
        centers = torch.zeros(self.num_classes, self.feat_dim, dtype=f.dtype, device=f.device)  # nCenter
        ces, penalties, inside, distance = [], [], [], []
        start = 0
        for size in self._groups(len(f), groups):
            part, y = f[start : start + size], labels[start : start + size]
            ces.append(F.cross_entropy(logits[start : start + size], y))
            start += size
            centers = code_center_update(part, y, centers, self.radius, self.phi, self.beta)
            if penalized:
                penalty, dists = code_center_penalty(part, y, centers, self.radius, self.threshold)
                penalties.append(penalty)
                with torch.no_grad():
                    inside.append((dists <= self.threshold).float().mean())
                    distance.append(dists.mean())
        ce = torch.stack(ces).mean()
        zero = ce.detach().new_zeros(())
        if not penalized:
            return dict(loss=ce, ce=ce, center=zero, dead_zone_fraction=zero, center_distance=zero)
        penalty = torch.stack(penalties).mean()
        terms = dict(
            ce=ce,
            center=penalty,
            dead_zone_fraction=torch.stack(inside).mean(),
            center_distance=torch.stack(distance).mean(),
        )
        return {"loss": ce + self.lam * penalty, **terms}

    def epoch_metrics(self) -> dict[str, float]:
        return {"lambda": self.lam if self.epoch > self.warmup_epochs else 0.0, "dead_zone_radius": self.threshold}

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, r={self.radius}, t={self.threshold}, λ={self.lam}, φ={self.phi}, "
            f"β={self.beta}, t1={self.warmup_epochs}, chain={self.chain}"
        )
