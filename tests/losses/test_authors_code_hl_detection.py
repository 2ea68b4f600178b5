"""``loss=hl_official_detection`` against a transplant of the authors' detection code (TCCofWANG/Hypersphere_loss
``faster_rcnn_HL/nets/frcnn_training.py`` @87301df): ``get_center_momentum``, ``gCL`` and the per-image loop of
``FasterRCNNTrainer.forward``, copied below with only the ``.cuda()`` lines removed (CPU), on fixed tensors;
loss and gradients compared."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from hydra.utils import instantiate

from podhl.config import compose_config
from podhl.errors import ConfigError
from podhl.losses.hypersphere.detection_code import OfficialDetectionHL, code_center_update


# ----------------------------------------------------------------------- transplant (frcnn_training.py @87301df)
def get_center_momentum(C_feat, label, nCenter, sep_weight=0.1, radius=40, beta=0.99):  # noqa: N803
    class_num = nCenter.shape[0]
    feat_dim = nCenter.shape[1]
    Center = torch.zeros(class_num, feat_dim, dtype=C_feat.dtype)  # noqa: N806  (dtype: ours, for float64 tests)
    CenterMean = torch.zeros(class_num, feat_dim, dtype=C_feat.dtype)  # noqa: N806
    with torch.no_grad():
        if torch.all(nCenter == 0):
            for j in range(class_num):
                Center[j] += sum(C_feat[label == j])
        else:
            centers = radius * nCenter
            v = beta * centers[label] + (1 - beta) * C_feat
            CenterMean = (torch.sum(centers, dim=0) - centers) / (class_num - 1)  # noqa: N806
            for j in range(class_num):
                Center[j] += torch.sum(v[label == j] - sep_weight * CenterMean[j], dim=0)
        nCenter = Center.renorm(2, 0, 1e-5).mul(1e5)  # noqa: N806
    return nCenter


class gCL(nn.Module):  # noqa: N801
    def __init__(self, loss_weight=0.002, sep_weight=0.1, radius=40, alpha=40, rho=0.05):
        super().__init__()
        self.radius = radius
        self.loss_weight = loss_weight
        self.alpha = alpha
        self.rho = rho

    def forward(self, feat, label, center):
        scenter = self.radius * center
        dists = torch.norm(feat - scenter[label], p=2, dim=1, keepdim=False)
        thres = self.alpha * self.rho
        indicate = 1 * dists
        indicate1 = torch.where((indicate > thres), 1, 0) * indicate
        return self.loss_weight * (torch.sum((indicate1 * dists) ** 2) / (2 * feat.numel()))


def code_roi_cls_loss(features, labels, score, n, loss_weight, rho, epoch=0, freeze_epoch=0):
    """FasterRCNNTrainer.forward's RoI classification part: per image, nCenter = get_center_momentum(...), then
    CE + gCL; roi_cls_loss_all / n. ``nCenter`` comes in as train.py's zeros(21, 2048) (here (K, d))."""
    k, d = score.weight.shape
    nCenter = torch.zeros(k, d, dtype=features.dtype)  # noqa: N806
    gcl = gCL(loss_weight=loss_weight, rho=rho)
    features = features.view(n, -1, features.size(1))
    roi_scores = score(features.reshape(-1, d)).view(n, -1, k)
    labels = labels.view(n, -1)
    total = 0
    for i in range(n):
        nCenter = get_center_momentum(features[i], labels[i], nCenter)  # noqa: N806
        if epoch >= freeze_epoch:
            loss = nn.CrossEntropyLoss()(roi_scores[i], labels[i]) + gcl(features[i], labels[i], nCenter)
        else:
            loss = nn.CrossEntropyLoss()(roi_scores[i], labels[i])
        total += loss
    return total / n


# ----------------------------------------------------------------------- fixed tensors
def rois(n_images=3, per_image=8, k=4, d=6, spread=6.0, seed=0):
    """Region features clustered around radius-40 class directions, labels covering some classes per image
    (class 3 absent from image 0, so the chain carries a zero center)."""
    g = torch.Generator().manual_seed(seed)
    directions = torch.nn.functional.normalize(torch.randn(k, d, generator=g, dtype=torch.float64), dim=1)
    labels = torch.randint(0, k - 1, (n_images, per_image), generator=g)
    labels[1:, :2] = k - 1
    features = 40 * directions[labels] + spread * torch.randn(n_images, per_image, d, generator=g, dtype=torch.float64)
    return features.reshape(-1, d), labels.reshape(-1)


