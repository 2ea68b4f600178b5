"""DLA and SimpleDLA (Yu et al., CVPR 2018) as in kuangliu/pytorch-cifar ``models/dla.py`` / ``dla_simple.py``;
512-d features."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class Root(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, xs):
        return F.relu(self.bn(self.conv(torch.cat(xs, 1))))


class Tree(nn.Module):
    """DLA's hierarchical aggregation tree (kuangliu ``dla.py``)."""

    def __init__(self, cin: int, cout: int, level: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.level = level
        self.root = Root((level + 2) * cout if level > 1 else 2 * cout, cout)
        if level > 1:
            self.prev_root = BasicBlock(cin, cout, stride)
            self.subtrees = nn.ModuleList([Tree(cin, cout, level=i, stride=stride) for i in reversed(range(1, level))])
            self.left_node = BasicBlock(cout, cout, 1)
        else:
            self.subtrees = nn.ModuleList()
            self.left_node = BasicBlock(cin, cout, stride)
        self.right_node = BasicBlock(cout, cout, 1)

    def forward(self, x):
        xs = [self.prev_root(x)] if self.level > 1 else []
        for tree in self.subtrees:
            x = tree(x)
            xs.append(x)
        x = self.left_node(x)
        xs.append(x)
        x = self.right_node(x)
        xs.append(x)
        return self.root(xs)


class SimpleTree(nn.Module):
    """SimpleDLA's binary tree (kuangliu ``dla_simple.py``)."""

    def __init__(self, cin: int, cout: int, level: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.root = Root(2 * cout, cout)
        if level == 1:
            self.left_tree, self.right_tree = BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)
        else:
            self.left_tree = SimpleTree(cin, cout, level - 1, stride)
            self.right_tree = SimpleTree(cout, cout, level - 1, 1)

    def forward(self, x):
        out1 = self.left_tree(x)
        return self.root([out1, self.right_tree(out1)])


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))


class DLA(nn.Module):
    tree = Tree

    def __init__(self, in_chans: int = 3) -> None:
        super().__init__()
        t = self.tree
        self.features = nn.Sequential(
            _conv_bn(in_chans, 16),
            _conv_bn(16, 16),
            _conv_bn(16, 32),
            t(32, 64, level=1, stride=1),
            t(64, 128, level=2, stride=2),
            t(128, 256, level=2, stride=2),
            t(256, 512, level=1, stride=2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.num_features = 512

    def forward(self, x):
        return self.features(x)


class SimpleDLA(DLA):
    tree = SimpleTree
