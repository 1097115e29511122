"""PNG figures with fixed pixel sizes (no tight bbox), drawn with matplotlib's object API (no pyplot state)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

DPI = 100


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def learning_curves(history: dict[str, list[float]], monitor: str, path: Path) -> Path:
    """Loss and the monitored metric per epoch, train vs val: 1000x400 px."""
    fig = Figure(figsize=(10, 4))
    epochs = history["epoch"]
    for ax, kind, title in (
        (fig.add_subplot(1, 2, 1), "loss", "loss"),
        (fig.add_subplot(1, 2, 2), "metric", monitor.split("/", 1)[-1]),
    ):
        for split in ("train", "val"):
            values = history.get(f"{split}_{kind}") or []
            if values:
                ax.plot(epochs[: len(values)], values, marker="o", label=split)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def confusion_figsize(num_classes: int) -> tuple[float, float]:
    side = max(5.0, 0.5 * num_classes + 2.0)
    return side, side


def confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: Path) -> Path:
    """Counts with row-normalised colours (rows: true class)."""
    n = len(class_names)
    fig = Figure(figsize=confusion_figsize(n))
    ax = fig.add_subplot(1, 1, 1)
    rows = matrix.sum(axis=1, keepdims=True)
    ax.imshow(matrix / np.maximum(rows, 1), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels=list(class_names), rotation=90 if n > 10 else 0)
    ax.set_yticks(range(n), labels=list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def grid_shape(count: int, max_cols: int = 8) -> tuple[int, int]:
    cols = max(1, min(max_cols, count))
    return max(1, math.ceil(count / cols)), cols


def grid_figsize(count: int) -> tuple[float, float]:
    rows, cols = grid_shape(count)
    return cols * 1.5, rows * 1.7


def _displayable(image: torch.Tensor) -> np.ndarray:
    # Inputs are normalised tensors; stretch each to 0..1 just for display.
    image = image.detach().float().cpu()
    image = (image - image.min()) / (image.max() - image.min()).clamp_min(1e-8)
    return image[0].numpy() if image.shape[0] == 1 else image[:3].permute(1, 2, 0).numpy()


def misclassified_grid(images: Sequence[torch.Tensor], titles: Sequence[str], path: Path) -> Path:
    """Each sample titled `true -> predicted` (and its confidence, in the title given)."""
    count = max(1, len(images))
    rows, cols = grid_shape(count)
    fig = Figure(figsize=grid_figsize(count))
    for k in range(rows * cols):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.axis("off")
        if k < len(images):
            ax.imshow(_displayable(images[k]), cmap="gray")
            ax.set_title(titles[k], fontsize=7)
    if not images:
        fig.text(0.5, 0.5, "no misclassified samples", ha="center")
    fig.tight_layout()
    return _save(fig, path)


def residuals(predicted: np.ndarray, actual: np.ndarray, names: Sequence[str], path: Path) -> Path:
    """Predicted against true values (the diagonal is perfect), one panel per target: 500 px per panel."""
    fig = Figure(figsize=(5 * len(names), 5))
    for k, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), k + 1)
        ax.scatter(actual[:, k], predicted[:, k], s=8, alpha=0.6)
        low, high = (
            float(min(actual[:, k].min(), predicted[:, k].min())),
            float(max(actual[:, k].max(), predicted[:, k].max())),
        )
        ax.plot([low, high], [low, high], color="gray", linewidth=1)
        ax.set_xlabel(f"true {name}")
        ax.set_ylabel(f"predicted {name}")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)
