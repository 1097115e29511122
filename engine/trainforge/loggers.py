"""Loggers of a run: CSV always, W&B online when it can be, offline when it cannot, never a prompt."""

from __future__ import annotations

import csv
import netrc
import os
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_info

from trainforge.cluster.environment import JobEnv

WANDB_ID_FILE = "wandb_id.txt"
WANDB_HOST = "api.wandb.ai"


@dataclass
class WandbOptions:
    """Weights & Biases logging.

    Args:
        enabled: Log to W&B at all (CSV metrics are always written).
        mode: `auto` is online with an API key and a reachable server, else offline; `WANDB_MODE` wins
            over `auto`.
        project: W&B project.
        entity: W&B team or user; None is the key's default.
        group: Group of runs (e.g. a sweep).
        tags: Tags of the run.
        log_model: Upload checkpoints as artifacts (`True` at the end, `"all"` as they are written).
        watch: Log gradient and parameter histograms (`"gradients"`, `"parameters"`, `"all"`).
    """

    enabled: bool = True
    mode: Literal["auto", "online", "offline", "disabled"] = "auto"
    project: str = "template"
    entity: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    log_model: bool | Literal["all"] = False
    watch: Literal["gradients", "parameters", "all"] | None = None


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(WANDB_HOST) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def _reachable(host: str, port: int = 443, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_wandb_mode(options: WandbOptions) -> str:
    """The mode W&B will run in, decided once so that it never asks for a key interactively."""
    if not options.enabled:
        return "disabled"
    if options.mode != "auto":
        return options.mode
    env = os.environ.get("WANDB_MODE")
    if env:
        return {"dryrun": "offline", "run": "online"}.get(env, env)
    if _has_api_key() and _reachable(WANDB_HOST):
        return "online"
    rank_zero_info(
        "W&B: no API key or no network, logging offline (sync later with `wandb sync <run dir>/wandb`)."
    )
    return "offline"


def wandb_run_id(run_dir: Path, create: bool = True) -> str | None:
    """The run's W&B id, kept in the run directory so that a resumed launch continues the same W&B run.

    Only the process that logs (rank 0) creates it (`create`); the other ranks, which log nothing, read it
    when it exists and otherwise go without: ranks on several nodes share one run directory, and a
    temporary file named by a pid alone can be another node's (cluster.md: rank 1 read rank 0's).
    """
    path = run_dir / WANDB_ID_FILE
    if path.is_file():
        return path.read_text().strip()
    if not create:
        return None
    # Several launching processes can still get here (two runs given one name): the first link wins.
    tmp = path.with_name(f"{WANDB_ID_FILE}.{socket.gethostname()}-{os.getpid()}")
    tmp.write_text(uuid.uuid4().hex[:12] + "\n")
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    except OSError:  # a file system without hard links: last writer wins, still never a partial file
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text().strip()


class _AppendingWriter(ExperimentWriter):
    """Keeps the run's metrics.csv on resume; Lightning's writer deletes it when the folder is not empty."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = next(csv.reader(file), [])  # new rows append under the same header

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        # Lightning's rewrite raises on (and would drop) a column the file has but this writer does not
        # know, e.g. one another launch added: keep the union, so no written value is ever lost.
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            reader = csv.DictReader(file)
            rows = list(reader)
            on_file = reader.fieldnames or []
        self.metrics_keys[:] = sorted(set(fieldnames) | set(on_file))
        with self._fs.open(self.metrics_file_path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(rows)


class RunCSVLogger(CSVLogger):
    """CSVLogger writing straight into the run directory and appending across resumed launches."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def build_loggers(
    run_dir: Path, options: WandbOptions, run_name: str, experiment: str, tensorboard: bool = False
) -> list[Logger]:
    """CSV first (so `trainer.log_dir` is the run directory), TensorBoard if asked, then W&B unless disabled."""
    loggers: list[Logger] = [RunCSVLogger(save_dir=str(run_dir), name="", version="")]
    if tensorboard:
        loggers.append(
            TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="", default_hp_metric=False)
        )
    mode = resolve_wandb_mode(options)
    if mode == "disabled":
        return loggers
    wandb = WandbLogger(
        save_dir=str(run_dir),
        name=f"{experiment}/{run_name}",
        id=wandb_run_id(run_dir, create=JobEnv.from_env(os.environ).is_rank_zero),
        resume="allow",
        project=options.project,
        entity=options.entity,
        group=options.group,
        tags=list(options.tags) or None,
        log_model=options.log_model,
        mode=mode,
        job_type=experiment,
        settings={"silent": True, "console": "off"},
    )
    loggers.append(wandb)
    return loggers


def finish_wandb(loggers: list[Logger]) -> None:
    """Close the W&B run now, so its exit messages come before the run's last line."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish()
