"""The end of a fit: the honest final evaluation and summary.json, or what an interrupted run prints.

Model selection (the best checkpoint, early stopping) only ever reads the `val` split; the figure a run
reports is the `test` split's (a DataModule without one reports val, and says so). summary.json names
the checkpoint it reports, which split selected it and which one is reported, and also gives the same
figures for the last epoch's weights, so a lucky best epoch is visible as such.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer

from trainforge.data.datamodule import DataModule
from trainforge.loggers import finish_wandb
from trainforge.optimism import selection_vs_reported
from trainforge.reporting import report_after_fit
from trainforge.rundir import RunDir
from trainforge.summary import print_summary, write_json_atomic, write_summary
from trainforge.training.preemption import PreemptionCheckpoint
from trainforge.training.run_clock import run_time_fields


def final_evaluation(
    trainer: Trainer, model: LightningModule, datamodule: Any, best: str | None, last_ckpt: Path | None
) -> tuple[dict[str, float], dict[str, float]]:
    """(metrics of the reported checkpoint on val and test, metrics of the last epoch's weights (last.ckpt;
    else the weights as training left them) on the reported split)."""
    has = getattr(datamodule, "has_split", lambda split: True)
    reported = "test" if has("test") else "val"
    run_reported = trainer.test if reported == "test" else trainer.validate
    last: dict[str, float] = {}
    if best:  # before `best`, which evaluation loads into the model
        results = run_reported(model, datamodule=datamodule, ckpt_path=last_ckpt, verbose=False)
        last = {k: float(v) for k, v in (results[0] if results else {}).items()}
    metrics: dict[str, float] = {}
    for split, run in (("val", trainer.validate), ("test", trainer.test)):
        if has(split):
            results = run(model, datamodule=datamodule, ckpt_path=best, verbose=False)
            metrics.update({k: float(v) for k, v in (results[0] if results else {}).items()})
    return metrics, last or {k: v for k, v in metrics.items() if k.startswith(f"{reported}/")}


def write_run_summary(
    run: RunDir, trainer: Trainer, started: float, fields: dict[str, Any]
) -> dict[str, Any]:
    last = run.last_checkpoint()
    summary = {
        "experiment": run.path.parent.name,
        "run": run.path.name,
        "run_dir": str(run.path),
        **fields,
        "last_checkpoint": str(last) if last else None,
        "global_step": trainer.global_step,
        "epoch": trainer.current_epoch,
        **run_time_fields(trainer, started),  # summed over every segment of a resumed or requeued run
    }
    write_summary(run.path, summary)
    print_summary(summary)
    return summary


def resume_command(argv: list[str], run: RunDir) -> str:
    """The command that continues `run`: the same as launched, with the run's name pinned."""
    args = [a for a in argv if not a.startswith("--run.name")]
    # Set by the Makefile's train/finetune targets (not MAKELEVEL: every process under any make has that).
    if os.environ.get("TRAINFORGE_VIA_MAKE"):
        experiment = args[args.index("--experiment") + 1] if "--experiment" in args else None
        rest = [
            a
            for i, a in enumerate(args)
            if a not in ("fit", "--experiment") and (i == 0 or args[i - 1] != "--experiment")
        ]
        parts = (
            ["make train"] + ([f"EXPERIMENT={experiment}"] if experiment else []) + [f"RUN={run.path.name}"]
        )
        if rest:
            parts.append(f'ARGS="{shlex.join(rest)}"')
        return " ".join(parts)
    package = (
        Path(sys.argv[0]).parent.name if sys.argv and sys.argv[0].endswith("__main__.py") else "trainforge"
    )
    return shlex.join(["python", "-m", package, *args, f"--run.name={run.path.name}"])


def interrupted_siblings(run: RunDir) -> list[RunDir]:
    """Other runs of the same experiment that stopped before their end, newest first."""
    parent = run.path.parent
    others = [
        RunDir(p) for p in parent.iterdir() if p.is_dir() and p != run.path and ".replaced-" not in p.name
    ]
    stopped = [r for r in others if r.interrupted()]
    return sorted(stopped, key=lambda r: r.path.stat().st_mtime, reverse=True)


