import math

import pytest
import torch

from tests.conftest import lrs_over_steps
from trainforge.training.optim import build_optimizer, build_schedule


def test_warmup_then_cosine_follows_the_formula():
    p = [torch.nn.Parameter(torch.zeros(1))]
    opt = build_optimizer(p, "sgd", lr=0.1, momentum=0.9)
    total, warmup = 100, 10
    lrs = lrs_over_steps(build_schedule(opt, "cosine", total, warmup), opt, total)
    assert lrs[0] == pytest.approx(0.001)  # warmup starts at 1% of the peak
    assert lrs[5] == pytest.approx(0.001 + (0.1 - 0.001) * 5 / 10)
    for step in (10, 35, 60, 99):
        t = step - warmup
        assert lrs[step] == pytest.approx(0.05 * (1 + math.cos(math.pi * t / (total - warmup))), rel=1e-6)


def test_optimizer_by_any_torch_name_and_clear_errors():
    p = [torch.nn.Parameter(torch.zeros(1))]
    assert isinstance(build_optimizer(p, "Adagrad", lr=0.1), torch.optim.Adagrad)
    assert isinstance(build_optimizer(p, "adamw", lr=0.1), torch.optim.AdamW)
    with pytest.raises(ValueError, match="unknown optimizer 'adamm'"):
        build_optimizer(p, "adamm", lr=0.1)
    with pytest.raises(ValueError, match="model.lr must be positive"):
        build_optimizer(p, "sgd", lr=-1)
