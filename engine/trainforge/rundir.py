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

from trainforge.cluster.environment import JobEnv
from trainforge.errors import ConfigError

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
        name: Run name; default `slurm-<job id>` under SLURM (`slurm-<array job>-<task>` for an array
            task), `torchrun-<rdzv id>` under torchrun with a rendezvous id, else a fresh timestamp.
        experiment: Experiment name (a file under configs/experiments/); names the parent folder.
        root: Folder that holds all runs.
        fresh: Start over even if the run has a `last.ckpt`; the earlier directory is kept, renamed.
    """

    name: str | None = None
    experiment: str = "default"
    root: str = "runs"
    fresh: bool = False


def default_run_name() -> str | None:
    """A name every process of one job agrees on without talking to the others, or None."""
    return JobEnv.from_env(os.environ).run_name()


def resolve_run_dir(options: RunOptions, env: JobEnv | None = None) -> tuple[Path, bool]:
    """Return (run directory, whether it was named explicitly). Creates it on the launching process.

    A new SLURM job (not a requeue) whose run name holds a finished run (summary.json) is refused before
    anything is written: the job would otherwise load the finished run's last.ckpt, train nothing and
    write over its summary.
    """
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited:
        return Path(inherited), True
    env = env or JobEnv.from_env(os.environ)
    parent = Path(options.root) / options.experiment
    name = options.name or env.run_name()
    if name is not None:
        run_dir = parent / name
        if env.under_slurm and not env.requeued and not options.fresh and RunDir(run_dir).summary.is_file():
            raise ConfigError(
                f"run {run_dir} already finished (summary.json); this new SLURM job {env.requeue_id} would "
                "write over it: give the job another run name (RUN=<name> or --run.name=<name>), or "
                "--run.fresh=true to start over (the finished run is kept, renamed)"
            )
        # A requeued SLURM job reruns the same command: `fresh` applied to its first launch only.
        if options.fresh and not env.requeued and env.is_rank_zero and (run_dir / "checkpoints").exists():
            # Never delete what an earlier launch wrote: keep it beside the new run.
            run_dir.rename(parent / f"{name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir, True
    if env.processes > 1:
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
