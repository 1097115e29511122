"""Preemption and Ctrl-C: on SIGUSR1/SIGTERM/SIGINT save `last.ckpt` at the next safe point (the end of
the training step), requeue under SLURM (not for Ctrl-C), stop cleanly; the CLI then prints the command
that resumes the run. A second Ctrl-C stops at once, as Python's default would.

The signal handler only sets a flag. Saving inside the handler can run in the middle of an optimizer step or
a collective and hang or write a bad file (Lightning #21406), and Lightning's SLURM handler ignores SIGTERM,
which is what a job gets at its time limit (#20542). The flag is checked after every training batch; under
DDP the ranks agree on it with one all-reduce, so a signal that reaches only rank 0 (a `kill` of the
launching process) stops every rank at the same step.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

SIGNALS = (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT)


def slurm_job_id() -> str | None:
    """The id `scontrol requeue` needs; an array task is `<array job>_<task>`."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def requeue_slurm_job(job_id: str) -> bool:
    """Run `scontrol requeue <job>`; a missing scontrol (inside a container, #21404) is said plainly."""
    scontrol = shutil.which("scontrol")
    if scontrol is None:
        rank_zero_warn(
            f"Preemption: `scontrol` is not on PATH, so SLURM job {job_id} was NOT requeued (inside a container?"
            " bind-mount scontrol or requeue from the sbatch script). Resubmit with the same run name to resume"
            " from last.ckpt."
        )
        return False
    result = subprocess.run([scontrol, "requeue", job_id], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        rank_zero_warn(
            f"Preemption: `scontrol requeue {job_id}` failed ({result.returncode}): {result.stderr}"
        )
        return False
    rank_zero_info(f"Preemption: requeued SLURM job {job_id}")
    return True


class PreemptionCheckpoint(Callback):
    """Save `last.ckpt` and stop training after SIGUSR1/SIGTERM; requeue the SLURM job if there is one.

    Args:
        dirpath: Folder of `last.ckpt` (the run's checkpoints/).
        requeue: Call `scontrol requeue` (rank 0) when SLURM_JOB_ID is set.
    """

    def __init__(self, dirpath: str | Path, requeue: bool = True) -> None:
        self.dirpath = Path(dirpath)
        self.requeue = requeue
        self.received: int | None = None
        self.preempted = False
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            raise KeyboardInterrupt  # pressed twice: no more waiting for the step to end
        self.received = signum  # only a flag: the save happens at the next batch end
        if signum == signal.SIGINT:
            print(
                "\nCtrl-C: saving a checkpoint at the end of this step (press again to stop at once)",
                flush=True,
            )

    @property
    def reason(self) -> str:
        return "interrupted (Ctrl-C)" if self.received == signal.SIGINT else "preempted"

    def _install(self) -> None:
        for signum in SIGNALS:
            try:
                previous = signal.signal(signum, self._handler)
            except ValueError:  # not the main thread (e.g. a notebook kernel thread): no preemption support
                return
            self._previous.setdefault(signum, previous)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # Installed before Lightning's signal connector runs, so that it adds no SLURM SIGUSR1 handler of its
        # own (it only adds one where none is set) and a signal during the sanity check is not fatal.
        if stage == "fit":
            self._install()

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Lightning always wraps SIGTERM: its handler broadcasts from inside the handler and makes the loop
        # raise SIGTERMException (no checkpoint, no requeue, #20542). Ours replaces it while training runs.
        self._install()

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _agreed(self, trainer: Trainer) -> bool:
        flag = self.received is not None
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            tensor = torch.tensor([int(flag)], device=trainer.strategy.root_device)
            dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
            flag = bool(tensor.item())
        return flag

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if self.preempted or not self._agreed(trainer):
            return
        self.preempted = True
        name = signal.Signals(self.received).name if self.received is not None else "a signal on another rank"
        path = self.dirpath / "last.ckpt"
        rank_zero_info(f"Preemption: got {name}; saving {path} at step {trainer.global_step} and stopping.")
        trainer.save_checkpoint(path)  # every rank calls it; rank 0 writes (atomically, see checkpointing.py)
        job = slurm_job_id()
        if self.requeue and job and trainer.is_global_zero and self.received != signal.SIGINT:
            requeue_slurm_job(job)
        trainer.should_stop = True
