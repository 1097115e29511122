"""What a model predicts: the task kind, declared once by the DataModule and read by everything else.

The DataModule sets `self.task` (e.g. `Multiclass(["cat", "dog"])`, `Regression(["price"])`); the CLI
links it into the model, which saves it in its checkpoint. Loss, metrics, the training metric, the
checkpoint's monitored key, reports, predictions (`make predict`, `predict`) and export all ask the task,
so data and model agree by construction. A project adds a kind by subclassing `Task` (a dataclass) and
setting it in its DataModule; `task_from_config` restores it by class path.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryF1Score,
    MulticlassAccuracy,
    MulticlassF1Score,
    MultilabelAccuracy,
    MultilabelF1Score,
)
from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError, R2Score

from trainforge.errors import TemplateError


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


def _fmt(value: float) -> str:
    return f"{value:.6f}"


@dataclass
class Multiclass(Task):
    """One class per sample: softmax over the classes, cross-entropy (soft targets accepted, for mixup)."""

    kind: ClassVar[str] = "multiclass"

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.names) < 2:
            raise TemplateError(
                f"a multiclass task needs at least 2 classes, got {self.names}; check that the data has one "
                "folder (or label value) per class, or declare Regression/Multilabel"
            )

    def build_loss(self, label_smoothing: float = 0.0, weight: torch.Tensor | None = None) -> nn.Module:
        return nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)

    def build_metrics(self) -> MetricCollection:
        n = self.num_outputs
        return MetricCollection(
            {
                "acc": MulticlassAccuracy(n, average="micro"),
                "bal_acc": MulticlassAccuracy(n, average="macro"),  # balanced accuracy: mean recall
                "f1": MulticlassF1Score(n, average="macro"),
            }
        )

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.float().softmax(-1)

    def train_values(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        hard = target.argmax(-1) if target.is_floating_point() and target.ndim > 1 else target
        return (outputs.argmax(-1) == hard).float()

    def prediction_header(self) -> list[str]:
        return ["pred", "pred_name", "confidence", *[f"prob_{n}" for n in self.names]]

    def prediction_rows(self, scores: torch.Tensor) -> list[list[str]]:
        conf, pred = scores.max(-1)
        return [
            [str(p), self.names[p], _fmt(c), *map(_fmt, row)]
            for p, c, row in zip(pred.tolist(), conf.tolist(), scores.tolist(), strict=True)
        ]

    def check_targets(self, targets: torch.Tensor, where: str) -> None:
        if targets.is_floating_point() and targets.ndim > 1:
            return  # soft targets
        bad = (targets < 0) | (targets >= self.num_outputs)
        if bool(bad.any()):
            index = int(bad.flatten().nonzero()[0])
            raise TemplateError(
                f"{where} has label {int(targets.flatten()[index])} (sample {index}), outside "
                f"0..{self.num_outputs - 1} for its {self.num_outputs} classes; {int(bad.sum())} sample(s) are "
                "affected. Fix the labels, or the class list so it covers every label."
            )


class _BCEWithTargetsAsFloat(nn.BCEWithLogitsLoss):
    """BCE that takes 0/1 integer targets too, shaped like the outputs."""

    def forward(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().forward(outputs, target.to(outputs.dtype).reshape(outputs.shape))


@dataclass
class Binary(Task):
    """Two classes, one logit: sigmoid, binary cross-entropy, AUROC; `names` = [negative, positive]."""

    threshold: float = 0.5
    kind: ClassVar[str] = "binary"

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.names) != 2:
            raise TemplateError(f"a binary task has 2 classes [negative, positive], got {self.names}")

    @property
    def num_outputs(self) -> int:
        return 1

    def build_loss(self, label_smoothing: float = 0.0, weight: torch.Tensor | None = None) -> nn.Module:
        if label_smoothing:
            raise TemplateError("model.label_smoothing applies to multiclass tasks, not to binary")
        pos_weight = (weight[1] / weight[0]).reshape(1) if weight is not None else None
        return _BCEWithTargetsAsFloat(pos_weight=pos_weight)

    def build_metrics(self) -> MetricCollection:
        return MetricCollection(
            {
                "acc": BinaryAccuracy(self.threshold),
                "f1": BinaryF1Score(self.threshold),
                "auroc": BinaryAUROC(),
            }
        )

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.float().reshape(-1).sigmoid()

    def metric_inputs(self, outputs: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return outputs.reshape(-1), target.reshape(-1).long()

    def train_values(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((outputs.reshape(-1) > 0) == target.reshape(-1).bool()).float()

    def prediction_header(self) -> list[str]:
        return ["pred", "pred_name", f"prob_{self.names[1]}"]

    def prediction_rows(self, scores: torch.Tensor) -> list[list[str]]:
        return [
            [str(int(p >= self.threshold)), self.names[int(p >= self.threshold)], _fmt(p)]
            for p in scores.tolist()
        ]

    def check_targets(self, targets: torch.Tensor, where: str) -> None:
        if bool(((targets != 0) & (targets != 1)).any()):
            raise TemplateError(
                f"{where}: a binary task needs targets 0 or 1, got {targets.unique()[:5].tolist()}"
            )


@dataclass
class Multilabel(Task):
    """Any set of labels per sample (multi-hot targets): a sigmoid per label, thresholded for decisions."""

    threshold: float = 0.5
    kind: ClassVar[str] = "multilabel"
    noun: ClassVar[str] = "labels"

    def build_loss(self, label_smoothing: float = 0.0, weight: torch.Tensor | None = None) -> nn.Module:
        if label_smoothing or weight is not None:
            what = "model.label_smoothing" if label_smoothing else "model.class_weights"
            raise TemplateError(
                f"{what} applies to single-label (multiclass/binary) tasks, not to multilabel"
            )
        return _BCEWithTargetsAsFloat()

    def build_metrics(self) -> MetricCollection:
        n = self.num_outputs
        return MetricCollection(
            {
                "acc": MultilabelAccuracy(n, threshold=self.threshold, average="micro"),
                "f1": MultilabelF1Score(n, threshold=self.threshold, average="macro"),
            }
        )

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.float().sigmoid()

    def metric_inputs(self, outputs: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return outputs, target.long()

    def train_values(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((outputs.sigmoid() > self.threshold) == target.bool()).float().mean(-1)

    def prediction_header(self) -> list[str]:
        return ["labels", *[f"prob_{n}" for n in self.names]]

    def prediction_rows(self, scores: torch.Tensor) -> list[list[str]]:
        rows = []
        for row in scores.tolist():
            labels = ";".join(n for n, p in zip(self.names, row, strict=True) if p >= self.threshold)
            rows.append([labels, *map(_fmt, row)])
        return rows

    def check_targets(self, targets: torch.Tensor, where: str) -> None:
        if targets.ndim != 2 or targets.shape[-1] != self.num_outputs:
            raise TemplateError(
                f"{where}: a multilabel task needs multi-hot targets of {self.num_outputs} labels per sample, "
                f"got shape {tuple(targets.shape)}"
            )


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


KINDS: dict[str, type[Task]] = {cls.kind: cls for cls in (Multiclass, Binary, Multilabel, Regression)}


def task_from_config(config: Task | dict[str, Any] | None, num_classes: int | None = None) -> Task:
    """A Task from itself, its `to_config()` dict (what checkpoints hold), or, for older configs, a class count."""
    if isinstance(config, Task):
        return config
    if isinstance(config, dict) and "class_path" in config:
        module, _, name = config["class_path"].rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        return cls(**config.get("init_args", {}))
    if config is None and num_classes is not None:
        return Multiclass([str(i) for i in range(num_classes)])
    raise TemplateError(
        f"no task: the model needs the data's task (linked by the CLI) or num_classes; got {config!r}"
    )


def regression_scale(targets: Sequence[float] | torch.Tensor) -> dict[str, list[float]]:
    """`mean`/`std` of training targets for `Regression(..., **regression_scale(train_targets))`."""
    t = torch.as_tensor(targets, dtype=torch.float64)
    t = t.reshape(len(t), -1)
    std = t.std(0).clamp_min(1e-12)
    return {"mean": t.mean(0).tolist(), "std": std.tolist()}


__all__ = [
    "Binary",
    "Multiclass",
    "Multilabel",
    "Regression",
    "Task",
    "regression_scale",
    "task_from_config",
]
