"""Model and data classes that fail on purpose, for the tests of clear errors (used as CLI class paths)."""

from __future__ import annotations

from typing import Any

import torch

from trainforge.data.datamodule import Splits
from trainforge.data.digits import DigitsDataModule
from trainforge.models import ImageClassifier


class NaNClassifier(ImageClassifier):
    """The loss is NaN at the given global steps."""

    def __init__(self, *args: Any, nan_at_steps: list[int] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.nan_at_steps = set(nan_at_steps or [])

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = super().training_step(batch, batch_idx)
        return loss * float("nan") if self.global_step in self.nan_at_steps else loss


class OOMClassifier(ImageClassifier):
    """Raises the error PyTorch raises when the GPU memory is exhausted."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


class BadLabelDigits(DigitsDataModule):
    """Digits whose validation split has one label (12) outside the 10 classes."""

    def build_datasets(self) -> Splits:
        splits = super().build_datasets()
        splits.val.tensors[1][3] = 12  # type: ignore[union-attr]
        return splits
