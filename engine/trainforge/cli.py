"""The engine's LightningCLI (`TemplateCLI`): a run directory per run, auto-resume, the engine's loggers,
the always-present callbacks and feature groups (`finetune`, `mixup`, `l1`, `distill`), the task link from
data to model and the end-of-run summary (finish.py), wired here so a user who edits a hook never touches the
Trainer. Starting it from argv: launch.py; argument errors explained: argument_errors.py; configuration
files: config_files.py.
"""

from __future__ import annotations

import copy
import os
import shutil
import time
from typing import Any

from lightning.fabric.plugins.environments import ClusterEnvironment, SLURMEnvironment
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_info

from trainforge.argument_errors import explain_argument_error, parser_keys
from trainforge.checkpoint_check import check_resumable
from trainforge.checkpoints import datamodule_state
from trainforge.cluster import JobEnv, check_allocation
from trainforge.config_files import SUBCOMMANDS, SaveRunConfig
from trainforge.data.datamodule import DataModule
from trainforge.data.resumable import ResumableLoaderCallback
from trainforge.errors import (
    ConfigError,
    TemplateError,
    construction_error,
    is_user_error,
    training_errors,
)
from trainforge.finish import RunEnding, interrupted_siblings, resume_command
from trainforge.loggers import WandbOptions, build_loggers
from trainforge.predictions import PredictionWriter
from trainforge.reporting import OutputOptions, add_output_callbacks
from trainforge.rundir import RUN_DIR_ENV, RunDir, RunOptions, resolve_run_dir
from trainforge.training.best_checkpoint import BestCheckpoint
from trainforge.training.checkpointing import (
    AtomicCheckpointIO,
    LastEveryNSteps,
    check_monitors,
    last_every_n_steps,
)
from trainforge.training.distill import Distillation
from trainforge.training.finetuning import Finetuning
from trainforge.training.launch_report import LaunchReport
from trainforge.training.mixing import Mixup
from trainforge.training.nonfinite import NonFiniteLossGuard
from trainforge.training.preemption import PreemptionCheckpoint
from trainforge.training.progress import default_progress_bar
from trainforge.training.regularization import L1Penalty
from trainforge.training.run_clock import RunClock
from trainforge.training.throughput import DataBottleneckWarning
from trainforge.validation import validate_config

AUTO = "auto"  # checkpoint.monitor: the task's own key and mode (val/acc max; val/mae min for regression)


