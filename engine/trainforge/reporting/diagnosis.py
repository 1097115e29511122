"""A short diagnosis of a finished run from its per-epoch curves, with the switches that usually help.

Rules of thumb, not statistics: thresholds are for accuracy-like metrics in 0..1 (the default `val/acc`).
"""

from __future__ import annotations

import math
from typing import Any

SWITCHES = {
    "diverged": [
        "lower the learning rate: --model.lr=<lr / 10>",
        "clip gradients: --trainer.gradient_clip_val=1.0",
        "warm up: --model.warmup_epochs=2",
    ],
    "overfitting": [
        "regularise the head: --model.drop_rate=0.3 --model.label_smoothing=0.1",
        "augment the training data (the DataModule's build_transforms('train'), e.g. --data.augment=true)",
        "more weight decay: --model.weight_decay=0.1",
    ],
    "underfitting": [
        "train longer: --trainer.max_epochs=<2x>",
        "a larger backbone: --model.backbone=resnet18 (or larger)",
        "less regularisation: --model.drop_rate=0 --model.weight_decay=0.01",
    ],
    "still_improving": [
        "train longer: --trainer.max_epochs=<2x> (rerun with the same RUN= to continue)",
        "a higher peak learning rate if the curve is slow: --model.lr=<2x>",
    ],
}

GAP = 0.10  # train metric above val metric by this much: overfitting
LOW = 0.60  # both train and val metric below this: underfitting
RISE = 0.01  # the monitored metric improved by this much over the last epochs: still improving


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if not math.isnan(v)]


def diagnose(history: dict[str, list[float]], mode: str = "max") -> list[dict[str, Any]]:
    """Findings, most severe first: each `{"kind", "message", "switches"}`; `[]` when nothing stands out."""
    findings: list[dict[str, Any]] = []

    def add(kind: str, message: str) -> None:
        findings.append({"kind": kind, "message": message, "switches": SWITCHES[kind]})

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
    if train_m and val_m:
        gap = sign * (train_m[-1] - val_m[-1])
        if mode == "max" and train_m[-1] < LOW and val_m[-1] < LOW:
            add("underfitting", f"train {train_m[-1]:.3f} and val {val_m[-1]:.3f} are both below {LOW}")
        elif gap > GAP:
            add(
                "overfitting",
                f"train metric {train_m[-1]:.3f} vs val {val_m[-1]:.3f} (gap {gap:.3f} > {GAP})",
            )
    if len(val_m) >= 2:
        best = max(val_m) if mode == "max" else min(val_m)
        recent = val_m[-3:]
        rise = sign * (recent[-1] - recent[0])
        if val_m[-1] == best and rise > RISE:
            add(
                "still_improving",
                f"the monitored metric still rose by {rise:.3f} over the last {len(recent)} epochs",
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
