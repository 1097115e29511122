"""Predictions as a CSV, in the task's own columns (classes with probabilities, label sets, or values),
the one format of `predict` and of `make predict` (tools/predict.py); pooled features to embeddings.npz
when the DataModule asks (`predict_embeddings`).

A data option, not a model one: with `--ckpt_path`, LightningCLI re-applies the checkpoint's model
arguments over the command line, so a model switch given at predict time would be lost.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from trainforge.rundir import RunDir
from trainforge.tasks import Task


class PredictionWriter(BasePredictionWriter):
    """Collects every predict batch and writes the run's predictions.csv (and embeddings.npz) at the end."""

    def __init__(self, run: RunDir) -> None:
        super().__init__(write_interval="epoch")
        self.run = run

    def write_on_epoch_end(
        self, trainer: Trainer, pl_module: LightningModule, predictions: Sequence[Any], batch_indices: Any
    ) -> None:
        outputs = predictions[0] if predictions and isinstance(predictions[0], list) else predictions
        dataloader = trainer.predict_dataloaders
        dataset = dataloader.dataset if not isinstance(dataloader, list) else dataloader[0].dataset
        scores = torch.cat([o["scores"] for o in outputs]).float().cpu()
        ids = list(getattr(dataset, "ids", None) or range(len(scores)))
        write_predictions(self.run.predictions, ids, scores, pl_module.task)
        if getattr(trainer.datamodule, "predict_embeddings", False):
            features = torch.cat([o["embeddings"] for o in outputs]).float().cpu().numpy()
            np.savez(self.run.embeddings, embeddings=features, ids=np.asarray([str(i) for i in ids]))
            print(f"embeddings: {self.run.embeddings} {features.shape}")


def write_predictions(
    path: Path, ids: Sequence[Any], scores: torch.Tensor, task: Task, id_name: str = "id"
) -> Path:
    """`id` (or the input table's id column, `id_name`) then the task's columns, one row per sample."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([id_name, *task.prediction_header()])
        for sample_id, row in zip(ids, task.prediction_rows(scores), strict=True):
            writer.writerow([sample_id, *row])
    return path