class TemplateCLI(RunEnding, LightningCLI):
    """LightningCLI plus run directories, auto-resume, the engine's loggers and the end-of-run summary."""

    run: RunDir
    started: float
    argv: list[str] = []  # as the user typed it, for the resume command printed after an interruption

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_class_arguments(RunOptions, "run")
        parser.add_class_arguments(WandbOptions, "wandb")
        parser.add_class_arguments(OutputOptions, "outputs")
        parser.add_lightning_class_args(BestCheckpoint, "checkpoint")  # ties go to the later epoch
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.add_lightning_class_args(NonFiniteLossGuard, "nonfinite")
        parser.add_lightning_class_args(DataBottleneckWarning, "data_monitor")
        # Features as always-present callbacks, each doing nothing until configured (`--mixup.mixup_alpha=0.2`).
        parser.add_lightning_class_args(Finetuning, "finetune")
        parser.add_lightning_class_args(Mixup, "mixup")
        parser.add_lightning_class_args(L1Penalty, "l1")
        parser.add_lightning_class_args(Distillation, "distill")
        # The data declares what it is; the model follows, so the two agree by construction.
        parser.link_arguments("data.task", "model.init_args.task", apply_on="instantiate")
        parser.link_arguments("data.in_chans", "model.init_args.in_chans", apply_on="instantiate")
        parser.link_arguments("data.input_shape", "model.init_args.input_shape", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        try:
            self._prepare_run()
        except BaseException:
            self._drop_empty_run_dir()
            raise

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except BaseException as error:
            self._drop_empty_run_dir()
            # What a DataModule's or model's __init__ raised, in one line naming the class and file:line.
            user = construction_error(error)
            if user is not None:
                raise user from error
            raise

    def _prepare_run(self) -> None:
        self.started = time.time()
        config = self.config[self.subcommand]
        validate_config(config, self.subcommand)
        self.ran_config = copy.deepcopy(config)  # saved as config.yaml: what the user ran, not our wiring
        job = JobEnv.from_env(os.environ)
        # Before the run directory exists: a job whose processes and devices disagree writes nothing.
        check_allocation(job, config.trainer.accelerator, config.trainer.devices, config.trainer.num_nodes)
        ckpt = config.get("ckpt_path")
        of_checkpoint = RunDir.of_checkpoint(ckpt) if ckpt and self.subcommand != "fit" else None
        if of_checkpoint is not None:
            self.run = of_checkpoint  # evaluate into the run that made the checkpoint
        else:
            path, named = resolve_run_dir(RunOptions(**vars(config.run)), job)
            self.run = RunDir(path.resolve())
            if self.subcommand == "fit" and not named:
                self._point_at_interrupted_runs()
        os.environ[RUN_DIR_ENV] = str(self.run_dir)
        config.trainer.default_root_dir = str(self.run_dir)
        config.checkpoint.dirpath = str(self.run.checkpoints)
        # `checkpoint.every_n_train_steps` refreshes only last.ckpt, from a callback of its own (see
        # training/checkpointing.py): on the best-k callback it would stop ranking at validation end.
        self.last_every_n_steps = config.checkpoint.get("every_n_train_steps")
        config.checkpoint.every_n_train_steps = None
        config.checkpoint.enable_version_counter = False  # both write last.ckpt; never a last-v1.ckpt
        self.auto_monitor = config.checkpoint.monitor == AUTO
        if self.auto_monitor:
            config.checkpoint.monitor = None  # resolved from the task in instantiate_trainer
        if self.subcommand == "fit" and ckpt is None:
            last = self.run.resume_checkpoint()  # last.ckpt or a SLURM hpc_ckpt_N.ckpt, the newer
            if last is not None:
                config.ckpt_path = str(last)
                rank_zero_info(f"Resuming run {self.run_dir} from {last}")
        if self.subcommand == "fit" and config.get("ckpt_path"):
            check_resumable(config.ckpt_path)

    def _point_at_interrupted_runs(self) -> None:
        stopped = interrupted_siblings(self.run)
        if stopped:
            rank_zero_info(
                f"note: {stopped[0].path} stopped before its end; this is a new run. To continue that one "
                f"instead: {resume_command(self.argv, stopped[0])}"
            )

    def parse_arguments(self, parser: Any, args: Any) -> None:
        try:
            super().parse_arguments(parser, args)
        except Exception as error:
            if not is_user_error(error) or isinstance(error, TemplateError):
                raise
            subcommand = next((a for a in args or [] if a in SUBCOMMANDS), None)
            keys = parser_keys(parser, subcommand)
            raise ConfigError(explain_argument_error(error, keys, subcommand)) from error

    def _run_subcommand(self, subcommand: str) -> None:
        batch_size = getattr(self.datamodule, "batch_size", None)
        ckpt = self.config[subcommand].get("ckpt_path")
        if subcommand != "fit" and ckpt:
            check_resumable(ckpt, use=f"{subcommand} with")
            if isinstance(self.datamodule, DataModule):
                # The run's saved preprocessing before the DataModule builds anything (Lightning restores it
                # only after setup).
                self.datamodule.load_state_dict(datamodule_state(ckpt, type(self.datamodule)))
        if ckpt:
            self.model.restoring = (
                True  # its weights come from the checkpoint: never read the pretrained file
            )
        if hasattr(self.model, "configure_model"):
            self.model.configure_model()  # built before any callback's setup copies it (SWA, EMA, ...)
        with training_errors(batch_size, ckpt):
            try:
                super()._run_subcommand(subcommand)
            except BaseException:
                self._drop_empty_run_dir()
                raise

    def _drop_empty_run_dir(self) -> None:
        """A run that failed before writing anything leaves no directory behind (nor empty parents)."""
        run = getattr(self, "run", None)
        if run is None or self.subcommand != "fit" or run.holds_results():
            return
        shutil.rmtree(run.path, ignore_errors=True)
        for folder in (run.path.parent, run.path.parent.parent):  # the experiment's folder, then the root
            try:
                folder.rmdir()
            except OSError:
                break

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        config = self.config_init[self.subcommand]
        task = getattr(self.model, "task", None)
        if task is not None:
            if self.auto_monitor:
                options = vars(self.config[self.subcommand].checkpoint)
                config["checkpoint"] = BestCheckpoint(
                    **{**options, "monitor": task.monitor[0], "mode": task.monitor[1]}
                )
            check_monitors(
                [config["checkpoint"], *(config["trainer"].get("callbacks") or [])],
                task,
                self.model.build_metrics(),
            )
        if config["trainer"].get("logger") in (None, True):
            if self.subcommand == "fit":
                kwargs["logger"] = build_loggers(
                    self.run_dir,
                    config["wandb"],
                    self.run_dir.name,
                    config["run"].experiment,
                    tensorboard=config["outputs"].tensorboard,
                )
            else:
                kwargs["logger"] = False
        if self.subcommand == "predict":
            kwargs["callbacks"] = [PredictionWriter(self.run)]
        else:
            configured = config["trainer"].get("callbacks") or []
            extra = [bar] if (bar := default_progress_bar(config["trainer"])) is not None else []
            if self.subcommand == "fit":
                extra += self._add_fault_tolerance(config, kwargs)
            if extra:
                kwargs["callbacks"] = [
                    *(configured if isinstance(configured, list) else [configured]),
                    *extra,
                ]
        trainer = super().instantiate_trainer(**kwargs)
        # Stable sort: the best-k ModelCheckpoint stays first, so it is `trainer.checkpoint_callback`.
        trainer.callbacks.sort(key=lambda callback: isinstance(callback, LastEveryNSteps))
        for callback in trainer.callbacks:
            if isinstance(callback, SaveRunConfig):
                callback.config = self.ran_config
        if self.subcommand in ("fit", "test"):
            add_output_callbacks(trainer, self.model, self.run_dir, config["outputs"], config["wandb"])
        return trainer

    def _add_fault_tolerance(self, config: Any, kwargs: dict[str, Any]) -> list[Any]:
        """Exact mid-epoch resume, preemption and Ctrl-C handling, last.ckpt every N steps (the callbacks
        returned), atomic checkpoint files (the plugin set in kwargs)."""
        extra: list[Any] = [ResumableLoaderCallback(), PreemptionCheckpoint(self.run.checkpoints)]
        extra += [RunClock(self.run.segments, self.started), LaunchReport()]  # honest run records
        if config["checkpoint"].save_last:
            extra.append(last_every_n_steps(self.run.checkpoints, self.last_every_n_steps))
        plugins = config["trainer"].get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(hasattr(plugin, "save_checkpoint") for plugin in plugins):
            plugins.append(AtomicCheckpointIO())
        if JobEnv.from_env(os.environ).slurm_managed and not any(
            isinstance(plugin, ClusterEnvironment) for plugin in plugins
        ):
            # One owner of the preemption signal: PreemptionCheckpoint. Lightning's own SLURM handler would
            # save hpc_ckpt_N.ckpt from inside the signal handler (a collective: Lightning #21406).
            plugins.append(SLURMEnvironment(auto_requeue=False))
        kwargs["plugins"] = plugins
        return extra
