"""Where a run lives: its name, its directory and the layout inside it, and whether it resumes.

`RunDir` is the one owner of the layout: every file a run writes or reads is named here.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Set by the launching process so that ranks re-executed by Lightning's DDP launcher join the same run.
RUN_DIR_ENV = "TRAINFORGE_RUN_DIR"


@dataclass(frozen=True)
class RunDir:
    """The files of one run, `runs/<experiment>/<run>/`."""

    path: Path

    config = property(lambda self: self.path / "config.yaml")  # the config as the user ran it
    checkpoints = property(lambda self: self.path / "checkpoints")
    last = property(lambda self: self.path / "checkpoints" / "last.ckpt")
    summary = property(lambda self: self.path / "summary.json")
    segments = property(lambda self: self.path / "segments.json")  # wall time of each launch (run_clock.py)
    metrics_csv = property(lambda self: self.path / "metrics.csv")
    wandb_id = property(lambda self: self.path / "wandb_id.txt")
    preprocessing = property(lambda self: self.path / "preprocessing.json")
    predictions = property(lambda self: self.path / "predictions.csv")
    embeddings = property(lambda self: self.path / "embeddings.npz")
    exports = property(lambda self: self.path / "export")

    def file(self, name: str) -> Path:
        """A report or table in the run directory (`learning_curves.png`, `per_class.csv`, ...)."""
        return self.path / name

    def eval_metrics(self, stage: str) -> Path:
        return self.path / f"{stage}_metrics.json"

    @classmethod
    def of_checkpoint(cls, ckpt: str | Path) -> RunDir | None:
        """The run that wrote `ckpt`, when it lies in a run's checkpoints/ folder."""
        ckpt = Path(ckpt).resolve()
        return cls(ckpt.parent.parent) if ckpt.parent.name == "checkpoints" else None

    def last_checkpoint(self) -> Path | None:
        return self.last if self.last.is_file() else None

    def resume_checkpoint(self) -> Path | None:
        """The newest of `last.ckpt` and Lightning's SLURM `hpc_ckpt_N.ckpt` (in the run directory).

        Lightning loads `hpc_ckpt_*` only when `ckpt_path` is None (LHT #146); since the engine always
        resumes from an explicit path, it must consider them itself.
        """
        existing = [p for p in (self.last, *self.path.glob("hpc_ckpt_*.ckpt")) if p.is_file()]
        return max(existing, key=lambda p: p.stat().st_mtime_ns) if existing else None

    def best_checkpoint(self) -> Path | None:
        """The checkpoint the run reported (summary.json), found in this folder even after a move."""
        recorded = self.read_summary().get("best_checkpoint")
        if recorded and (self.checkpoints / Path(recorded).name).is_file():
            return self.checkpoints / Path(recorded).name
        best = sorted(self.checkpoints.glob("best-*.ckpt"))
        return best[-1] if best else None

    def read_summary(self) -> dict[str, Any]:
        return json.loads(self.summary.read_text()) if self.summary.is_file() else {}

    def interrupted(self) -> bool:
        """Stopped before its end (a signal, Ctrl-C, a crash): a checkpoint but no summary.json."""
        return self.resume_checkpoint() is not None and not self.summary.is_file()

    def holds_results(self) -> bool:
        """Anything worth keeping: a checkpoint, logged metrics or a summary (a run that failed at start-up
        has none of them)."""
        return self.summary.is_file() or self.metrics_csv.is_file() or any(self.checkpoints.glob("*.ckpt"))


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
