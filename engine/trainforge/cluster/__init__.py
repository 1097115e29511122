"""Cluster jobs: what the launcher says (environment.py), whether the job can start (checks.py), requeue
(requeue.py) and Python-side submission (submit.py, `python -m <project> submit`).

The preemption callback itself is training/preemption.py; the sbatch script is slurm/train.sbatch.
"""

from trainforge.cluster.checks import check_allocation
from trainforge.cluster.environment import JobEnv

__all__ = ["JobEnv", "check_allocation"]
