"""Wall time summed over every segment of a run: each launch (the first, a rerun after a kill, a SLURM
requeue, a resume with more epochs) is one segment, recorded in the run's `segments.json`.

Rank 0 rewrites the file (atomically) when the segment starts, at every checkpoint save, at most every
`every_s` seconds during training, when `fit` tears down and when the summary is written. So a `kill -9`
loses only the time since the last of those writes (at most `every_s`, 60 s by default) of the segment it
kills; a signal (SIGTERM/SIGUSR1/Ctrl-C) loses nothing. A run started from `--ckpt_path` of another run
counts only its own segments.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer


def read_segments(path: Path) -> list[dict[str, Any]]:
    """The recorded segments, oldest first ([] when there is no file, or an unreadable one)."""
    try:
        return list(json.loads(path.read_text())["segments"])
    except (OSError, ValueError, KeyError, TypeError):
        return []


class RunClock(Callback):
    """Records this launch as one segment of the run in `path` (segments.json); `started` is when the
    launch began (the CLI's start, so start-up counts)."""

    def __init__(self, path: Path, started: float, every_s: float = 60.0) -> None:
        self.path, self.started, self.every_s = Path(path), started, every_s
        self.previous: list[dict[str, Any]] = []
        self.segment: dict[str, Any] | None = None
        self._written = float("-inf")

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit" or not trainer.is_global_zero or self.segment is not None:
            return
        self.previous = [s for s in read_segments(self.path) if s.get("started") != self.started]
        self.segment = {
            "started": self.started,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
            "wall_s": 0.0,
            "first_step": None,
            "last_step": None,
            "world_size": trainer.world_size,
        }
        self.write(trainer)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.segment is not None:
            self.segment["first_step"] = trainer.global_step  # after a resume: the checkpoint's step
            self.write(trainer)

    def on_train_batch_end(self, trainer: Trainer, *args: Any) -> None:
        if self.segment is not None and time.time() - self._written >= self.every_s:
            self.write(trainer)

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: Any) -> None:
        self.write(trainer)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            self.write(trainer)

    def write(self, trainer: Trainer) -> list[dict[str, Any]]:
        """Bring this segment up to now and rewrite the file; returns every segment (rank 0 only)."""
        if self.segment is None:
            return []
        now = time.time()
        self.segment["wall_s"] = round(now - self.started, 2)
        self.segment["last_step"] = trainer.global_step
        segments = [*self.previous, self.segment]
        tmp = self.path.with_name(f"{self.path.name}.tmp")
        tmp.write_text(json.dumps({"segments": segments}, indent=2) + "\n")
        os.replace(tmp, self.path)  # a kill mid-write leaves the previous file whole
        self._written = now
        return segments

    def summary_times(self, trainer: Trainer) -> dict[str, Any]:
        """summary.json's wall time: the sum over every segment (this one up to now), and their count."""
        segments = self.write(trainer)
        times = [float(s.get("wall_s") or 0.0) for s in segments]
        return {"wall_time_s": round(sum(times), 2), "segments": len(times), "segment_wall_s": times}


def run_time_fields(trainer: Trainer, started: float) -> dict[str, Any]:
    """wall_time_s (summed over segments), segments, segment_wall_s: from the trainer's RunClock, or this
    launch alone when there is none (a fit with a custom callback list that dropped it)."""
    clock = next((cb for cb in trainer.callbacks if isinstance(cb, RunClock)), None)
    if clock is not None and clock.segment is not None:
        return clock.summary_times(trainer)
    wall = round(time.time() - started, 2)
    return {"wall_time_s": wall, "segments": 1, "segment_wall_s": [wall]}
