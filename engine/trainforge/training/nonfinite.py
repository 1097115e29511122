"""Stops (or skips the step) on a NaN/Inf training loss before it reaches the weights.

Written by hand: Lightning's EarlyStopping(check_finite) looks only at an epoch-level monitored metric,
after the bad step has already updated the weights.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn

from trainforge.errors import TemplateError

ADVICE = (
    "Lower --model.lr, add warmup (--model.warmup_epochs) or gradient clipping "
    "(--trainer.gradient_clip_val=1.0), or skip such steps with --nonfinite.action=skip."
)


class NonFiniteLossGuard(Callback):
    """Checks every training loss (on a GPU, `stop` reads it one step late so as not to stall the GPU;
    `skip` must read it at once and so waits for the GPU each step).

    Args:
        action: `stop` ends the run with a clear error before the bad step changes the weights (the
            checkpoints already written, `last.ckpt` included, stay as they were); `skip` drops that
            step's gradients so the optimizer leaves the weights alone; `off` disables the check.
        max_skips: With `skip`, stop after this many skipped steps in a row (a run that keeps diverging).
    """

    def __init__(self, action: Literal["stop", "skip", "off"] = "stop", max_skips: int = 10) -> None:
        self.action = action
        self.max_skips = max_skips
        self.skipped: list[int] = []
        self._skip_this_step = False
        self._in_a_row = 0
        self._pending: tuple[torch.Tensor, torch.Tensor, str] | None = None

    def on_before_backward(self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor) -> None:
        if self.action == "off":
            return
        finite = torch.isfinite(loss.detach()).all()
        where = f"at epoch {trainer.current_epoch}, global step {trainer.global_step}"
        if self.action == "stop" and finite.device.type != "cpu":
            # Reading the flag now would make the CPU wait for the GPU at every step; it is read at the
            # next step and before any checkpoint is written, so a NaN step never reaches a checkpoint.
            self._pending = (finite, loss.detach(), where)
            return
        self._handle(bool(finite), loss, where, trainer)

    def _check_pending(self) -> None:
        if self._pending is None:
            return
        finite, loss, where = self._pending
        self._pending = None
        if not bool(finite):
            raise TemplateError(
                f"the training loss became {loss.item()} {where}; the run was stopped and no checkpoint "
                "holds weights of that step or later (last.ckpt is the last good one). " + ADVICE
            )

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._check_pending()

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._check_pending()  # raising here aborts the save before the file is written

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._check_pending()

    def _handle(self, finite: bool, loss: torch.Tensor, where: str, trainer: Trainer) -> None:
        if finite:
            self._in_a_row = 0
            return
        if self.action == "stop":
            raise TemplateError(
                f"the training loss became {loss.item()} {where}; the run was stopped before that step "
                "changed the weights and the checkpoints written so far (last.ckpt included) are kept. "
                + ADVICE
            )
        self._skip_this_step = True
        self._in_a_row += 1
        self.skipped.append(trainer.global_step)
        if self._in_a_row > self.max_skips:
            raise TemplateError(
                f"the training loss was NaN/Inf {self._in_a_row} steps in a row ({where}); stopping. "
                "Lower --model.lr or add gradient clipping (--trainer.gradient_clip_val=1.0)."
            )

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        if not self._skip_this_step:
            return
        self._skip_this_step = False
        # No gradient means torch optimizers leave the parameter (and its state) untouched this step.
        for group in optimizer.param_groups:
            for param in group["params"]:
                param.grad = None

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.skipped:
            rank_zero_warn(
                f"skipped {len(self.skipped)} training step(s) with a NaN/Inf loss at global steps "
                f"{self.skipped[:20]}{' ...' if len(self.skipped) > 20 else ''}"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = list(state_dict.get("skipped", []))
