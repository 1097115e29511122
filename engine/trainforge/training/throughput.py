"""Warns once, in one line, when training waits on the data loader more than a set share of the time.

Lightning's profilers measure this too, but only when the user turns one on and reads its report; this
callback is always on, costs two clock reads per step, and says what to do about it.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn

FIXES = (
    "more loader workers (--data.init_args.num_workers), the decoded-image cache, smaller images, "
    "persistent workers, pinned memory"
)


class DataBottleneckWarning(Callback):
    """Measures the gap between one training step's end and the next one's start (fetching and moving the
    batch) against the step itself, and warns once per fit when the gap's share exceeds `threshold`.

    Args:
        threshold: Share of training time spent waiting for data (0-1) above which to warn.
        window: Steps per measurement; the first steps of each epoch (worker start-up) are not counted.
        enabled: Measure and warn at all.
    """

    def __init__(self, threshold: float = 0.25, window: int = 50, enabled: bool = True) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"data_monitor.threshold must be between 0 and 1, got {threshold}")
        if window < 1:
            raise ValueError(f"data_monitor.window must be >= 1, got {window}")
        self.threshold = threshold
        self.window = window
        self.enabled = enabled
        self.warned = False
        self.last_share: float | None = None
        self._reset()

    def _reset(self) -> None:
        self._wait = 0.0
        self._busy = 0.0
        self._steps = 0
        self._step_start: float | None = None
        self._step_end: float | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reset()  # the first fetch of an epoch includes starting the workers: not a steady-state wait

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._step_end = None  # a validation pass between two steps is no data wait

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if self._step_end is not None:
            self._wait += now - self._step_end
            self._steps += 1
        self._step_start = now

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self.enabled or self._step_start is None:
            return
        self._step_end = time.perf_counter()
        if self._steps > 0:  # count a step's own time only when its wait was measured too
            self._busy += self._step_end - self._step_start
        if self._steps >= self.window:
            self._check()
            self._wait = self._busy = 0.0
            self._steps = 0

    def _check(self) -> None:
        total = self._wait + self._busy
        if total <= 0:
            return
        self.last_share = self._wait / total
        if self.last_share > self.threshold and not self.warned:
            self.warned = True
            rank_zero_warn(
                f"The data loader is the bottleneck: training waited for batches {self.last_share:.0%} of the "
                f"time over the last {self._steps} steps (threshold {self.threshold:.0%}). Usual fixes: {FIXES}."
            )
