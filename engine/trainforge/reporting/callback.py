"""Wires the reports into a run: model summary at fit start, confusion/per-class/misclassified at test end,
learning curves and the diagnosis after fit; images also go to W&B (and TensorBoard when it is on)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only, rank_zero_warn
from lightning.pytorch.utilities.model_summary import ModelSummary
from torch.utils.flop_counter import FlopCounterMode

from trainforge.reporting import plots
from trainforge.reporting.curves import epoch_history
from trainforge.reporting.diagnosis import diagnose, format_diagnosis
from trainforge.reporting.diagnosis_context import error_scale, key_checker
from trainforge.reporting.evaluation import Evaluation, evaluation_for
from trainforge.training.modes import evaluating


@dataclass
class OutputOptions:
    """Local outputs of a run besides CSV metrics (which are always written).

    Args:
        reports: PNG reports (learning curves, confusion matrix, misclassified samples), per_class.csv,
            model_summary.json and the end-of-training diagnosis.
        tensorboard: Mirror the metrics to TensorBoard (`tensorboard --logdir <run dir>/tensorboard`).
    """

    reports: bool = True
    tensorboard: bool = False


def log_images(loggers: list[Logger], key: str, path: Path) -> None:
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[str(path)])


def model_summary(model: LightningModule, example: torch.Tensor | None) -> dict[str, Any]:
    """Parameter counts and, where the model runs under torch's FlopCounterMode, FLOPs of one sample."""
    summary = ModelSummary(model, max_depth=1)
    info: dict[str, Any] = {
        "params": int(summary.total_parameters),
        "trainable_params": int(summary.trainable_parameters),
        "size_mb": round(float(summary.model_size), 3),
        "layers": str(summary),
    }
    if example is not None:
        counter = FlopCounterMode(display=False)
        try:
            # evaluating() restores each submodule's mode: BatchNorm kept in eval mode (bn_eval) stays so.
            with evaluating(model), torch.no_grad(), counter:
                model(example[:1].to(model.device))
            info["flops_per_sample"] = int(counter.get_total_flops())
            info["input_shape"] = list(example[:1].shape)
        except Exception as error:  # noqa: BLE001 - FLOPs are best effort; parameters are always reported
            info["flops_per_sample"] = None
            info["flops_error"] = f"{type(error).__name__}: {error}"
    return info


class RunReports(Callback):
    """Writes the run's model summary and the final evaluation's reports into `run_dir` (rank 0) and logs
    the pictures. The final evaluation is the test; a DataModule without a test split gets them from the
    validation that follows fit. A report that fails is a warning, never a failed run."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self._summarised = False
        self.evaluation: Evaluation | None = None

    # ----------------------------------------------------------------- first training batch
    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # The first real batch gives the input shape for FLOPs, without building another loader.
        if self._summarised:
            return
        self._summarised = True
        example = batch[0] if isinstance(batch, (list, tuple)) else batch
        if not isinstance(example, torch.Tensor):
            example = None
        if trainer.is_global_zero:
            info = model_summary(pl_module, example)
            (self.run_dir / "model_summary.txt").write_text(info.pop("layers") + "\n")
            (self.run_dir / "model_summary.json").write_text(json.dumps(info, indent=2) + "\n")
            flops = info.get("flops_per_sample")
            rank_zero_info(
                f"model: {info['params']:,} parameters ({info['trainable_params']:,} trainable)"
                + (f", {flops / 1e6:.1f} MFLOPs per sample" if flops else "")
            )
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    logger.experiment.summary.update({f"model/{k}": v for k, v in info.items()})

    # ----------------------------------------------------------------- the final evaluation
    def _final(self, trainer: Trainer, stage: str) -> bool:
        if stage == "test":
            return True
        datamodule = trainer.datamodule
        has_test = getattr(datamodule, "has_split", None)
        return trainer.state.fn == TrainerFn.VALIDATING and callable(has_test) and not has_test("test")

    def _start(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.evaluation = None
        if not self._final(trainer, stage):
            return
        task = getattr(pl_module, "task", None)
        self.evaluation = evaluation_for(task, pl_module.device) if task is not None else None
        if self.evaluation is None:
            rank_zero_info(f"reports: no pictures for a {getattr(task, 'kind', 'model without a')} task")

    def _batch(self, outputs: Any, batch: Any) -> None:
        if self.evaluation is None:
            return
        if not isinstance(outputs, torch.Tensor):
            rank_zero_warn("reports: the model's test/validation step returns no outputs; no pictures")
            self.evaluation = None
            return
        self.evaluation.update(outputs.detach(), batch[0], batch[1])

    def _end(self, trainer: Trainer, stage: str) -> None:
        evaluation, self.evaluation = self.evaluation, None
        if evaluation is None:
            return
        values = evaluation.compute()  # every rank: torchmetrics gathers across them
        if not trainer.is_global_zero:
            return
        try:
            paths = evaluation.write(self.run_dir, values)
        except Exception as error:  # noqa: BLE001 - a picture must never fail a finished run
            rank_zero_warn(f"reports: could not write the {stage} reports ({type(error).__name__}: {error})")
            return
        for key, path in paths.items():
            if path.suffix == ".png":
                log_images(trainer.loggers, f"{stage}/{key}", path)

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start(trainer, pl_module, "test")

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, *_: Any
    ) -> None:
        self._batch(outputs, batch)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end(trainer, "test")

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start(trainer, pl_module, "val")

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, *_: Any
    ) -> None:
        self._batch(outputs, batch)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end(trainer, "val")


@rank_zero_only
def report_after_fit(trainer: Trainer, run_dir: Path, monitor: str | None, mode: str) -> dict[str, Any]:
    """Learning curves PNG and the diagnosis, from metrics.csv as fit left it (before re-evaluation)."""
    for logger in trainer.loggers:
        if isinstance(logger, CSVLogger):
            logger.save()
    metrics_csv = Path(run_dir) / "metrics.csv"
    if not metrics_csv.is_file():
        return {}
    monitor = monitor or "val/acc"
    history = epoch_history(metrics_csv, monitor)
    path = plots.learning_curves(history, monitor, Path(run_dir) / "learning_curves.png")
    log_images(trainer.loggers, "learning_curves", path)
    model = trainer.lightning_module
    task = getattr(model, "task", None)
    findings = diagnose(
        history,
        mode,
        scale=error_scale(task, monitor),
        accepts=key_checker(trainer),
        task_kind=getattr(task, "kind", None),
    )
    print(format_diagnosis(findings), flush=True)
    return {"diagnosis": findings}


def add_output_callbacks(
    trainer: Trainer, model: LightningModule, run_dir: Path, options: Any, wandb: Any
) -> None:
    """Adds RunReports to a fit/test trainer and wires W&B `watch`; ModelCheckpoint stays last."""
    if options is None or getattr(options, "reports", True):
        trainer.callbacks.insert(0, RunReports(run_dir))
    watch = getattr(wandb, "watch", None)
    if watch:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.watch(model, log=watch, log_freq=max(1, trainer.log_every_n_steps), log_graph=False)
