"""The task base class: what every kind tells the engine (loss, metrics, scores, prediction columns)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torchmetrics import MetricCollection

from trainforge.errors import TemplateError


def fmt(value: float) -> str:
    return f"{value:.6f}"


@dataclass
class Task:
    """Base of the task kinds. `names`: the classes, labels or regression targets, in output order."""

    names: list[str]
    kind: ClassVar[str] = "task"
    # Which optional features can apply (each one refuses in one line at start-up where it cannot).
    classification: ClassVar[bool] = True  # class balance, class weights, confusion matrix
    monitor: ClassVar[tuple[str, str]] = ("val/acc", "max")  # the checkpoint's key and mode by default
    train_metric: ClassVar[str] = "acc"  # logged as train/<name> from `train_values`

    def __post_init__(self) -> None:
        self.names = [str(n) for n in self.names]
        if not self.names:
            raise TemplateError(f"{type(self).__name__} needs at least one name (class, label or target)")

    @property
    def num_outputs(self) -> int:
        return len(self.names)

    def build_loss(self, label_smoothing: float = 0.0, weight: torch.Tensor | None = None) -> nn.Module:
        raise NotImplementedError

    def build_metrics(self) -> MetricCollection:
        raise NotImplementedError

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        """What predictions report: probabilities, or values in the targets' units."""
        raise NotImplementedError

    def metric_inputs(self, outputs: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(predictions, targets) as this task's metrics take them: one output per sample shaped as the target."""
        return (outputs.reshape(target.shape) if outputs.numel() == target.numel() else outputs), target

    def train_values(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-sample values whose running mean is `train/<train_metric>` (no metric state sync per step)."""
        raise NotImplementedError

    def prediction_header(self) -> list[str]:
        raise NotImplementedError

    def prediction_rows(self, scores: torch.Tensor) -> list[list[str]]:
        raise NotImplementedError

    def check_targets(self, targets: torch.Tensor, where: str) -> None:
        """Refuse targets this task cannot learn, naming `where` (a split of a DataModule)."""

    def to_config(self) -> dict[str, Any]:
        cls = type(self)
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": asdict(self)}

    noun: ClassVar[str] = "classes"

    def describe(self) -> str:
        return f"{self.kind} ({len(self.names)} {self.noun})"
