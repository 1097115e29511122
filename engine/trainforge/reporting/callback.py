"""Wires the reports into a run: model summary at fit start, confusion/per-class/misclassified at test end,
learning curves and the diagnosis after fit; images also go to W&B (and TensorBoard when it is on)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from lightning.pytorch.utilities.model_summary import ModelSummary
from torch.utils.flop_counter import FlopCounterMode
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from trainforge.reporting.diagnosis import diagnose, format_diagnosis
from trainforge.models.modes import evaluating
from trainforge.reporting import plots
from trainforge.reporting.curves import epoch_history

MISCLASSIFIED_MAX = 32


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
    """Writes the run's pictures and per-class metrics into `run_dir` (rank 0) and logs them."""

    def __init__(self, run_dir: Path, class_names: list[str] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.class_names = class_names
        self._logits: list[torch.Tensor] = []
        self._hook: Any = None
        self._summarised = False

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

    # ----------------------------------------------------------------- test end
    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        n = pl_module.num_classes
        self.metrics = MetricCollection(
            {
                "precision": MulticlassPrecision(n, average=None),
                "recall": MulticlassRecall(n, average=None),
                "f1": MulticlassF1Score(n, average=None),
                "confusion": MulticlassConfusionMatrix(n),
            }
        ).to(pl_module.device)
        self.wrong: list[tuple[torch.Tensor, int, int, float]] = []
        # The model's own forward in test_step gives the logits; no second pass over the data.
        self._hook = pl_module.register_forward_hook(lambda _m, _i, out: self._logits.append(out.detach()))

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int, *_: Any
    ) -> None:
        if not self._logits:
            return
        logits, self._logits = self._logits[-1], []
        x, y = batch[0], batch[1]
        self.metrics.update(logits, y)
        probs = logits.float().softmax(-1)
        conf, pred = probs.max(-1)
        for i in torch.nonzero(pred != y).flatten().tolist():
            if len(self.wrong) < MISCLASSIFIED_MAX:
                self.wrong.append((x[i].cpu(), int(y[i]), int(pred[i]), float(conf[i])))

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        values = self.metrics.compute()  # synced across ranks by torchmetrics
        if not trainer.is_global_zero:
            return
        names = self.class_names or getattr(trainer.datamodule, "class_names", None)
        names = list(names or [str(i) for i in range(pl_module.num_classes)])
        matrix = values["confusion"].cpu().numpy()
        with (self.run_dir / "per_class.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["class", "precision", "recall", "f1", "support"])
            for i, name in enumerate(names):
                row = [float(values[k][i]) for k in ("precision", "recall", "f1")]
                writer.writerow([name, *(f"{v:.6f}" for v in row), int(matrix[i].sum())])
        paths = {
            "confusion_matrix": plots.confusion_matrix(matrix, names, self.run_dir / "confusion_matrix.png"),
            "misclassified": plots.misclassified_grid(
                [w[0] for w in self.wrong],
                [w[1] for w in self.wrong],
                [w[2] for w in self.wrong],
                [w[3] for w in self.wrong],
                names,
                self.run_dir / "misclassified.png",
            ),
        }
        for key, path in paths.items():
            log_images(trainer.loggers, f"test/{key}", path)


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
    findings = diagnose(history, mode)
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
