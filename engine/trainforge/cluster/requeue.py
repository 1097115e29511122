"""`scontrol requeue`: put this SLURM job back in the queue; it restarts with the same job id (and so the
same run) and SLURM_RESTART_COUNT one higher.

A requeued job waits in PENDING (reason BeginTime) for the cluster's credential lifetime (`cred_expire` in
AuthInfo, 120 s by default) before it can start again. `scontrol update jobid=<id> starttime=now` ends the
wait (measured on scripts/slurm_local.sh's cluster: running 2 s later); `scontrol release` does not.
"""

from __future__ import annotations

import shutil
import subprocess

from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn


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
    # Said before: SLURM ends the job's processes as soon as the requeue is accepted.
    rank_zero_info(f"Preemption: requeueing SLURM job {job_id} (it restarts with the same run)")
    result = subprocess.run([scontrol, "requeue", job_id], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        rank_zero_warn(
            f"Preemption: `scontrol requeue {job_id}` failed ({result.returncode}): {result.stderr}"
        )
        return False
    return True
