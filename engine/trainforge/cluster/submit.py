"""Submit `fit` to SLURM from Python with submitit: the same job as slurm/train.sbatch (devices and nodes from
the allocation, `--requeue`, a signal before the time limit, run `slurm-<job id>`), the same requeue-and-
resume.

Who owns the preemption signal (SIGUSR1, as in slurm/train.sbatch): submitit installs its handler for
`SUBMITIT_PREEMPT_SIGNAL` when the job starts. From the start of `fit` to the end of its final evaluation
the engine's PreemptionCheckpoint replaces it (saves last.ckpt at the end of the step, requeues with
`scontrol requeue`; training/preemption.py) and puts it back afterwards. So a signal during training is
the engine's, exactly as under sbatch; one before training starts or after it ended is submitit's, which
calls `TrainJob.checkpoint` (the same command again: it resumes from last.ckpt) and requeues. After the
engine requeued, `TrainJob` exits without a result, as submitit's own handler does, so submitit waits for
the requeued job's result instead of taking the stopped segment's.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from trainforge.cluster.environment import JobEnv

PREEMPT_SIGNAL = "USR1"
SIGNAL_ENV = "SUBMITIT_PREEMPT_SIGNAL"  # read by submitit when it is imported, here and in the job


class TrainJob:
    """The submitted callable: `python -m <project> fit <args>` in the submitting folder, on every task."""

    def __init__(self, args: list[str], cwd: str, package: str = "trainforge") -> None:
        self.args = list(args)
        self.cwd = cwd
        self.package = package

    def command(self, env: JobEnv) -> list[str]:
        return ["fit", *env.trainer_args(), *self.args]

    def __call__(self) -> str:
        from lightning.pytorch import Callback

        from trainforge.launch import main
        from trainforge.training.preemption import PreemptionCheckpoint

        class Outcome(Callback):
            trainer: Any = None

            def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
                self.trainer = trainer

        os.chdir(self.cwd)
        env = JobEnv.from_env(os.environ)
        if env.is_rank_zero:
            print(f"{env.describe()}: python -m {self.package} {' '.join(self.command(env))}", flush=True)
        outcome = Outcome()
        main(self.command(env), callbacks=[outcome])
        callbacks = outcome.trainer.callbacks if outcome.trainer is not None else []
        if any(isinstance(cb, PreemptionCheckpoint) and cb.preempted for cb in callbacks):
            sys.exit(-1)  # stopped (and requeued): no result for this segment
        return str(outcome.trainer.default_root_dir) if outcome.trainer is not None else ""

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit's resume contract: the same command, which continues the run from its last.ckpt."""
        import submitit

        return submitit.helpers.DelayedSubmission(self)


def executor(folder: Path, **parameters: Any) -> Any:
    """A submitit SlurmExecutor whose jobs speak USR1 and may be requeued."""
    os.environ[SIGNAL_ENV] = PREEMPT_SIGNAL  # before submitit is imported: it reads it at import
    try:
        import submitit
    except ImportError as error:
        from trainforge.errors import TemplateError

        raise TemplateError(
            "submitting needs submitit: pip install 'trainforge[cluster]' (or make install EXTRAS=dev,cluster)"
        ) from error
    from submitit.slurm.slurm import SlurmJobEnvironment

    if SlurmJobEnvironment.USR_SIG != PREEMPT_SIGNAL:
        from trainforge.errors import TemplateError

        raise TemplateError(
            f"submitit was imported before {SIGNAL_ENV}={PREEMPT_SIGNAL} was set; submit from a new process"
        )
    pool = submitit.SlurmExecutor(folder=str(folder), max_num_timeout=1000)
    additional = {"requeue": True, **parameters.pop("additional_parameters", {})}
    pool.update_parameters(
        additional_parameters=additional,
        setup=["export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}"],
        **parameters,
    )
    return pool
