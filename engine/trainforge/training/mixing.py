"""Mixup/CutMix (timm) for training batches, with the matching soft-target loss.

Validation and test never mix: the model calls `MixupLoss` from `training_step` only.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy


class MixupLoss:
    """Mixes a batch with timm's `Mixup` and scores it with `SoftTargetCrossEntropy`.

    Args:
        num_classes: Classes of the one-hot/smoothed targets.
        label_smoothing: Folded into the soft targets (timm's way), so the model's own is not added twice.
        options: Any `timm.data.Mixup` argument (`mixup_alpha`, `cutmix_alpha`, `prob`, `switch_prob`,
            `mode`...). Batches must be even-sized (the train loader drops the last partial batch).
    """

    def __init__(self, num_classes: int, label_smoothing: float, options: dict[str, Any]) -> None:
        options = {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, **options}
        try:
            self.mixup = Mixup(num_classes=num_classes, label_smoothing=label_smoothing, **options)
        except TypeError as err:
            raise ValueError(f"model.mixup: {err}; use timm.data.Mixup arguments") from err
        self.loss = SoftTargetCrossEntropy()

    def mix(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[0] % 2:
            x, y = x[:-1], y[:-1]  # timm mixes pairs; an odd last sample is dropped
        return self.mixup(x, y)

    def __call__(self, logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
        return self.loss(logits, soft_targets)
