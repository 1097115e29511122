"""Per-epoch history of a run, read back from the CSVLogger's metrics.csv."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

# Train metrics are logged per epoch under their plain key; the train loss also per step, so `_epoch`.
TRAIN_LOSS_KEYS = ("train/loss_epoch", "train/loss")


def epoch_history(metrics_csv: Path, monitor: str = "val/acc") -> dict[str, list[float]]:
    """`{"epoch", "train_loss", "val_loss", "train_metric", "val_metric"}` lists, one value per epoch.

    `monitor` is the checkpoint's monitored key (e.g. `val/acc`); its train twin is `train/acc`.
    Missing series are empty lists; epochs where a series was not logged hold NaN.
    """
    frame = pd.read_csv(metrics_csv)
    if "epoch" not in frame:
        return {k: [] for k in ("epoch", "train_loss", "val_loss", "train_metric", "val_metric")}
    name = monitor.split("/", 1)[-1]
    columns = {
        "train_loss": next((k for k in TRAIN_LOSS_KEYS if k in frame), None),
        "val_loss": "val/loss" if "val/loss" in frame else None,
        "train_metric": f"train/{name}" if f"train/{name}" in frame else None,
        "val_metric": monitor if monitor in frame else None,
    }
    grouped = frame.groupby("epoch")
    epochs = sorted(int(e) for e in grouped.groups)
    history: dict[str, list[float]] = {"epoch": [float(e) for e in epochs]}
    for key, column in columns.items():
        if column is None:
            history[key] = []
            continue
        # The last non-empty value of the epoch: the epoch aggregate, not a step value.
        last = grouped[column].agg(lambda s: s.dropna().iloc[-1] if s.notna().any() else math.nan)
        history[key] = [float(last.get(e, math.nan)) for e in epochs]
    return history
