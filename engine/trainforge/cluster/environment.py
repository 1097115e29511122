"""What the launcher (SLURM's srun, torchrun, Lightning's own DDP launcher) told this process, read once.

`JobEnv.from_env(mapping)` is the one reader of SLURM_*, RANK, WORLD_SIZE and TORCHELASTIC_* in the
engine; everything else asks it. It imports nothing heavy, so sbatch-side tools may use it too.

Lightning's rules, kept here (lightning/fabric/plugins/environments/slurm.py, torchelastic.py): SLURM
manages the processes when SLURM_NTASKS is set and the job is not named `bash` or `interactive`; under
torchrun (TORCHELASTIC_RUN_ID set) the TorchElastic environment wins, even inside a SLURM allocation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

INTERACTIVE_JOB_NAMES = ("bash", "interactive")


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def _count(value: str | None) -> int | None:
    """The first count of a SLURM count list: '4(x2),2' -> 4, 'a100:4' -> 4, '2' -> 2."""
    if not value:
        return None
    match = re.match(r"^(?:[^:,(]*:)?(\d+)", value)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class JobEnv:
    """The job this process belongs to. Every field is None (or 0) outside a launcher."""

    job_id: str | None = None  # SLURM_JOB_ID (an array task has its own)
    array_job_id: str | None = None  # SLURM_ARRAY_JOB_ID
    array_task_id: str | None = None  # SLURM_ARRAY_TASK_ID
    job_name: str | None = None  # SLURM_JOB_NAME
    restart_count: int = 0  # SLURM_RESTART_COUNT: how many times the job was requeued
    ntasks: int | None = None  # SLURM_NTASKS: set in a job step (srun) and in the batch script
    tasks_per_node: int | None = None  # SLURM_NTASKS_PER_NODE, else the first of SLURM_TASKS_PER_NODE
    num_nodes: int | None = None  # SLURM_JOB_NUM_NODES (SLURM_NNODES)
    gpus_on_node: int | None = None  # SLURM_GPUS_ON_NODE, only when the job has GPUs
    procid: int | None = None  # SLURM_PROCID
    node_name: str | None = None  # SLURMD_NODENAME
    torchrun_id: str | None = None  # TORCHELASTIC_RUN_ID ('none' when torchrun was given no --rdzv-id)
    torchrun_restart_count: int = 0  # TORCHELASTIC_RESTART_COUNT (per agent)
    rank: int | None = None  # RANK (torchrun, Lightning's children)
    local_rank: int | None = None  # LOCAL_RANK
    node_rank: int | None = None  # NODE_RANK (Lightning) or GROUP_RANK (torchrun)
    world_size: int | None = None  # WORLD_SIZE
    local_world_size: int | None = None  # LOCAL_WORLD_SIZE (torchrun's --nproc-per-node)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> JobEnv:
        """Read a mapping of environment variables (pass `os.environ`, or a dict in tests)."""
        get = env.get
        return cls(
            job_id=get("SLURM_JOB_ID") or None,
            array_job_id=get("SLURM_ARRAY_JOB_ID") or None,
            array_task_id=get("SLURM_ARRAY_TASK_ID") or None,
            job_name=get("SLURM_JOB_NAME") or None,
            restart_count=_int(get("SLURM_RESTART_COUNT")) or 0,
            ntasks=_int(get("SLURM_NTASKS")),
            tasks_per_node=_int(get("SLURM_NTASKS_PER_NODE")) or _count(get("SLURM_TASKS_PER_NODE")),
            num_nodes=_int(get("SLURM_JOB_NUM_NODES")) or _int(get("SLURM_NNODES")),
            gpus_on_node=_int(get("SLURM_GPUS_ON_NODE")),
            procid=_int(get("SLURM_PROCID")),
            node_name=get("SLURMD_NODENAME") or None,
            torchrun_id=get("TORCHELASTIC_RUN_ID") or None,
            torchrun_restart_count=_int(get("TORCHELASTIC_RESTART_COUNT")) or 0,
            rank=_int(get("RANK")),
            local_rank=_int(get("LOCAL_RANK")),
            node_rank=_int(get("NODE_RANK")) if get("NODE_RANK") else _int(get("GROUP_RANK")),
            world_size=_int(get("WORLD_SIZE")),
            local_world_size=_int(get("LOCAL_WORLD_SIZE")),
        )

    @property
    def under_slurm(self) -> bool:
        """Inside a SLURM job (its batch script, a step, or an allocation)."""
        return self.job_id is not None

    @property
    def under_torchrun(self) -> bool:
        return self.torchrun_id is not None

    @property
    def slurm_managed(self) -> bool:
        """SLURM started this process as one of the job's tasks (Lightning's SLURMEnvironment rule)."""
        return (
            self.ntasks is not None and self.job_name not in INTERACTIVE_JOB_NAMES and not self.under_torchrun
        )

    @property
    def requeued(self) -> bool:
        """This is a restart of a requeued SLURM job (the same job id, the same run)."""
        return self.restart_count > 0

    @property
    def requeue_id(self) -> str | None:
        """The id `scontrol requeue` needs; an array task is `<array job>_<task>`."""
        if self.array_job_id and self.array_task_id:
            return f"{self.array_job_id}_{self.array_task_id}"
        return self.job_id

    @property
    def is_rank_zero(self) -> bool:
        """The process that owns run-wide files (the launching process, or global rank 0)."""
        if self.rank is not None:
            return self.rank == 0
        if self.slurm_managed and self.procid is not None:
            return self.procid == 0
        return not (self.local_rank or self.node_rank)

    @property
    def processes(self) -> int:
        """How many processes the launcher started for this job (1 when launched by hand)."""
        if self.world_size:
            return self.world_size
        return (self.ntasks or 1) if self.slurm_managed else 1

    def run_name(self) -> str | None:
        """A name every process of one job agrees on without talking to the others, or None.

        SLURM: `slurm-<job>`; an array task `slurm-<array job>-<task>` (the sweep's runs side by side);
        both stay the same when the job is requeued. torchrun with a rendezvous id: `torchrun-<id>`.
        """
        if self.under_slurm:
            if self.array_job_id and self.array_task_id:
                return f"slurm-{self.array_job_id}-{self.array_task_id}"
            return f"slurm-{self.job_id}"
        if self.torchrun_id and self.torchrun_id != "none":
            return f"torchrun-{self.torchrun_id}"
        return None

    @property
    def gpus(self) -> int:
        """GPUs on this node that SLURM gave the job (0 for a CPU job or outside SLURM)."""
        return self.gpus_on_node or 0

    def trainer_args(self) -> list[str]:
        """The trainer options this allocation implies, as slurm/train.sbatch passes them: GPUs when the job
        has them, else CPU processes (gloo); one device per task; the job's node count."""
        return [
            f"--trainer.accelerator={'gpu' if self.gpus else 'cpu'}",
            f"--trainer.devices={self.tasks_per_node or 1}",
            f"--trainer.num_nodes={self.num_nodes or 1}",
            "--trainer.strategy=ddp",
        ]

    def describe(self) -> str:
        """`job 12, restart 0: 2 nodes x 4 GPUs per node (gpu, nccl)`: what the job really has."""
        devices, backend = ("GPUs", "gpu, nccl") if self.gpus else ("CPU processes", "cpu, gloo")
        task = f" (array task {self.array_task_id})" if self.array_task_id else ""
        return (
            f"job {self.job_id}{task}, restart {self.restart_count}: {self.num_nodes or 1} nodes x "
            f"{self.tasks_per_node or 1} {devices} per node ({backend})"
        )
