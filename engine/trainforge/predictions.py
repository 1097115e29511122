"""Predictions as a CSV (id, predicted class and name, confidence, one probability column per class),
the one format of `predict` and of `make predict` (template/ensemble.py)."""

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
        write_predictions(self.path, ids, probs, names)


def write_predictions(path: Path, ids: Sequence[str], probs: torch.Tensor, names: Sequence[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    conf, pred = probs.max(-1)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "pred", "pred_name", "confidence", *[f"prob_{n}" for n in names]])
        for sample_id, p, c, row in zip(ids, pred.tolist(), conf.tolist(), probs.tolist(), strict=True):
            writer.writerow([sample_id, p, names[p], f"{c:.6f}", *(f"{v:.6f}" for v in row)])
    return path
