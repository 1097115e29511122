"""Real-valued targets: a regression on standardised targets, reported in the targets' own units."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError, R2Score

from trainforge.errors import TemplateError
from trainforge.tasks.base import Task
from trainforge.tasks.base import fmt as _fmt


@dataclass
class Regression(Task):
    """Real-valued targets (`names`: one per output). `mean`/`std` (per target, from the training split)
    standardise the targets for the loss; predictions and metrics are in the targets' own units."""

    mean: list[float] | None = None
    std: list[float] | None = None
    loss: str = "mse"
    kind: ClassVar[str] = "regression"
    noun: ClassVar[str] = "targets"
    classification: ClassVar[bool] = False
    monitor: ClassVar[tuple[str, str]] = ("val/mae", "min")
    train_metric: ClassVar[str] = "mae"
    LOSSES: ClassVar[dict[str, type[nn.Module]]] = {"mse": nn.MSELoss, "l1": nn.L1Loss, "huber": nn.HuberLoss}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss not in self.LOSSES:
            raise TemplateError(f"Regression.loss: use one of {', '.join(self.LOSSES)}, got '{self.loss}'")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None and len(value) != len(self.names):
                raise TemplateError(
                    f"Regression.{name}: one value per target ({len(self.names)}), got {value}"
                )

    def _scale(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.mean or [0.0] * len(self.names), dtype=like.dtype, device=like.device)
        std = torch.tensor(self.std or [1.0] * len(self.names), dtype=like.dtype, device=like.device)
        return mean, std

    def values(self, outputs: torch.Tensor) -> torch.Tensor:
        """Outputs in the targets' units, shaped (N,) for one target, (N, k) for several."""
        mean, std = self._scale(outputs.float())
        values = outputs.float() * std + mean
        return values.reshape(-1) if len(self.names) == 1 else values

    def build_loss(self, label_smoothing: float = 0.0, weight: torch.Tensor | None = None) -> nn.Module:
        if label_smoothing or weight is not None:
            what = "model.label_smoothing" if label_smoothing else "model.class_weights"
            raise TemplateError(f"{what} applies to classification tasks, not to regression")
        return _StandardisedLoss(self, self.LOSSES[self.loss]())

    def build_metrics(self) -> MetricCollection:
        k = len(self.names)
        return MetricCollection(
            {
                "mse": MeanSquaredError(num_outputs=k),
                "mae": MeanAbsoluteError(num_outputs=k) if k > 1 else MeanAbsoluteError(),
                "r2": R2Score(multioutput="uniform_average") if k > 1 else R2Score(),
            }
        )

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        return self.values(outputs)

    def metric_inputs(self, outputs: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values = self.values(outputs)
        return values, target.float().reshape(values.shape)

    def train_values(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        error = (self.values(outputs.detach()) - target.float().reshape(self.values(outputs).shape)).abs()
        return error if error.ndim == 1 else error.mean(-1)

    def prediction_header(self) -> list[str]:
        return list(self.names)

    def prediction_rows(self, scores: torch.Tensor) -> list[list[str]]:
        scores = scores.reshape(len(scores), -1)
        return [[_fmt(v) for v in row] for row in scores.tolist()]

    def check_targets(self, targets: torch.Tensor, where: str) -> None:
        if not targets.is_floating_point():
            raise TemplateError(
                f"{where}: a regression task needs float targets, got {targets.dtype} (integer class labels? "
                "then declare Multiclass/Binary)"
            )
        per_sample = 1 if targets.ndim == 1 else targets.shape[-1]
        if per_sample != len(self.names):
            raise TemplateError(
                f"{where}: {per_sample} target value(s) per sample but the task names {len(self.names)} "
                f"({self.names})"
            )


class _StandardisedLoss(nn.Module):
    """The regression loss on standardised targets, so one learning rate fits targets of any scale."""

    def __init__(self, task: Regression, loss: nn.Module) -> None:
        super().__init__()
        self.task = task
        self.loss = loss

    def forward(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mean, std = self.task._scale(outputs)
        target = target.to(outputs.dtype).reshape(len(target), -1)
        return self.loss(outputs.reshape(len(outputs), -1), (target - mean) / std)


def regression_scale(targets: Sequence[float] | torch.Tensor) -> dict[str, list[float]]:
    """`mean`/`std` of training targets for `Regression(..., **regression_scale(train_targets))`."""
    t = torch.as_tensor(targets, dtype=torch.float64)
    t = t.reshape(len(t), -1)
    std = t.std(0).clamp_min(1e-12)
    return {"mean": t.mean(0).tolist(), "std": std.tolist()}
