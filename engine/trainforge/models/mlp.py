"""MLP: a multilayer perceptron on a feature vector, the engine's model for tables (`EXPERIMENT=table`)."""

from __future__ import annotations

from typing import Any

from torch import nn

from trainforge.errors import ConfigError
from trainforge.models.model import Model


class MLP(Model):
    """`depth` hidden layers of width `hidden` (GELU, dropout) on the DataModule's `input_shape` vector,
    then the Model's head for the data's task.

    Args:
        hidden: Width of each hidden layer.
        depth: Number of hidden layers.
        dropout: Dropout after each hidden layer.
        Other arguments: Model's (optimizer, schedule, head, loss options); `backbone` is not used.
    """

    def __init__(self, hidden: int = 64, depth: int = 2, dropout: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hidden, self.depth, self.dropout = hidden, depth, dropout

    def build_backbone(self) -> nn.Module:
        shape = self.hparams.input_shape  # declared by the DataModule, linked by the CLI
        if not shape or len(shape) != 1:
            raise ConfigError(f"model MLP takes a feature vector; the data declares input_shape={shape}")
        layers: list[nn.Module] = []
        width = shape[0]
        for _ in range(self.depth):
            layers += [nn.Linear(width, self.hidden), nn.GELU(), nn.Dropout(self.dropout)]
            width = self.hidden
        net = nn.Sequential(*layers)
        net.num_features = width  # the engine's one requirement on a backbone
        return net
