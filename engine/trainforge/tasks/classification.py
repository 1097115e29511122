"""Classification kinds: one class per sample (multiclass, binary) or a set of labels (multilabel)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

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

from trainforge.errors import TemplateError
from trainforge.tasks.base import Task
from trainforge.tasks.base import fmt as _fmt


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
