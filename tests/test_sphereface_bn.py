"""``backbone=sphereface20_bn`` against the HL authors' module, transplanted below.

``conv3x3``, ``conv1x1``, ``BasicBlock``, ``SphereFace`` and ``SphereFace20`` are copied from
TCCofWANG/Hypersphere_loss ``models/spherenet.py`` @ b1b98187 (the file's newest commit; repository @ 87301dfd),
unchanged but for formatting and ``super()``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from podhl.config import compose_config
from podhl.models import build_model

cfg = {"A": [0, 0, 0, 0], "B": [0, 1, 2, 0], "C": [1, 2, 4, 1], "D": [2, 4, 8, 2], "E": [3, 8, 16, 3]}


def conv3x3(in_planes, out_planes, stride=1):
    """3x3 convolution with padding"""
    c3x3 = nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)
    nn.init.normal_(c3x3.weight, 0, 0.01)
    return c3x3


def conv1x1(in_planes, out_planes, stride=1):
    """1x1 convolution"""
    c1x1 = nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)
    nn.init.normal_(c1x1.weight, 0, 0.01)
    return c1x1


class BasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.PReLU(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride
        nn.init.constant_(self.bn1.weight, 1)
        nn.init.constant_(self.bn1.bias, 0)
        nn.init.constant_(self.bn2.weight, 0)

    def forward(self, x):
        identity = x

        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)
        out = self.bn2(out)

        if self.downsample is not None:
            identity = self.downsample(x)

        out += identity
        out = self.relu(out)

        return out


class SphereFace(nn.Module):
    def __init__(self, block, layers, feat_dim=128):
        super().__init__()
        self.conv1 = conv3x3(3, 64, 2)
        self.bn1 = nn.BatchNorm2d(64)
        self.prelu1 = nn.PReLU(64)

        self.conv2 = conv3x3(64, 128, 2)
        self.bn2 = nn.BatchNorm2d(128)
        self.prelu2 = nn.PReLU(128)

        self.conv3 = conv3x3(128, 256, 2)
        self.bn3 = nn.BatchNorm2d(256)
        self.prelu3 = nn.PReLU(256)

        self.conv4 = conv3x3(256, 512, 2)
        self.bn4 = nn.BatchNorm2d(512)
        self.prelu4 = nn.PReLU(512)

        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1])
        self.layer3 = self._make_layer(block, 256, layers[2])
        self.layer4 = self._make_layer(block, 512, layers[3])

        self.fc5 = nn.Sequential(
            nn.Linear(512 * 7 * 6, feat_dim),
            nn.BatchNorm1d(feat_dim),
            nn.PReLU(num_parameters=feat_dim),
        )

        for m in self.children():
            if isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
            elif isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.constant_(m.bias, 0.0)

    def _make_layer(self, block, planes, blocks, stride=1):
        if blocks != 0:
            layers = []
            for _ in range(0, blocks):
                downsample = nn.Sequential(
                    conv1x1(planes, planes, stride),
                    nn.BatchNorm2d(planes),
                )
                nn.init.constant_(downsample[1].weight, 1)
                nn.init.constant_(downsample[1].bias, 0)
                layers.append(block(planes, planes, stride, downsample))

            return nn.Sequential(*layers)
        else:
            return None

    def forward(self, x):
        x = self.prelu1(self.bn1(self.conv1(x)))
        if self.layer1 is not None:
            x = self.layer1(x)
        x = self.prelu2(self.bn2(self.conv2(x)))
        if self.layer2 is not None:
            x = self.layer2(x)
        x = self.prelu3(self.bn3(self.conv3(x)))
        if self.layer3 is not None:
            x = self.layer3(x)
        x = self.prelu4(self.bn4(self.conv4(x)))
        if self.layer4 is not None:
            x = self.layer4(x)
        x = x.view(x.size(0), -1)
        x = self.fc5(x)
        return x


def SphereFace20(**kwargs):  # noqa: N802
    model = SphereFace(BasicBlock, cfg["C"], **kwargs)
    return model


# ------------------------------------------------------------------ the comparison
def ours(*overrides: str):
    config = compose_config(["backbone=sphereface20_bn", "dataset=casia_webface", "model.feat_dim=512", *overrides])
    return build_model(config.backbone, config.model, 3, (112, 96))


def their_name(name: str) -> str:
    """podhl's FeatureNet names → theirs: backbone.X → X, fc1.i → fc5.i."""
    return name.removeprefix("backbone.").replace("fc1.", "fc5.", 1) if name.startswith(("backbone.", "fc1.")) else name


