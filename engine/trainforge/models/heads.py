"""Classifier heads for a pretrained backbone, their losses and metrics, and prior-based bias init."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MultilabelAccuracy,
    MultilabelF1Score,
)


def build_head(
    num_features: int, num_outputs: int, hidden: int | None = None, dropout: float = 0.0
) -> nn.Sequential:
    """Dropout -> Linear, or with `hidden`: Linear -> GELU -> Dropout -> Linear. The last layer is `[-1]`."""
    if num_outputs < 1:
        raise ValueError(f"a head needs at least one output, got num_outputs={num_outputs}")
    if not hidden:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(num_features, num_outputs))
    return nn.Sequential(
        nn.Linear(num_features, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, num_outputs)
    )


def init_bias_from_priors(linear: nn.Linear, priors: Sequence[float], multilabel: bool) -> None:
    """Start from the class frequencies: bias = log(p/(1-p)) for sigmoid, log(p) for softmax.

    Outputs beyond `len(priors)` (a head wider than the classes) get a bias far below the rest.
    """
    p = torch.as_tensor(priors, dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
    bias = torch.log(p / (1 - p)) if multilabel else torch.log(p)
    with torch.no_grad():
        linear.bias.fill_(float(bias.min()) - math.log(1e3))
        linear.bias[: len(bias)] = bias.to(linear.bias.dtype)


def build_loss(
    multilabel: bool, label_smoothing: float = 0.0, weight: torch.Tensor | None = None
) -> nn.Module:
    if multilabel:
        if weight is not None:
            raise ValueError(
                "model.class_weights apply to single-label cross-entropy, not to multilabel: true"
            )
        return nn.BCEWithLogitsLoss()
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)


def build_metrics(num_classes: int, multilabel: bool) -> MetricCollection:
    """`acc` and macro `f1`: multi-class, or multi-label (per-label at threshold 0.5)."""
    if multilabel:
        return MetricCollection(
            {
                "acc": MultilabelAccuracy(num_classes, average="micro"),
                "f1": MultilabelF1Score(num_classes, average="macro"),
            }
        )
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "f1": MulticlassF1Score(num_classes, average="macro"),
        }
    )


def class_priors(datamodule: object) -> list[float]:
    """Training class frequencies, from a DataModule that offers `class_priors()` (the image ones do)."""
    priors = getattr(datamodule, "class_priors", None)
    if priors is None:
        raise ValueError(
            f"model.bias_from_priors needs class frequencies, but {type(datamodule).__name__} has no "
            "class_priors(); use an image-folder/CSV DataModule or add the method"
        )
    return list(priors())
