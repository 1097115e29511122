"""Weight penalties and constraints: an L1 penalty on chosen parameters and a max-norm callback.

Weight decay is the optimizer's (AdamW/SGD, never on norms and biases); dropout, drop-path and label
smoothing are model arguments; gradient clipping and early stopping are the Trainer's and Lightning's.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatch

import lightning as L
import torch
from torch import nn


def select_parameters(
    module: nn.Module, patterns: Sequence[str], what: str
) -> list[tuple[str, nn.Parameter]]:
    """Parameters whose name matches one of the glob `patterns` (e.g. `head.*`, `*.weight`)."""
    chosen = [(n, p) for n, p in module.named_parameters() if any(fnmatch(n, pat) for pat in patterns)]
    if not chosen:
        some = ", ".join(n for n, _ in list(module.named_parameters())[:5])
        raise ValueError(f"{what}: no parameter name matches {list(patterns)} (names look like: {some}, ...)")
    return chosen


def l1_penalty(params: Sequence[tuple[str, nn.Parameter]], weight: float) -> torch.Tensor:
    """`weight * sum(|p|)` over the chosen parameters, added to the training loss."""
    return weight * sum(p.abs().sum() for _, p in params)  # type: ignore[return-value]


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


@torch.no_grad()
def fill_balanced_weights(loss_fn: nn.Module, datamodule: object, num_classes: int) -> None:
    """Set `loss_fn.weight` from the train split's class counts (saved with the model's state)."""
    from trainforge.data.sampling import balanced_class_weights, class_counts, dataset_labels

    datamodule.setup("fit")  # type: ignore[attr-defined]
    labels = dataset_labels(datamodule.splits.train)  # type: ignore[attr-defined]
    loss_fn.weight.copy_(balanced_class_weights(class_counts(labels, num_classes)))  # type: ignore[union-attr]
