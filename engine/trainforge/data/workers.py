"""How many loader workers "auto" means on this machine."""

from __future__ import annotations

import os

# 8 workers left an H100 waiting on a float32 224 px pipeline (docs/benchmarks.md); 15 did not.
MAX_AUTO_WORKERS = 16


def usable_cores() -> int:
    """Cores this process may run on (CPU affinity, as SLURM and taskset set it), else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def auto_num_workers(cores: int | None = None) -> int:
    """One worker per usable core but one, which the training process keeps (at most 16): on one core,
    loading in the main process (0) beats a worker competing with it."""
    cores = usable_cores() if cores is None else cores
    return max(0, min(cores - 1, MAX_AUTO_WORKERS))
