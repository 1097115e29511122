"""Writes `predict` outputs as a CSV: id, predicted class, one probability column per class."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter


class PredictionWriter(BasePredictionWriter):
    """Collects every predict batch and writes one CSV at the end (rank 0 gathers under DDP)."""

    def __init__(self, path: Path) -> None:
        super().__init__(write_interval="epoch")
        self.path = Path(path)

    def write_on_epoch_end(
        self, trainer: Trainer, pl_module: LightningModule, predictions: Sequence[Any], batch_indices: Any
    ) -> None:
        outputs = predictions[0] if predictions and isinstance(predictions[0], list) else predictions
        probs = torch.cat([o["probs"] for o in outputs]).float().cpu()
        dataloader = trainer.predict_dataloaders
        dataset = dataloader.dataset if not isinstance(dataloader, list) else dataloader[0].dataset
        ids = getattr(dataset, "ids", None) or list(range(len(probs)))
        names = getattr(trainer.datamodule, "class_names", None) or [str(i) for i in range(probs.shape[1])]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "pred", "pred_name", *[f"prob_{n}" for n in names]])
            for sample_id, row in zip(ids, probs.tolist(), strict=True):
                pred = max(range(len(row)), key=row.__getitem__)
                writer.writerow([sample_id, pred, names[pred], *(f"{p:.6f}" for p in row)])
