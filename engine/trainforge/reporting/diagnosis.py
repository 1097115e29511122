"""A short diagnosis of a finished run from its per-epoch curves, with the switches that usually help.

Rules of thumb, not statistics. For accuracy-like metrics in 0..1 (`val/acc`) the thresholds are absolute;
for errors in the targets' units (`val/mae`, `val/mse`, `val/rmse`) they are fractions of the error of
always predicting the training mean (`scale`: about 0.8 std for MAE, the variance for MSE), so a gap of 3.6
on targets spread over +-77 is not called overfitting. A switch is offered only when the run's model and
data accept its key (`accepts`) and the task allows it (label smoothing is multiclass-only).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

# Each finding's candidates, best first; the first MAX_SWITCHES the run accepts are offered.
SWITCHES = {
    "diverged": [
        "lower the learning rate: --model.lr=<lr / 10>",
        "clip gradients: --trainer.gradient_clip_val=1.0",
        "warm up: --model.warmup_epochs=2",
    ],
    "overfitting": [
        "more dropout: --model.dropout=0.3",
        "regularise the head: --model.drop_rate=0.3",
        "label smoothing: --model.label_smoothing=0.1",
        "augment the training data: --data.augment=true",
        "more weight decay: --model.weight_decay=0.1",
        "stop earlier: --trainer.max_epochs=<the best epoch + a few>",
    ],
    "underfitting": [
        "train longer: --trainer.max_epochs=<2x>",
        "a wider network: --model.hidden=<2x>",
        "a larger backbone: --model.backbone=resnet50",
        "less regularisation: --model.weight_decay=0.01",
    ],
    "still_improving": [
        "train longer: --trainer.max_epochs=<2x> (rerun with the same RUN= to continue)",
        "a higher peak learning rate if the curve is slow: --model.lr=<2x>",
    ],
}
MAX_SWITCHES = 3
TASK_ONLY = {"model.label_smoothing": ("multiclass",)}  # keys the engine refuses for other tasks

GAP = 0.10  # train metric above val metric by this much (0..1 metrics): overfitting
LOW = 0.60  # both train and val metric below this (0..1 metrics): underfitting
RISE = 0.01  # the monitored metric improved by this much over the last epochs: still improving
# Errors in target units, as fractions of `scale` (the error of predicting the training mean):
REL_GAP = 0.15  # val error above train error by this fraction: overfitting
REL_HIGH = 0.90  # both errors at least this fraction: barely better than the mean, underfitting
REL_RISE = 0.01  # the error fell by this fraction over the last epochs: still improving
_KEY = re.compile(r"--([\w.]+)=")


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if not math.isnan(v)]


def usable(switch: str, accepts: Callable[[str], bool] | None, task_kind: str | None) -> bool:
    """Every `--key=` in the switch is accepted by the run's classes and allowed for its task."""
    for key in _KEY.findall(switch):
        if task_kind is not None and key in TASK_ONLY and task_kind not in TASK_ONLY[key]:
            return False
        if accepts is not None and not accepts(key):
            return False
    return True


def diagnose(
    history: dict[str, list[float]],
    mode: str = "max",
    scale: float | None = None,
    accepts: Callable[[str], bool] | None = None,
    task_kind: str | None = None,
) -> list[dict[str, Any]]:
    """Findings, most severe first: each `{"kind", "message", "switches"}`; `[]` when nothing stands out.

    `scale`: the monitored error of predicting the training mean (regression errors), else None for
    metrics in 0..1. `accepts(key)`: whether the run's config accepts a dotted key; `task_kind` its task.
    """
    findings: list[dict[str, Any]] = []

    def add(kind: str, message: str) -> None:
        switches = [s for s in SWITCHES[kind] if usable(s, accepts, task_kind)][:MAX_SWITCHES]
        findings.append({"kind": kind, "message": message, "switches": switches})

    train_loss = history.get("train_loss") or []
    val_loss = history.get("val_loss") or []
    losses = [v for v in train_loss + val_loss if not math.isnan(v)]
    finite_train = _finite(train_loss)
    if any(math.isinf(v) for v in losses) or (train_loss and math.isnan(train_loss[-1])):
        add("diverged", "the loss became NaN or infinite")
        return findings
    if (
        len(finite_train) >= 2
        and finite_train[-1] > 1.5 * min(finite_train)
        and finite_train[-1] > finite_train[0]
    ):
        add("diverged", f"the train loss rose from {min(finite_train):.3f} to {finite_train[-1]:.3f}")
        return findings

    train_m, val_m = _finite(history.get("train_metric") or []), _finite(history.get("val_metric") or [])
    sign = 1.0 if mode == "max" else -1.0
    gap_limit, rise_limit = (GAP, RISE) if scale is None else (REL_GAP * scale, REL_RISE * scale)
    if train_m and val_m:
        gap = sign * (train_m[-1] - val_m[-1])
        if scale is None and mode == "max" and train_m[-1] < LOW and val_m[-1] < LOW:
            add("underfitting", f"train {train_m[-1]:.3f} and val {val_m[-1]:.3f} are both below {LOW}")
        elif scale is not None and min(train_m[-1], val_m[-1]) >= REL_HIGH * scale:
            add(
                "underfitting",
                f"train {train_m[-1]:.4g} and val {val_m[-1]:.4g} are both within {1 - REL_HIGH:.0%} of "
                f"always predicting the training mean ({scale:.4g})",
            )
        elif gap > gap_limit:
            relative = "" if scale is None else f", {REL_GAP:.0%} of the mean predictor's {scale:.4g}"
            add(
                "overfitting",
                f"train metric {train_m[-1]:.4g} vs val {val_m[-1]:.4g} (gap {gap:.4g} > {gap_limit:.4g}{relative})",
            )
    if len(val_m) >= 2:
        best = max(val_m) if mode == "max" else min(val_m)
        recent = val_m[-3:]
        change = sign * (recent[-1] - recent[0])
        if val_m[-1] == best and change > rise_limit:
            word = "rose" if mode == "max" else "fell"
            add(
                "still_improving",
                f"the monitored metric still {word} from {recent[0]:.4g} to {recent[-1]:.4g} over the last "
                f"{len(recent)} epochs",
            )
    return findings


def format_diagnosis(findings: list[dict[str, Any]]) -> str:
    if not findings:
        return "diagnosis: the curves look healthy (no overfitting, underfitting or divergence detected)"
    lines = ["diagnosis:"]
    for finding in findings:
        lines.append(f"  {finding['kind']}: {finding['message']}")
        lines += [f"    try {switch}" for switch in finding["switches"]]
    return "\n".join(lines)