def test_state_dict_matches_the_authors_module_tensor_by_tensor():
    torch.manual_seed(0)
    model, theirs = ours(), SphereFace20(feat_dim=512)
    mine, ref = model.state_dict(), theirs.state_dict()
    assert [their_name(k) for k in mine] == list(ref)  # same tensors, same order
    for k, v in mine.items():
        assert v.shape == ref[their_name(k)].shape, k
    count = sum(p.numel() for p in model.parameters())
    assert count == sum(p.numel() for p in theirs.parameters())
    # by hand: convs 3·64·9 + 64·128·9 + 128·256·9 + 256·512·9 = 1,550,016; per unit of width c: 2·9c² + c²
    # (1x1) + 3 BN (6c) + PReLU c = 19c² + 7c; stage-2-conv BN + PReLU 3c each; FC5 21,504·512 + 512 + 3·512
    units = sum(n * (19 * c * c + 7 * c) for n, c in zip((1, 2, 4, 1), (64, 128, 256, 512), strict=True))
    stems = 1_550_016 + sum(3 * c for c in (64, 128, 256, 512))
    assert count == units + stems + 512 * 7 * 6 * 512 + 512 + 3 * 512


def test_same_weights_same_outputs():
    """Their weights loaded into ours give the same embedding (eval and train mode: BN statistics of the batch)."""
    torch.manual_seed(1)
    model, theirs = ours(), SphereFace20(feat_dim=512)
    with torch.no_grad():  # non-trivial BN and bn2 weights, so every branch matters
        for m in theirs.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.1, 0.1)
                m.running_mean.uniform_(-0.1, 0.1), m.running_var.uniform_(0.5, 1.5)
    model.load_state_dict({k: theirs.state_dict()[their_name(k)] for k in model.state_dict()})
    x = torch.randn(2, 3, 112, 96)
    for train in (False, True):
        model.train(train), theirs.train(train)
        with torch.no_grad():
            assert torch.allclose(model(x), theirs(x), atol=1e-5, rtol=1e-4)


def test_initialisation_follows_theirs():
    model = ours()
    b = model.backbone
    assert all(torch.all(getattr(b, f"bn{i}").weight == 1) for i in range(1, 5))
    units = [u for i in range(1, 5) for u in getattr(b, f"layer{i}")]
    assert len(units) == 8 and all(torch.all(u.bn2.weight == 0) and torch.all(u.bn1.weight == 1) for u in units)
    assert all(u.relu is u.relu and u.conv1.bias is None and u.downsample[0].kernel_size == (1, 1) for u in units)
    w = units[-1].conv1.weight.detach()
    assert abs(float(w.std()) - 0.01) < 0.001  # N(0, 0.01)
    fan_in, fan_out = 256 * 9, 512 * 9  # conv4: Xavier-uniform bound sqrt(6 / (fan_in + fan_out))
    assert float(b.conv4.weight.detach().abs().max()) <= (6 / (fan_in + fan_out)) ** 0.5
    assert float(b.conv4.weight.detach().std()) == pytest.approx((2 / (fan_in + fan_out)) ** 0.5, rel=0.02)
    assert isinstance(model.fc1[1], nn.BatchNorm1d) and isinstance(model.fc1[2], nn.PReLU)


def test_shapes():
    model = ours()
    assert model.backbone.num_features == 512 * 7 * 6 and model.feat_dim == 512
    with torch.no_grad():
        assert model.eval()(torch.zeros(2, 3, 112, 96)).shape == (2, 512)
    config = compose_config(["backbone=sphereface20_bn", "dataset=casia_webface"])
    square = build_model(config.backbone, config.model, 3, (112, 112))
    assert square.backbone.num_features == 512 * 7 * 7
    no_fc1 = ours("model.fc1=false")
    assert isinstance(no_fc1.fc1, nn.Identity) and no_fc1.feat_dim == 512 * 7 * 6
