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
import signal
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

from trainforge.cluster.environment import JobEnv
from trainforge.cluster.requeue import requeue_slurm_job

SIGNALS = (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT)


def slurm_job_id() -> str | None:
    """The id `scontrol requeue` needs; an array task is `<array job>_<task>`."""
    return JobEnv.from_env(os.environ).requeue_id


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
        self._requeued_in_evaluation = False

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

    def _install(self, signals: tuple[int, ...] = SIGNALS) -> None:
        for signum in signals:
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
        else:
            # The final evaluation of this fit (the callback is a fit's only): a preemption signal requeues
            # the job at the next evaluation batch; the restart resumes at the last step and evaluates again.
            self._install((signal.SIGUSR1, signal.SIGTERM))

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
        trainer.should_stop = True
        # Stopping mid-epoch still runs the epoch's end and the train end: Lightning validates (as for early
        # stopping), which only eats the grace period, and the checkpoint callbacks save at the epoch end and
        # (save_last, 2.6) at the train end, over this mid-epoch last.ckpt, with a state a resume reads as a
        # finished epoch: the requeued job would train nothing. None of that happens.
        epoch_loop = trainer.fit_loop.epoch_loop
        if hasattr(epoch_loop, "_skip_next_val"):
            epoch_loop._skip_next_val = True
        for callback in trainer.checkpoint_callbacks:
            callback._last_global_step_saved = trainer.global_step  # "saved at this step already"
            callback._last_checkpoint_saved = callback._last_checkpoint_saved or str(path)  # "last is saved"

    def requeue_after_stop(self, trainer: Trainer) -> bool:
        """Requeue the SLURM job (rank 0, not after Ctrl-C), once the stopped run has said what it saved.

        Called last (finish.RunEnding): SLURM ends the job's processes as soon as it is requeued, so the
        requeue comes after the checkpoint, the W&B flush and the messages, never before.
        """
        job = slurm_job_id()
        if not (self.preempted and self.requeue and job and trainer.is_global_zero):
            return False
        if self.received == signal.SIGINT:
            return False
        return requeue_slurm_job(job)

    def _requeue_during_evaluation(self, trainer: Trainer) -> None:
        if self._requeued_in_evaluation or self.received in (None, signal.SIGINT) or trainer.training:
            return
        if trainer.state.fn == "fit":  # validation inside fit: the next training batch end decides
            return
        self._requeued_in_evaluation = True
        rank_zero_info(f"Preemption: got {signal.Signals(self.received).name} during the final evaluation.")
        job = slurm_job_id()
        if self.requeue and job and trainer.is_global_zero:
            requeue_slurm_job(job)

    def on_validation_batch_end(self, trainer: Trainer, *args: Any) -> None:
        self._requeue_during_evaluation(trainer)

    def on_test_batch_end(self, trainer: Trainer, *args: Any) -> None:
        self._requeue_during_evaluation(trainer)
