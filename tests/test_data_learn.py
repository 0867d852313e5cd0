"""Both synthetic sets are learnable: a tiny CNN beats chance clearly in a few hundred CPU steps.

Seeded and single-threaded, so each run is deterministic; each test takes a few seconds.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from lknas.data import build_data


pytestmark = pytest.mark.usefixtures("one_thread_fresh_cache")


def block(cin, cout, stride=1, dilation=1):
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


def train_and_score(net, bundle, steps, lr=3e-3):
    torch.manual_seed(0)
    opt = torch.optim.AdamW(net.parameters(), lr)
    done = 0
    while done < steps:
        for x, y in bundle.train:
            loss = nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break
    net.eval()
    with torch.no_grad():
        correct = sum((net(x).argmax(1) == y).sum().item() for x, y in bundle.val)
    return correct / bundle.val_size


def test_shapes_is_learnable():
    b = build_data("shapes", resolution=32, batch_size=32, seed=0, train_size=2048, val_size=512)
    torch.manual_seed(0)
    net = nn.Sequential(
        block(3, 16), block(16, 32, 2), block(32, 32, 2), block(32, 64, 2),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(64, b.num_classes),
    )
    acc = train_and_score(net, b, steps=300)
    assert acc > 1 / 8 + 0.1, acc  # chance is 0.125


def test_pathfinder_is_learnable():
    # short paths without distractors, and a dilated net whose receptive field spans the image
    b = build_data("pathfinder:length=3,distractors=0", resolution=32, batch_size=32, seed=0,
                   train_size=3072, val_size=512)
    torch.manual_seed(0)
    net = nn.Sequential(
        block(1, 24, 2), block(24, 32), block(32, 32, 1, 2), block(32, 32, 1, 4), block(32, 64, 1, 8),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(64, 2),
    )
    acc = train_and_score(net, b, steps=300)
    assert acc > 0.5 + 0.15, acc  # chance is 0.5
