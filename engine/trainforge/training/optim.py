"""Optimizers and learning-rate schedules, stepped per optimizer step.

LightningCLI's own optimizer wiring steps schedulers once per epoch (#15340); the dict returned by
`scheduler_config` asks for per-step stepping, which warmup and short runs need. Lengths are given in
epochs (fractions allowed) by the model and converted to optimizer steps here.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    LambdaLR,
    LinearLR,
    LRScheduler,
    MultiStepLR,
    OneCycleLR,
    ReduceLROnPlateau,
    SequentialLR,
    StepLR,
)

# Short names for the usual choices; any other `torch.optim` class is found by its own name.
OPTIMIZERS = {"sgd": "SGD", "adamw": "AdamW", "adam": "Adam", "rmsprop": "RMSprop"}
SCHEDULES = ("constant", "cosine", "sgdr", "onecycle", "step", "multistep", "plateau")
WARMUP_START = 0.01  # warmup starts at 1% of the peak


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


class SGDR(LambdaLR):
    """Cosine annealing with warm restarts (Loshchilov & Hutter), after an optional linear warmup.

    torch's CosineAnnealingWarmRestarts cannot lower the peak of each restart, hence this LambdaLR:
    cycle i (0-based) lasts `t0 * t_mult**i` steps and starts at `peak_decay**i` times the base LR,
    ending at `min_lr_ratio` times the base LR.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        t0: int,
        t_mult: float = 1.0,
        peak_decay: float = 1.0,
        min_lr_ratio: float = 0.0,
        warmup_steps: int = 0,
    ) -> None:
        if t0 < 1 or t_mult < 1 or peak_decay <= 0:
            raise ValueError(
                f"model.scheduler_kwargs for sgdr: need T_0 >= 1 step, T_mult >= 1, peak_decay > 0; "
                f"got T_0={t0} steps, T_mult={t_mult}, peak_decay={peak_decay}"
            )
        self.t0, self.t_mult, self.peak_decay = t0, t_mult, peak_decay
        self.min_lr_ratio, self.warmup_steps = min_lr_ratio, warmup_steps
        super().__init__(optimizer, self.factor)

    def cycle(self, step: int) -> tuple[int, int, int]:
        """(cycle index, position in the cycle, cycle length) of a step counted after warmup."""
        index, start, length = 0, 0, self.t0
        while step >= start + length:
            start += length
            index += 1
            length = max(1, round(self.t0 * self.t_mult**index))
        return index, step - start, length

    def cycle_end_steps(self, total_steps: int) -> list[int]:
        """Global step counts at which a cycle ends (the LR is at its minimum there)."""
        ends, start, index = [], self.warmup_steps, 0
        while True:
            start += max(1, round(self.t0 * self.t_mult**index))
            if start > total_steps:
                return ends
            ends.append(start)
            index += 1

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return WARMUP_START + (1 - WARMUP_START) * step / self.warmup_steps
        index, pos, length = self.cycle(step - self.warmup_steps)
        peak, low = self.peak_decay**index, self.min_lr_ratio
        return low + (peak - low) * 0.5 * (1 + math.cos(math.pi * pos / length))


