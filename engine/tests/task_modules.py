"""Small data and model classes for the task and interface tests (used as CLI class paths)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torchvision
from torch import nn
from torch.utils.data import TensorDataset
from torchmetrics import MetricCollection
from torchmetrics.regression import MeanAbsoluteError

from trainforge.data import DataModule, Splits
from trainforge.models import Model
from trainforge.tasks import Binary, Regression, Task, regression_scale


def _vectors(n: int, features: int, seed: int) -> torch.Tensor:
    return torch.randn(n, features, generator=torch.Generator().manual_seed(seed))


class TinyRegression(DataModule):
    """y = x . w + noise, 5 features; 160/40/40 samples."""

    def __init__(self, batch_size: int = 16, num_workers: int = 0, **kwargs: Any) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, **kwargs)
        x = _vectors(240, 5, 0)
        self.x, self.y = x, 100 + 20 * (x @ torch.tensor([1.0, -2.0, 0.5, 0.0, 1.5])) + torch.randn(240)
        self.task = Regression(["y"], **regression_scale(self.y[:160]))
        self.input_shape = [5]

    def build_datasets(self) -> Splits:
        return Splits(
            *(TensorDataset(self.x[s], self.y[s]) for s in (slice(0, 160), slice(160, 200), slice(200, 240)))
        )


class TinyBinary(TinyRegression):
    """The same vectors, class 1 when y is above its median."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.y = (self.y > self.y.median()).long()
        self.task = Binary(["low", "high"])


class VectorModel(Model):
    """An MLP on feature vectors: the model hook with a module of one's own."""

    def build_backbone(self) -> nn.Module:
        net = nn.Sequential(nn.Linear(self.hparams.input_shape[0], 32), nn.ReLU())
        net.num_features = 32
        return net


class TorchvisionModel(Model):
    """torchvision's resnet18 as the backbone: no timm stages, no pretrained input config."""

    def build_backbone(self) -> nn.Module:
        net = torchvision.models.resnet18(num_classes=10)
        net.conv1 = nn.Conv2d(self.hparams.in_chans, 64, 7, 2, 3, bias=False)
        net.fc = nn.Identity()
        net.num_features = 512
        return net


class NoWidthModel(Model):
    """A backbone without `num_features`: the start-up error must say how to declare it."""

    def build_backbone(self) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(8))


@dataclass
class Counts(Task):
    """A task kind of a project's own: event counts, a Poisson loss on a log-rate output."""

    kind: ClassVar[str] = "counts"
    noun: ClassVar[str] = "rates"
    classification: ClassVar[bool] = False
    monitor: ClassVar[tuple[str, str]] = ("val/mae", "min")
    train_metric: ClassVar[str] = "mae"

    def build_loss(self, label_smoothing: float = 0.0, weight: torch.Tensor | None = None) -> nn.Module:
        return _Poisson()

    def build_metrics(self) -> MetricCollection:
        return MetricCollection({"mae": MeanAbsoluteError()})

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.float().reshape(-1).exp()

    def train_values(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (self.scores(outputs) - target.float()).abs()

    def prediction_header(self) -> list[str]:
        return ["rate"]

    def prediction_rows(self, scores: torch.Tensor) -> list[list[str]]:
        return [[f"{v:.6f}"] for v in scores.tolist()]


class _Poisson(nn.PoissonNLLLoss):
    def forward(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().forward(outputs.reshape(-1), target.float())


class TinyCounts(TinyRegression):
    """Counts drawn around exp(x . w / 4)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        rate = (self.x @ torch.tensor([0.5, -0.5, 0.25, 0.0, 0.25])).exp()
        self.y = torch.poisson(rate, generator=torch.Generator().manual_seed(1))
        self.task = Counts(["events"])


class NoTestBinary(TinyBinary):
    """Train and validation only: the final pictures come from the validation split."""

    def build_datasets(self) -> Splits:
        splits = super().build_datasets()
        return Splits(train=splits.train, val=splits.val)
