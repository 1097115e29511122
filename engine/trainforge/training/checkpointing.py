"""Checkpoint files that survive a kill: atomic writes, `last.ckpt` every N steps, monitored keys checked."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from trainforge.errors import ConfigError


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes `<file>.tmp-<pid>` beside the target, fsyncs it, then `os.replace`s it over the target.

    Lightning's own save (PR #20011) goes through an fsspec transaction whose temporary file lives in
    /tmp: on a cluster the move to a network file system is a copy, not a rename, and nothing is fsynced.
    Under DDP only rank 0 calls this (the strategy's `save_checkpoint`), so the same path covers it.
    Remote URLs (s3://...) keep Lightning's behaviour.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if "://" in str(path) and not str(path).startswith("file://"):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(str(path).removeprefix("file://"))
        get_filesystem(target).makedirs(str(target.parent), exist_ok=True)
        tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        try:
            # Serialised in memory first (as Lightning does): a failed write to disk is then an OSError
            # that names the cause (ENOSPC, EFBIG), not torch's opaque zip-writer RuntimeError.
            buffer = io.BytesIO()
            torch.save(checkpoint, buffer)
            with open(tmp, "wb") as handle:
                handle.write(buffer.getbuffer())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a crash right after it may otherwise lose the directory entry)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class LastEveryNSteps(ModelCheckpoint):
    """A second ModelCheckpoint that keeps `last.ckpt` current: every N optimizer steps and every epoch end.

    Kept apart from the best-k callback on purpose: a ModelCheckpoint with `every_n_train_steps` stops
    ranking at validation end and would rank mid-epoch saves by a stale validation metric. And Lightning
    2.6's best-k callback rewrites `last.ckpt` only in epochs where it also saved a top-k file, so without
    this a resume after epochs with no improvement would restart from an old step. Both write the same
    `last.ckpt` (no `-v1` copies: version counters off); this one skips a step the other just saved.
    """

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        # Lightning 2.6 saves last at train end when this callback itself never saved (the best-k one did at
        # every epoch, e.g. on tied values): a second copy of a saved step, written after EMA/SWA copied their
        # average into the model, so its live weights would be the average.
        if not self._saved_by_best(trainer):
            super().on_train_end(trainer, pl_module)

    def _saved_by_best(self, trainer: Any) -> bool:
        best = trainer.checkpoint_callback
        return (
            best is not self
            and getattr(best, "save_last", False)
            and best._last_global_step_saved == trainer.global_step
        )

    def _refresh_last(self, trainer: Any) -> None:
        if self._should_skip_saving_checkpoint(trainer) or self._saved_by_best(trainer):
            return
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


def last_every_n_steps(dirpath: str | Path, every_n_train_steps: int | None) -> ModelCheckpoint:
    return LastEveryNSteps(
        dirpath=str(dirpath),
        save_top_k=0,
        save_last=True,
        every_n_train_steps=every_n_train_steps or None,
        monitor=None,
        enable_version_counter=False,
    )


def report_weights(trainer: Any, name: str, what: str) -> Path:
    """Save the model's current weights as `checkpoints/<name>` and make it the checkpoint the run reports
    (ModelCheckpoint's best path, which the final evaluation and summary.json use)."""
    from lightning.pytorch.utilities import rank_zero_info

    ckpt = trainer.checkpoint_callback
    dirpath = Path(ckpt.dirpath) if ckpt is not None and ckpt.dirpath else Path(trainer.default_root_dir)
    path = dirpath / name
    trainer.save_checkpoint(path)
    if ckpt is not None:
        ckpt.best_model_path = str(path)
    rank_zero_info(f"{what}; weights in {path}")
    return path


def check_monitors(callbacks: list[Any], task: Any, metrics: Any) -> None:
    """Refuse, before training, a checkpoint or early-stopping callback watching a `val/` key the model never
    logs (Lightning would fail at the first validation, mid-run)."""
    logged = {"val/loss", *(f"val/{name}" for name in metrics)}
    for callback in callbacks:
        monitor = getattr(callback, "monitor", None)
        watched = (
            isinstance(callback, (ModelCheckpoint, EarlyStopping)) and monitor and monitor.startswith("val/")
        )
        if watched and monitor not in logged:
            key = "checkpoint.monitor" if callback is callbacks[0] else f"{type(callback).__name__}.monitor"
            raise ConfigError(
                f"{key}={monitor}: a {task.kind} task logs {', '.join(sorted(logged))}; monitor one of those "
                f"(checkpoint.monitor: auto picks {task.monitor[0]})"
            )
