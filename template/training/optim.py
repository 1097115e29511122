"""Optimizers and learning-rate schedules, stepped per optimizer step.

LightningCLI's own optimizer wiring steps schedulers once per epoch (#15340); the dict returned by
`scheduler_config` asks for per-step stepping, which warmup and short runs need.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LinearLR, LRScheduler, SequentialLR

# Short names for the usual choices; any other `torch.optim` class is found by its own name.
OPTIMIZERS = {"sgd": "SGD", "adamw": "AdamW", "adam": "Adam", "rmsprop": "RMSprop"}
SCHEDULES = ("constant", "cosine")


def build_optimizer(params: Any, name: str, lr: float, **kwargs: Any) -> Optimizer:
    """`torch.optim.<name>(params, lr=lr, **kwargs)`, with a clear error for an unknown name."""
    if lr <= 0:
        raise ValueError(f"model.lr must be positive, got {lr}")
    cls_name = OPTIMIZERS.get(name.lower(), name)
    cls = getattr(torch.optim, cls_name, None)
    if not (inspect.isclass(cls) and issubclass(cls, Optimizer)):
        known = sorted(OPTIMIZERS) + [n for n in dir(torch.optim) if n[0].isupper() and n != "Optimizer"]
        raise ValueError(f"model.optimizer: unknown optimizer '{name}'. Use one of: {', '.join(known)}")
    return cls(params, lr=lr, **kwargs)


def build_schedule(
    optimizer: Optimizer, name: str, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.0
) -> LRScheduler:
    """A per-step schedule: optional linear warmup from 1% of the peak, then `name` for the rest."""
    if name not in SCHEDULES:
        raise ValueError(f"model.scheduler: unknown schedule '{name}'. Use one of: {', '.join(SCHEDULES)}")
    main_steps = max(1, total_steps - warmup_steps)
    if name == "cosine":
        base = optimizer.param_groups[0]["lr"]
        main: LRScheduler = CosineAnnealingLR(optimizer, T_max=main_steps, eta_min=base * min_lr_ratio)
    else:
        main = LambdaLR(optimizer, lambda _: 1.0)
    if warmup_steps <= 0:
        return main
    warmup = LinearLR(optimizer, start_factor=0.01, end_factor=1.0, total_iters=warmup_steps)
    return SequentialLR(optimizer, [warmup, main], milestones=[warmup_steps])


def epochs_to_steps(epochs: float, steps_per_epoch: float) -> int:
    """Lengths are configured in epochs (fractions allowed) and applied in optimizer steps."""
    return int(math.ceil(epochs * steps_per_epoch))


def scheduler_config(scheduler: LRScheduler) -> dict[str, Any]:
    return {"scheduler": scheduler, "interval": "step", "frequency": 1}
