"""Entry point: `python -m trainforge fit|validate|test|predict` (LightningCLI) with a run directory per run.

Configuration: template/config_files.py. The run directory, resume, loggers, callbacks and the end-of-run
summary are wired here, so a user who edits a hook never touches the Trainer.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_info

from trainforge.checkpoint_check import check_resumable
from trainforge.config_files import SUBCOMMANDS, SaveRunConfig, base_configs, expand_argv
from trainforge.data.datamodule import DataModule
from trainforge.errors import (
    ConfigError,
    TemplateError,
    explain_argument_error,
    is_user_error,
    parser_keys,
    pop_debug_flag,
    report,
    training_errors,
)
from trainforge.loggers import WandbOptions, build_loggers, finish_wandb
from trainforge.models.classifier import ImageClassifier
from trainforge.predictions import PredictionWriter
from trainforge.reporting import OutputOptions, add_output_callbacks, report_after_fit
from trainforge.rundir import RUN_DIR_ENV, RunOptions, last_checkpoint, resolve_run_dir
from trainforge.summary import print_summary, write_json_atomic, write_summary
from trainforge.training.checkpointing import (
    AtomicCheckpointIO,
    LastEveryNSteps,
    last_every_n_steps,
    resume_checkpoint,
)
from trainforge.training.nonfinite import NonFiniteLossGuard
from trainforge.training.preemption import PreemptionCheckpoint
from trainforge.training.progress import default_progress_bar
from trainforge.training.resumable import ResumableLoaderCallback
from trainforge.training.throughput import DataBottleneckWarning
from trainforge.tools import run_tool
from trainforge.validation import validate_config


class TemplateCLI(LightningCLI):
    """LightningCLI plus run directories, auto-resume, the template's loggers and the end-of-run summary."""

    run_dir: Path
    started: float

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_class_arguments(RunOptions, "run")
        parser.add_class_arguments(WandbOptions, "wandb")
        parser.add_class_arguments(OutputOptions, "outputs")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.add_lightning_class_args(NonFiniteLossGuard, "nonfinite")
        parser.add_lightning_class_args(DataBottleneckWarning, "data_monitor")
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("data.in_chans", "model.init_args.in_chans", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        self.started = time.time()
        config = self.config[self.subcommand]
        validate_config(config, self.subcommand)
        options = RunOptions(**vars(config.run))
        ckpt = config.get("ckpt_path")
        if self.subcommand != "fit" and ckpt and Path(ckpt).parent.name == "checkpoints":
            self.run_dir = Path(ckpt).parent.parent  # evaluate into the run that made the checkpoint
        else:
            self.run_dir, _ = resolve_run_dir(options)
        self.run_dir = self.run_dir.resolve()
        os.environ[RUN_DIR_ENV] = str(self.run_dir)
        config.trainer.default_root_dir = str(self.run_dir)
        config.checkpoint.dirpath = str(self.run_dir / "checkpoints")
        # `checkpoint.every_n_train_steps` refreshes only last.ckpt, from a callback of its own (see
        # training/checkpointing.py): on the best-k callback it would stop ranking at validation end.
        self.last_every_n_steps = config.checkpoint.get("every_n_train_steps")
        config.checkpoint.every_n_train_steps = None
        config.checkpoint.enable_version_counter = False  # both write last.ckpt; never a last-v1.ckpt
        if self.subcommand == "fit" and ckpt is None:
            last = resume_checkpoint(self.run_dir)  # last.ckpt or a SLURM hpc_ckpt_N.ckpt, the newer
            if last is not None:
                config.ckpt_path = str(last)
                rank_zero_info(f"Resuming run {self.run_dir} from {last}")
        if self.subcommand == "fit" and config.get("ckpt_path"):
            check_resumable(config.ckpt_path)

    def parse_arguments(self, parser: Any, args: Any) -> None:
        try:
            super().parse_arguments(parser, args)
        except Exception as error:
            if not is_user_error(error) or isinstance(error, TemplateError):
                raise
            subcommand = next((a for a in args or [] if a in SUBCOMMANDS), None)
            keys = parser_keys(parser, subcommand)
            raise ConfigError(explain_argument_error(str(error), keys, subcommand)) from error

    def _run_subcommand(self, subcommand: str) -> None:
        batch_size = getattr(self.datamodule, "batch_size", None)
        with training_errors(batch_size, self.config[subcommand].get("ckpt_path")):
            super()._run_subcommand(subcommand)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        config = self.config_init[self.subcommand]
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
            kwargs["callbacks"] = [PredictionWriter(self.run_dir / "predictions.csv")]
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
        if self.subcommand in ("fit", "test"):
            add_output_callbacks(trainer, self.model, self.run_dir, config["outputs"], config["wandb"])
        return trainer

    def _add_fault_tolerance(self, config: Any, kwargs: dict[str, Any]) -> list[Any]:
        """Exact mid-epoch resume, preemption handling, last.ckpt every N steps (the callbacks returned),
        atomic checkpoint files (the plugin set in kwargs)."""
        checkpoints = self.run_dir / "checkpoints"
        extra: list[Any] = [ResumableLoaderCallback(), PreemptionCheckpoint(checkpoints)]
        if config["checkpoint"].save_last:
            extra.append(last_every_n_steps(checkpoints, self.last_every_n_steps))
        plugins = config["trainer"].get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(hasattr(plugin, "save_checkpoint") for plugin in plugins):
            kwargs["plugins"] = [*plugins, AtomicCheckpointIO()]
        return extra

    def _preempted(self) -> bool:
        return any(isinstance(cb, PreemptionCheckpoint) and cb.preempted for cb in self.trainer.callbacks)

    def after_fit(self) -> None:
        trainer, datamodule = self.trainer, self.datamodule
        if self._preempted():
            # Stopped by a signal: last.ckpt is saved; evaluation and the summary wait for the finished run.
            finish_wandb(trainer.loggers)
            if trainer.is_global_zero:
                print(
                    f"preempted at step {trainer.global_step}; rerun the same command to resume", flush=True
                )
                print(f"run directory: {self.run_dir}", flush=True)
            return
        if trainer.fast_dev_run:
            self._finish({})
            return
        callback = trainer.checkpoint_callback
        best = callback.best_model_path if callback is not None and callback.best_model_path else None
        reports = {}
        if self.config[self.subcommand].outputs.reports:
            monitor = callback.monitor if callback is not None else None
            reports = report_after_fit(trainer, self.run_dir, monitor, getattr(callback, "mode", "max")) or {}
        metrics: dict[str, float] = {}
        for split, run in (("val", trainer.validate), ("test", trainer.test)):
            if isinstance(datamodule, DataModule) and not datamodule.has_split(split):
                continue
            results = run(self.model, datamodule=datamodule, ckpt_path=best, verbose=False)
            metrics.update(results[0] if results else {})
        last = last_checkpoint(self.run_dir)
        self._finish(
            {
                "metrics": metrics,
                "checkpoint_used": best or "final weights",
                "best_checkpoint": best,
                "last_checkpoint": str(last) if last else None,
                **reports,
                **getattr(
                    datamodule, "summary_fields", dict
                )(),  # e.g. evaluated_on when there is no test split
            }
        )

    def _finish(self, fields: dict[str, Any]) -> None:
        trainer = self.trainer
        if trainer.is_global_zero and fields:
            summary = {
                "experiment": self.config[self.subcommand].run.experiment,
                "run": self.run_dir.name,
                "run_dir": str(self.run_dir),
                **fields,
                "global_step": trainer.global_step,
                "epoch": trainer.current_epoch,
                "wall_time_s": round(time.time() - self.started, 2),
            }
            write_summary(self.run_dir, summary)
            print_summary(summary)
        finish_wandb(trainer.loggers)
        if trainer.is_global_zero:
            print(f"run directory: {self.run_dir}", flush=True)

    def _after_eval(self, stage: str) -> None:
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items()}
        if self.trainer.is_global_zero:
            write_json_atomic(self.run_dir / f"{stage}_metrics.json", {"metrics": metrics})
            print(f"run directory: {self.run_dir}", flush=True)

    def after_validate(self) -> None:
        self._after_eval("validate")

    def after_test(self) -> None:
        self._after_eval("test")

    def after_predict(self) -> None:
        if self.trainer.is_global_zero:
            print(f"predictions: {self.run_dir / 'predictions.csv'}")
            print(f"run directory: {self.run_dir}", flush=True)


