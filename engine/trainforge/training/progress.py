"""The default progress bar, refreshed by time rather than every step.

Each refresh reads the logged loss (`.item()`), which waits for the GPU: refreshing every step stalls the
GPU's queue once per step. Lightning's `refresh_rate` counts steps, which is too slow to show anything on
a slow CPU run and too often on a fast GPU one; a minimum interval suits both.
"""

from __future__ import annotations

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


def default_progress_bar(trainer_config: dict[str, Any]) -> TimedProgressBar | None:
    """A `TimedProgressBar` when the bar is on and the user configured no progress bar of their own."""
    if trainer_config.get("enable_progress_bar") is False:
        return None
    if any(isinstance(c, ProgressBar) for c in trainer_config.get("callbacks") or []):
        return None
    return TimedProgressBar()
