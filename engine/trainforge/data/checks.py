"""Label checks run once in `DataModule.setup`, on the datasets `build_datasets` returned."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from trainforge.errors import TemplateError


def dataset_labels(dataset: Dataset) -> torch.Tensor | None:
    """The targets of a dataset when they can be read without loading its inputs, else None."""
    if isinstance(dataset, Subset):
        labels = dataset_labels(dataset.dataset)
        return labels[torch.as_tensor(dataset.indices, dtype=torch.long)] if labels is not None else None
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
        return dataset.tensors[1]
    for name in ("targets", "labels"):  # torchvision ImageFolder/DatasetFolder, most custom datasets
        labels = getattr(dataset, name, None)
        if labels is not None:
            try:
                return torch.as_tensor(labels)
            except (TypeError, ValueError, RuntimeError):
                return None
    return None


def check_labels(splits: Any, num_classes: int, owner: str, multi_label: bool = False) -> None:
    """Refuse fewer than 2 classes and any class index outside 0..num_classes-1, naming split and label."""
    if num_classes < (1 if multi_label else 2):
        raise TemplateError(
            f"{owner} has {num_classes} class(es); a classifier needs at least 2. Check that the data has "
            "one folder (or label value) per class."
        )
    for split in ("train", "val", "test"):
        dataset = getattr(splits, split, None)
        labels = dataset_labels(dataset) if dataset is not None else None
        if labels is None or labels.numel() == 0 or multi_label or labels.is_floating_point():
            continue
        bad = (labels < 0) | (labels >= num_classes)
        if bool(bad.any()):
            index = int(bad.flatten().nonzero()[0])
            raise TemplateError(
                f"{owner}: the {split} split has label {int(labels.flatten()[index])} (sample {index}), outside "
                f"0..{num_classes - 1} for its {num_classes} classes; {int(bad.sum())} sample(s) are affected. "
                "Fix the labels, or the class list (`class_names`) so it covers every label."
            )
