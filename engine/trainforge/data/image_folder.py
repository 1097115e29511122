"""A folder of images, one sub-folder per class: `root/train/<class>/*.jpg`, optional `val/` and `test/`.

Without `val/`, a stratified, seeded `val_fraction` of `train/` is held out; without `test/`, the final
evaluation is on `val/` and summary.json says so (`evaluated_on`). `predict_dir` (any folder of images,
searched recursively) is what `predict` runs on; otherwise it predicts the test (then val) split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainforge.data.datamodule import Splits
from trainforge.data.images import ImageFiles, ImageFilesDataModule, is_image
from trainforge.tasks import Multiclass, Task


def scan_classes(split_dir: Path) -> dict[str, list[Path]]:
    """Class name -> sorted image files, with clear errors for an empty class or a folder with no classes."""
    if not split_dir.is_dir():
        raise FileNotFoundError(f"image folder {split_dir} not found")
    classes = {
        d.name: sorted(p for p in d.rglob("*") if is_image(p))
        for d in sorted(split_dir.iterdir())
        if d.is_dir()
    }
    if not classes:
        raise ValueError(
            f"{split_dir} has no class sub-folders; expected {split_dir}/<class name>/<image files>"
        )
    empty = [name for name, files in classes.items() if not files]
    if empty:
        raise ValueError(
            f"class folder(s) with no images in {split_dir}: {', '.join(empty)}; add images or remove them"
        )
    return classes


class ImageFolderDataModule(ImageFilesDataModule):
    """Images in class sub-folders; input size, normalisation and augmentation from the backbone's config.

    The folder is read when the task (the class names) is first needed, so a run's DataModule can be
    rebuilt for predictions on other images without the training folder.

    Args:
        root: Folder with `train/` and optional `val/` and `test/`, each with one sub-folder per class.
        predict_dir: Folder of images (any layout) for `predict`; ids in predictions.csv are the paths.
        Other arguments: ImageFilesDataModule's (size, augmentation, cache, split, loader).
    """

    def __init__(self, root: str = "data", predict_dir: str | None = None, **kwargs: Any) -> None:
        # The shared image options (size, augmentation, cache, loader) are ImageFilesDataModule's;
        # jsonargparse follows **kwargs there, so the CLI and --help still list every one.
        super().__init__(**kwargs)
        self.root = Path(root)
        self.predict_dir = Path(predict_dir) if predict_dir else None
        self._train_classes: dict[str, list[Path]] | None = None

    @property
    def train_classes(self) -> dict[str, list[Path]]:
        if self._train_classes is None:
            if not self.root.is_dir():
                raise FileNotFoundError(
                    f"data.root: folder {self.root} not found (expected train/, val/, test/ in it)"
                )
            self._train_classes = scan_classes(self.root / "train")
            if len(self._train_classes) < 2:
                raise ValueError(
                    f"{self.root / 'train'} has {len(self._train_classes)} class folder "
                    f"({sorted(self._train_classes)}); a classifier needs at least 2"
                )
        return self._train_classes

    def build_task(self) -> Task:
        return Multiclass(sorted(self.train_classes))

    def _split_files(self, name: str, classes: dict[str, list[Path]] | None = None) -> ImageFiles | None:
        split_dir = self.root / name
        if classes is None:
            if not split_dir.is_dir():
                return None
            classes = scan_classes(split_dir)
        unknown = sorted(set(classes) - set(self.class_names))
        if unknown:
            raise ValueError(f"{split_dir} has classes not in train/: {', '.join(unknown)}")
        index = {c: i for i, c in enumerate(self.class_names)}
        pairs = [(p, index[c]) for c, files in classes.items() for p in files]
        return self.files([p for p, _ in pairs], [t for _, t in pairs])

    def build_datasets(self) -> Splits:
        train: Any = self._split_files("train", self.train_classes)
        train, val, test = self.assign_roles(train, self._split_files("val"), self._split_files("test"))
        predict = None
        if self.predict_dir is not None:
            if not self.predict_dir.is_dir():
                raise FileNotFoundError(f"data.predict_dir: folder {self.predict_dir} not found")
            paths = sorted(p for p in self.predict_dir.rglob("*") if is_image(p))
            if not paths:
                raise ValueError(f"data.predict_dir: no image files in {self.predict_dir}")
            predict = self.files(paths, [-1] * len(paths))
        return Splits(train=train, val=val, test=test, predict=predict)
