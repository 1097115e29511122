"""Hook 1, your data. Fill in `build_datasets` (and, if you like, `build_transforms`); the engine does the
rest (loaders, workers, samplers, DDP sharding, target checks, the preprocessing saved with checkpoints).

The example: scikit-learn's 1,797 real 8x8 handwritten digits (shipped offline) as 1x32x32 images.
Replace it with your data; `configs/data.yaml` points the default experiment here.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from sklearn.datasets import load_digits
from torch.utils.data import TensorDataset
from torchvision.transforms import v2

from trainforge.data import DataModule, Splits
from trainforge.data.split import stratified_split
from trainforge.tasks import Multiclass


class ProjectData(DataModule):
    """The project's data.

    Args:
        image_size: Side the 8x8 digits are upsampled to, so a CNN has room to downsample.
        augment: Small random shifts, rotations and scalings of the training digits.
        **kwargs: The engine's DataModule options: batch_size, num_workers, split_seed, sampler, ...
    """

    def __init__(self, image_size: int = 32, augment: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.image_size = image_size
        self.augment = augment
        # What the model predicts: Multiclass, Binary, Multilabel or Regression (trainforge.tasks).
        self.task = Multiclass([str(digit) for digit in range(10)])
        self.in_chans = 1

    def build_datasets(self) -> Splits:
        """Datasets of (input, target) pairs: here image tensors and class indices, split 70/15/15."""
        digits = load_digits()
        images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        labels = torch.tensor(digits.target)
        parts = stratified_split(digits.target, [0.15, 0.15], seed=self.split_seed)
        return Splits(*(TensorDataset(images[i], labels[i]) for i in parts))

    def build_transforms(self, stage: Literal["train", "eval"]) -> v2.Transform:
        """Per-sample transforms: `train` for training, `eval` for validation, test, predictions and export
        (image files given to `make predict DATA=<folder>` arrive as PIL images: hence ToImage)."""
        steps = [
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Resize((self.image_size, self.image_size), antialias=True),
            v2.Normalize([0.3], [0.4]),
        ]
        if stage == "train" and self.augment:
            steps.append(v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1)))
        return v2.Compose(steps)