def main(
    argv: list[str] | None = None,
    callbacks: list[Callback] | None = None,
    cli_class: type[TemplateCLI] | None = None,
) -> None:
    """Run the CLI; `callbacks` are added to the Trainer's (in-process callers: sweeps' pruning, spot checks).

    User errors end in one line on stderr and exit 2; `--debug` or TRAINFORGE_DEBUG=1 shows the traceback.
    """
    args, debug = pop_debug_flag(sys.argv[1:] if argv is None else list(argv))
    try:
        if run_tool(args):  # bench, export, sweep, ...: their own options, no LightningCLI
            return
        run_cli(args, callbacks, cli_class)
    except Exception as error:
        if not is_user_error(error):
            raise
        sys.exit(report(error, debug))


def run_cli(
    argv: list[str], callbacks: list[Callback] | None = None, cli_class: type[TemplateCLI] | None = None
) -> None:
    """The CLI without the user-error wrapper: exceptions propagate (sweeps mark such trials failed)."""
    args = expand_argv(argv)
    base = base_configs(args)
    previous = os.environ.get(RUN_DIR_ENV)
    # We pass the expanded argv on purpose; LightningCLI warns whenever args and sys.argv both exist.
    warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
    try:
        (cli_class or TemplateCLI)(
            ImageClassifier,
            DataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=SaveRunConfig,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
            parser_kwargs={
                "exit_on_error": False,
                "allow_abbrev": False,
                **{
                    sub: {"default_config_files": base, "exit_on_error": False, "allow_abbrev": False}
                    for sub in SUBCOMMANDS
                },
            },
            args=args,
            trainer_defaults={"callbacks": list(callbacks)} if callbacks else None,
        )
    finally:
        # In-process callers (tests, sweeps) start each run fresh; launched DDP ranks inherited it already.
        if previous is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = previous
