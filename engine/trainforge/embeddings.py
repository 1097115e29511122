"""`predict --data.predict_embeddings=true`: pooled backbone features of every input to embeddings.npz.

A data option, not a model one: with `--ckpt_path`, LightningCLI re-applies the checkpoint's model
arguments over the command line, so a model switch given at predict time would be lost.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from trainforge.rundir import RUN_DIR_ENV


class EmbeddingWriter(BasePredictionWriter):
    """Writes `embeddings` (N x D float32) and `ids` (file paths or indices) beside predictions.csv."""

    def __init__(self, path: Path | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.path = path

    def write_on_epoch_end(
        self, trainer: Trainer, pl_module: LightningModule, predictions: Sequence[Any], batch_indices: Any
    ) -> None:
        if not getattr(trainer.datamodule, "predict_embeddings", False):
            return
        outputs = predictions[0] if predictions and isinstance(predictions[0], list) else predictions
        features = torch.cat([o["embeddings"] for o in outputs]).float().cpu().numpy()
        dataloader = trainer.predict_dataloaders
        dataset = dataloader.dataset if not isinstance(dataloader, list) else dataloader[0].dataset
        ids = getattr(dataset, "ids", None) or list(range(len(features)))
        path = self.path or Path(os.environ.get(RUN_DIR_ENV, trainer.default_root_dir)) / "embeddings.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, embeddings=features.astype(np.float32), ids=np.asarray([str(i) for i in ids]))
        print(f"embeddings: {path} {features.shape}")
