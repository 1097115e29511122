"""`make predict` / `python -m <project> infer CKPT [CKPT ...] --data test|<folder>`: predictions CSV of one
run or an ensemble.

Each CKPT is a `.ckpt` or a run directory (the checkpoint it reported). Every member runs its own
`predict_step` (the model's predict hook, as `predict` does) on inputs prepared by the run's saved
preprocessing; scores are averaged (weighted by validation score with `--weights val`), optionally over a
horizontal flip (`--tta flip`, images), and written in the task's columns (classes with probabilities,
label sets, or values). `--threshold P` also writes the rows whose confidence is below P to
`<out>_review.csv` (classification).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from trainforge.checkpoints import build_datamodule, load_model, resolve_checkpoint
from trainforge.data.datamodule import DataModule, TransformDataset
from trainforge.data.images import is_image
from trainforge.errors import TemplateError
from trainforge.predictions import write_predictions
from trainforge.rundir import RunDir
from trainforge.tasks import Binary, Regression, Task

SPLITS = ("test", "val", "train", "predict")
TABLES = (".csv", ".parquet", ".pq")


def data_loader(datamodule: DataModule, data: str, batch_size: int = 64) -> tuple[DataLoader, list[str]]:
    """`data` is a split name (`test`, `val`, `train`, `predict`) of the run's DataModule, a folder of
    image files, or a table file of new rows (a table run); all go through the run's eval transform (never
    augmented, train included)."""
    if Path(data).suffix.lower() in TABLES and hasattr(datamodule, "table_dataset"):
        rows = datamodule.table_dataset(data)  # columns checked by name against the training ones
        dataset, ids = TransformDataset(rows, datamodule.build_transforms("eval")), rows.ids
    elif data in SPLITS:
        dataset = datamodule.eval_view(data)
        if dataset is None:
            raise TemplateError(f"{type(datamodule).__name__} has no '{data}' split; give a folder of images")
        ids = list(getattr(dataset, "ids", None) or range(len(dataset)))
    else:
        folder = Path(data)
        if not folder.is_dir():
            raise TemplateError(
                f"DATA='{data}' is neither a split ({', '.join(SPLITS)}), a folder nor a table file"
            )
        paths = sorted(p for p in folder.rglob("*") if is_image(p))
        if not paths:
            raise TemplateError(f"no image files under '{folder}'")
        dataset = TransformDataset(datamodule.files_dataset(paths), datamodule.build_transforms("eval"))
        ids = [str(p.relative_to(folder)) for p in paths]
    return DataLoader(dataset, batch_size=batch_size, shuffle=False), [str(i) for i in ids]


@torch.no_grad()
def predict_scores(
    models: Sequence[torch.nn.Module],
    loader: DataLoader,
    weights: Sequence[float] | None = None,
    tta: bool = False,
) -> torch.Tensor:
    """Weighted mean of the members' task scores (and of their flipped views with `tta`)."""
    weights = list(weights) if weights is not None and sum(weights) > 0 else [1.0] * len(models)
    total = sum(weights)
    out = []
    for batch in loader:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        scores: torch.Tensor | float = 0.0
        for model, w in zip(models, weights, strict=True):
            x_dev = x.to(next(model.parameters()).device)
            s = model.predict_step((x_dev,), 0)["scores"]
            if tta:
                s = (s + model.predict_step((x_dev.flip(-1),), 0)["scores"]) / 2
            scores = scores + (w / total) * s.float().cpu()
        out.append(scores)
    return torch.cat(out)


def validation_score(model: torch.nn.Module, loader: DataLoader) -> float:
    """The task's training metric on a loader: accuracy, or 1 / (1 + MAE) for regression (higher is better)."""
    task: Task = model.task
    values = []
    with torch.no_grad():
        for x, y in loader:
            outputs = model(x.to(next(model.parameters()).device)).cpu()
            values.append(task.train_values(outputs, y))
    mean = float(torch.cat(values).mean())
    return 1.0 / (1.0 + mean) if isinstance(task, Regression) else mean


def confidence(task: Task, scores: torch.Tensor) -> torch.Tensor:
    if isinstance(task, Regression):
        raise TemplateError("--threshold reviews low-confidence classifications; a regression has none")
    if isinstance(task, Binary):
        return torch.maximum(scores, 1 - scores)
    return scores.max(-1).values if task.kind == "multiclass" else (scores - 0.5).abs().min(-1).values + 0.5


def run(
    checkpoints: Sequence[str],
    data: str = "test",
    out: Path | None = None,
    weights: str = "equal",
    tta: str = "none",
    threshold: float | None = None,
    device: str = "cpu",
) -> Path:
    members = [load_model(c, device) for c in checkpoints]
    models = [m for m, _ in members]
    task: Task = models[0].task
    for model, ckpt in zip(models[1:], checkpoints[1:], strict=True):
        if model.task != task:
            raise TemplateError(f"ensemble members must share one task: {ckpt} predicts {model.task.describe()} "
                                f"{model.task.names[:4]}, the first {task.describe()} {task.names[:4]}")  # fmt: skip
    datamodule = build_datamodule(members[0][1], checkpoints[0])
    loader, ids = data_loader(datamodule, data, batch_size=getattr(datamodule, "batch_size", 64))
    if tta == "flip" and next(iter(loader))[0].ndim != 4:
        raise TemplateError("--tta flip mirrors images; these inputs are not image batches")
    member_weights = None
    if weights == "val":
        val_loader, _ = data_loader(datamodule, "val")
        member_weights = [validation_score(m, val_loader) for m in models]
        print("validation score per member (weights): " + ", ".join(f"{w:.4f}" for w in member_weights))
    scores = predict_scores(models, loader, member_weights, tta=tta == "flip")
    if out is None:
        label = data if data in SPLITS else Path(data).stem
        suffix = "ensemble" if len(models) > 1 else "single"
        run_dir = RunDir.of_checkpoint(resolve_checkpoint(checkpoints[0]))
        out = (run_dir.path if run_dir else Path.cwd()) / f"predictions_{label}_{suffix}.csv"
    table = hasattr(datamodule, "table_dataset")
    id_name = (
        table and datamodule.preprocessing.get("id_column")
    ) or "id"  # a table's id column keeps its name
    write_predictions(out, ids, scores, task, id_name)
    print(f"{len(ids)} predictions from {len(models)} model(s): {out}")
    if threshold is not None:
        low = confidence(task, scores) < threshold
        review = out.with_name(out.stem + "_review.csv")
        write_predictions(
            review, [i for i, keep in zip(ids, low.tolist(), strict=True) if keep], scores[low], task, id_name
        )
        print(f"{int(low.sum())} predictions below confidence {threshold} to review: {review}")
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="make predict (infer)", description=__doc__.split("\n")[0], allow_abbrev=False
    )
    parser.add_argument("checkpoints", nargs="+", help="checkpoint files or run directories")
    parser.add_argument(
        "--data",
        default="test",
        help="a split of the run's DataModule, a folder of images or a table file (.csv, .parquet)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="CSV path (default: in the first run directory)"
    )
    parser.add_argument("--weights", choices=("equal", "val"), default="equal")
    parser.add_argument("--tta", choices=("none", "flip"), default="none")
    parser.add_argument(
        "--threshold", type=float, default=None, help="list predictions less confident than this"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    run(args.checkpoints, args.data, args.out, args.weights, args.tta, args.threshold, args.device)


if __name__ == "__main__":
    main()
