"""`evaluating` restores each submodule's own train/eval mode (a frozen BatchNorm stays in eval mode)."""

from __future__ import annotations

from torch import nn

from trainforge.training.modes import evaluating


def test_evaluating_restores_mixed_modes() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Dropout())
    model.train()
    model[1].eval()  # as bn_eval leaves it
    with evaluating(model):
        assert not any(m.training for m in model.modules())
    assert model.training and not model[1].training and model[2].training
