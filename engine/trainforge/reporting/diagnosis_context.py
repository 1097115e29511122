"""What the diagnosis needs to know about a run: the scale of its errors and which keys it accepts."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

from lightning.pytorch import Trainer

from trainforge.argument_errors import init_arguments

# The error of always predicting the training mean, from the targets' std: E|x - mean| = std * sqrt(2/pi)
# for normal targets (a rule of thumb's scale, not an estimate that needs the targets themselves).
MEAN_PREDICTOR = {"mae": math.sqrt(2 / math.pi), "rmse": 1.0}


def error_scale(task: Any, monitor: str) -> float | None:
    """The monitored regression error of predicting the training mean; None for other tasks and metrics."""
    std = getattr(task, "std", None)
    if getattr(task, "kind", None) != "regression" or not std:
        return None
    spread = sum(std) / len(std)
    name = monitor.rsplit("/", 1)[-1]
    if name == "mse":
        return spread**2
    return spread * MEAN_PREDICTOR[name] if name in MEAN_PREDICTOR else None


def key_checker(trainer: Trainer) -> Callable[[str], bool]:
    """`accepts("model.hidden")`: the run's model, data or Trainer takes the key. `model.backbone` counts only
    when the model builds its backbone from it (the default timm hook, not overridden)."""
    from trainforge.models.model import Model  # the engine's base, to see whether the hook is overridden

    model, datamodule = trainer.lightning_module, trainer.datamodule
    groups = {
        "model": set(init_arguments(type(model))),
        "data": set(init_arguments(type(datamodule))) if datamodule is not None else set(),
        "trainer": set(inspect.signature(Trainer.__init__).parameters),
    }
    own_backbone = getattr(type(model), "build_backbone", None) is not Model.build_backbone

    def accepts(key: str) -> bool:
        group, _, name = key.partition(".")
        if key == "model.backbone" and own_backbone:
            return False
        return name in groups.get(group, set())

    return accepts
