"""Weight penalties and constraints: an L1 penalty on chosen parameters (a training component) and a
max-norm callback.

Weight decay is the optimizer's (AdamW/SGD, never on norms and biases); dropout, drop-path and label
smoothing are model arguments; gradient clipping and early stopping are the Trainer's and Lightning's.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatch

import lightning as L
import torch
from torch import nn

from trainforge.errors import ConfigError
from trainforge.training.components import TrainingComponent


def select_parameters(
    module: nn.Module, patterns: Sequence[str], what: str
) -> list[tuple[str, nn.Parameter]]:
    """Parameters whose name matches one of the glob `patterns` (e.g. `head.*`, `*.weight`)."""
    chosen = [(n, p) for n, p in module.named_parameters() if any(fnmatch(n, pat) for pat in patterns)]
    if not chosen:
        some = ", ".join(n for n, _ in list(module.named_parameters())[:5])
        raise ConfigError(
            f"{what}: no parameter name matches {list(patterns)} (names look like: {some}, ...)"
        )
    return chosen


def l1_penalty(params: Sequence[tuple[str, nn.Parameter]], weight: float) -> torch.Tensor:
    """`weight * sum(|p|)` over the chosen parameters, added to the training loss."""
    return weight * sum(p.abs().sum() for _, p in params)  # type: ignore[return-value]


class L1Penalty(TrainingComponent):
    """An L1 penalty on chosen parameters, added to the training loss and logged as `train/l1`.

    A training component (config key `l1`): it adds to whatever loss the model and the other components
    (distillation) computed. Off while `weight` is 0.

    Args:
        weight: Multiplier of the sum of absolute values.
        params: Glob patterns of parameter names (e.g. `["head.*"]`).
    """

    key = "l1"

    def __init__(self, weight: float = 0.0, params: list[str] | None = None) -> None:
        if weight < 0:
            raise ValueError(f"l1.weight must be >= 0, got {weight}")
        self.weight = weight
        self.patterns = params or ["*"]
        self._params: list[tuple[str, nn.Parameter]] = []

    @property
    def active(self) -> bool:
        return self.weight > 0

    def check(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._params = select_parameters(module, self.patterns, "l1.params")

    def adjust_loss(
        self,
        module: L.LightningModule,
        x: torch.Tensor,
        y: torch.Tensor,
        outputs: torch.Tensor,
        loss: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        penalty = l1_penalty(self._params, self.weight)
        return loss + penalty, {"l1": penalty}


class MaxNorm(L.Callback):
    """Max-norm constraint (Srebro & Shraibman; used with dropout by Srivastava et al.).

    After every optimizer step, each output unit's incoming weight vector (row of a Linear weight, filter
    of a conv) of the matched parameters is rescaled to norm at most `max_norm`. Written by hand: neither
    torch nor Lightning ship a max-norm constraint (torch's renorm does the maths, used here).

    Args:
        max_norm: The bound on the L2 norm of each unit's weights.
        params: Glob patterns of parameter names (e.g. `["head.*.weight"]`).
    """

    def __init__(self, max_norm: float = 3.0, params: list[str] | None = None) -> None:
        if max_norm <= 0:
            raise ValueError(f"MaxNorm.max_norm must be positive, got {max_norm}")
        self.max_norm = max_norm
        self.patterns = params or ["head.*.weight"]
        self._params: list[tuple[str, nn.Parameter]] = []

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        pl_module.configure_model()  # the model builds its modules lazily
        chosen = select_parameters(pl_module, self.patterns, "MaxNorm.params")
        self._params = [(n, p) for n, p in chosen if p.dim() > 1]  # biases and norm scales have no rows
        if not self._params:
            raise ValueError(f"MaxNorm.params {self.patterns}: only 1-d parameters matched; choose weights")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        for _, p in self._params:
            p.copy_(torch.renorm(p, 2, 0, self.max_norm))


def class_weight_tensor(class_weights: list[float] | str | None, num_classes: int) -> torch.Tensor | None:
    """The loss's weight buffer: the given list, ones to be filled at fit start for "balanced", or None."""
    if class_weights is None:
        return None
    if class_weights == "balanced":
        return torch.ones(num_classes)
    if isinstance(class_weights, str) or len(class_weights) != num_classes:
        raise ValueError(
            f"model.class_weights: give 'balanced' or a list of {num_classes} numbers, got {class_weights!r}"
        )
    return torch.tensor(class_weights, dtype=torch.float32)


def balanced_weights(datamodule: object, num_classes: int) -> torch.Tensor:
    """`n / (k * n_c)` from the training split's class counts (scikit-learn's "balanced")."""
    from trainforge.data.sampling import balanced_class_weights, class_counts, dataset_labels

    datamodule.setup("fit")  # type: ignore[attr-defined]
    labels = dataset_labels(datamodule.raw.train)  # type: ignore[attr-defined]
    return balanced_class_weights(class_counts(labels.long().tolist(), num_classes))
