"""Images listed in CSV files: `path,label` rows (a header row with those names is optional).

Paths are relative to `root` (default: the CSV's own folder). With `multilabel`, a label cell holds
several labels separated by `;`: the task is multilabel, and the model follows it.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch

from trainforge.data.datamodule import Splits
from trainforge.data.images import ImageFiles, ImageFilesDataModule
from trainforge.tasks import Multiclass, Multilabel, Task


def read_list(path: Path, root: Path | None) -> list[tuple[Path, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"list file {path} not found")
    base = root if root is not None else path.parent
    rows: list[tuple[Path, str]] = []
    with path.open(newline="") as f:
        for number, row in enumerate(csv.reader(f), start=1):
            if (
                not row
                or row[0].startswith("#")
                or (number == 1 and [c.strip() for c in row[:2]] == ["path", "label"])
            ):
                continue
            if len(row) < 2 or not row[1].strip():
                raise ValueError(f"{path}:{number}: expected 'path,label', got {row}")
            rows.append((base / row[0].strip(), row[1].strip()))
    if not rows:
        raise ValueError(f"{path} lists no images")
    missing = [str(p) for p, _ in rows if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{path}: {len(missing)} listed images not found, e.g. {missing[:5]}")
    return rows


class CsvDataModule(ImageFilesDataModule):
    """Like ImageFolderDataModule, but the files and labels come from `path,label` CSV/list files.

    Args:
        train_list: CSV of the training images. Without `val_list`, `val_fraction` of it is held out.
        val_list: Optional CSV of the validation images.
        test_list: Optional CSV of the test images (else the val list, or a part of train, is reported and
            selection uses a part of train: see `assign_roles`).
        root: Folder the paths are relative to (default: each CSV's folder).
        multilabel: Label cells hold `;`-separated labels: a multilabel task with multi-hot targets (the model
            follows the task: sigmoid, binary cross-entropy, multilabel metrics and predictions).
        Other arguments: ImageFilesDataModule's (size, augmentation, cache, split, loader).
    """

    def __init__(
        self,
        train_list: str = "train.csv",
        val_list: str | None = None,
        test_list: str | None = None,
        root: str | None = None,
        multilabel: bool = False,
        **kwargs: Any,
    ) -> None:
        # The shared image options (size, augmentation, cache, loader) are ImageFilesDataModule's;
        # jsonargparse follows **kwargs there, so the CLI and --help still list every one.
        super().__init__(**kwargs)
        self.root = Path(root) if root else None
        self.multilabel = multilabel
        self.lists = {
            "train": Path(train_list),
            "val": val_list and Path(val_list),
            "test": test_list and Path(test_list),
        }
        self._rows: dict[str, list[tuple[Path, str]]] | None = None

    @property
    def rows(self) -> dict[str, list[tuple[Path, str]]]:
        if self._rows is None:
            self._rows = {k: read_list(v, self.root) for k, v in self.lists.items() if v}
        return self._rows

    def build_task(self) -> Task:
        names = sorted({n for _, label in self.rows["train"] for n in self._labels(label)})
        if len(names) < 2 and not self.multilabel:
            raise ValueError(
                f"{self.lists['train']} has {len(names)} distinct label(s); a classifier needs 2+"
            )
        return Multilabel(names) if self.multilabel else Multiclass(names)

    def _labels(self, cell: str) -> list[str]:
        return [s.strip() for s in cell.split(";") if s.strip()] if self.multilabel else [cell]

    def _target(self, cell: str, where: Path) -> Any:
        index = {c: i for i, c in enumerate(self.class_names)}
        unknown = [n for n in self._labels(cell) if n not in index]
        if unknown:
            raise ValueError(f"{where}: labels {unknown} do not occur in the training list")
        if not self.multilabel:
            return index[cell]
        target = torch.zeros(self.num_classes)
        target[[index[n] for n in self._labels(cell)]] = 1.0
        return target

    def _files(self, name: str) -> ImageFiles | None:
        if name not in self.rows:
            return None
        rows = self.rows[name]
        return self.files([p for p, _ in rows], [self._target(c, self.lists[name]) for _, c in rows])

    def build_datasets(self) -> Splits:
        # Multi-hot targets cannot be stratified on: held-out parts are then plain seeded samples.
        train, val, test = self.assign_roles(
            self._files("train"), self._files("val"), self._files("test"), stratify=not self.multilabel
        )
        return Splits(train=train, val=val, test=test)
