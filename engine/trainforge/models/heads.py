"""Heads for a backbone's pooled features, and an output bias started at the training class frequencies."""

from __future__ import annotations

import math

import torch
from torch import nn

from trainforge.tasks import Binary, Multilabel, Task


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


def class_priors(datamodule: object, task: Task) -> torch.Tensor:
    """Training frequencies of what each output predicts: classes, labels, or the positive class."""
    from trainforge.data.sampling import dataset_labels

    datamodule.setup("fit")  # type: ignore[attr-defined]
    labels = dataset_labels(datamodule.raw.train).float()  # type: ignore[attr-defined]
    if isinstance(task, (Multilabel, Binary)):
        return labels.reshape(len(labels), -1).mean(0)
    return torch.bincount(labels.long(), minlength=len(task.names)).double() / len(labels)


def init_bias_from_priors(linear: nn.Linear, priors: torch.Tensor, task: Task) -> None:
    """Start from the frequencies: bias = log(p/(1-p)) for sigmoid outputs, log(p) for softmax.

    Outputs beyond `len(priors)` (a head wider than the classes) get a bias far below the rest.
    """
    p = torch.as_tensor(priors, dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
    bias = torch.log(p / (1 - p)) if isinstance(task, (Multilabel, Binary)) else torch.log(p)
    with torch.no_grad():
        linear.bias.fill_(float(bias.min()) - math.log(1e3))
        linear.bias[: len(bias)] = bias.to(linear.bias.dtype)
