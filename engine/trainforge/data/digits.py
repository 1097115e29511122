"""The default example: scikit-learn's 1,797 real 8x8 handwritten digits, shipped offline."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch.utils.data import TensorDataset
from torchvision.transforms import v2

from trainforge.data.datamodule import DataModule, Splits
from trainforge.data.sampling import thin_classes
from trainforge.data.split import stratified_split
from trainforge.errors import ConfigError


class DigitsDataModule(DataModule):
    """Digits as 1-channel images, upsampled to `image_size`, with a fixed stratified split.

    Args:
        image_size: Side of the square input; 8x8 is upsampled once so a timm CNN has room to downsample.
            None: the backbone's pretrained input size and normalisation (for a pretrained backbone).
        val_fraction: Share of all samples held out for validation.
        test_fraction: Share of all samples held out for the test.
        augment: Small random shifts/rotations of the training digits.
        imbalance: Make the training split skewed on purpose, e.g. `{classes: [0, 1, 2, 3, 4], keep: 0.1}`
            keeps 10% of those classes' training samples (val/test untouched), to try class balancing.
        The loader options (batch_size: the global batch, max_batch_per_device, ...) are the base's.
    """

    def __init__(
        self,
        image_size: int | None = 32,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        augment: bool = True,
        batch_size: int = 64,
        num_workers: int | Literal["auto"] = 0,
        pin_memory: bool | None = None,
        split_seed: int = 0,
        sampler: Literal["balanced"] | None = None,
        sampler_mode: Literal["oversample", "undersample"] = "oversample",
        imbalance: dict[str, Any] | None = None,
        persistent_workers: bool = True,
        max_batch_per_device: int | None = None,
    ) -> None:
        super().__init__(
            batch_size,
            num_workers,
            pin_memory,
            split_seed,
            sampler,
            sampler_mode,
            persistent_workers,
            max_batch_per_device,
        )
        self.imbalance = imbalance
        self.image_size = image_size
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.augment = augment
        self.class_names = [str(i) for i in range(10)]
        self.in_chans = 1

    def build_datasets(self) -> Splits:
        digits = load_digits()
        images = (
            torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        )  # 0..1, as image files load
        labels = torch.tensor(digits.target, dtype=torch.long)
        train, val, test = stratified_split(
            np.asarray(digits.target), [self.val_fraction, self.test_fraction], seed=self.split_seed
        )
        if self.imbalance is not None:
            train = thin_classes(np.asarray(digits.target), train, seed=self.split_seed, **self.imbalance)

        def part(idx: np.ndarray) -> TensorDataset | None:
            if not len(idx):
                return None
            dataset = TensorDataset(images[idx], labels[idx])
            dataset.ids = [f"digits-{i}" for i in idx]  # type: ignore[attr-defined]
            return dataset

        return Splits(train=part(train), val=part(val), test=part(test))  # type: ignore[arg-type]

    def resolve_preprocessing(self) -> dict[str, Any]:
        """Side, mean and std of the inputs: the digits' own (0.3, 0.4), or with `image_size: null` the
        backbone's pretrained ones, its channel means averaged for the single grey channel (timm sums a
        pretrained RGB stem's filters for grey input, which expects the same value in every channel)."""
        if self.image_size is not None:
            return {"input_size": [1, self.image_size, self.image_size], "mean": [0.3], "std": [0.4]}
        config = self.model_data_config()
        if not config:
            raise ConfigError(
                "data.image_size: null takes the size from the model's backbone, which declares none (or no "
                "model is attached); set data.image_size (e.g. 32)"
            )
        side = int(config["input_size"][-1])
        return {
            "input_size": [1, side, side],
            "mean": [float(np.mean(config["mean"]))],
            "std": [float(np.mean(config["std"]))],
        }

    def build_transforms(self, stage: Literal["train", "eval"]) -> v2.Transform:
        """Upsampled and normalised per sample, so an image file (grey, any size) takes the same path."""
        p = self.preprocessing
        steps: list[v2.Transform] = [
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Resize(p["input_size"][1:], antialias=True),
            v2.Normalize(p["mean"], p["std"]),
        ]
        if stage == "train" and self.augment:  # after normalising: shifted-in pixels are 0 there
            steps.append(v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1)))
        return v2.Compose(steps)
