"""Progress: a tqdm bar refreshed by time in a terminal, plain lines every N steps in a log file.

Each refresh reads the logged loss (`.item()`), which waits for the GPU: refreshing every step stalls the
GPU's queue once per step. Lightning's `refresh_rate` counts steps, which is too slow to show anything on
a slow CPU run and too often on a fast GPU one; a minimum interval suits both. Without a terminal (a batch
job's log, a pipe) tqdm's carriage-return redraws pile up as unreadable lines, hence `LineProgress`.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar


class TimedProgressBar(TQDMProgressBar):
    """Lightning's TQDM bar, its training bar refreshed at most every `min_interval_s` seconds."""

    def __init__(self, min_interval_s: float = 0.5, refresh_rate: int = 1, leave: bool = False) -> None:
        super().__init__(refresh_rate=refresh_rate, leave=leave)
        self.min_interval_s = min_interval_s
        self._last_refresh = float("-inf")

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = time.monotonic()
        if now - self._last_refresh >= self.min_interval_s or batch_idx + 1 == self.total_train_batches:
            self._last_refresh = now
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


class LineProgress(ProgressBar):
    """One plain line on stdout (rank 0) every `every_n_steps` optimizer steps (default: the trainer's
    `log_every_n_steps`), at each epoch's last step and after each validation: no carriage returns."""

    def __init__(self, every_n_steps: int | None = None) -> None:
        super().__init__()
        self.every_n_steps = every_n_steps
        self.enabled = True
        self._started = 0.0
        self._printed_step = -1

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.monotonic()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        every = self.every_n_steps or trainer.log_every_n_steps or 50
        step, last = trainer.global_step, batch_idx + 1 == self.total_train_batches
        if step == self._printed_step or not (step % every == 0 or last):
            return
        self._printed_step = step
        total = trainer.estimated_stepping_batches
        of_total = f"/{int(total)}" if math.isfinite(total) else ""
        metrics = {k: v for k, v in self.get_metrics(trainer, pl_module).items() if k.startswith("train/")}
        if trainer.optimizers:
            metrics["lr"] = trainer.optimizers[0].param_groups[0]["lr"]
        self._line(
            trainer,
            f"{_epoch(trainer)} batch {batch_idx + 1}/{self.total_train_batches} step {step}{of_total}",
            metrics,
        )

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        metrics = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        self._line(trainer, f"{_epoch(trainer)} validation", metrics)

    def _line(self, trainer: L.Trainer, where: str, metrics: dict[str, Any]) -> None:
        if not self.enabled or not trainer.is_global_zero:
            return
        values = " ".join(f"{k} {float(v):.4g}" for k, v in sorted(metrics.items()))
        print(f"{where} {values} [{time.monotonic() - self._started:.0f} s]".rstrip(), flush=True)


def _epoch(trainer: L.Trainer) -> str:
    epochs = trainer.max_epochs
    return f"epoch {trainer.current_epoch + 1}" + (f"/{epochs}" if epochs and epochs > 0 else "")


def default_progress_bar(
    trainer_config: dict[str, Any], interactive: bool | None = None
) -> ProgressBar | None:
    """The engine's progress display when the bar is on and the user configured none of their own: a
    `TimedProgressBar` in a terminal, `LineProgress` when stdout is not one (a batch log, a pipe)."""
    if trainer_config.get("enable_progress_bar") is False:
        return None
    if any(isinstance(c, ProgressBar) for c in trainer_config.get("callbacks") or []):
        return None
    interactive = sys.stdout.isatty() if interactive is None else interactive
    return TimedProgressBar() if interactive else LineProgress()
