"""Head initialisation by a linear probe: logistic regression on the frozen backbone's pooled features.

LP-FT (Kumar et al., 2022): starting the fine-tune from a fitted head keeps the first gradients from
distorting the pretrained features; one L-BFGS fit is cheaper than a frozen training epoch and does
not depend on how many SGD steps a small data set allows (docs/transfer-learning.md, docs/recipe-study.md).
Written here because no kept library fits a torch head in place (sklearn would need a copy round-trip).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torch.utils.data import DataLoader, Dataset

from trainforge.data.datamodule import DataModule
from trainforge.training.modes import evaluating


@torch.no_grad()
def extract_features(
    backbone: nn.Module, dataset: Dataset, batch_size: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features and labels of `dataset` (eval mode; each submodule's mode is restored after)."""
    device = next(backbone.parameters()).device
    feats, labels = [], []
    with evaluating(backbone):
        for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            feats.append(backbone(x.to(device)).float())
            labels.append(torch.as_tensor(y).to(device))
    return torch.cat(feats), torch.cat(labels)


def fit_linear_probe(
    linear: nn.Linear,
    features: torch.Tensor,
    labels: torch.Tensor,
    loss_fn: nn.Module | None = None,
    c: float = 0.1,
    max_iter: int = 500,
) -> float:
    """Logistic regression (L2 = 1/(C*N) on the weights, as sklearn's C) with the task's loss (default:
    multinomial cross-entropy; a sigmoid loss for binary and multilabel tasks); writes `linear`."""
    loss_fn = loss_fn if loss_fn is not None else nn.CrossEntropyLoss()
    weight = torch.zeros_like(linear.weight, dtype=torch.float32, requires_grad=True)
    bias = torch.zeros_like(linear.bias, dtype=torch.float32, requires_grad=True)
    lam = 1.0 / (c * len(labels))
    optimizer = torch.optim.LBFGS([weight, bias], lr=1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        return loss_fn(features @ weight.T + bias, labels) + 0.5 * lam * weight.pow(2).sum()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)  # returns the loss before the fit, so the fitted one is computed below
    with torch.no_grad():
        loss = objective()
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)
    return float(loss)


def _rank(
    head: nn.Linear, task: Any, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[float, float]:
    """(-metric, loss) of the fitted `head` on (x, y): lower is better."""
    with torch.no_grad():
        outputs = x @ head.weight.T.float() + head.bias.float()
        return -float(task.train_values(outputs, y).mean()), float(loss_fn(outputs, y))


def cross_validate_c(
    head: nn.Linear, x: torch.Tensor, y: torch.Tensor, loss_fn: nn.Module, task: Any,
    candidates: Sequence[float], folds: int,
) -> dict[float, tuple[float, float]]:  # fmt: skip
    """Mean (-metric, loss) of every C over stratified `folds`-fold cross-validation of (x, y) (seeded: the
    same folds in every run; plain folds for multilabel targets, which cannot be stratified)."""
    from sklearn.model_selection import KFold, StratifiedKFold

    labels = y.cpu().numpy()
    splitter = (
        StratifiedKFold(folds, shuffle=True, random_state=0)
        if labels.ndim == 1
        else KFold(folds, shuffle=True, random_state=0)
    )
    ranks: dict[float, list[tuple[float, float]]] = {c: [] for c in candidates}
    for fit_idx, held_idx in splitter.split(
        labels.reshape(len(labels), -1), labels if labels.ndim == 1 else None
    ):
        fit_idx, held_idx = (
            torch.as_tensor(fit_idx, device=x.device),
            torch.as_tensor(held_idx, device=x.device),
        )
        for c in candidates:
            fit_linear_probe(head, x[fit_idx], y[fit_idx], loss_fn, c)
            ranks[c].append(_rank(head, task, loss_fn, x[held_idx], y[held_idx]))
    return {c: (sum(r[0] for r in v) / len(v), sum(r[1] for r in v) / len(v)) for c, v in ranks.items()}


def init_head_by_linear_probe(
    model: nn.Module, datamodule: DataModule, c: float | Sequence[float] = 0.1, cv_folds: int = 0
) -> dict[str, Any]:
    """Fit `model.head[-1]` on the training split seen through the eval transform, with the task's loss.

    Several `c` values: each is fitted and the one with the best validation metric (then lowest validation
    loss) is kept; validation is the selection split, never the reported one. With `cv_folds`, C is chosen
    by cross-validation on the training split instead (the selection split then plays no part in the
    probe), and the chosen C's cross-validated metric is reported as `cv/acc`. The probe's metrics on every
    split are returned (and printed): the test figure is what the fine-tune must beat, reported, not used.
    """
    task, head = model.task, model.head[-1]
    loss_fn = task.build_loss().to(model.device)
    splits = {s: datamodule.eval_view(s) for s in ("train", "val", "test")}
    features = {s: extract_features(model.backbone, d) for s, d in splits.items() if d is not None}
    candidates = [float(c)] if isinstance(c, (int, float)) else [float(v) for v in c]
    cv: dict[float, tuple[float, float]] = {}
    if cv_folds:
        cv = cross_validate_c(head, *features["train"], loss_fn, task, candidates, cv_folds)
        chosen = min(cv, key=lambda value: (cv[value], value))
        fit_linear_probe(head, *features["train"], loss_fn, chosen)
        selected_on = f"{cv_folds}-fold cross-validation on train"
    else:
        fitted: list[tuple[tuple[float, float], float, dict[str, torch.Tensor]]] = []
        for value in candidates:
            fit_linear_probe(head, *features["train"], loss_fn, value)
            rank = _rank(head, task, loss_fn, *features["val"]) if "val" in features else (0.0, 0.0)
            fitted.append((rank, value, {k: v.detach().clone() for k, v in head.state_dict().items()}))
        _, chosen, state = min(fitted, key=lambda item: item[0])
        head.load_state_dict(state)
        selected_on = "val" if "val" in features else None
    report: dict[str, Any] = {"c": chosen, "selected_on": selected_on}
    if cv:
        report["cv/acc"] = round(-cv[chosen][0], 6)
    for split, (x, y) in features.items():
        metrics = task.build_metrics().to(model.device)
        with torch.no_grad():
            metrics.update(*task.metric_inputs(x @ head.weight.T.float() + head.bias.float(), y))
        report.update({f"{split}/{k}": round(float(v), 6) for k, v in metrics.compute().items()})
    if "val/acc" in report and "test/acc" in report:  # C was picked on val: how much that flattered the probe
        report["optimism"] = round(report["val/acc"] - report["test/acc"], 6)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in report.items() if k.endswith(("/acc", "/mae")))
    rank_zero_info(
        f"head initialised by a linear probe (C={chosen}) on {len(features['train'][1])} samples: {shown}"
    )
    return report
