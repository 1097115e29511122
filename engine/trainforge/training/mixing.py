"""Mixup/CutMix (timm's `Mixup`) on training batches: a training component, config key `mixup`.

Validation and test never mix. The mixed targets are class probabilities, which the multiclass task's
cross-entropy takes as they are; label smoothing stays the model's (`model.label_smoothing`), applied by
that loss to the mixed targets (the same targets timm's own smoothing would give).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from timm.data import Mixup as TimmMixup

from trainforge.tasks import Multiclass
from trainforge.training.components import TrainingComponent, refuse


class Mixup(TrainingComponent):
    """Mixup and/or CutMix of training batches (multiclass tasks; CutMix needs image batches).

    Off while both alphas are 0. Batches must be even-sized: an odd last sample is dropped.

    Args:
        mixup_alpha: Beta(alpha, alpha) mixing of whole inputs (e.g. 0.2).
        cutmix_alpha: Beta(alpha, alpha) area of the pasted box (e.g. 1.0).
        prob: Probability of mixing a batch at all.
        switch_prob: With both on, the probability of CutMix instead of Mixup.
        mode: `batch`, `pair` or `elem` (timm).
        cutmix_minmax: Box size range as fractions of the image, instead of `cutmix_alpha`.
    """

    key = "mixup"
    soft_targets = True

    def __init__(
        self,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        mode: str = "batch",
        cutmix_minmax: list[float] | None = None,
    ) -> None:
        self.options: dict[str, Any] = {
            "mixup_alpha": mixup_alpha,
            "cutmix_alpha": cutmix_alpha,
            "prob": prob,
            "switch_prob": switch_prob,
            "mode": mode,
            "cutmix_minmax": cutmix_minmax,
        }
        self.mixup: TimmMixup | None = None

    @property
    def active(self) -> bool:
        o = self.options
        return bool(o["mixup_alpha"] or o["cutmix_alpha"] or o["cutmix_minmax"])

    def check(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        task = module.task
        if not isinstance(task, Multiclass):
            raise refuse("mixup", f"mixed targets are class probabilities, and this is a {task.kind} task",
                         "set mixup.mixup_alpha and mixup.cutmix_alpha to 0")  # fmt: skip
        cutmix = self.options["cutmix_alpha"] or self.options["cutmix_minmax"]
        if cutmix:
            sample = trainer.datamodule.view("train")[0][0]
            if not isinstance(sample, torch.Tensor) or sample.ndim != 3:
                shape = tuple(sample.shape) if isinstance(sample, torch.Tensor) else type(sample).__name__
                raise refuse("mixup.cutmix_alpha", f"CutMix pastes image boxes, and the inputs are {shape}",
                             "set it to 0 (mixup_alpha mixes any input)")  # fmt: skip
        try:
            self.mixup = TimmMixup(num_classes=len(task.names), label_smoothing=0.0, **self.options)
        except (TypeError, ValueError, AssertionError) as err:
            raise refuse("mixup", str(err), "use timm.data.Mixup arguments") from err

    def transform_batch(
        self, module: L.LightningModule, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.mixup is not None
        if x.shape[0] % 2:
            x, y = x[:-1], y[:-1]  # timm mixes pairs; an odd last sample is dropped
        return self.mixup(x, y)