class RunEnding:
    """What a run does when its command ends (LightningCLI's `after_*` hooks), mixed into the CLI class."""

    run: RunDir
    started: float
    argv: list[str]
    trainer: Trainer
    model: LightningModule
    datamodule: Any
    config: Any
    subcommand: str

    @property
    def run_dir(self) -> Path:
        return self.run.path

    def _stopped_by(self) -> PreemptionCheckpoint | None:
        return next(
            (cb for cb in self.trainer.callbacks if isinstance(cb, PreemptionCheckpoint) and cb.preempted),
            None,
        )

    def after_fit(self) -> None:
        trainer, datamodule = self.trainer, self.datamodule
        if trainer.is_global_zero and isinstance(datamodule, DataModule):
            write_json_atomic(self.run.preprocessing, datamodule.preprocessing)
        stopped = self._stopped_by()
        if stopped is not None:
            # Stopped by a signal: last.ckpt is saved; evaluation and the summary wait for the finished run.
            finish_wandb(trainer.loggers)
            if trainer.is_global_zero:
                print(f"{stopped.reason} at step {trainer.global_step}: {self.run.last} saved.", flush=True)
                print(f"resume with: {resume_command(self.argv, self.run)}", flush=True)
                print(f"run directory: {self.run_dir}", flush=True)
            stopped.requeue_after_stop(trainer)
            return
        if trainer.fast_dev_run:
            self._finish({})
            return
        callback = trainer.checkpoint_callback
        best = callback.best_model_path if callback is not None and callback.best_model_path else None
        fields: dict[str, Any] = {
            **getattr(datamodule, "summary_fields", dict)(),
            **{
                k: v
                for cb in trainer.callbacks
                if hasattr(cb, "summary_fields")
                for k, v in cb.summary_fields().items()
            },
            "monitor": {"key": getattr(callback, "monitor", None), "mode": getattr(callback, "mode", None)},
            "checkpoint_used": best or "final weights",
            "best_checkpoint": best,
        }
        if self.config[self.subcommand].outputs.reports:
            monitor = callback.monitor if callback is not None else None
            fields.update(
                report_after_fit(trainer, self.run_dir, monitor, getattr(callback, "mode", "max")) or {}
            )
        try:
            fields["metrics"], fields["last_epoch_metrics"] = final_evaluation(
                trainer, self.model, datamodule, best, self.run.last_checkpoint()
            )
        except BaseException as error:
            fields["evaluation_error"] = f"{type(error).__name__}: {error}"
            self._finish(fields)  # a finished fit always leaves its summary.json
            raise
        fields.update(
            selection_vs_reported(
                fields["metrics"], fields["monitor"]["key"], fields["monitor"]["mode"],
                fields.get("selected_on"), fields.get("evaluated_on"),
            )
        )  # fmt: skip
        self._finish(fields)

    def _finish(self, fields: dict[str, Any]) -> None:
        trainer = self.trainer
        if trainer.is_global_zero and fields:
            write_run_summary(self.run, trainer, self.started, fields)
        finish_wandb(trainer.loggers)
        if trainer.is_global_zero:
            print(f"run directory: {self.run_dir}", flush=True)

    def _after_eval(self, stage: str) -> None:
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items()}
        if self.trainer.is_global_zero:
            write_json_atomic(self.run.eval_metrics(stage), {"metrics": metrics})
            print(f"run directory: {self.run_dir}", flush=True)

    def after_validate(self) -> None:
        self._after_eval("validate")

    def after_test(self) -> None:
        self._after_eval("test")

    def after_predict(self) -> None:
        if self.trainer.is_global_zero:
            print(f"predictions: {self.run.predictions}")
            print(f"run directory: {self.run_dir}", flush=True)