def build_schedule(
    optimizer: Optimizer,
    name: str,
    total_steps: int,
    warmup_steps: int = 0,
    min_lr_ratio: float = 0.0,
    steps_per_epoch: float = 1.0,
    **options: Any,
) -> LRScheduler | ReduceLROnPlateau:
    """A per-step schedule: optional linear warmup from 1% of the peak, then `name` for the rest.

    `options` (model.scheduler_kwargs) hold the schedule's own settings, with lengths in epochs:
    sgdr `T_0`, `T_mult`, `peak_decay`; step `step_epochs`, `gamma`; multistep `milestones` (epochs),
    `gamma`; onecycle any OneCycleLR argument (warmup_steps set `pct_start`); plateau any
    ReduceLROnPlateau argument plus `monitor` (read by the model). `plateau` is stepped per epoch and
    its warmup is a separate step-wise scheduler (see `build_warmup`).
    """
    if name not in SCHEDULES:
        raise ValueError(f"model.scheduler: unknown schedule '{name}'. Use one of: {', '.join(SCHEDULES)}")
    main_steps = max(1, total_steps - warmup_steps)
    options = dict(options)
    if name == "sgdr":
        t0 = epochs_to_steps(float(options.pop("T_0", 1.0)), steps_per_epoch)
        sgdr = SGDR(
            optimizer,
            t0,
            float(options.pop("T_mult", 1.0)),
            float(options.pop("peak_decay", 1.0)),
            min_lr_ratio,
            warmup_steps,
        )
        _no_leftovers(name, options)
        return sgdr
    if name == "onecycle":
        max_lr = [group["lr"] for group in optimizer.param_groups]
        if warmup_steps > 0:
            options["pct_start"] = warmup_steps / total_steps
        return OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps, **options)
    if name == "plateau":
        options.pop("monitor", None)
        return ReduceLROnPlateau(optimizer, **options)
    if name == "cosine":
        base = optimizer.param_groups[0]["lr"]
        main: LRScheduler = CosineAnnealingLR(optimizer, T_max=main_steps, eta_min=base * min_lr_ratio)
    elif name == "step":
        step_size = epochs_to_steps(float(options.pop("step_epochs", 1.0)), steps_per_epoch)
        main = StepLR(optimizer, step_size=step_size, gamma=float(options.pop("gamma", 0.1)))
    elif name == "multistep":
        milestones = [epochs_to_steps(float(e), steps_per_epoch) for e in options.pop("milestones", [])]
        main = MultiStepLR(optimizer, milestones=milestones, gamma=float(options.pop("gamma", 0.1)))
    else:
        main = LambdaLR(optimizer, lambda _: 1.0)
    _no_leftovers(name, options)
    if warmup_steps <= 0:
        return main
    warmup = build_warmup(optimizer, warmup_steps)
    return SequentialLR(optimizer, [warmup, main], milestones=[warmup_steps])


def build_warmup(optimizer: Optimizer, warmup_steps: int) -> LRScheduler:
    return LinearLR(optimizer, start_factor=WARMUP_START, end_factor=1.0, total_iters=warmup_steps)


def _no_leftovers(name: str, options: dict[str, Any]) -> None:
    if options:
        raise ValueError(f"model.scheduler_kwargs: unknown keys {sorted(options)} for schedule '{name}'")


def epochs_to_steps(epochs: float, steps_per_epoch: float) -> int:
    """Lengths are configured in epochs (fractions allowed) and applied in optimizer steps."""
    return int(math.ceil(epochs * steps_per_epoch))


def scheduler_config(
    scheduler: LRScheduler | ReduceLROnPlateau, monitor: str | None = None
) -> dict[str, Any]:
    """Lightning's scheduler dict: per step, except ReduceLROnPlateau, which watches an epoch metric."""
    if isinstance(scheduler, ReduceLROnPlateau):
        if not monitor:
            raise ValueError(
                "model.scheduler_kwargs.monitor: the plateau schedule needs a metric, e.g. val/loss"
            )
        return {
            "scheduler": scheduler,
            "interval": "epoch",
            "frequency": 1,
            "monitor": monitor,
            "strict": True,
        }
    return {"scheduler": scheduler, "interval": "step", "frequency": 1}


def optimizer_and_schedule(model: Any, groups: list[dict[str, Any]]) -> Any:
    """What `configure_optimizers` returns for a model whose hparams hold the optimizer and schedule keys."""
    hp = model.hparams
    optimizer = build_optimizer(groups, hp.optimizer, hp.lr, **(hp.optimizer_kwargs or {}))
    total = int(model.trainer.estimated_stepping_batches)
    steps_per_epoch = total / max(1, model.trainer.max_epochs or 1)
    warmup = epochs_to_steps(hp.warmup_epochs, steps_per_epoch)
    options = dict(hp.scheduler_kwargs or {})
    monitor = options.get("monitor")
    schedule = build_schedule(
        optimizer, hp.scheduler, total, warmup, hp.min_lr_ratio, steps_per_epoch, **options
    )
    if hp.scheduler == "plateau" and warmup > 0:
        # Plateau steps per epoch on a metric; its warmup is a second, per-step scheduler.
        warm = scheduler_config(build_warmup(optimizer, warmup))
        return [optimizer], [warm, scheduler_config(schedule, monitor)]
    return {"optimizer": optimizer, "lr_scheduler": scheduler_config(schedule, monitor)}
