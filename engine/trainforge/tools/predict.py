"""Predict with one checkpoint or an ensemble: `python -m trainforge.tools.predict CKPT [CKPT ...] --data test|<folder>`.

Each CKPT is a `.ckpt` or a run directory (its best checkpoint). Probabilities are averaged (weighted by
validation accuracy with `--weights val`), optionally over a horizontal flip (`--tta flip`); the CSV has
`id, pred, pred_name, confidence, prob_<class>...`; `--threshold P` also writes the rows whose
confidence is below P to `<out>_review.csv`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from trainforge.checkpoints import build_datamodule, load_model, resolve_checkpoint
from trainforge.data.datamodule import DataModule
from trainforge.predictions import write_predictions

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


class ImageFiles(Dataset):
    """A plain folder of images (searched recursively), loaded as the run's eval transform expects."""

    def __init__(self, root: Path, in_chans: int, transform: object | None) -> None:
        self.files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise SystemExit(f"error: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under '{root}'")
        self.ids = [str(p.relative_to(root)) for p in self.files]
        self.mode = "L" if in_chans == 1 else "RGB"
        self.to_tensor = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.files[index]) as image:
            x = self.to_tensor(image.convert(self.mode))
        return (self.transform(x) if self.transform is not None else x), -1


def data_loader(datamodule: DataModule, data: str, batch_size: int = 64) -> tuple[DataLoader, list[str]]:
    """`data` is a split name (`test`, `val`, `train`, `predict`) of the run's DataModule or a folder."""
    if data in ("test", "val", "train", "predict"):
        datamodule.setup()
        dataset = datamodule._split(data)
        if dataset is None:
            raise SystemExit(
                f"error: {type(datamodule).__name__} has no '{data}' split; give a folder of images"
            )
        # The eval transform for every split, train included: predictions are never augmented.
        dataset = type(dataset)(dataset.base, datamodule.build_transforms("eval"))
    else:
        folder = Path(data)
        if not folder.is_dir():
            raise SystemExit(f"error: DATA='{data}' is neither a split (test, val, train) nor a folder")
        dataset = ImageFiles(folder, getattr(datamodule, "in_chans", 3), datamodule.build_transforms("eval"))
    ids = getattr(dataset, "ids", None) or [str(i) for i in range(len(dataset))]
    return DataLoader(dataset, batch_size=batch_size, shuffle=False), list(ids)


@torch.no_grad()
def predict_probs(
    models: Sequence[torch.nn.Module],
    loader: DataLoader,
    weights: Sequence[float] | None = None,
    tta: bool = False,
) -> torch.Tensor:
    """Weighted mean of the members' softmax probabilities (and of their flipped views with `tta`)."""
    weights = list(weights) if weights is not None and sum(weights) > 0 else [1.0] * len(models)
    total = sum(weights)
    out = []
    for batch in loader:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        probs = 0
        for model, w in zip(models, weights, strict=True):
            x_dev = x.to(next(model.parameters()).device)
            p = model(x_dev).softmax(-1)
            if tta:
                p = (p + model(x_dev.flip(-1)).softmax(-1)) / 2
            probs = probs + (w / total) * p.float().cpu()
        out.append(probs)
    return torch.cat(out)


def accuracy(model: torch.nn.Module, loader: DataLoader) -> float:
    labels = torch.cat([batch[1] for batch in loader])
    preds = predict_probs([model], loader).argmax(-1)
    correct, total = int((preds == labels).sum()), len(labels)
    return correct / max(1, total)


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
    config = members[0][1]
    datamodule = build_datamodule(config)
    names = list(datamodule.class_names)
    loader, ids = data_loader(datamodule, data, batch_size=getattr(datamodule, "batch_size", 64))
    member_weights = None
    if weights == "val":
        val_loader, _ = data_loader(datamodule, "val")
        member_weights = [accuracy(m, val_loader) for m in models]
        print("validation accuracy per member (weights): " + ", ".join(f"{w:.4f}" for w in member_weights))
    probs = predict_probs(models, loader, member_weights, tta=tta == "flip")
    if out is None:
        label = data if data in ("test", "val", "train", "predict") else Path(data).name
        suffix = "ensemble" if len(models) > 1 else "single"
        out = resolve_checkpoint(checkpoints[0]).resolve().parent.parent / f"predictions_{label}_{suffix}.csv"
    write_predictions(out, ids, probs, names)
    print(f"{len(ids)} predictions from {len(models)} model(s): {out}")
    if threshold is not None:
        low = probs.max(-1).values < threshold
        review = out.with_name(out.stem + "_review.csv")
        write_predictions(
            review, [i for i, keep in zip(ids, low.tolist(), strict=True) if keep], probs[low], names
        )
        print(f"{int(low.sum())} predictions below confidence {threshold} to review: {review}")
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m trainforge.tools.predict", description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", nargs="+", help="checkpoint files or run directories")
    parser.add_argument(
        "--data", default="test", help="a split of the run's DataModule or a folder of images"
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
