"""Training components: callbacks that also take part in the training step, so features compose.

A feature that only needs Lightning's hooks is a plain callback (EMA, SWA, max-norm, freezing). One that
changes what a training step computes (mixup changes the batch, distillation and L1 add to the loss) is
a `TrainingComponent`: the model runs every component's `transform_batch`, then its own forward and
task loss, then every component's `adjust_loss`, in the order the callbacks are listed. So mixup with
distillation and L1 in one run works: the teacher sees the mixed batch and L1 is added to the total.
Each component refuses, in one line at start-up (`check`, before any step), a task or model it cannot
serve. Lightning has no hook for this (a callback cannot change the loss), hence this small protocol.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from trainforge.errors import ConfigError


class TrainingComponent(L.Callback):
    """Base of the components; every method is optional. `key` names it in error messages."""

    key = "component"
    soft_targets = False  # True when transform_batch turns class labels into probabilities

    @property
    def active(self) -> bool:
        """Components are always listed in the config; an inactive one (e.g. weight 0) does nothing."""
        return True

    def check(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        """Raise `ConfigError` (one line: the key, why, what to do) if this run cannot use the component."""

    def transform_batch(
        self, module: L.LightningModule, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return x, y

    def adjust_loss(
        self,
        module: L.LightningModule,
        x: torch.Tensor,
        y: torch.Tensor,
        outputs: torch.Tensor,
        loss: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The new loss and extra terms to log as `train/<name>`."""
        return loss, {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and self.active:
            pl_module.configure_model()  # the model builds its modules lazily (see Model.configure_model)
            self.check(trainer, pl_module)


def active_components(trainer: Any) -> list[TrainingComponent]:
    return [c for c in trainer.callbacks if isinstance(c, TrainingComponent) and c.active]


def refuse(key: str, why: str, fix: str) -> ConfigError:
    """The one-line start-up refusal every feature uses: `<key>: <why>; <what to do>`."""
    return ConfigError(f"{key}: {why}; {fix}")
