"""Where a run lives: its name, its directory, and whether it resumes an earlier launch."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

# Set by the launching process so that ranks re-executed by Lightning's DDP launcher join the same run.
RUN_DIR_ENV = "TRAINFORGE_RUN_DIR"


@dataclass
class RunOptions:
    """The run's identity. Rerunning with the same `name` continues the run from its `last.ckpt`.

    Args:
        name: Run name; default the SLURM job id under SLURM, else a fresh timestamp.
        experiment: Experiment name (a file under configs/experiments/); names the parent folder.
        root: Folder that holds all runs.
        fresh: Start over even if the run has a `last.ckpt`; the earlier directory is kept, renamed.
    """

    name: str | None = None
    experiment: str = "default"
    root: str = "runs"
    fresh: bool = False


def _is_launched_rank() -> bool:
    """True in a process that a launcher (torchrun, srun, Lightning's DDP) started as a non-zero rank."""
    return any(int(os.environ.get(var, "0") or 0) != 0 for var in ("RANK", "LOCAL_RANK", "SLURM_PROCID"))


def _world_size() -> int:
    for var in ("WORLD_SIZE", "SLURM_NTASKS"):
        if os.environ.get(var):
            return int(os.environ[var])
    return 1


def default_run_name() -> str | None:
    """A name every process of one job agrees on without talking to the others, or None."""
    job = os.environ.get("SLURM_JOB_ID")
    if job:
        # An array task is its own run.
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        return f"slurm-{job}" + (f"-{task}" if task else "")
    rdzv = os.environ.get("TORCHELASTIC_RUN_ID")
    if rdzv and rdzv != "none":
        return f"torchrun-{rdzv}"
    return None


def resolve_run_dir(options: RunOptions) -> tuple[Path, bool]:
    """Return (run directory, whether it was named explicitly). Creates it on the launching process."""
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited:
        return Path(inherited), True
    parent = Path(options.root) / options.experiment
    name = options.name or default_run_name()
    if name is not None:
        run_dir = parent / name
        # A requeued SLURM job reruns the same command: `fresh` applied to its first launch only.
        requeued = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0
        if options.fresh and not requeued and not _is_launched_rank() and (run_dir / "checkpoints").exists():
            # Never delete what an earlier launch wrote: keep it beside the new run.
            run_dir.rename(parent / f"{name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir, True
    if _world_size() > 1:
        raise SystemExit(
            "error: several processes were launched without a run name, so they cannot agree on one run "
            "directory. Give one: `make train RUN=<name>` or `--run.name=<name>`."
        )
    return _new_timestamped_dir(parent), False


def _new_timestamped_dir(parent: Path) -> Path:
    """A fresh directory named by the time; mkdir without exist_ok makes two launches in one second differ."""
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for suffix in range(1000):
        candidate = parent / (stamp if suffix == 0 else f"{stamp}-{suffix}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run directory under {parent}")


def last_checkpoint(run_dir: Path) -> Path | None:
    path = run_dir / "checkpoints" / "last.ckpt"
    return path if path.is_file() else None
