"""The final evaluation's reports, per task kind: what is accumulated batch by batch and the files written.

- classification (multiclass, binary): per_class.csv, confusion_matrix.png, misclassified.png (image
  inputs) or misclassified.csv (other inputs);
- multilabel: per_label.csv, misclassified.png / .csv (samples with any wrong label);
- regression: per_target.csv (MAE, RMSE, R2), residuals.png, worst.csv (largest errors).
A task kind of a project's own gets no pictures (said once), never a crash.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch
from torchmetrics import CatMetric, MetricCollection
from torchmetrics.classification import (
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
    MultilabelF1Score,
    MultilabelPrecision,
    MultilabelRecall,
    MultilabelStatScores,
)

from trainforge.reporting import plots
from trainforge.tasks import Binary, Multiclass, Multilabel, Regression, Task

MISCLASSIFIED_MAX = 32


def _write_rows(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


class Evaluation:
    """Accumulates one evaluation pass (any rank; torchmetrics syncs) and writes its reports (rank 0)."""

    def __init__(self, task: Task, device: torch.device) -> None:
        self.task = task
        self.device = device
        self.wrong: list[tuple[torch.Tensor, str, float, int]] = []  # input, title, confidence, position
        self.seen = 0

    def update(self, outputs: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, Any]:
        """On every rank (torchmetrics gathers across them): the values `write` needs."""
        raise NotImplementedError

    def write(self, folder: Path, values: dict[str, Any]) -> dict[str, Path]:
        """On rank 0: the files; returns the pictures to log."""
        raise NotImplementedError

    def _keep_wrong(self, x: torch.Tensor, index: int, title: str, confidence: float) -> None:
        if len(self.wrong) < MISCLASSIFIED_MAX:
            self.wrong.append((x[index].detach().cpu(), title, confidence, self.seen + index))

    def _write_wrong(self, folder: Path) -> Path:
        if all(w[0].ndim == 3 for w in self.wrong):  # (C, H, W) images: a picture grid
            return plots.misclassified_grid(
                [w[0] for w in self.wrong], [w[1] for w in self.wrong], folder / "misclassified.png"
            )
        rows = [[w[3], w[1], f"{w[2]:.6f}"] for w in self.wrong]
        return _write_rows(
            folder / "misclassified.csv", ["position", "true -> predicted", "confidence"], rows
        )


class ClassEvaluation(Evaluation):
    def __init__(self, task: Task, device: torch.device) -> None:
        super().__init__(task, device)
        n = len(task.names)
        self.metrics = MetricCollection(
            {
                "precision": MulticlassPrecision(n, average=None),
                "recall": MulticlassRecall(n, average=None),
                "f1": MulticlassF1Score(n, average=None),
                "confusion": MulticlassConfusionMatrix(n),
            }
        ).to(device)

    def update(self, outputs: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> None:
        scores = self.task.scores(outputs)
        probs = torch.stack([1 - scores, scores], -1) if isinstance(self.task, Binary) else scores
        y = y.reshape(-1).long()
        self.metrics.update(probs, y)
        conf, pred = probs.max(-1)
        names = self.task.names
        for i in torch.nonzero(pred != y).flatten().tolist():
            self._keep_wrong(x, i, f"{names[int(y[i])]} -> {names[int(pred[i])]}", float(conf[i]))
        self.seen += len(y)

    def compute(self) -> dict[str, Any]:
        return self.metrics.compute()

    def write(self, folder: Path, values: dict[str, Any]) -> dict[str, Path]:
        matrix = values["confusion"].cpu().numpy()
        rows = [
            [
                name,
                *(f"{float(values[k][i]):.6f}" for k in ("precision", "recall", "f1")),
                int(matrix[i].sum()),
            ]
            for i, name in enumerate(self.task.names)
        ]
        _write_rows(folder / "per_class.csv", ["class", "precision", "recall", "f1", "support"], rows)
        return {
            "confusion_matrix": plots.confusion_matrix(
                matrix, self.task.names, folder / "confusion_matrix.png"
            ),
            "misclassified": self._write_wrong(folder),
        }


class LabelEvaluation(Evaluation):
    def __init__(self, task: Multilabel, device: torch.device) -> None:
        super().__init__(task, device)
        n, t = len(task.names), task.threshold
        self.metrics = MetricCollection(
            {
                "precision": MultilabelPrecision(n, threshold=t, average=None),
                "recall": MultilabelRecall(n, threshold=t, average=None),
                "f1": MultilabelF1Score(n, threshold=t, average=None),
                "stats": MultilabelStatScores(n, threshold=t, average=None),  # tp, fp, tn, fn, support
            }
        ).to(device)

    def update(self, outputs: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> None:
        scores = self.task.scores(outputs)
        self.metrics.update(scores, y.long())
        pred = scores >= self.task.threshold
        names = self.task.names

        def label_set(row: torch.Tensor) -> str:
            return ";".join(n for n, on in zip(names, row.tolist(), strict=True) if on) or "-"

        for i in torch.nonzero((pred != y.bool()).any(-1)).flatten().tolist():
            least = float((scores[i] - 0.5).abs().min() + 0.5)
            self._keep_wrong(x, i, f"{label_set(y[i].bool())} -> {label_set(pred[i])}", least)
        self.seen += len(y)

    def compute(self) -> dict[str, Any]:
        return self.metrics.compute()

    def write(self, folder: Path, values: dict[str, Any]) -> dict[str, Path]:
        rows = [
            [
                name,
                *(f"{float(values[k][i]):.6f}" for k in ("precision", "recall", "f1")),
                int(values["stats"][i, 4]),
            ]
            for i, name in enumerate(self.task.names)
        ]
        _write_rows(folder / "per_label.csv", ["label", "precision", "recall", "f1", "support"], rows)
        return {"misclassified": self._write_wrong(folder)}


class RegressionEvaluation(Evaluation):
    def __init__(self, task: Regression, device: torch.device) -> None:
        super().__init__(task, device)
        self.predicted, self.actual = CatMetric().to(device), CatMetric().to(device)

    def update(self, outputs: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> None:
        values = self.task.values(outputs).detach().float()
        self.predicted.update(values.reshape(len(values), -1))
        self.actual.update(y.detach().float().reshape(len(values), -1))

    def compute(self) -> dict[str, Any]:
        return {"predicted": self.predicted.compute().cpu(), "actual": self.actual.compute().cpu()}

    def write(self, folder: Path, values: dict[str, Any]) -> dict[str, Path]:
        k = len(self.task.names)
        pred, true = values["predicted"].reshape(-1, k), values["actual"].reshape(-1, k)
        error = pred - true
        rows = []
        for k, name in enumerate(self.task.names):
            total = ((true[:, k] - true[:, k].mean()) ** 2).sum().clamp_min(1e-12)
            r2 = 1 - (error[:, k] ** 2).sum() / total
            mae, rmse = error[:, k].abs().mean(), error[:, k].pow(2).mean().sqrt()
            rows.append([name, f"{float(mae):.6f}", f"{float(rmse):.6f}", f"{float(r2):.6f}", len(true)])
        _write_rows(folder / "per_target.csv", ["target", "mae", "rmse", "r2", "count"], rows)
        worst = error.abs().mean(-1).argsort(descending=True)[:MISCLASSIFIED_MAX].tolist()
        _write_rows(
            folder / "worst.csv",
            [
                "position",
                *(f"true_{n}" for n in self.task.names),
                *(f"predicted_{n}" for n in self.task.names),
            ],
            [
                [i, *(f"{v:.6f}" for v in true[i].tolist()), *(f"{v:.6f}" for v in pred[i].tolist())]
                for i in worst
            ],
        )
        return {
            "residuals": plots.residuals(
                pred.numpy(), true.numpy(), self.task.names, folder / "residuals.png"
            )
        }


def evaluation_for(task: Task, device: torch.device) -> Evaluation | None:
    """The reports of `task`'s kind; None for a kind without reports (a project's own)."""
    if isinstance(task, (Multiclass, Binary)):
        return ClassEvaluation(task, device)
    if isinstance(task, Multilabel):
        return LabelEvaluation(task, device)
    if isinstance(task, Regression):
        return RegressionEvaluation(task, device)
    return None