def test_center_update_is_get_center_momentum_from_zero_and_from_previous_centers():
    f, y = rois()
    first = code_center_update(f[:8], y[:8], torch.zeros(4, 6, dtype=torch.float64))
    assert torch.allclose(first, get_center_momentum(f[:8], y[:8], torch.zeros(4, 6, dtype=torch.float64)))
    assert torch.count_nonzero(first[3]) == 0 and torch.allclose(first[:3].norm(dim=1), torch.ones(3, dtype=f.dtype))
    # from zero: the directions of the class sums, by hand
    by_hand = torch.stack([f[:8][y[:8] == j].sum(0) for j in range(3)])
    assert torch.allclose(first[:3], by_hand / by_hand.norm(dim=1, keepdim=True), atol=1e-6)
    second = code_center_update(f[8:16], y[8:16], first)
    assert torch.allclose(second, get_center_momentum(f[8:16], y[8:16], first))
    # one EWMA step by hand for class 3 (zero before): Σ (0.01·f) − n·0.1·mean of the other centers' 40·c
    mean_others = 40 * first[:3].sum(0) / 3
    c3 = (0.01 * f[8:16][y[8:16] == 3]).sum(0) - (y[8:16] == 3).sum() * 0.1 * mean_others
    assert torch.allclose(second[3], c3 / c3.norm(), atol=1e-6)


@pytest.mark.parametrize("rho", [0.05, 0.2])  # thresholds 2 (the code's) and 8 (some RoIs inside the dead zone)
def test_loss_and_gradients_are_the_authors_per_image_loop(rho):
    f, y = rois()
    loss = OfficialDetectionHL(4, 6, rho=rho).double()
    loss.on_epoch_start(1)
    score = nn.Linear(6, 4, bias=False).double()
    score.weight.data.copy_(loss.classifier.weight.data)
    ours_f = f.clone().requires_grad_(True)
    code_f = f.clone().requires_grad_(True)
    out = loss(ours_f, y, groups=[8, 8, 8])
    ref = code_roi_cls_loss(code_f, y, score, 3, loss_weight=0.003, rho=rho)
    assert torch.allclose(out["loss"], ref, rtol=1e-10)
    out["loss"].backward(), ref.backward()
    assert torch.allclose(ours_f.grad, code_f.grad, rtol=1e-8, atol=1e-12)
    assert torch.allclose(loss.classifier.weight.grad, score.weight.grad, rtol=1e-8, atol=1e-12)
    if rho == 0.2:
        assert 0.0 < float(out["dead_zone_fraction"]) < 1.0  # both sides of the threshold are exercised


def test_the_penalty_is_d4_over_2nd_outside_the_dead_zone_by_hand():
    f, y = rois(n_images=1)
    loss = OfficialDetectionHL(4, 6, rho=0.2).double()
    loss.on_epoch_start(1)
    centers = code_center_update(f, y, torch.zeros(4, 6, dtype=torch.float64))
    d = (f - 40 * centers[y]).norm(dim=1)
    by_hand = sum(float(di) ** 4 for di in d if di > 8.0) / (2 * f.numel())
    assert float(loss(f, y)["center"]) == pytest.approx(by_hand, rel=1e-10)


def test_centers_are_rebuilt_every_batch_and_nothing_is_kept():
    f, y = rois()
    loss = OfficialDetectionHL(4, 6).double()
    loss.on_epoch_start(1)
    first = loss(f, y, groups=[8, 8, 8])["loss"]
    assert not list(loss.buffers())  # no center state
    loss(f * 1.5, y, groups=[8, 8, 8])  # another batch in between changes nothing
    assert torch.equal(loss(f, y, groups=[8, 8, 8])["loss"], first)


def test_chain_batch_is_one_step_and_groups_must_add_up():
    f, y = rois()
    loss = OfficialDetectionHL(4, 6, chain="batch").double()
    assert torch.equal(loss(f, y, groups=[8, 8])["loss"], loss(f, y)["loss"])  # chain=batch ignores groups
    loss = OfficialDetectionHL(4, 6).double()
    loss.on_epoch_start(1)
    with pytest.raises(ValueError, match="add up"):
        loss(f, y, groups=[8, 8])
    loss = OfficialDetectionHL(4, 6, chain="batch").double()
    loss.on_epoch_start(1)
    score = nn.Linear(6, 4, bias=False).double()
    score.weight.data.copy_(loss.classifier.weight.data)
    assert torch.allclose(loss(f, y, groups=[8, 8, 8])["loss"], code_roi_cls_loss(f, y, score, 1, 0.003, 0.05))


def test_warm_up_is_off_by_default_and_optional():
    f, y = rois()
    loss = OfficialDetectionHL(4, 6).double()
    loss.on_epoch_start(1)  # the first epoch (0-based 0 ≥ Freeze_Epoch 0 in the code): penalized at once
    assert loss(f, y)["center"] > 0
    warm = OfficialDetectionHL(4, 6, warmup_epochs=1).double()
    warm.on_epoch_start(1)
    out = warm(f, y)
    assert float(out["center"]) == 0.0 and torch.equal(out["loss"], out["ce"])


def test_the_preset_is_the_code_defaults():
    cfg = compose_config(["loss=hl_official_detection"]).loss
    loss = instantiate(cfg, num_classes=21, feat_dim=2048)
    assert isinstance(loss, OfficialDetectionHL)
    assert loss.threshold == pytest.approx(2.0) and loss.lam == 0.003 and loss.warmup_epochs == 0
    assert loss.classifier.bias is None and loss.classifier.weight.std().item() == pytest.approx(0.01, rel=0.05)
    with pytest.raises(ConfigError):
        OfficialDetectionHL(4, 6, chain="epoch")
