"""Allocation checks, before anything is trained or written: a job whose tasks, devices and nodes
disagree stops with one line that names the conflict and the flag to change.

Lightning checks the same things later with a ValueError and a traceback, after the run directory exists
(SLURMEnvironment.validate_settings, TorchElasticEnvironment.validate_settings); a GPU job with more tasks
than GPUs per node fails later still, inside the first collective.
"""

from __future__ import annotations

from typing import Any

from trainforge.cluster.environment import JobEnv
from trainforge.errors import ConfigError

GPU_ACCELERATORS = ("gpu", "cuda", "auto")
FROM_ALLOCATION = "slurm/train.sbatch derives devices and nodes from the allocation: drop the override"


def device_count(devices: Any) -> int | None:
    """How many devices per node `--trainer.devices` asks for; None for 'auto' and -1 (all of them)."""
    if isinstance(devices, bool):
        return None
    if isinstance(devices, (list, tuple)):
        return len(devices)
    text = str(devices).strip()
    if text.lstrip("-").isdigit():
        return int(text) if int(text) > 0 else None
    if "," in text:
        return len([part for part in text.split(",") if part.strip()])
    return None


def check_allocation(env: JobEnv, accelerator: Any, devices: Any, num_nodes: Any) -> None:
    """Raise ConfigError when the launcher's processes and the trainer's devices/nodes disagree."""
    count = device_count(devices)
    nodes = int(num_nodes) if str(num_nodes).isdigit() else None
    if env.slurm_managed:
        tasks = env.tasks_per_node
        if tasks and env.gpus_on_node and str(accelerator) in GPU_ACCELERATORS and tasks > env.gpus_on_node:
            raise ConfigError(
                f"more tasks per node than devices: SLURM starts {tasks} tasks per node but each node has "
                f"{env.gpus_on_node} GPUs (one task per GPU); submit with --ntasks-per-node={env.gpus_on_node}"
            )
        if tasks and count and tasks != count:
            which = "more" if tasks > count else "fewer"
            raise ConfigError(
                f"{which} tasks per node than devices: SLURM starts {tasks} tasks per node "
                f"(--ntasks-per-node) but --trainer.devices={devices} (one task per device; {FROM_ALLOCATION})"
            )
        if env.num_nodes and nodes and nodes != env.num_nodes:
            raise ConfigError(
                f"--trainer.num_nodes={nodes} but the SLURM job has {env.num_nodes} nodes "
                f"(--nodes={env.num_nodes}); {FROM_ALLOCATION}"
            )
    if env.under_torchrun and env.local_world_size:
        per_node = env.local_world_size
        if count and count != per_node:
            raise ConfigError(
                f"torchrun starts {per_node} processes per node (--nproc-per-node) but "
                f"--trainer.devices={devices}: make them equal (one process per device)"
            )
        if env.world_size and nodes and nodes * per_node != env.world_size:
            raise ConfigError(
                f"--trainer.num_nodes={nodes} but torchrun runs {env.world_size} processes, {per_node} per "
                f"node (--nnodes={env.world_size // per_node}): make them equal"
            )
