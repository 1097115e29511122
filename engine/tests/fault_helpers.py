"""Callbacks the fault-tolerance tests add with `--trainer.callbacks+=tests.fault_helpers.<Name>`."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


def state_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """A hash of every tensor's bytes, in key order: equal digests mean bit-identical weights."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        digest.update(key.encode())
        digest.update(state_dict[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class RankReport(Callback):
    """Each rank writes `<run>/rank<R>.json`: its global step, batches seen and a digest of its weights; at
    the start of training it prints `rank R of W on node N starts at step S` (node: SLURM's node name)."""

    def __init__(self) -> None:
        self.batches = 0
        self.start_step = 0

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.start_step = trainer.global_step
        node = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
        print(
            f"rank {trainer.global_rank} of {trainer.world_size} on node {node} starts at step "
            f"{trainer.global_step}",
            flush=True,
        )

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        self.batches += 1

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        report = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "global_step": trainer.global_step,
            "batches": self.batches,
            "start_step": self.start_step,
            "digest": state_digest(pl_module.state_dict()),
        }
        Path(trainer.default_root_dir, f"rank{trainer.global_rank}.json").write_text(json.dumps(report))


class PauseAtStep(Callback):
    """With TRAINFORGE_TEST_PAUSE_AT_STEP=N set, at the start of step N+1 (after step N's checkpoint) write
    `<run>/paused` and wait up to 60 s for `<run>/release`, so a test can kill or signal a known state."""

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        step = os.environ.get("TRAINFORGE_TEST_PAUSE_AT_STEP")
        if step is None or trainer.global_step != int(step) or not trainer.is_global_zero:
            return
        run = Path(trainer.default_root_dir)
        (run / "paused").write_text(str(trainer.global_step))
        deadline = time.time() + 60
        while time.time() < deadline and not (run / "release").exists():
            time.sleep(0.05)


class StepTrace(Callback):
    """Debugging aid: print a digest of each training batch and of the weights before it."""

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        x, y = batch
        print(
            f"TRACE step={trainer.global_step} idx={batch_idx} batch={hashlib.sha256(x.numpy().tobytes()).hexdigest()[:10]}"
            f" y={y[:6].tolist()} w={state_digest(pl_module.state_dict())[:10]}",
            flush=True,
        )
